package webhooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"billingapi/ent"
	"billingapi/ent/webhookevent"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
)

// insertGate is an ent driver that sees every INSERT into webhook_events:
// it records which events each statement holds, can hold the first
// statements until released, and can refuse statements.
type insertGate struct {
	dialect.Driver

	mu         sync.Mutex
	statements [][]string // event ids per INSERT, in the order they ran
	hold       int        // how many more INSERTs to hold at the gate
	held       chan struct{}
	release    chan struct{}
	// refuse, when set, fails the INSERTs it returns true for.
	refuse func(ids []string) bool
}

func newInsertGate(drv dialect.Driver, hold int) *insertGate {
	return &insertGate{Driver: drv, hold: hold, held: make(chan struct{}, hold), release: make(chan struct{})}
}

var errRefusedByGate = errors.New("refused by the test's driver")

func (g *insertGate) Query(ctx context.Context, query string, args, v any) error {
	if err := g.see(query, args); err != nil {
		return err
	}
	return g.Driver.Query(ctx, query, args, v)
}

func (g *insertGate) Exec(ctx context.Context, query string, args, v any) error {
	if err := g.see(query, args); err != nil {
		return err
	}
	return g.Driver.Exec(ctx, query, args, v)
}

func (g *insertGate) see(query string, args any) error {
	if !strings.HasPrefix(query, "INSERT INTO") || !strings.Contains(query, "webhook_events") {
		return nil
	}
	var ids []string
	for _, a := range args.([]any) {
		if s, ok := a.(string); ok && strings.HasPrefix(s, "evt_") {
			ids = append(ids, s)
		}
	}
	g.mu.Lock()
	g.statements = append(g.statements, ids)
	hold := g.hold > 0
	if hold {
		g.hold--
	}
	refuse := g.refuse != nil && g.refuse(ids)
	g.mu.Unlock()
	if hold {
		g.held <- struct{}{}
		<-g.release
	}
	if refuse {
		return errRefusedByGate
	}
	return nil
}

func (g *insertGate) recorded() [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]string(nil), g.statements...)
}

// queued is how many requests wait in h's group store.
func queued(h *Handler) int {
	g := h.stores()
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

// gatedHandler is a Handler whose database driver is gate, over the
// database at url.
func gatedHandler(t *testing.T, url string, hold int) (*Handler, *insertGate, *ent.Client) {
	t.Helper()
	store := openStoreAt(t, url)
	gate := newInsertGate(entsql.OpenDB(store.Dialect, store.SQL), hold)
	db := ent.NewClient(ent.Driver(gate))
	h := &Handler{DB: db, Secrets: []string{firstSecret}, Log: slog.New(slog.DiscardHandler)}
	return h, gate, store.Client
}

// postSigned posts the signed event body to h and returns the status.
func postSigned(h http.Handler, body []byte) int {
	return post(h, http.MethodPost, body, ptr(stripefake.Sign(body, firstSecret, time.Now()))).Code
}

func stored(t *testing.T, db *ent.Client, id string) int {
	t.Helper()
	n, err := db.WebhookEvent.Query().Where(webhookevent.StripeEventID(id)).Count(svc())
	if err != nil {
		t.Fatalf("count %s: %v", id, err)
	}
	return n
}

var databases = []struct {
	name string
	url  func(testing.TB) string
}{
	{"Postgres", testenv.Postgres},
	{"SQLite", testenv.SQLite},
}

// While the database writes one group, the requests that arrive are
// queued and then stored together in one INSERT; each is answered 200,
// and every row is in.
func TestConcurrentWebhooksAreStoredTogether(t *testing.T) {
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) {
			// Hold both statements allowed in flight, so that the rest queue.
			h, gate, db := gatedHandler(t, d.url(t), maxInFlight)
			const n = 20
			ids := make([]string, n)
			codes := make([]int, n)
			var wg sync.WaitGroup
			start := func(i int) {
				ids[i] = "evt_group_" + string(rune('a'+i))
				body := event(ids[i])
				wg.Go(func() { codes[i] = postSigned(h, body) })
			}
			// The first two requests lead a statement each and are held.
			for i := range maxInFlight {
				start(i)
				<-gate.held
			}
			for i := maxInFlight; i < n; i++ {
				start(i)
			}
			waitFor(t, "the other requests to queue", func() bool { return queued(h) == n-maxInFlight })
			close(gate.release)
			wg.Wait()

			for i, code := range codes {
				if code != http.StatusOK {
					t.Errorf("%s answered %d, want 200", ids[i], code)
				}
				if got := stored(t, db, ids[i]); got != 1 {
					t.Errorf("%s has %d rows, want 1", ids[i], got)
				}
			}
			statements := gate.recorded()
			if len(statements) != maxInFlight+1 {
				t.Fatalf("%d INSERTs for %d events (%v), want %d: the queued events one statement together",
					len(statements), n, statements, maxInFlight+1)
			}
			if last := statements[maxInFlight]; len(last) != n-maxInFlight {
				t.Errorf("the last INSERT stored %d events, want the %d queued", len(last), n-maxInFlight)
			}
		})
	}
}

// A group that holds the same event twice, and one already stored, stores
// each event once and answers every delivery 200.
func TestDuplicatesInOneGroupAreStoredOnce(t *testing.T) {
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) {
			h, gate, db := gatedHandler(t, d.url(t), 0)
			if code := postSigned(h, event("evt_dup_known")); code != http.StatusOK {
				t.Fatalf("first delivery answered %d", code)
			}
			gate.mu.Lock()
			gate.hold = maxInFlight
			gate.mu.Unlock()
			var wg sync.WaitGroup
			codes := make(chan int, 8)
			postAsync := func(id string) {
				body := event(id)
				wg.Go(func() { codes <- postSigned(h, body) })
			}
			for range maxInFlight {
				postAsync("evt_dup_lead")
				<-gate.held
			}
			for _, id := range []string{"evt_dup_known", "evt_dup_new", "evt_dup_new", "evt_dup_other"} {
				postAsync(id)
			}
			waitFor(t, "four requests to queue", func() bool { return queued(h) == 4 })
			close(gate.release)
			wg.Wait()
			close(codes)
			for code := range codes {
				if code != http.StatusOK {
					t.Errorf("a delivery answered %d, want 200", code)
				}
			}
			for _, id := range []string{"evt_dup_known", "evt_dup_lead", "evt_dup_new", "evt_dup_other"} {
				if got := stored(t, db, id); got != 1 {
					t.Errorf("%s has %d rows, want 1", id, got)
				}
			}
			if st := gate.recorded(); len(st[len(st)-1]) != 4 {
				t.Errorf("the queued deliveries were not stored in one statement: %v", st)
			}
		})
	}
}

// When the database refuses a group's INSERT, each event is stored on its
// own: the one it still refuses is answered 503 (Stripe retries it), and
// the others are stored and answered 200.
func TestRefusedGroupIsStoredEventByEvent(t *testing.T) {
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) { refusedGroupIsStoredEventByEvent(t, d.url(t)) })
	}
}

func refusedGroupIsStoredEventByEvent(t *testing.T, url string) {
	h, gate, db := gatedHandler(t, url, maxInFlight)
	gate.refuse = func(ids []string) bool {
		return len(ids) > 1 || (len(ids) == 1 && ids[0] == "evt_refused_bad")
	}
	var wg sync.WaitGroup
	codes := map[string]int{}
	var mu sync.Mutex
	postAsync := func(id string) {
		body := event(id)
		wg.Go(func() {
			code := postSigned(h, body)
			mu.Lock()
			codes[id] = code
			mu.Unlock()
		})
	}
	for _, id := range []string{"evt_refused_lead1", "evt_refused_lead2"} {
		postAsync(id)
		<-gate.held
	}
	for _, id := range []string{"evt_refused_a", "evt_refused_bad", "evt_refused_b"} {
		postAsync(id)
	}
	waitFor(t, "three requests to queue", func() bool { return queued(h) == 3 })
	close(gate.release)
	wg.Wait()

	want := map[string]int{"evt_refused_lead1": 200, "evt_refused_lead2": 200, "evt_refused_a": 200, "evt_refused_bad": 503, "evt_refused_b": 200}
	for id, code := range want {
		if codes[id] != code {
			t.Errorf("%s answered %d, want %d", id, codes[id], code)
		}
		rows := 0
		if code == 200 {
			rows = 1
		}
		if got := stored(t, db, id); got != rows {
			t.Errorf("%s has %d rows, want %d", id, got, rows)
		}
	}
	st := gate.recorded()
	if len(st) != 2+1+3 || len(st[2]) != 3 {
		t.Errorf("INSERTs = %v, want the two leads, the group of three, then each of the three alone", st)
	}
}

// A request that gives up while it waits in the queue gets an error (the
// handler answers it 503), but its event is still stored once the queue
// moves; Stripe's retry is then a duplicate.
func TestRequestThatGivesUpWhileQueuedLosesNothing(t *testing.T) {
	h, gate, db := gatedHandler(t, testenv.SQLite(t), maxInFlight)
	var wg sync.WaitGroup
	for _, id := range []string{"evt_gaveup_lead1", "evt_gaveup_lead2"} {
		body := event(id)
		wg.Go(func() { postSigned(h, body) })
		<-gate.held
	}
	body := event("evt_gaveup")
	ev, err := h.verify(body, stripefake.Sign(body, firstSecret, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.stores().store(ctx, ev, eventObjectID(ev), body) }()
	waitFor(t, "the request to queue", func() bool { return queued(h) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("store = %v, want context.Canceled", err)
	}
	close(gate.release)
	wg.Wait()
	waitFor(t, "the queued event to be stored", func() bool { return stored(t, db, "evt_gaveup") == 1 })
	if code := postSigned(h, body); code != http.StatusOK {
		t.Errorf("Stripe's retry answered %d, want 200", code)
	}
	if got := stored(t, db, "evt_gaveup"); got != 1 {
		t.Errorf("evt_gaveup has %d rows after the retry, want 1", got)
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkWebhookAck measures the endpoint alone (verify and store, no
// worker) on PostgreSQL at 8 requests per core, as in a burst.
func BenchmarkWebhookAck(b *testing.B) {
	store := openStoreAt(b, testenv.Postgres(b))
	h := &Handler{DB: store.Client, Secrets: []string{firstSecret}, Log: slog.New(slog.DiscardHandler)}
	var n atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := event(fmt.Sprintf("evt_ack_%d", n.Add(1)))
			if code := postSigned(h, body); code != http.StatusOK {
				b.Errorf("answered %d", code)
				return
			}
		}
	})
}
