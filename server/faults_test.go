package main

// Fault injection. Each test runs the service on a PostgreSQL cluster and
// a redis-server of its own (testenv.StartPostgres, testenv.StartRedis),
// so that it can stop, kill and restart them without disturbing the other
// tests, and Stripe behind the recording fake. The figures each test logs
// (FAULT lines) are the ones RELIABILITY.md quotes.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/cache"
	"billingapi/ent"
	"billingapi/ent/payment"
	"billingapi/ent/webhookevent"
	"billingapi/internal/database"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/redis/go-redis/v9"
)

// faultClient is the HTTP client of the load generators: enough idle
// connections for every goroutine, and a timeout far above any bound the
// tests assert, so that a hang is measured rather than cut short.
func faultClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 128, 128
	return &http.Client{Timeout: timeout, Transport: tr}
}

// faultGQL posts a GraphQL operation without failing the test, for use
// from load goroutines: err is a transport error, a non-200 status or a
// body that is not a GraphQL response; GraphQL errors are in the response.
func faultGQL(client *http.Client, baseURL, token, query string, vars map[string]any) (gqlResponse, time.Duration, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, baseURL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return gqlResponse{}, time.Since(start), err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	took := time.Since(start)
	if err != nil {
		return gqlResponse{}, took, err
	}
	out := gqlResponse{Status: res.StatusCode, Raw: string(raw)}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, took, fmt.Errorf("HTTP %d, not a GraphQL response: %.200s", res.StatusCode, raw)
	}
	if res.StatusCode != http.StatusOK {
		return out, took, fmt.Errorf("HTTP %d: %.300s", res.StatusCode, raw)
	}
	return out, took, nil
}

// faultPostWebhook posts payload, signed now, to baseURL's webhook
// endpoint and returns the status (0 with err when no answer came).
func faultPostWebhook(client *http.Client, baseURL string, payload []byte) (int, error) {
	req, _ := http.NewRequest(http.MethodPost, baseURL+"/webhooks/stripe", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", whSign(payload))
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}

// faultEvent is a payment_intent.succeeded event of workspace ws for the
// PaymentIntent named after the event.
func faultEvent(eventID, ws string) []byte {
	return whPaymentEvent(eventID, "pi_"+strings.TrimPrefix(eventID, "evt_"),
		map[string]string{"workspace_id": ws, "user_id": "alice", "purpose": "credits_pack"})
}

// openFaultDB opens the database at url as the server does, for a test
// that checks what a server process (not in this one) wrote.
func openFaultDB(t *testing.T, url string) *ent.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := database.Open(ctx, url, database.Options{MaxOpenConns: 4})
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return store.Client
}

// faultTally counts requests of one kind made by concurrent goroutines.
type faultTally struct {
	mu       sync.Mutex
	requests int
	failures []string
	took     []time.Duration
}

func (c *faultTally) add(took time.Duration, failure string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	c.took = append(c.took, took)
	if failure != "" {
		c.failures = append(c.failures, failure)
	}
}

// gql posts a GraphQL operation (faultGQL) and counts it, failed when no
// answer came or it holds errors.
func (c *faultTally) gql(client *http.Client, baseURL, token, query string, vars map[string]any) {
	r, took, err := faultGQL(client, baseURL, token, query, vars)
	switch {
	case err != nil:
		c.add(took, err.Error())
	case len(r.Errors) > 0:
		c.add(took, r.Raw)
	default:
		c.add(took, "")
	}
}

// summary is "N requests, F failed, p99 X, max Y".
func (c *faultTally) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%d requests, %d failed, p99 %s, max %s", c.requests, len(c.failures),
		percentile(c.took, 0.99).Round(time.Millisecond), percentile(c.took, 1).Round(time.Millisecond))
}

func (c *faultTally) failed() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.failures)
}

func (c *faultTally) max() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return percentile(c.took, 1)
}

func (c *faultTally) p99() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return percentile(c.took, 0.99)
}

// faultLoad is background load: calls repeated by goroutines of their own
// while a test breaks something, until stop.
type faultLoad struct {
	done chan struct{}
	wg   sync.WaitGroup
}

func newFaultLoad() *faultLoad { return &faultLoad{done: make(chan struct{})} }

// run calls f over and over from n goroutines, each waiting pace before
// every call (none when pace is 0), until stop.
func (l *faultLoad) run(n int, pace time.Duration, f func()) {
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				if pace > 0 {
					select {
					case <-l.done:
						return
					case <-time.After(pace):
					}
				} else {
					select {
					case <-l.done:
						return
					default:
					}
				}
				f()
			}
		}()
	}
}

// stop ends the load and returns when every call in flight has returned.
func (l *faultLoad) stop() {
	close(l.done)
	l.wg.Wait()
}

// faultConcurrently makes n calls at once and returns each one's error
// code ("" for none, a transport error's text when no answer came) and
// how long it took, by call.
func faultConcurrently(n int, call func(i int) (gqlResponse, time.Duration, error)) (codes []string, took []time.Duration) {
	codes, took = make([]string, n), make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, d, err := call(i)
			took[i] = d
			if err != nil {
				codes[i] = err.Error()
			} else {
				codes[i] = r.Code()
			}
		}()
	}
	wg.Wait()
	return codes, took
}

// percentile returns the q-th quantile (0 < q <= 1) of ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// faultWaitProcessed waits until every event id has one processed row
// and returns how long that took, failing the test after within.
func faultWaitProcessed(t *testing.T, s *testServer, ids []string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		n, err := s.DB.WebhookEvent.Query().
			Where(webhookevent.StripeEventIDIn(ids...), webhookevent.StatusEQ(webhookevent.StatusProcessed)).
			Count(whService())
		if err != nil {
			t.Fatalf("count processed events: %v", err)
		}
		if n == len(ids) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%d of %d accepted events processed after %s", n, len(ids), within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// faultAssertAppliedOnce checks that each event has exactly one
// processed row and its PaymentIntent exactly one succeeded Payment in
// workspace ws.
func faultAssertAppliedOnce(t *testing.T, s *testServer, ws string, ids []string) {
	t.Helper()
	rows, err := s.DB.WebhookEvent.Query().Where(webhookevent.StripeEventIDIn(ids...)).All(whService())
	if err != nil {
		t.Fatal(err)
	}
	perEvent := map[string]int{}
	for _, r := range rows {
		perEvent[r.StripeEventID]++
		if r.Status != webhookevent.StatusProcessed {
			t.Errorf("event %s is %s (attempts %d, last error %q), want processed", r.StripeEventID, r.Status, r.Attempts, r.LastError)
		}
	}
	pis := make([]string, len(ids))
	for i, id := range ids {
		pis[i] = "pi_" + strings.TrimPrefix(id, "evt_")
	}
	pays, err := s.DB.Payment.Query().Where(payment.StripePaymentIntentIDIn(pis...)).All(whAdmin())
	if err != nil {
		t.Fatal(err)
	}
	perPI := map[string]int{}
	for _, p := range pays {
		perPI[*p.StripePaymentIntentID]++
		if p.WorkspaceID.String() != ws || p.Status != payment.StatusSucceeded {
			t.Errorf("payment %s: workspace %s status %s, want %s succeeded", *p.StripePaymentIntentID, p.WorkspaceID, p.Status, ws)
		}
	}
	for i, id := range ids {
		if perEvent[id] != 1 || perPI[pis[i]] != 1 {
			t.Errorf("event %s: %d webhook_events rows, %d payments; want exactly 1 and 1", id, perEvent[id], perPI[pis[i]])
		}
	}
}

// TestFaultRedisKilledUnderLoad kills redis-server (SIGKILL, no
// persistence) while clients query plans and workspace access, Stripe
// posts webhooks and a member listens to billingEvents, and starts it
// again a second later.
func TestFaultRedisKilledUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a fault test: runs and kills a redis-server of its own")
	}
	pg := testenv.StartPostgres(t)
	rd := testenv.StartRedis(t)
	const prefix = "fault:"
	w := newPaymentsWorld(t, pg.URL(), map[string]string{
		"REDIS_URL": rd.URL(), "REDIS_KEY_PREFIX": prefix, "PLAN_LOOKUP_KEYS": "starter_monthly,pro_yearly",
	})
	rdb := redis.NewClient(&redis.Options{Addr: rd.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })

	// The subscriber: carol, a member of A.
	sub := beDial(t, w.testServer, w.carol)
	sub.subscribe(t, "1", w.wsA)
	beWaitSubscribers(t, w.testServer, 1, wsReadTimeout)
	var (
		arrivedMu sync.Mutex
		arrived   = map[string]time.Time{}
		subErr    error
	)
	stopSub := make(chan struct{})
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		for {
			select {
			case <-stopSub:
				return
			default:
			}
			m, err := sub.next(100 * time.Millisecond)
			if errors.Is(err, errBeTimeout) {
				continue
			}
			arrivedMu.Lock()
			if err != nil {
				subErr = err
				arrivedMu.Unlock()
				return
			}
			var r struct {
				Data struct{ BillingEvents *beEvent } `json:"data"`
			}
			if m.Type != "next" || json.Unmarshal(m.Payload, &r) != nil || r.Data.BillingEvents == nil {
				subErr = fmt.Errorf("unexpected message %s %s", m.Type, m.Payload)
				arrivedMu.Unlock()
				return
			}
			arrived[r.Data.BillingEvents.EventID] = time.Now()
			arrivedMu.Unlock()
		}
	}()

	// The load: plans (anonymous), workspace access (alice and carol),
	// and webhooks, each from its own goroutines, until stopped.
	client := faultClient(30 * time.Second)
	var plans, access, hooks faultTally
	var (
		postedMu sync.Mutex
		posted   = map[string]time.Time{} // accepted event id -> when it was sent
		seq      atomic.Int64
	)
	load := newFaultLoad()
	load.run(3, 0, func() { plans.gql(client, w.URL, "", `{ plans { lookupKey unitAmount currency } }`, nil) })
	load.run(2, 0, func() { access.gql(client, w.URL, w.alice, accessQuery, map[string]any{"id": w.wsA}) })
	load.run(1, 0, func() { access.gql(client, w.URL, w.carol, accessQuery, map[string]any{"id": w.wsA}) })
	load.run(2, 0, func() {
		id := fmt.Sprintf("evt_redis_%d", seq.Add(1))
		sent := time.Now()
		status, err := faultPostWebhook(client, w.URL, faultEvent(id, w.wsA))
		switch {
		case err != nil:
			hooks.add(time.Since(sent), err.Error())
		case status != http.StatusOK:
			hooks.add(time.Since(sent), fmt.Sprintf("%s answered %d", id, status))
		default:
			hooks.add(time.Since(sent), "")
			postedMu.Lock()
			posted[id] = sent
			postedMu.Unlock()
		}
		time.Sleep(10 * time.Millisecond) // Stripe's pace, not a flood
	})

	time.Sleep(1500 * time.Millisecond)
	killedAt := time.Now()
	rd.Kill()
	t.Logf("redis-server killed")
	time.Sleep(time.Second)
	rd.Start()
	returnedAt := time.Now()
	t.Logf("redis-server started again after %s", returnedAt.Sub(killedAt).Round(time.Millisecond))

	// Keep the load up at least 3s after Redis returned, and until an
	// event posted after it returned has reached the subscriber (15s at
	// most).
	var firstAfter time.Duration
	for deadline := returnedAt.Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if firstAfter == 0 {
			postedMu.Lock()
			arrivedMu.Lock()
			for id, at := range arrived {
				if sent, ok := posted[id]; ok && sent.After(returnedAt) && (firstAfter == 0 || at.Sub(returnedAt) < firstAfter) {
					firstAfter = at.Sub(returnedAt)
				}
			}
			arrivedMu.Unlock()
			postedMu.Unlock()
		}
		if firstAfter > 0 && time.Since(returnedAt) > 3*time.Second {
			break
		}
	}
	load.stop()
	loadTime := time.Since(killedAt.Add(-1500 * time.Millisecond))

	for _, c := range []struct {
		name  string
		tally *faultTally
	}{{"plans", &plans}, {"workspace access", &access}, {"webhooks", &hooks}} {
		failed := c.tally.failed()
		t.Logf("FAULT redis: %s: %s", c.name, c.tally.summary())
		if len(failed) > 0 {
			t.Errorf("%d %s requests failed while Redis was killed and restarted; first: %s", len(failed), c.name, failed[0])
		}
	}
	if plans.requests == 0 || access.requests == 0 || hooks.requests == 0 {
		t.Fatalf("no load: plans %d, access %d, webhooks %d", plans.requests, access.requests, hooks.requests)
	}

	// Every accepted webhook is applied once.
	postedMu.Lock()
	ids := make([]string, 0, len(posted))
	for id := range posted {
		ids = append(ids, id)
	}
	postedMu.Unlock()
	applyLag := faultWaitProcessed(t, w.testServer, ids, 20*time.Second)
	faultAssertAppliedOnce(t, w.testServer, w.wsA, ids)

	// The subscriber stayed connected and got events posted after Redis
	// returned.
	close(stopSub)
	<-subDone
	arrivedMu.Lock()
	if subErr != nil {
		t.Errorf("the billingEvents subscriber failed: %v", subErr)
	}
	received := len(arrived)
	for id := range arrived {
		if _, ok := posted[id]; !ok {
			t.Errorf("the subscriber got event %s, which was never accepted", id)
		}
	}
	arrivedMu.Unlock()
	if firstAfter == 0 {
		t.Errorf("no event posted after Redis returned reached the billingEvents subscriber within 15s: the bus did not resubscribe")
	}
	if n := w.Bus.Subscribers(); n != 1 {
		t.Errorf("bus subscribers after the outage = %d, want 1", n)
	}
	t.Logf("FAULT redis: load %s; Redis down %s; %d webhooks accepted and applied once (all processed %s after the load); "+
		"subscriber got %d of them live (%d missed: published while Redis was down or before the bus resubscribed; "+
		"the live push is at most once by design); the first event posted after Redis returned arrived %s after it returned",
		loadTime.Round(time.Millisecond), returnedAt.Sub(killedAt).Round(time.Millisecond), len(ids),
		applyLag.Round(time.Millisecond), received, len(ids)-received, firstAfter.Round(time.Millisecond))

	// Steady state: the next event arrives promptly.
	for {
		if _, err := sub.next(300 * time.Millisecond); errors.Is(err, errBeTimeout) {
			break
		} else if err != nil {
			t.Fatalf("subscriber socket ended: %v", err)
		}
	}
	eventID, piID := bePostPaymentSucceeded(t, w.testServer, w.wsA, "alice", 4200, time.Now())
	ev := sub.nextEvent(t, "1")
	if ev.EventID != eventID || ev.Payment == nil || ev.Payment.StripePaymentIntentID != piID {
		t.Fatalf("after the outage the subscriber got %+v, want event %s", ev, eventID)
	}

	// The caches fill again: the plans and the workspace's status are in
	// the new, empty Redis, and plans are served from it. A snapshot whose
	// write-through failed while go-redis was reconnecting is deleted
	// (never left stale), and the replica's near cache may answer for up
	// to its TTL before reading Redis again, so keep reading for that long.
	s := w.testServer
	ctx := context.Background()
	keys := []string{prefix + "{price}:lk:starter_monthly", prefix + "{price}:lk:pro_yearly", prefix + "status:" + w.wsA}
	deadline := time.Now().Add(cache.DefaultNearTTL + 3*time.Second)
	for {
		s.gql(t, "", `{ plans { lookupKey } }`, nil).Decode(t, &struct{}{})
		s.gql(t, w.alice, accessQuery, map[string]any{"id": w.wsA}).Decode(t, &struct{}{})
		var missing []string
		for _, key := range keys {
			if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 1 {
				missing = append(missing, fmt.Sprintf("%s (exists %d, err %v)", key, n, err))
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart Redis still lacks %v: the caches did not refill", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	before := w.fake.Count("GET", "/v1/prices")
	s.gql(t, "", `{ plans { lookupKey } }`, nil).Decode(t, &struct{}{})
	if n := w.fake.Count("GET", "/v1/prices") - before; n != 0 {
		t.Errorf("plans after the refill asked Stripe %d times, want 0 (served from Redis)", n)
	}
}

// TestFaultPostgresStops stops PostgreSQL under a running server: webhooks
// answer 503, queries fail fast, and after PostgreSQL returns the same
// server recovers and Stripe's retry is applied once.
func TestFaultPostgresStops(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a fault test: runs and stops a PostgreSQL cluster of its own")
	}
	pg := testenv.StartPostgres(t)
	rd := testenv.StartRedis(t)
	w := newPaymentsWorld(t, pg.URL(), map[string]string{
		"REDIS_URL": rd.URL(), "REDIS_KEY_PREFIX": "fault:", "PLAN_LOOKUP_KEYS": "starter_monthly,pro_yearly",
	})
	client := faultClient(30 * time.Second)
	const bound = 5 * time.Second
	body := faultEvent("evt_pg_down", w.wsA)
	// Warm the caches and the pool.
	w.gql(t, w.alice, `{ me { id } }`, nil).Decode(t, &struct{}{})
	w.gql(t, "", `{ plans { lookupKey } }`, nil).Decode(t, &struct{}{})

	downAt := time.Now()
	pg.Stop()
	t.Logf("PostgreSQL stopped in %s", time.Since(downAt).Round(time.Millisecond))

	// Webhooks: 503 so that Stripe retries, never 200 without a stored
	// event. Several attempts: the first may meet a pooled connection
	// that is now dead, the next ones a refused connection.
	var hookStatuses []int
	for i := range 3 {
		start := time.Now()
		status, err := faultPostWebhook(client, w.URL, body)
		took := time.Since(start)
		hookStatuses = append(hookStatuses, status)
		t.Logf("FAULT postgres: webhook delivery %d with PostgreSQL down: %d %v in %s", i+1, status, err, took.Round(time.Millisecond))
		if status == http.StatusOK {
			t.Fatalf("a webhook was answered 200 with PostgreSQL down")
		}
		if status != http.StatusServiceUnavailable {
			t.Errorf("webhook with PostgreSQL down answered %d (%v), want 503", status, err)
		}
		if took > bound {
			t.Errorf("webhook with PostgreSQL down took %s, want under %s", took, bound)
		}
	}

	// Queries that need the database fail fast with a coded error;
	// plans, which do not, still answer.
	queries := []struct {
		name, token, query string
		vars               map[string]any
		wantOK             bool
	}{
		{"me", w.alice, `{ me { id } }`, nil, false},
		{"workspace", w.alice, `query($id: ID!) { workspace(id: $id) { id name } }`, map[string]any{"id": w.wsA}, false},
		{"workspace access", w.alice, accessQuery, map[string]any{"id": w.wsA}, false},
		{"payments", w.alice, `query($id: ID!) { workspace(id: $id) { payments { totalCount } } }`, map[string]any{"id": w.wsA}, false},
		{"plans", "", `{ plans { lookupKey } }`, nil, true},
	}
	for _, q := range queries {
		for i := range 2 {
			r, took, err := faultGQL(client, w.URL, q.token, q.query, q.vars)
			t.Logf("FAULT postgres: %s with PostgreSQL down (try %d): %s in %s: %.200s", q.name, i+1, r.Code(), took.Round(time.Millisecond), r.Raw)
			if err != nil {
				t.Errorf("%s with PostgreSQL down: %v", q.name, err)
				continue
			}
			if took > bound {
				t.Errorf("%s with PostgreSQL down took %s, want under %s", q.name, took, bound)
			}
			switch {
			case q.wantOK && len(r.Errors) > 0:
				t.Errorf("%s does not need the database but failed: %s", q.name, r.Raw)
			case !q.wantOK && r.Code() == "":
				t.Errorf("%s with PostgreSQL down answered without a coded error: %s", q.name, r.Raw)
			}
			if strings.Contains(r.Raw, "127.0.0.1") || strings.Contains(r.Raw, "connect") || strings.Contains(r.Raw, "postgres") {
				t.Errorf("%s leaks database details: %s", q.name, r.Raw)
			}
		}
	}
	if res, err := client.Get(w.URL + "/readyz"); err != nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with PostgreSQL down: %v %v, want 503", err, res)
	} else {
		res.Body.Close()
	}

	// PostgreSQL returns; the same server recovers without a restart.
	pg.Start()
	upAt := time.Now()
	var recovered time.Duration
	for deadline := upAt.Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r, _, err := faultGQL(client, w.URL, w.alice, `{ me { id } }`, nil); err == nil && len(r.Errors) == 0 {
			recovered = time.Since(upAt)
			break
		}
	}
	if recovered == 0 {
		t.Fatalf("the server did not answer { me { id } } within 15s of PostgreSQL's return")
	}
	if res, err := client.Get(w.URL + "/readyz"); err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("/readyz after PostgreSQL returned: %v %v, want 200", err, res)
	} else {
		res.Body.Close()
	}

	// Stripe retries the event, several times and concurrently: 200, one
	// row, one payment.
	var retryWG sync.WaitGroup
	retryStatus := make([]int, 5)
	for i := range retryStatus {
		retryWG.Add(1)
		go func() {
			defer retryWG.Done()
			retryStatus[i], _ = faultPostWebhook(client, w.URL, body)
		}()
	}
	retryWG.Wait()
	for i, st := range retryStatus {
		if st != http.StatusOK {
			t.Errorf("Stripe's retry %d after PostgreSQL returned answered %d, want 200", i+1, st)
		}
	}
	applied := faultWaitProcessed(t, w.testServer, []string{"evt_pg_down"}, 15*time.Second)
	time.Sleep(300 * time.Millisecond) // a second application would show now
	faultAssertAppliedOnce(t, w.testServer, w.wsA, []string{"evt_pg_down"})
	if c := w.paymentCount(t, w.alice, w.wsA); c != 1 {
		t.Errorf("workspace A has %d payments, want 1", c)
	}
	t.Logf("FAULT postgres: webhook statuses while down %v; server answered again %s after PostgreSQL returned (no restart); "+
		"5 concurrent retries answered %v, applied once %s later", hookStatuses, recovered.Round(time.Millisecond),
		retryStatus, applied.Round(time.Millisecond))

}

// TestFaultPostgresHangs freezes PostgreSQL (SIGSTOP of the postmaster
// and every backend: connections open, nothing answers, as on a frozen
// host or a network that drops packets) and asks for answers within the
// same bound as when PostgreSQL is stopped. After the thaw the same server
// answers again.
func TestFaultPostgresHangs(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a fault test: runs and freezes a PostgreSQL cluster of its own")
	}
	pg := testenv.StartPostgres(t)
	rd := testenv.StartRedis(t)
	w := newPaymentsWorld(t, pg.URL(), map[string]string{"REDIS_URL": rd.URL(), "REDIS_KEY_PREFIX": "fault:"})
	const bound = 5 * time.Second
	w.gql(t, w.alice, `{ me { id } }`, nil).Decode(t, &struct{}{})

	pg.Freeze()
	frozenAt := time.Now()
	// The client gives up at twice the bound, as a client or a proxy
	// would; the server itself sets no deadline.
	client := faultClient(2 * bound)
	type answer struct {
		what, code string
		took       time.Duration
		err        error
	}
	answers := make(chan answer, 3)
	go func() {
		st, err := faultPostWebhook(client, w.URL, faultEvent("evt_pg_frozen", w.wsA))
		answers <- answer{"webhook", fmt.Sprint(st), time.Since(frozenAt), err}
	}()
	go func() {
		r, took, err := faultGQL(client, w.URL, w.alice, `{ me { id } }`, nil)
		answers <- answer{"me", r.Code(), took, err}
	}()
	go func() {
		r, took, err := faultGQL(client, w.URL, w.alice, `query($id: ID!) { workspace(id: $id) { id } }`, map[string]any{"id": w.wsA})
		answers <- answer{"workspace", r.Code(), took, err}
	}()
	var hung []string
	for range 3 {
		a := <-answers
		t.Logf("FAULT postgres hung: %s answered %q (%v) after %s", a.what, a.code, a.err, a.took.Round(time.Millisecond))
		if a.err != nil || a.took > bound {
			hung = append(hung, fmt.Sprintf("%s (%s)", a.what, a.took.Round(time.Millisecond)))
		}
	}
	pg.Thaw()
	thawedAt := time.Now()
	var back time.Duration
	for deadline := thawedAt.Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r, _, err := faultGQL(client, w.URL, w.alice, `{ me { id } }`, nil); err == nil && len(r.Errors) == 0 {
			back = time.Since(thawedAt)
			break
		}
	}
	t.Logf("FAULT postgres hung: the server answered again %s after the thaw", back.Round(time.Millisecond))
	if back == 0 {
		t.Errorf("the server did not answer within 15s of the thaw")
	}
	if len(hung) > 0 {
		t.Errorf("FINDING: with PostgreSQL hung these requests got no answer within %s, only the client's own timeout ended them: %v. "+
			"Nothing on the server bounds a request: no request deadline, no connect_timeout, no statement deadline. See RELIABILITY.md.",
			bound, hung)
	}
}

// TestFaultServerKilledDuringWebhookBurst SIGKILLs the real binary in the
// middle of 2,000 webhook deliveries from 16 goroutines, restarts it on the
// same database, and checks that every delivery answered 2xx is applied
// exactly once. Stripe then retries the deliveries that got no 2xx, and
// every event ends applied exactly once.
//
// The event the killed process was applying stays leased for the worker's
// 15-second lease (webhooks.Worker.Lease), so this test
// usually takes about half a minute; -short skips it.
func TestFaultServerKilledDuringWebhookBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the webhook worker's 15-second lease on the event in flight at the kill")
	}
	bin := buildServer(t)
	pg := testenv.StartPostgres(t)
	rd := testenv.StartRedis(t)
	env := map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "DATABASE_URL": pg.URL(), "REDIS_URL": rd.URL(), "REDIS_KEY_PREFIX": "fault:",
		"STRIPE_WEBHOOK_SECRET": whSecret,
	}
	cfg, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	api, cmd := startServerProcess(t, bin, env)
	base := api.URL
	tok, err := auth.NewHS256Signer([]byte(DevJWTSecret), cfg.JWT.Issuer, cfg.JWT.Audience).
		Mint(auth.Claims{Subject: "alice", Email: "alice@example.com", Name: "ALICE"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ws := api.createWorkspace(t, tok, "burst")

	const total, workers, killAfter = 2000, 16, 500
	ids := make([]string, total)
	bodies := make([][]byte, total)
	for i := range ids {
		ids[i] = fmt.Sprintf("evt_burst_%04d", i)
		bodies[i] = faultEvent(ids[i], ws)
	}
	client := faultClient(10 * time.Second)
	statuses := make([]int, total)
	errs := make([]error, total)
	var done atomic.Int64
	killed := make(chan time.Time, 1)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				statuses[i], errs[i] = faultPostWebhook(client, base, bodies[i])
				if done.Add(1) == killAfter {
					_ = cmd.Process.Kill() // SIGKILL
					killed <- time.Now()
				}
			}
		}()
	}
	burstStart := time.Now()
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	killedAt := <-killed
	_ = cmd.Wait()

	var accepted, refused []string
	other := map[string]int{}
	for i, st := range statuses {
		switch {
		case st >= 200 && st < 300:
			accepted = append(accepted, ids[i])
		case errs[i] != nil:
			refused = append(refused, ids[i])
			msg := errs[i].Error()
			if j := strings.LastIndex(msg, ": "); j >= 0 {
				msg = msg[j+2:]
			}
			other[msg]++
		default:
			refused = append(refused, ids[i])
			other[fmt.Sprintf("HTTP %d", st)]++
		}
	}
	t.Logf("FAULT kill: %d deliveries in %s from %d goroutines, SIGKILL after %d answers (%s into the burst): %d answered 2xx, %d not (%v)",
		total, time.Since(burstStart).Round(time.Millisecond), workers, killAfter, killedAt.Sub(burstStart).Round(time.Millisecond),
		len(accepted), len(refused), other)
	if len(accepted) < killAfter/2 {
		t.Fatalf("only %d deliveries were accepted before the kill", len(accepted))
	}

	// What the database holds after the kill: the events stored, and
	// those the dead process had leased (claimed, not finished); a lease
	// runs for webhooks.Worker's default Lease (15 seconds) before another
	// worker may take the event.
	db := &testServer{Main: &Main{DB: openFaultDB(t, pg.URL())}}
	stored, err := db.DB.WebhookEvent.Query().All(whService())
	if err != nil {
		t.Fatal(err)
	}
	isAccepted := map[string]bool{}
	for _, id := range accepted {
		isAccepted[id] = true
	}
	var leased []string
	leasedIDs := map[string]bool{}
	pending, unanswered := 0, 0
	for _, r := range stored {
		if !isAccepted[r.StripeEventID] {
			unanswered++
		}
		if r.Status != webhookevent.StatusProcessed {
			pending++
			if r.LockedUntil != nil && r.LockedUntil.After(time.Now()) {
				leasedIDs[r.StripeEventID] = true
				leased = append(leased, fmt.Sprintf("%s (attempts %d, leased for %s more)", r.StripeEventID, r.Attempts,
					time.Until(*r.LockedUntil).Round(time.Second)))
			}
		}
	}
	t.Logf("FAULT kill: after the kill %d events stored (%d of them stored but never answered 2xx), %d not yet processed, "+
		"%d leased by the killed process %v", len(stored), unanswered, pending, len(leased), leased)
	for _, r := range stored {
		if r.Status == webhookevent.StatusProcessed {
			continue
		}
		if r.Status != webhookevent.StatusReceived && r.Status != webhookevent.StatusFailed {
			t.Errorf("event %s is %s after the kill", r.StripeEventID, r.Status)
		}
	}

	// Restart on the same database; the worker resumes where the dead one
	// stopped.
	restartAt := time.Now()
	api2, _ := startServerProcess(t, bin, env)
	base2 := api2.URL
	up := time.Since(restartAt)
	var unleased []string
	for _, id := range accepted {
		if !leasedIDs[id] {
			unleased = append(unleased, id)
		}
	}
	faultWaitProcessed(t, db, unleased, 30*time.Second)
	others := time.Since(restartAt)
	faultWaitProcessed(t, db, accepted, 90*time.Second)
	t.Logf("FAULT kill: server up %s after restart; the %d 2xx events not leased processed %s after restart, "+
		"every 2xx event processed %s after restart", up.Round(time.Millisecond), len(unleased),
		others.Round(time.Millisecond), time.Since(restartAt).Round(time.Millisecond))
	faultAssertAppliedOnce(t, db, ws, accepted)

	// Stripe retries what got no 2xx; then all 2,000 are applied once.
	retryStart := time.Now()
	var retryFailed atomic.Int64
	retry := make(chan string)
	var rwg sync.WaitGroup
	for range workers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for id := range retry {
				if st, err := faultPostWebhook(client, base2, faultEvent(id, ws)); err != nil || st != http.StatusOK {
					retryFailed.Add(1)
				}
			}
		}()
	}
	for _, id := range refused {
		retry <- id
	}
	close(retry)
	rwg.Wait()
	if n := retryFailed.Load(); n > 0 {
		t.Errorf("%d of Stripe's retries after the restart failed", n)
	}
	all := faultWaitProcessed(t, db, ids, 90*time.Second)
	faultAssertAppliedOnce(t, db, ws, ids)
	var dupes []struct {
		PI    string `json:"stripe_payment_intent_id"`
		Count int    `json:"count"`
	}
	if err := db.DB.Payment.Query().GroupBy(payment.FieldStripePaymentIntentID).Aggregate(ent.Count()).Scan(whAdmin(), &dupes); err != nil {
		t.Fatal(err)
	}
	dup := 0
	for _, d := range dupes {
		if d.Count != 1 {
			dup++
		}
	}
	if dup > 0 || len(dupes) != total {
		t.Errorf("payments: %d PaymentIntents, %d of them more than once; want %d, none twice", len(dupes), dup, total)
	}
	t.Logf("FAULT kill: Stripe's %d retries answered in %s; all %d events applied exactly once %s after the retries (%d PaymentIntents recorded, %d twice)",
		len(refused), time.Since(retryStart).Round(time.Millisecond), total, all.Round(time.Millisecond), len(dupes), dup)
}

// TestFaultStripeHangsOrResets makes Stripe's PaymentIntent endpoint hang
// or reset connections while 20 createPaymentIntent calls run at once:
// each answers PAYMENT_PROVIDER_UNAVAILABLE within the Stripe timeout and
// its retries, other queries stay fast, and nothing is half-written.
func TestFaultStripeHangsOrResets(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a fault test: waits out Stripe timeouts under load")
	}
	pg := testenv.StartPostgres(t)
	rd := testenv.StartRedis(t)
	const stripeTimeout = time.Second
	w := newPaymentsWorld(t, pg.URL(), map[string]string{
		"REDIS_URL": rd.URL(), "REDIS_KEY_PREFIX": "fault:", "PLAN_LOOKUP_KEYS": "starter_monthly,pro_yearly",
		"STRIPE_TIMEOUT": stripeTimeout.String(),
		// A small pool: a Stripe call that held a connection would show.
		"DB_MAX_OPEN_CONNS": "3",
	})
	// One payment goes through first: the workspace's Stripe customer
	// exists, as it does for any workspace that has paid before.
	var warm paymentPayload
	w.gql(t, w.alice, createPaymentMutation, paymentIn(w.wsA, map[string]any{"idempotencyKey": "warm"})).Decode(t, &warm)
	w.gql(t, "", `{ plans { lookupKey } }`, nil).Decode(t, &struct{}{})
	paymentsBefore := w.paymentCount(t, w.alice, w.wsA)

	// Three attempts (stripe-go's two network retries) of one timeout
	// each, stripe-go's backoff between them (0.5s, then 1s at most), and
	// slack for the race detector on two cores.
	const bound = 3*stripeTimeout + 1500*time.Millisecond + 2*time.Second
	const calls = 20
	client := faultClient(60 * time.Second)
	for _, mode := range []struct {
		name string
		rule stripefake.Rule
	}{
		{"Hang", stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Hang: true}},
		{"Reset", stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Reset: true}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			w.fake.On(mode.rule)
			t.Cleanup(w.fake.ClearRules)
			client.CloseIdleConnections()
			runtime.GC()
			goroutinesBefore := runtime.NumGoroutine()
			stripeBefore := w.fake.Count("POST", "/v1/payment_intents")

			var others faultTally
			load := newFaultLoad()
			load.run(1, 20*time.Millisecond, func() { others.gql(client, w.URL, w.alice, `{ me { id } }`, nil) })
			load.run(1, 20*time.Millisecond, func() { others.gql(client, w.URL, "", `{ plans { lookupKey } }`, nil) })

			codes, took := faultConcurrently(calls, func(i int) (gqlResponse, time.Duration, error) {
				return faultGQL(client, w.URL, w.alice, createPaymentMutation,
					paymentIn(w.wsA, map[string]any{"idempotencyKey": fmt.Sprintf("%s-%d", mode.name, i)}))
			})
			load.stop()

			byCode := map[string]int{}
			for _, c := range codes {
				byCode[c]++
			}
			slowest := slices.Max(took)
			t.Logf("FAULT stripe %s: %d concurrent createPaymentIntent: %v; fastest %s, p50 %s, slowest %s (bound %s); %d Stripe attempts",
				mode.name, calls, byCode, slices.Min(took).Round(time.Millisecond), percentile(took, 0.5).Round(time.Millisecond),
				slowest.Round(time.Millisecond), bound, w.fake.Count("POST", "/v1/payment_intents")-stripeBefore)
			t.Logf("FAULT stripe %s: meanwhile me and plans: %s", mode.name, others.summary())
			if byCode["PAYMENT_PROVIDER_UNAVAILABLE"] != calls {
				t.Errorf("answers = %v, want all %d PAYMENT_PROVIDER_UNAVAILABLE", byCode, calls)
			}
			if slowest > bound {
				t.Errorf("the slowest answer took %s, want under %s", slowest, bound)
			}
			if f := others.failed(); len(f) > 0 {
				t.Errorf("%d other queries failed while Stripe was down; first: %s", len(f), f[0])
			}
			if p := others.p99(); p > time.Second || others.requests < 10 {
				t.Errorf("other queries: %s; want at least 10 with p99 under 1s", others.summary())
			}

			// Nothing half-written: no claim left in `creating`, no new
			// payment.
			creating, err := w.DB.Payment.Query().Where(payment.StatusEQ(payment.StatusCreating)).Count(whAdmin())
			if err != nil {
				t.Fatal(err)
			}
			if creating != 0 {
				t.Errorf("%d payments left in status creating", creating)
			}
			if n := w.paymentCount(t, w.alice, w.wsA); n != paymentsBefore {
				t.Errorf("payments = %d, want %d (unchanged)", n, paymentsBefore)
			}

			// No goroutines left behind.
			client.CloseIdleConnections()
			var goroutinesAfter int
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				runtime.GC()
				goroutinesAfter = runtime.NumGoroutine()
				if goroutinesAfter <= goroutinesBefore+10 || time.Now().After(deadline) {
					break
				}
			}
			t.Logf("FAULT stripe %s: goroutines %d before, %d after", mode.name, goroutinesBefore, goroutinesAfter)
			if goroutinesAfter > goroutinesBefore+10 {
				t.Errorf("goroutines: %d before the calls, %d after; want at most 10 more", goroutinesBefore, goroutinesAfter)
			}
		})
	}

	// A workspace's first payment creates its Stripe customer, under a
	// lock on the workspace row (billing.EnsureCustomer). With Stripe
	// down, concurrent first payments of one workspace (bob's B, which has
	// no customer) must answer within the same bound, and must not take
	// the pool (3 connections here) from other queries.
	t.Run("FirstPaymentWhileStripeIsDown", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/customers", Hang: true})
		t.Cleanup(w.fake.ClearRules)
		customersBefore := w.fake.Count("POST", "/v1/customers")
		const firstCalls = 3
		var others faultTally
		load := newFaultLoad()
		load.run(1, 50*time.Millisecond, func() { others.gql(client, w.URL, w.alice, `{ me { id } }`, nil) })
		codes, took := faultConcurrently(firstCalls, func(i int) (gqlResponse, time.Duration, error) {
			return faultGQL(client, w.URL, w.bob, createPaymentMutation,
				paymentIn(w.wsB, map[string]any{"idempotencyKey": fmt.Sprintf("first-%d", i)}))
		})
		load.stop()
		slices.Sort(took)
		t.Logf("FAULT stripe customer hang: %d concurrent first payments of one workspace: %v, answered after %v (bound %s); %d customer attempts",
			firstCalls, codes, took, bound, w.fake.Count("POST", "/v1/customers")-customersBefore)
		t.Logf("FAULT stripe customer hang: meanwhile me: %s", others.summary())
		for i, c := range codes {
			if c != "PAYMENT_PROVIDER_UNAVAILABLE" {
				t.Errorf("call %d answered %q, want PAYMENT_PROVIDER_UNAVAILABLE", i, c)
			}
		}
		if took[firstCalls-1] > bound {
			t.Errorf("FINDING: concurrent first payments of one workspace queue on the workspace row lock, each waiting for the "+
				"previous one's Stripe timeouts: answers after %v, want all under %s. See RELIABILITY.md.", took, bound)
		}
		// One client polls: a stalled query is one sample, so the worst
		// one is what counts.
		if m := others.max(); m > time.Second {
			t.Errorf("FINDING: { me { id } } waited %s for a database connection while the first payments held the pool "+
				"(%s). See RELIABILITY.md.", m.Round(time.Millisecond), others.summary())
		}
		if creating, err := w.DB.Payment.Query().Where(payment.StatusEQ(payment.StatusCreating)).Count(whAdmin()); err != nil || creating != 0 {
			t.Errorf("payments in status creating: %d (%v), want 0", creating, err)
		}
	})

	// Stripe is back: the same keys now succeed.
	var ok paymentPayload
	w.gql(t, w.alice, createPaymentMutation, paymentIn(w.wsA, map[string]any{"idempotencyKey": "Hang-0"})).Decode(t, &ok)
	if ok.CreatePaymentIntent.Payment.Status != "REQUIRES_PAYMENT_METHOD" {
		t.Errorf("after Stripe returned: %+v", ok.CreatePaymentIntent)
	}
}
