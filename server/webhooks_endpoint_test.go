package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/ent"
	"billingapi/ent/payment"
	"billingapi/ent/webhookevent"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to take the database down
)

// whSecret is the webhook signing secret withStripe configures.
const whSecret = "whsec_test_secret_for_tests"

// whClient posts webhooks; the timeout bounds a request to a database
// that does not answer.
var whClient = &http.Client{Timeout: 30 * time.Second}

// whPost posts a webhook body with a Stripe-Signature header to path
// ("/webhooks/stripe" or "/webhooks/stripe/") and returns the status and
// body, failing the test when the body carries a secret.
func whPost(t *testing.T, s *testServer, path string, body []byte, signature string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Errorf("request: %v", err)
		return 0, ""
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", signature)
	res, err := whClient.Do(req)
	if err != nil {
		t.Errorf("POST %s: %v", path, err)
		return 0, ""
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	assertNoSecrets(t, string(raw))
	return res.StatusCode, string(raw)
}

// whSign signs body as Stripe would, now, with the server's secret.
func whSign(body []byte) string { return stripefake.Sign(body, whSecret, time.Now()) }

// whPaymentEvent is a payment_intent.succeeded event for PaymentIntent
// piID with the given metadata.
func whPaymentEvent(eventID, piID string, metadata map[string]string) []byte {
	return stripefake.Event(eventID, "payment_intent.succeeded",
		stripefake.PaymentIntentJSON(piID, "succeeded", 2500, "usd", metadata), time.Now())
}

// whService is the webhook service's context: it reads webhook_events.
func whService() context.Context {
	return auth.NewContext(context.Background(), auth.ServiceViewer(auth.WebhooksService))
}

// whAdmin is a platform admin's context: it reads every workspace's rows.
func whAdmin() context.Context {
	return auth.NewContext(context.Background(), auth.Viewer{UserID: "platform-admin", Admin: true})
}

// whEventRows returns the stored rows of a Stripe event id.
func whEventRows(t *testing.T, s *testServer, eventID string) []*ent.WebhookEvent {
	t.Helper()
	rows, err := s.DB.WebhookEvent.Query().Where(webhookevent.StripeEventID(eventID)).All(whService())
	if err != nil {
		t.Fatalf("read webhook_events: %v", err)
	}
	return rows
}

// whWaitFor polls the event's row every 20ms for up to 10s until done
// says it is in the awaited state, and returns it.
func whWaitFor(t *testing.T, s *testServer, eventID, what string, done func(*ent.WebhookEvent) bool) *ent.WebhookEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last *ent.WebhookEvent
	for time.Now().Before(deadline) {
		rows := whEventRows(t, s, eventID)
		if len(rows) > 1 {
			t.Fatalf("%d rows for event %s, want one", len(rows), eventID)
		}
		if len(rows) == 1 {
			last = rows[0]
			if done(last) {
				return last
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("event %s never became %s; last row: %+v", eventID, what, last)
	return nil
}

// whWaitStatus waits until the event's row has the status.
func whWaitStatus(t *testing.T, s *testServer, eventID string, status webhookevent.Status) *ent.WebhookEvent {
	t.Helper()
	return whWaitFor(t, s, eventID, string(status), func(r *ent.WebhookEvent) bool { return r.Status == status })
}

// whPayments returns every Payment row of a PaymentIntent, in any
// workspace.
func whPayments(t *testing.T, s *testServer, piID string) []*ent.Payment {
	t.Helper()
	rows, err := s.DB.Payment.Query().Where(payment.StripePaymentIntentID(piID)).All(whAdmin())
	if err != nil {
		t.Fatalf("read payments: %v", err)
	}
	return rows
}

// whPaymentsIn counts a workspace's Payment rows of a PaymentIntent as
// that workspace's system viewer.
func whPaymentsIn(t *testing.T, s *testServer, ws, piID string) int {
	t.Helper()
	n, err := s.DB.Payment.Query().Where(payment.StripePaymentIntentID(piID)).
		Count(auth.NewContext(context.Background(), auth.SystemViewer(uuid.MustParse(ws))))
	if err != nil {
		t.Fatalf("count payments: %v", err)
	}
	return n
}

// whAssertLogsClean fails when the server's logs carry a webhook secret.
func whAssertLogsClean(t *testing.T, s *testServer) {
	t.Helper()
	if logs := s.logs.String(); strings.Contains(logs, "whsec_") {
		t.Errorf("server logs carry a webhook secret")
	}
}

func TestSameEventFiftyTimesConcurrentlyIsAppliedOnce(t *testing.T) {
	w := newPaymentsWorld(t, testenv.Postgres(t), nil)

	// Subscribe before posting: the one publish must be seen.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu       sync.Mutex
		messages [][]byte
	)
	sub := w.Bus.Subscribe(ctx, w.wsA)
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		for m := range sub {
			mu.Lock()
			messages = append(messages, m.Payload)
			mu.Unlock()
		}
	}()

	body := whPaymentEvent("evt_fifty", "pi_fifty", map[string]string{"workspace_id": w.wsA, "user_id": "alice", "purpose": "credits_pack"})
	signature := whSign(body)
	const n = 50
	statuses := make([]int, n)
	bodies := make([]string, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := "/webhooks/stripe"
			if i%2 == 1 {
				path += "/"
			}
			<-start
			statuses[i], bodies[i] = whPost(t, w.testServer, path, body, signature)
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if statuses[i] != http.StatusOK || bodies[i] != `{"received":true}` {
			t.Errorf("delivery %d answered %d %q, want 200 {\"received\":true}", i, statuses[i], bodies[i])
		}
	}

	row := whWaitStatus(t, w.testServer, "evt_fifty", webhookevent.StatusProcessed)
	if rows := whEventRows(t, w.testServer, "evt_fifty"); len(rows) != 1 {
		t.Fatalf("webhook_events rows for evt_fifty = %d, want 1", len(rows))
	}
	if row.Attempts != 1 || row.ProcessedAt == nil || row.NextAttemptAt != nil || row.LockedUntil != nil ||
		row.WorkspaceID == nil || row.WorkspaceID.String() != w.wsA || row.ObjectID != "pi_fifty" {
		t.Fatalf("processed row = %+v; want one attempt, done, in workspace A", row)
	}

	// The effects: one Payment, in A, succeeded.
	pays := whPayments(t, w.testServer, "pi_fifty")
	if len(pays) != 1 {
		t.Fatalf("Payment rows for pi_fifty = %d, want exactly 1", len(pays))
	}
	if p := pays[0]; p.WorkspaceID.String() != w.wsA || p.Status != payment.StatusSucceeded || p.Amount != 2500 ||
		p.Currency != "usd" || p.Purpose != "credits_pack" || p.CreatedBy != "alice" {
		t.Fatalf("payment = %+v", p)
	}
	if c := whPaymentsIn(t, w.testServer, w.wsA, "pi_fifty"); c != 1 {
		t.Fatalf("workspace A's system viewer sees %d payments, want 1", c)
	}
	var out struct {
		Workspace struct {
			Payments struct {
				TotalCount int
				Edges      []struct {
					Node struct{ Status, StripePaymentIntentID string }
				}
			}
		}
	}
	w.gql(t, w.alice, `query($id: ID!) { workspace(id: $id) { payments { totalCount edges { node { status stripePaymentIntentId } } } } }`,
		map[string]any{"id": w.wsA}).Decode(t, &out)
	if p := out.Workspace.Payments; p.TotalCount != 1 || len(p.Edges) != 1 ||
		p.Edges[0].Node.Status != "SUCCEEDED" || p.Edges[0].Node.StripePaymentIntentID != "pi_fifty" {
		t.Fatalf("alice sees payments %+v, want one SUCCEEDED pi_fifty", p)
	}
	if c := w.paymentCount(t, w.bob, w.wsB); c != 0 {
		t.Fatalf("workspace B has %d payments, want 0", c)
	}

	// One publish, however many deliveries.
	time.Sleep(time.Second)
	cancel()
	<-subDone
	mu.Lock()
	defer mu.Unlock()
	if len(messages) != 1 {
		t.Fatalf("bus messages for workspace A = %d, want exactly 1: %q", len(messages), messages)
	}
	var msg struct {
		EventID     string `json:"event_id"`
		Type        string `json:"type"`
		WorkspaceID string `json:"workspace_id"`
		Payment     *struct {
			StripePaymentIntentID string `json:"stripe_payment_intent_id"`
		} `json:"payment"`
	}
	if err := json.Unmarshal(messages[0], &msg); err != nil {
		t.Fatalf("bus message %s: %v", messages[0], err)
	}
	if msg.EventID != "evt_fifty" || msg.Type != "payment_intent.succeeded" || msg.WorkspaceID != w.wsA ||
		msg.Payment == nil || msg.Payment.StripePaymentIntentID != "pi_fifty" {
		t.Fatalf("bus message = %s", messages[0])
	}
	assertNoSecrets(t, string(messages[0]))
	whAssertLogsClean(t, w.testServer)
}

func TestDatabaseDownAnswers503ThenRetryIsAppliedOnce(t *testing.T) {
	dbURL := testenv.Postgres(t)
	w := newPaymentsWorld(t, dbURL, nil)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	admin, err := sql.Open("pgx", testenv.PostgresAdminURL())
	if err != nil {
		t.Fatal(err)
	}
	allow := func(ok bool) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := admin.ExecContext(ctx, fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS %t", name, ok))
		return err
	}
	// Registered after the server and the database: runs before both are
	// torn down, so the server closes cleanly and testenv can drop it.
	t.Cleanup(func() {
		if err := allow(true); err != nil {
			t.Errorf("re-allow connections to %s: %v", name, err)
		}
		_ = admin.Close()
	})

	body := whPaymentEvent("evt_db_down", "pi_db_down", map[string]string{"workspace_id": w.wsA, "user_id": "alice", "purpose": "credits_pack"})

	// Take the database down: no new connections, and the open ones cut.
	if err := allow(false); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name); err != nil {
		t.Fatal(err)
	}
	// Twice: at once (the pool's connections were just cut) and after the
	// driver's 1s idle ping would notice that (new connections refused).
	for i, wait := range []time.Duration{0, 1500 * time.Millisecond} {
		time.Sleep(wait)
		started := time.Now()
		status, text := whPost(t, w.testServer, "/webhooks/stripe", body, whSign(body))
		t.Logf("database down, delivery %d: %d %q after %s", i+1, status, text, time.Since(started).Round(time.Millisecond))
		if status != http.StatusServiceUnavailable {
			t.Fatalf("with the database down delivery %d answered %d %q, want 503 so that Stripe retries", i+1, status, text)
		}
		if text != "temporarily unavailable\n" {
			t.Errorf("503 body = %q, want the generic text", text)
		}
	}
	if logs := w.logs.String(); strings.Count(logs, "webhook not stored") < 2 || !strings.Contains(logs, "event_id=evt_db_down") {
		t.Errorf("the failures to store were not logged with the event id")
	} else {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "webhook not stored") {
				t.Logf("logged: %s", line)
			}
		}
	}

	// The database comes back; Stripe retries the same event, re-signed at
	// retry time. Its first retry comes minutes later; 1.5s is enough for
	// connections cut while idle to be noticed by the driver's ping.
	if err := allow(true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	status, text := whPost(t, w.testServer, "/webhooks/stripe/", body, whSign(body))
	if status != http.StatusOK || text != `{"received":true}` {
		t.Fatalf("Stripe's retry after the database returned answered %d %q, want 200", status, text)
	}
	row := whWaitStatus(t, w.testServer, "evt_db_down", webhookevent.StatusProcessed)
	if row.Attempts != 1 {
		t.Errorf("attempts = %d, want 1", row.Attempts)
	}
	// Stripe may retry again even after a 200: still one effect.
	if status, _ := whPost(t, w.testServer, "/webhooks/stripe", body, whSign(body)); status != http.StatusOK {
		t.Fatalf("a late duplicate answered %d, want 200", status)
	}
	time.Sleep(200 * time.Millisecond)
	if rows := whEventRows(t, w.testServer, "evt_db_down"); len(rows) != 1 || rows[0].Status != webhookevent.StatusProcessed {
		t.Fatalf("webhook_events rows = %+v, want one processed", rows)
	}
	if pays := whPayments(t, w.testServer, "pi_db_down"); len(pays) != 1 || pays[0].WorkspaceID.String() != w.wsA ||
		pays[0].Status != payment.StatusSucceeded {
		t.Fatalf("payments for pi_db_down = %+v, want exactly one succeeded in A", pays)
	}
	whAssertLogsClean(t, w.testServer)
}

func TestUnknownEventTypeAndUnknownWorkspaceAreSkipped(t *testing.T) {
	w := newPaymentsWorld(t, testenv.Postgres(t), nil)

	t.Run("UnhandledType", func(t *testing.T) {
		body := stripefake.Event("evt_tax_id", "customer.tax_id.created",
			`{"id":"txi_123","object":"tax_id","customer":"cus_unknown","type":"eu_vat","value":"DE123456789"}`, time.Now())
		if status, text := whPost(t, w.testServer, "/webhooks/stripe", body, whSign(body)); status != http.StatusOK {
			t.Fatalf("answered %d %q, want 200 (stored even though unhandled)", status, text)
		}
		row := whWaitStatus(t, w.testServer, "evt_tax_id", webhookevent.StatusSkipped)
		if !strings.Contains(row.LastError, "unhandled") || !strings.Contains(row.LastError, "customer.tax_id.created") {
			t.Errorf("last_error = %q, want it to say the type is unhandled", row.LastError)
		}
		if row.ProcessedAt == nil || row.NextAttemptAt != nil || row.LockedUntil != nil || row.WorkspaceID != nil || row.Attempts != 1 {
			t.Errorf("skipped row = %+v; want done once, for no workspace", row)
		}
	})

	t.Run("PaymentForUnknownWorkspace", func(t *testing.T) {
		ghost := uuid.NewString()
		body := whPaymentEvent("evt_ghost", "pi_ghost", map[string]string{"workspace_id": ghost, "user_id": "mallory", "purpose": "credits_pack"})
		if status, text := whPost(t, w.testServer, "/webhooks/stripe/", body, whSign(body)); status != http.StatusOK {
			t.Fatalf("answered %d %q, want 200", status, text)
		}
		row := whWaitStatus(t, w.testServer, "evt_ghost", webhookevent.StatusSkipped)
		if !strings.Contains(row.LastError, "no workspace") || !strings.Contains(row.LastError, ghost) {
			t.Errorf("last_error = %q, want the reason naming the unknown workspace", row.LastError)
		}
		if row.ProcessedAt == nil || row.NextAttemptAt != nil || row.WorkspaceID != nil {
			t.Errorf("skipped row = %+v", row)
		}
		if pays := whPayments(t, w.testServer, "pi_ghost"); len(pays) != 0 {
			t.Fatalf("a payment for an unknown workspace was recorded: %+v", pays)
		}
		for _, ws := range []struct{ token, id string }{{w.alice, w.wsA}, {w.bob, w.wsB}} {
			if c := w.paymentCount(t, ws.token, ws.id); c != 0 {
				t.Errorf("workspace %s has %d payments, want 0", ws.id, c)
			}
		}
	})
	whAssertLogsClean(t, w.testServer)
}

// whBackoff is the worker's documented retry schedule after attempt n.
var whBackoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour}

// whMaxAttempts is the worker's default MaxAttempts.
const whMaxAttempts = 8

func TestFailedEventIsRetriedWithBackoffThenStaysFailed(t *testing.T) {
	w := newPaymentsWorld(t, testenv.Postgres(t), nil)

	// Two events for one subscription in the same second cannot be ordered
	// by time, so the second asks Stripe for the subscription; Stripe is
	// down, so applying it fails and must be retried.
	at := time.Now().Truncate(time.Second)
	sub := func(status string) string {
		return stripefake.SubscriptionJSON(stripefake.Subscription{ID: "sub_flaky", Status: status, PriceID: "price_x",
			Metadata: map[string]string{"workspace_id": w.wsA, "plan": "team"}})
	}
	first := stripefake.Event("evt_sub_first", "customer.subscription.updated", sub("active"), at)
	if status, text := whPost(t, w.testServer, "/webhooks/stripe", first, whSign(first)); status != http.StatusOK {
		t.Fatalf("first event answered %d %q", status, text)
	}
	whWaitStatus(t, w.testServer, "evt_sub_first", webhookevent.StatusProcessed)
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/subscriptions/sub_flaky", Status: http.StatusServiceUnavailable,
		Body: stripefake.StripeError("api_error", "", "", "down")})
	t.Cleanup(w.fake.ClearRules)
	second := stripefake.Event("evt_clash_a", "customer.subscription.updated", sub("past_due"), at)
	if status, text := whPost(t, w.testServer, "/webhooks/stripe", second, whSign(second)); status != http.StatusOK {
		t.Fatalf("second event answered %d %q, want 200 (stored; applying it is the worker's business)", status, text)
	}

	// failedAfter waits for the failure recorded by an attempt after prev
	// and checks the retry it scheduled.
	failedAfter := func(prev int) *ent.WebhookEvent {
		t.Helper()
		row := whWaitFor(t, w.testServer, "evt_clash_a", fmt.Sprintf("failed after attempt %d", prev+1), func(r *ent.WebhookEvent) bool {
			return r.Status == webhookevent.StatusFailed && r.LockedUntil == nil && r.Attempts > prev
		})
		if row.LastError == "" {
			t.Fatalf("attempt %d failed without a last_error", row.Attempts)
		}
		assertNoSecrets(t, row.LastError)
		if row.ProcessedAt != nil || row.WorkspaceID != nil {
			t.Fatalf("a failed event is marked done: %+v", row)
		}
		if row.Attempts >= whMaxAttempts {
			return row
		}
		if row.NextAttemptAt == nil {
			t.Fatalf("attempt %d of %d failed with no retry scheduled: %+v", row.Attempts, whMaxAttempts, row)
		}
		// The retry is due backoff(attempts) after the failure was
		// recorded (update_time is set by the same statement).
		want := whBackoff[min(row.Attempts, len(whBackoff))-1]
		if got := row.NextAttemptAt.Sub(row.UpdateTime); got < want-time.Second || got > want+time.Second {
			t.Fatalf("after attempt %d the retry is due in %s, want %s", row.Attempts, got, want)
		}
		return row
	}

	row := failedAfter(0)
	t.Logf("last_error after attempt %d: %q", row.Attempts, row.LastError)
	if row.Attempts == 1 && !row.NextAttemptAt.After(row.UpdateTime) {
		t.Fatalf("next_attempt_at %s is not after the failure at %s", row.NextAttemptAt, row.UpdateTime)
	}

	// Stripe is not needed for the retries: make each one due now instead
	// of waiting for the backoff, and let a worker pick it up.
	for row.Attempts < whMaxAttempts {
		prev := row.Attempts
		if err := w.DB.WebhookEvent.UpdateOneID(row.ID).SetNextAttemptAt(time.Now().Add(-time.Second)).Exec(whService()); err != nil {
			t.Fatalf("make the retry due: %v", err)
		}
		w.Worker.ProcessDue(context.Background()) // or the server's worker, whichever claims it first
		row = failedAfter(prev)
		if row.Attempts != prev+1 {
			t.Fatalf("attempts went from %d to %d in one retry", prev, row.Attempts)
		}
	}

	// Out of attempts: failed for good, until replayed.
	if row.Attempts != whMaxAttempts || row.Status != webhookevent.StatusFailed || row.NextAttemptAt != nil {
		t.Fatalf("after %d attempts the row is %+v; want failed with no next attempt", whMaxAttempts, row)
	}
	w.Worker.ProcessDue(context.Background())
	time.Sleep(200 * time.Millisecond)
	if rows := whEventRows(t, w.testServer, "evt_clash_a"); len(rows) != 1 || rows[0].Attempts != whMaxAttempts ||
		rows[0].Status != webhookevent.StatusFailed || rows[0].NextAttemptAt != nil {
		t.Fatalf("a spent event was tried again: %+v", rows)
	}
	if strings.Count(w.logs.String(), "webhook event failed") < whMaxAttempts {
		t.Errorf("failures were not all logged")
	}

	// The failed event changed nothing: the subscription is as the first
	// event left it.
	a := w.access(t, w.alice, w.wsA)
	if a.Workspace.Subscription == nil || a.Workspace.Subscription.Status != "ACTIVE" {
		t.Fatalf("subscription after the failed event = %+v", a.Workspace.Subscription)
	}
	whAssertLogsClean(t, w.testServer)
}

// A replica with WEBHOOK_APPLY_DISABLED stores and acknowledges Stripe's
// deliveries but applies none: the event waits, received, through more
// than the worker's poll, until a replica that applies shares the
// database and applies it.
func TestReplicaWithApplyDisabledOnlyStores(t *testing.T) {
	dbURL := testenv.Postgres(t)
	redisURL, prefix := testenv.Redis(t)
	env := map[string]string{"STRIPE_WEBHOOK_SECRET": whSecret, "REDIS_URL": redisURL, "REDIS_KEY_PREFIX": prefix}
	doorEnv := maps.Clone(env)
	doorEnv["WEBHOOK_APPLY_DISABLED"] = "true"
	door := startServer(t, dbURL, doorEnv)
	body := stripefake.Event("evt_door_only", "customer.tax_id.created",
		`{"id":"txi_door","object":"tax_id","customer":"cus_unknown","type":"eu_vat","value":"DE123456789"}`, time.Now())
	if status, text := whPost(t, door, "/webhooks/stripe", body, whSign(body)); status != http.StatusOK {
		t.Fatalf("answered %d %q, want 200", status, text)
	}
	time.Sleep(1500 * time.Millisecond) // longer than the worker's poll
	if rows := whEventRows(t, door, "evt_door_only"); len(rows) != 1 || rows[0].Status != webhookevent.StatusReceived || rows[0].Attempts != 0 {
		t.Fatalf("stored rows %+v; want one, received and never attempted", rows)
	}
	worker := startServer(t, dbURL, env)
	whWaitStatus(t, worker, "evt_door_only", webhookevent.StatusSkipped)
}
