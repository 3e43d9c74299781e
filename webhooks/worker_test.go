package webhooks

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/ent"
	"billingapi/ent/payment"
	"billingapi/ent/webhookevent"
	"billingapi/eventbus"
	"billingapi/internal/database"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stripe/stripe-go/v76"
)

// recordingPublisher is a billing.Publisher that keeps every published
// event, in the order they were published.
type recordingPublisher struct {
	mu     sync.Mutex
	events []billing.BillingEvent
}

func (p *recordingPublisher) PublishAll(_ context.Context, pubs []eventbus.Publication) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range pubs {
		var ev billing.BillingEvent
		if err := json.Unmarshal(m.Payload, &ev); err != nil {
			return err
		}
		p.events = append(p.events, ev)
	}
	return nil
}

func (p *recordingPublisher) all() []billing.BillingEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

// replica is what one server runs for webhooks: its own connections, a
// billing Service publishing to a recorder, and a Worker; outcomes counts
// what the worker reported per outcome.
type replica struct {
	store    *database.Store
	billing  *billing.Service
	pub      *recordingPublisher
	worker   *Worker
	mu       sync.Mutex
	outcomes map[string]int
}

// openStoreAt opens the database at url as the server does.
func openStoreAt(tb testing.TB, url string) *database.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := database.Open(ctx, url, database.Options{})
	if err != nil {
		tb.Fatalf("open database: %v", err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	return store
}

// newReplica builds a replica over the database at url, with row locks on
// PostgreSQL as server/app.go sets them.
func newReplica(tb testing.TB, url string, concurrency int) *replica {
	tb.Helper()
	store := openStoreAt(tb, url)
	rowLocks := store.Dialect == dialect.Postgres
	log := slog.New(slog.DiscardHandler)
	r := &replica{store: store, pub: &recordingPublisher{}, outcomes: map[string]int{}}
	r.billing = billing.New(billing.Deps{DB: store.Client, Bus: r.pub, Log: log}, billing.Config{Dialect: store.Dialect})
	r.worker = &Worker{DB: store.Client, Billing: r.billing, Log: log, Concurrency: concurrency, RowLocks: rowLocks,
		Observe: func(_, outcome string, _ time.Duration) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.outcomes[outcome]++
		}}
	return r
}

func (r *replica) outcome(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.outcomes[name]
}

// workspace creates a workspace for the events' metadata.
func (r *replica) workspace(tb testing.TB, owner string) uuid.UUID {
	tb.Helper()
	ctx := auth.NewContext(context.Background(), auth.Viewer{UserID: owner, Email: owner + "@example.com", Name: owner})
	ws, err := r.billing.CreateWorkspace(ctx, owner+"'s workspace")
	if err != nil {
		tb.Fatalf("create workspace: %v", err)
	}
	return ws.ID
}

// piEvent is one PaymentIntent event of a test.
type piEvent struct {
	id      string
	typ     string
	object  string // the PaymentIntent's id
	status  string // the PaymentIntent's status in the event
	amount  int64
	created time.Time
	ws      uuid.UUID
}

func (e piEvent) payload() []byte {
	meta := map[string]string{"workspace_id": e.ws.String(), "purpose": "credits_pack"}
	return stripefake.Event(e.id, e.typ, stripefake.PaymentIntentJSON(e.object, e.status, e.amount, "usd", meta), e.created)
}

// decodeEvent decodes a payload as the worker does.
func decodeEvent(tb testing.TB, payload []byte) *billing.Event {
	tb.Helper()
	ev, err := billing.DecodeEvent(payload)
	if err != nil {
		tb.Fatal(err)
	}
	return ev
}

// piStep is a kind of PaymentIntent event and the Payment status it sets.
type piStep struct {
	typ, piStatus string
	want          payment.Status
}

// piSteps are PaymentIntent events that each move an unpaid payment to a
// new status (and so each publish).
var piSteps = []piStep{
	{"payment_intent.processing", "processing", payment.StatusProcessing},
	{"payment_intent.requires_action", "requires_action", payment.StatusRequiresAction},
	{"payment_intent.payment_failed", "requires_payment_method", payment.StatusFailed},
	{"payment_intent.canceled", "canceled", payment.StatusCanceled},
	{"payment_intent.succeeded", "succeeded", payment.StatusSucceeded}, // only ever last: a paid payment never moves back
}

// objectHistory returns n events of one PaymentIntent, oldest first, whose
// created times are start, start+step, ...; the last one is piSteps[final].
func objectHistory(object string, ws uuid.UUID, n int, start time.Time, step time.Duration, final int) []piEvent {
	events := make([]piEvent, n)
	for k := range events {
		s := piSteps[k%4]
		if k == n-1 {
			s = piSteps[final]
		}
		events[k] = piEvent{id: fmt.Sprintf("evt_%s_%02d", object, k), typ: s.typ, object: object, status: s.piStatus,
			amount: 1999, created: start.Add(time.Duration(k) * step), ws: ws}
	}
	return events
}

// postAll delivers the events through the webhook endpoint, signed as
// Stripe signs them, in the order given.
func postAll(tb testing.TB, db *ent.Client, events []piEvent) {
	tb.Helper()
	h := &Handler{DB: db, Secrets: []string{firstSecret}, Log: slog.New(slog.DiscardHandler)}
	for _, e := range events {
		body := e.payload()
		header := stripefake.Sign(body, firstSecret, time.Now())
		if rec := post(h, http.MethodPost, body, &header); rec.Code != http.StatusOK {
			tb.Fatalf("posting %s: %d %s", e.id, rec.Code, rec.Body.String())
		}
	}
}

// interleave merges the objects' posting orders at random (but
// reproducibly), keeping each object's own order.
func interleave(perObject [][]piEvent, seed uint64) []piEvent {
	rng := rand.New(rand.NewPCG(seed, seed))
	queues := slices.Clone(perObject)
	var out []piEvent
	for len(queues) > 0 {
		i := rng.IntN(len(queues))
		out = append(out, queues[i][0])
		if queues[i] = queues[i][1:]; len(queues[i]) == 0 {
			queues = slices.Delete(queues, i, i+1)
		}
	}
	return out
}

// runUntil runs the replicas' workers until n events are processed, then
// stops them and waits for them to return.
func runUntil(tb testing.TB, db *ent.Client, n int, replicas ...*replica) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range replicas {
		wg.Go(func() { r.worker.Run(ctx) })
	}
	defer func() { cancel(); wg.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		done, err := db.WebhookEvent.Query().Where(webhookevent.StatusEQ(webhookevent.StatusProcessed)).Count(svc())
		if err != nil {
			tb.Fatalf("count processed events: %v", err)
		}
		if done == n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d events processed after 60 s", done, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertFinalStates checks that each object's payment shows its newest
// event (histories are oldest first).
func assertFinalStates(tb testing.TB, db *ent.Client, ws uuid.UUID, histories [][]piEvent) {
	tb.Helper()
	sys := auth.NewContext(context.Background(), auth.SystemViewer(ws))
	for _, h := range histories {
		newest := h[len(h)-1]
		p, err := db.Payment.Query().Where(payment.StripePaymentIntentID(newest.object)).Only(sys)
		if err != nil {
			tb.Fatalf("payment %s: %v", newest.object, err)
		}
		want := piStepOf(newest.typ).want
		if p.Status != want || p.LastEventAt == nil || !p.LastEventAt.Equal(newest.created) {
			tb.Errorf("payment %s is %s as of %v; want %s as of its newest event %s (%v)",
				newest.object, p.Status, p.LastEventAt, want, newest.id, newest.created)
		}
	}
}

func piStepOf(typ string) piStep {
	for _, s := range piSteps {
		if s.typ == typ {
			return s
		}
	}
	panic("unknown step " + typ)
}

// TestWorkerLanesApplyEachObjectInOrder stores 300 events of 20
// PaymentIntents, several per object with increasing created times,
// posted out of order (half the objects newest first), and lets one worker
// with 8 lanes apply them on PostgreSQL. Since every event of an object is
// newer than the one before, applied in order each one changes the payment
// and is published: an object whose events were split across lanes (or
// applied by arrival rather than by created) shows up as an event that
// changed nothing, failed on the unique index, or was published out of
// order.
func TestWorkerLanesApplyEachObjectInOrder(t *testing.T) {
	r := newReplica(t, testenv.Postgres(t), 8)
	ws := r.workspace(t, "alice")
	const objects, perObject = 20, 15
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	var histories, posting [][]piEvent
	for o := range objects {
		// Objects' events interleave in created order, so that every
		// batch of 100 holds several events of each object.
		h := objectHistory(fmt.Sprintf("pi_lane_%02d", o), ws, perObject, base.Add(time.Duration(o)*time.Second),
			objects*time.Second, o%len(piSteps))
		histories = append(histories, h)
		order := slices.Clone(h)
		if o%2 == 0 {
			slices.Reverse(order) // newest first
		}
		posting = append(posting, order)
	}
	postAll(t, r.store.Client, interleave(posting, 1))

	runUntil(t, r.store.Client, objects*perObject, r)

	rows, err := r.store.Client.WebhookEvent.Query().All(svc())
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if row.Status != webhookevent.StatusProcessed || row.Attempts != 1 || row.LastError != "" {
			t.Errorf("event %s: status %s after %d attempts (%q); want processed at the first attempt",
				row.StripeEventID, row.Status, row.Attempts, row.LastError)
		}
	}
	if got := r.outcome("processed"); got != objects*perObject {
		t.Errorf("worker reported %d events processed, want %d (outcomes %v)", got, objects*perObject, r.outcomes)
	}
	// Each event published once, and each object's in created order.
	published := map[string][]string{}
	for _, ev := range r.pub.all() {
		if ev.Payment == nil || ev.Payment.StripePaymentIntentID == nil {
			t.Fatalf("published %s without its payment", ev.EventID)
		}
		object := *ev.Payment.StripePaymentIntentID
		published[object] = append(published[object], ev.EventID)
	}
	for _, h := range histories {
		var want []string
		for _, e := range h {
			want = append(want, e.id)
		}
		if got := published[h[0].object]; !slices.Equal(got, want) {
			t.Errorf("%s: published %v\nwant each event once, oldest first: %v", h[0].object, got, want)
		}
	}
	assertFinalStates(t, r.store.Client, ws, histories)
}

// TestTwoWorkersOnOnePostgresApplyEachEventOnce runs two replicas' workers
// at once over the same events: 300 that each record a new payment (so
// each must be published exactly once, by one replica) and 10 objects of
// 10 events each, which both replicas may apply parts of at the same time
// (the row locks and the ordering check must keep their newest state).
func TestTwoWorkersOnOnePostgresApplyEachEventOnce(t *testing.T) {
	url := testenv.Postgres(t)
	a, b := newReplica(t, url, 8), newReplica(t, url, 8)
	ws := a.workspace(t, "alice")
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	var (
		single    []piEvent
		histories [][]piEvent
	)
	for i := range 300 {
		single = append(single, piEvent{id: fmt.Sprintf("evt_single_%03d", i), typ: "payment_intent.succeeded",
			object: fmt.Sprintf("pi_single_%03d", i), status: "succeeded", amount: 500, created: base.Add(time.Duration(i) * time.Second), ws: ws})
	}
	posting := [][]piEvent{single}
	for o := range 10 {
		h := objectHistory(fmt.Sprintf("pi_shared_%02d", o), ws, 10, base.Add(time.Duration(o)*time.Second), 30*time.Second, o%len(piSteps))
		histories = append(histories, h)
		posting = append(posting, h)
	}
	total := 300 + 10*10
	postAll(t, a.store.Client, interleave(posting, 2))

	runUntil(t, a.store.Client, total, a, b)

	if n, err := a.store.Client.WebhookEvent.Query().Where(webhookevent.StatusNEQ(webhookevent.StatusProcessed)).Count(svc()); err != nil || n != 0 {
		t.Errorf("%d events not processed (%v)", n, err)
	}
	for _, r := range []*replica{a, b} {
		if r.outcome("processed") == 0 {
			t.Errorf("a replica applied nothing (outcomes a %v, b %v): the test did not run two workers at once", a.outcomes, b.outcomes)
		}
		if n := r.outcome("duplicate"); n != 0 {
			t.Errorf("%d events were handed to ApplyEvent after another worker had applied them", n)
		}
	}
	if got := a.outcome("processed") + b.outcome("processed"); got != total {
		t.Errorf("processed %d + %d = %d times, want %d", a.outcome("processed"), b.outcome("processed"), got, total)
	}
	times := map[string]int{}
	for _, ev := range append(a.pub.all(), b.pub.all()...) {
		times[ev.EventID]++
	}
	for _, e := range single {
		if times[e.id] != 1 {
			t.Errorf("%s published %d times, want once", e.id, times[e.id])
		}
	}
	for _, h := range histories {
		for _, e := range h {
			if times[e.id] > 1 {
				t.Errorf("%s published %d times", e.id, times[e.id])
			}
		}
	}
	sys := auth.NewContext(context.Background(), auth.SystemViewer(ws))
	if n, err := a.store.Client.Payment.Query().Count(sys); err != nil || n != 300+10 {
		t.Errorf("%d payments (%v), want %d", n, err, 300+10)
	}
	assertFinalStates(t, a.store.Client, ws, histories)
}

// claimBackends are the ways claims run: PostgreSQL with row locks (as in
// production), PostgreSQL without them (the conditional update collides
// with concurrent claims, so the one-by-one fallback runs), and SQLite.
var claimBackends = []struct {
	name     string
	url      func(testing.TB) string
	rowLocks bool
}{
	{"Postgres", testenv.Postgres, true},
	{"PostgresWithoutRowLocks", testenv.Postgres, false},
	{"SQLite", testenv.SQLite, false},
}

// storeEvents stores n events whose created times run backwards from now
// (so arrival order is the opposite of Stripe's order) and returns their
// row ids, oldest created first.
func storeEvents(tb testing.TB, db *ent.Client, n int) []uuid.UUID {
	tb.Helper()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	ids := make([]uuid.UUID, n)
	for i := n - 1; i >= 0; i-- {
		body := stripefake.Event(fmt.Sprintf("evt_claim_%04d", i), "payment_intent.processing",
			stripefake.PaymentIntentJSON(fmt.Sprintf("pi_claim_%04d", i), "processing", 100, "usd", nil), base.Add(time.Duration(i)*time.Second))
		var ev stripe.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			tb.Fatal(err)
		}
		if _, err := Store(svc(), db, &ev, body); err != nil {
			tb.Fatalf("store event: %v", err)
		}
		row, err := db.WebhookEvent.Query().Where(webhookevent.StripeEventID(ev.ID)).Only(svc())
		if err != nil {
			tb.Fatal(err)
		}
		ids[i] = row.ID
	}
	return ids
}

func rowIDs(rows []*ent.WebhookEvent) []uuid.UUID {
	ids := make([]uuid.UUID, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	return ids
}

// TestClaimBatchTakesTheOldestAndKeepsLeaseSemantics checks one worker's
// batch claim: the 100 oldest due events by Stripe's created, each leased
// for Lease with one more attempt; leased events are not due, and are due
// again once the lease ran out.
func TestClaimBatchTakesTheOldestAndKeepsLeaseSemantics(t *testing.T) {
	for _, backend := range claimBackends {
		t.Run(backend.name, func(t *testing.T) {
			store := openStoreAt(t, backend.url(t))
			ids := storeEvents(t, store.Client, 150)
			w := &Worker{DB: store.Client, Log: slog.New(slog.DiscardHandler), RowLocks: backend.rowLocks, Lease: time.Minute}
			now := time.Now()

			first, err := w.claimBatch(svc(), now)
			if err != nil {
				t.Fatal(err)
			}
			if got := rowIDs(first); !slices.Equal(got, ids[:100]) {
				t.Fatalf("first batch is not the 100 oldest in created order (%d events)", len(got))
			}
			rest, err := w.claimBatch(svc(), now)
			if err != nil || !slices.Equal(rowIDs(rest), ids[100:]) {
				t.Fatalf("second batch: %d events, %v; want the 50 others", len(rest), err)
			}
			if none, err := w.claimBatch(svc(), now.Add(time.Second)); err != nil || len(none) != 0 {
				t.Fatalf("leased events claimed again within their lease: %d, %v", len(none), err)
			}
			rows, err := store.Client.WebhookEvent.Query().All(svc())
			if err != nil {
				t.Fatal(err)
			}
			for _, row := range rows {
				if row.Attempts != 1 || row.LockedUntil == nil || row.LockedUntil.Sub(now.Add(time.Minute)).Abs() > time.Millisecond {
					t.Fatalf("claimed event %s: attempts %d, locked until %v; want 1 and %v", row.StripeEventID, row.Attempts, row.LockedUntil, now.Add(time.Minute))
				}
			}
			again, err := w.claimBatch(svc(), now.Add(time.Minute+time.Second))
			if err != nil || !slices.Equal(rowIDs(again), ids[:100]) {
				t.Fatalf("after the lease: %d events, %v; want the 100 oldest again", len(again), err)
			}
			if n, err := store.Client.WebhookEvent.Query().Where(webhookevent.Attempts(2)).Count(svc()); err != nil || n != 100 {
				t.Fatalf("%d events at attempt 2 (%v), want 100", n, err)
			}
		})
	}
}

// TestConcurrentBatchClaimsNeverShareAnEvent runs four claimers, each with
// its own connections (as four replicas), against the same 450 events:
// every event is claimed by exactly one of them.
func TestConcurrentBatchClaimsNeverShareAnEvent(t *testing.T) {
	for _, backend := range claimBackends {
		t.Run(backend.name, func(t *testing.T) {
			url := backend.url(t)
			const claimers, events = 4, 450
			workers := make([]*Worker, claimers)
			for i := range workers {
				store := openStoreAt(t, url)
				workers[i] = &Worker{DB: store.Client, Log: slog.New(slog.DiscardHandler), RowLocks: backend.rowLocks}
			}
			storeEvents(t, workers[0].DB, events)

			var (
				mu      sync.Mutex
				claimed = map[uuid.UUID]int{}
				start   = make(chan struct{})
				wg      sync.WaitGroup
				batches atomic.Int64
			)
			for _, w := range workers {
				wg.Go(func() {
					<-start
					for {
						rows, err := w.claimBatch(svc(), time.Now())
						if err != nil {
							t.Errorf("claim: %v", err)
							return
						}
						if len(rows) == 0 {
							return
						}
						batches.Add(1)
						mu.Lock()
						for _, r := range rows {
							claimed[r.ID]++
						}
						mu.Unlock()
					}
				})
			}
			close(start)
			wg.Wait()
			for id, n := range claimed {
				if n != 1 {
					t.Errorf("event %s claimed %d times", id, n)
				}
			}
			if len(claimed) != events {
				t.Errorf("%d of %d events claimed", len(claimed), events)
			}
			if n, err := workers[0].DB.WebhookEvent.Query().Where(webhookevent.Attempts(1), webhookevent.LockedUntilNotNil()).Count(svc()); err != nil || n != events {
				t.Errorf("%d events leased at attempt 1 (%v), want %d", n, err, events)
			}
			t.Logf("%d batches", batches.Load())
		})
	}
}

// TestFailingEventDoesNotStopTheOthers gives one lane an event that
// billing refuses with an error (a negative amount fails validation): it
// is scheduled for a retry, while every other event, including those of
// the same lane, is applied.
func TestFailingEventDoesNotStopTheOthers(t *testing.T) {
	r := newReplica(t, testenv.Postgres(t), 8)
	ws := r.workspace(t, "alice")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	bad := piEvent{id: "evt_bad", typ: "payment_intent.processing", object: "pi_bad", status: "processing", amount: -5, created: base, ws: ws}
	events := []piEvent{bad}
	sameLane := 0
	for i := range 40 {
		object := fmt.Sprintf("pi_ok_%02d", i)
		if laneOf(object, 8) == laneOf(bad.object, 8) {
			sameLane++
		}
		events = append(events, piEvent{id: "evt_" + object, typ: "payment_intent.succeeded", object: object, status: "succeeded",
			amount: 100, created: base.Add(time.Duration(i+1) * time.Second), ws: ws})
	}
	if sameLane == 0 {
		t.Fatal("no good event shares the failing event's lane; pick other ids")
	}
	postAll(t, r.store.Client, events)

	before := time.Now()
	if n := r.worker.ProcessDue(context.Background()); n != len(events) {
		t.Fatalf("claimed %d events, want %d", n, len(events))
	}
	rows, err := r.store.Client.WebhookEvent.Query().All(svc())
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if row.StripeEventID == bad.id {
			if row.Status != webhookevent.StatusFailed || row.Attempts != 1 || row.LastError == "" || row.LockedUntil != nil ||
				row.NextAttemptAt == nil || row.NextAttemptAt.Before(before) || row.NextAttemptAt.After(time.Now().Add(2*time.Second)) {
				t.Errorf("failing event: %+v; want failed at attempt 1, unleased, retried about a second later", row)
			}
			continue
		}
		if row.Status != webhookevent.StatusProcessed {
			t.Errorf("event %s is %s (%s) next to a failing one; want processed", row.StripeEventID, row.Status, row.LastError)
		}
	}
	if got := r.outcome("failed"); got != 1 {
		t.Errorf("%d failures reported, want 1", got)
	}
}

// TestConcurrentFirstInsertAppliesOverTheOtherRow makes the first event
// of a PaymentIntent race another transaction inserting the same payment
// (as another replica, or our own create call's answer, would): the
// event's insert waits for the other transaction, then inserts nothing,
// and the event is applied to the row the other side made, in the same
// attempt: one payment, the event's status.
func TestConcurrentFirstInsertAppliesOverTheOtherRow(t *testing.T) {
	r := newReplica(t, testenv.Postgres(t), 8)
	ws := r.workspace(t, "alice")
	ev := piEvent{id: "evt_race", typ: "payment_intent.payment_failed", object: "pi_race", status: "requires_payment_method",
		amount: 700, created: time.Now().Add(-time.Minute).Truncate(time.Second), ws: ws}
	postAll(t, r.store.Client, []piEvent{ev})

	ctx := context.Background()
	sys := auth.NewContext(ctx, auth.SystemViewer(ws))
	other, err := r.store.Client.Tx(sys)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Rollback() }()
	if err := other.Payment.Create().SetWorkspaceID(ws).SetStripePaymentIntentID(ev.object).SetAmount(ev.amount).
		SetCurrency("usd").SetPurpose("credits_pack").SetCreatedBy("stripe").SetStatus(payment.StatusProcessing).Exec(sys); err != nil {
		t.Fatal(err)
	}
	done := make(chan int)
	go func() { done <- r.worker.ProcessDue(ctx) }()
	// Commit the other insert once the worker waits on it.
	waitForLockWait(t, r.store)
	if err := other.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := <-done; n != 1 {
		t.Fatalf("claimed %d events, want 1", n)
	}
	row, err := r.store.Client.WebhookEvent.Query().Where(webhookevent.StripeEventID(ev.id)).Only(svc())
	if err != nil {
		t.Fatal(err)
	}
	if row.Status != webhookevent.StatusProcessed || row.NextAttemptAt != nil || row.LockedUntil != nil || row.Attempts != 1 {
		t.Fatalf("after losing the insert race the event is %+v; want processed at its first attempt", row)
	}
	p, err := r.store.Client.Payment.Query().Where(payment.StripePaymentIntentID(ev.object)).Only(sys)
	if err != nil || p.Status != payment.StatusFailed {
		t.Fatalf("payment: %+v, %v; want the other side's one row, failed", p, err)
	}
}

// waitForLockWait waits until a session of the test's database waits on a
// lock.
func waitForLockWait(tb testing.TB, store *database.Store) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := store.SQL.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		if err != nil {
			tb.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatal("the worker never waited on the other transaction's insert")
}

// TestStoppedWorkerHandsBackUnstartedEvents stops a worker after the
// first event of its batch: the events it never started are due again at
// once, their attempt not counted, rather than waiting out the lease. The
// events are all one PaymentIntent's, so that each is applied on its own
// (events of distinct objects are applied together, and started together).
func TestStoppedWorkerHandsBackUnstartedEvents(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			r := newReplica(t, backend.URL(t), 1)
			ws := r.workspace(t, "alice")
			base := time.Now().Add(-time.Hour).Truncate(time.Second)
			var events []piEvent
			for i := range 10 {
				events = append(events, piEvent{id: fmt.Sprintf("evt_stop_%d", i), typ: "payment_intent.succeeded",
					object: "pi_stop", status: "succeeded", amount: 100, created: base.Add(time.Duration(i) * time.Second), ws: ws})
			}
			postAll(t, r.store.Client, events)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r.worker.Observe = func(string, string, time.Duration) { cancel() }

			if n := r.worker.ProcessDue(ctx); n != len(events) {
				t.Fatalf("claimed %d events, want %d", n, len(events))
			}
			rows, err := r.store.Client.WebhookEvent.Query().Order(ent.Asc(webhookevent.FieldCreated)).All(svc())
			if err != nil {
				t.Fatal(err)
			}
			if rows[0].Status != webhookevent.StatusProcessed {
				t.Errorf("first event: %s, want processed", rows[0].Status)
			}
			for _, row := range rows[1:] {
				if row.Status != webhookevent.StatusReceived || row.Attempts != 0 || row.LockedUntil != nil {
					t.Errorf("unstarted event %s: %s, attempts %d, locked until %v; want received, 0, not leased",
						row.StripeEventID, row.Status, row.Attempts, row.LockedUntil)
				}
			}
			// And the next run takes them straight away.
			r.worker.Observe = nil
			if n := r.worker.ProcessDue(context.Background()); n != len(events)-1 {
				t.Errorf("next run claimed %d events, want %d", n, len(events)-1)
			}
		})
	}
}

// TestLaneKeyKeepsAPaymentsEventsTogether: charge and refund events change
// the payment row of their PaymentIntent, so they share its lane rather
// than run beside its events.
func TestLaneKeyKeepsAPaymentsEventsTogether(t *testing.T) {
	event := func(object string) *billing.Event {
		return decodeEvent(t, []byte(`{"id":"evt_1","type":"x","data":{"object":`+object+`}}`))
	}
	for _, c := range []struct{ object, want string }{
		{`{"id":"pi_1","object":"payment_intent"}`, "pi_1"},
		{`{"id":"ch_1","object":"charge","payment_intent":"pi_1"}`, "pi_1"},
		{`{"id":"re_1","object":"refund","payment_intent":{"id":"pi_1","object":"payment_intent"}}`, "pi_1"},
		{`{"id":"ch_2","object":"charge","payment_intent":null}`, "ch_2"},
		{`{"id":"sub_1","object":"subscription"}`, "sub_1"},
		{`{"object":"balance"}`, ""},
	} {
		if got := laneKey(event(c.object)); got != c.want {
			t.Errorf("laneKey(%s) = %q, want %q", c.object, got, c.want)
		}
	}
	if laneKey(decodeEvent(t, []byte(`{"id":"evt_1","type":"x"}`))) != "" {
		t.Error("an event without data has a lane key")
	}
	if laneKey(nil) != "" {
		t.Error("an event that does not decode has a lane key")
	}
}

// TestWakeBeforeRun: the webhook handler may wake the worker while Run is
// starting; under -race this fails if the wake channel is made lazily
// without synchronization.
func TestWakeBeforeRun(t *testing.T) {
	w := &Worker{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(w.Wake)
	}
	wg.Go(func() { _ = w.wakeChan() })
	wg.Wait()
	select {
	case <-w.wakeChan():
	default:
		t.Fatal("a wake was lost")
	}
}

// TestStoppingWorkerFinishesTheEventInHand: a worker told to stop while an
// event is being applied finishes that event (commit, status refresh,
// publication) rather than cutting it off. In CI, a worker stopped right as
// an event committed reported it failed, and it was never published.
func TestStoppingWorkerFinishesTheEventInHand(t *testing.T) {
	r := newReplica(t, testenv.SQLite(t), 1)
	pub := &stallingPublisher{inPublish: make(chan struct{}), release: make(chan struct{})}
	r.billing = billing.New(billing.Deps{DB: r.store.Client, Bus: pub, Log: slog.New(slog.DiscardHandler)}, billing.Config{Dialect: r.store.Dialect})
	r.worker.Billing = r.billing
	ws := r.workspace(t, "alice")
	postAll(t, r.store.Client, objectHistory("pi_stop", ws, 1, time.Now().Add(-time.Minute).Truncate(time.Second), time.Second, 0))

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.worker.Run(ctx) }()
	select {
	case <-pub.inPublish: // committed; publishing
	case <-time.After(30 * time.Second):
		t.Fatal("the event was not applied")
	}
	stop()
	close(pub.release)
	<-done

	if pub.err != nil {
		t.Errorf("the event in hand was published with a context the stop cancelled: %v", pub.err)
	}
	if got := r.outcome("processed"); got != 1 || r.outcome("failed") != 0 {
		t.Errorf("outcomes %v, want the event processed", r.outcomes)
	}
}

// stallingPublisher holds the first publication until released and
// records whether its context had ended by then.
type stallingPublisher struct {
	inPublish, release chan struct{}
	err                error
}

func (p *stallingPublisher) PublishAll(ctx context.Context, _ []eventbus.Publication) error {
	close(p.inPublish)
	<-p.release
	p.err = ctx.Err()
	return p.err
}

// TestClaimReadsTheBatchNotTheBacklog: with a long history of applied
// events and some failed ones waiting out a backoff before a backlog of
// due ones, a claim on PostgreSQL walks the events still to apply in the
// order it applies them and stops at the batch. It is checked in the
// generic plan PostgreSQL caches for a prepared statement (pgx prepares
// every query), where the claim's times are parameters: no sort, and no
// more rows read than the batch and the waiting events, which the walk
// passes over. Without the partial index webhookevent_due_by_created,
// the claim read and sorted the whole backlog. (TestClaimIsPlannedForTheTableAsItIsNow
// covers plans made while the table was small.)
func TestClaimReadsTheBatchNotTheBacklog(t *testing.T) {
	const applied, waiting, backlog = 3000, 40, 1500
	store := openStoreAt(t, testenv.Postgres(t))
	seedEvents(t, store.Client, "evt_hist_", applied, waiting, backlog)
	analyzeEvents(t, store.Client)

	rec := &recordingDriver{Driver: entsql.OpenDB(store.Dialect, store.SQL)}
	w := &Worker{DB: ent.NewClient(ent.Driver(rec)), Log: slog.New(slog.DiscardHandler), RowLocks: true}
	rows, err := w.claimBatch(svc(), time.Now())
	if err != nil || len(rows) != batchSize {
		t.Fatalf("claimed %d events (%v), want %d", len(rows), err, batchSize)
	}
	claim, ok := rec.find("ORDER BY")
	if !ok {
		t.Fatalf("no claim query among %d recorded", len(rec.queries))
	}
	// Hand the batch back, so that the plan reads due events only, as a
	// claim does when nothing is leased.
	if _, err := store.Client.WebhookEvent.Update().ClearLockedUntil().Save(svc()); err != nil {
		t.Fatal(err)
	}
	checkGenericPlanReads(t, context.Background(), store, claim, batchSize+waiting)
}

// checkGenericPlanReads runs the recorded claim as a prepared statement
// under PostgreSQL's generic plan and checks that its plan has no sort
// and that no scan reads more than limit rows.
func checkGenericPlanReads(t *testing.T, ctx context.Context, store *database.Store, claim recordedQuery, limit int) {
	t.Helper()
	conn, err := store.SQL.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The prepared statement outlives the transaction: deallocate it
	// after the rollback, so that the pooled connection is left clean.
	defer func() {
		_ = tx.Rollback()
		_, _ = conn.ExecContext(ctx, "DEALLOCATE claim_plan")
	}()
	// EXECUTE takes its values as literals: pgx cannot bind parameters
	// through EXPLAIN.
	params := make([]string, len(claim.args))
	for i, a := range claim.args {
		switch a := a.(type) {
		case time.Time:
			params[i] = "'" + a.Format(time.RFC3339Nano) + "'"
		case int, int64:
			params[i] = fmt.Sprint(a)
		case string, fmt.Stringer:
			params[i] = "'" + strings.ReplaceAll(fmt.Sprint(a), "'", "''") + "'"
		default:
			t.Fatalf("claim argument %d is a %T", i+1, a)
		}
	}
	var out []byte
	for _, stmt := range []string{"SET LOCAL plan_cache_mode = force_generic_plan", "PREPARE claim_plan AS " + claim.sql} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	explain := "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim_plan(" + strings.Join(params, ", ") + ")"
	if err := tx.QueryRowContext(ctx, explain).Scan(&out); err != nil {
		t.Fatalf("%s: %v", explain, err)
	}
	var plans []struct{ Plan planNode }
	if err := json.Unmarshal(out, &plans); err != nil || len(plans) != 1 {
		t.Fatalf("plan does not decode (%v): %s", err, out)
	}
	var scans int
	for _, n := range steps(plans[0].Plan) {
		if n.NodeType == "Sort" {
			t.Errorf("the claim sorts its rows: %s", out)
		}
		if strings.Contains(n.NodeType, "Scan") {
			scans++
			if read := n.ActualRows + n.RemovedByFilter; read > limit {
				t.Errorf("%s on %s read %d rows, want at most %d: %s", n.NodeType, n.IndexName, read, limit, out)
			}
		}
	}
	if scans == 0 {
		t.Fatalf("no scan in the plan: %s", out)
	}
}

// planNode is what the test reads of a node of EXPLAIN (FORMAT JSON).
type planNode struct {
	NodeType        string     `json:"Node Type"`
	IndexName       string     `json:"Index Name"`
	ActualRows      int        `json:"Actual Rows"`
	RemovedByFilter int        `json:"Rows Removed by Filter"`
	Plans           []planNode `json:"Plans"`
}

// seedEvents stores, by created over the day before now: applied
// events, then failed ones whose next attempt is an hour away, then a
// backlog of due ones; walking events by created from the oldest passes
// every applied and waiting one first. Their ids start with prefix, and
// their payloads are about as long as a Stripe event's, so that the table
// is as large as such events make it.
func seedEvents(tb testing.TB, db *ent.Client, prefix string, applied, waiting, backlog int) {
	tb.Helper()
	base := time.Now().Add(-24 * time.Hour)
	payload := []byte(`{"object":"event","filler":"` + strings.Repeat("x", 1500) + `"}`)
	builders := make([]*ent.WebhookEventCreate, 0, applied+waiting+backlog)
	for i := range applied + waiting + backlog {
		b := db.WebhookEvent.Create().
			SetStripeEventID(fmt.Sprintf("%s%05d", prefix, i)).SetType("invoice.paid").SetAPIVersion("2023-10-16").
			SetCreated(base.Add(time.Duration(i) * time.Second)).SetLivemode(false).SetPayload(payload)
		switch {
		case i < applied:
			b.SetStatus(webhookevent.StatusProcessed).SetProcessedAt(time.Now())
		case i < applied+waiting:
			b.SetStatus(webhookevent.StatusFailed).SetAttempts(2).SetNextAttemptAt(time.Now().Add(time.Hour))
		default:
			b.SetStatus(webhookevent.StatusReceived).SetNextAttemptAt(time.Now().Add(-time.Minute))
		}
		builders = append(builders, b)
	}
	for chunk := range slices.Chunk(builders, 500) {
		if err := db.WebhookEvent.CreateBulk(chunk...).Exec(svc()); err != nil {
			tb.Fatalf("seed events: %v", err)
		}
	}
}

// analyzeEvents has PostgreSQL take the event table's statistics now.
func analyzeEvents(tb testing.TB, db *ent.Client) {
	tb.Helper()
	if _, err := db.ExecContext(svc(), "ANALYZE webhook_events"); err != nil {
		tb.Fatalf("analyze: %v", err)
	}
}

// recordingDriver is an ent driver that records the queries it runs,
// inside transactions too.
type recordingDriver struct {
	dialect.Driver
	mu      sync.Mutex
	queries []recordedQuery
}

type recordedQuery struct {
	sql  string
	args []any
}

func (d *recordingDriver) Query(ctx context.Context, query string, args, v any) error {
	d.record(query, args)
	return d.Driver.Query(ctx, query, args, v)
}

func (d *recordingDriver) Tx(ctx context.Context) (dialect.Tx, error) {
	tx, err := d.Driver.Tx(ctx)
	if err != nil {
		return nil, err
	}
	return &recordingTx{Tx: tx, d: d}, nil
}

func (d *recordingDriver) record(query string, args any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, _ := args.([]any)
	d.queries = append(d.queries, recordedQuery{query, a})
}

// find returns the first recorded query that contains s.
func (d *recordingDriver) find(s string) (recordedQuery, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range d.queries {
		if strings.Contains(q.sql, s) {
			return q, true
		}
	}
	return recordedQuery{}, false
}

type recordingTx struct {
	dialect.Tx
	d *recordingDriver
}

func (t *recordingTx) Query(ctx context.Context, query string, args, v any) error {
	t.d.record(query, args)
	return t.Tx.Query(ctx, query, args, v)
}

// ExecContext is what the claim's SET LOCAL runs through.
func (t *recordingTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	t.d.record(query, args)
	return t.Tx.(interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	}).ExecContext(ctx, query, args...)
}

// A lane starts a run only with half the batch's lease still to come, and
// ends it within the lease: the rest of the batch is handed back, so that
// no event is applied after its lease ended, when another worker may have
// claimed it (and counted an attempt for it) too.
func TestSlowLaneHandsBackWhatItCannotStartWithinTheLease(t *testing.T) {
	r := newReplica(t, testenv.Postgres(t), 1)
	const lease = time.Second
	r.worker.Lease = lease
	ws := r.workspace(t, "alice")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var events []piEvent
	for i := range 10 { // one PaymentIntent: one lane, one event per run
		events = append(events, piEvent{id: fmt.Sprintf("evt_slow_%d", i), typ: "payment_intent.succeeded",
			object: "pi_slow", status: "succeeded", amount: 100, created: base.Add(time.Duration(i) * time.Second), ws: ws})
	}
	postAll(t, r.store.Client, events)
	r.worker.Observe = func(string, string, time.Duration) { time.Sleep(300 * time.Millisecond) } // a slow run

	claimed := time.Now()
	if n := r.worker.ProcessDue(context.Background()); n != len(events) {
		t.Fatalf("claimed %d events, want %d", n, len(events))
	}
	rows, err := r.store.Client.WebhookEvent.Query().Order(ent.Asc(webhookevent.FieldCreated)).All(svc())
	if err != nil {
		t.Fatal(err)
	}
	processed := 0
	for _, row := range rows {
		switch {
		case row.Status == webhookevent.StatusProcessed:
			processed++
			if row.ProcessedAt.After(claimed.Add(lease)) {
				t.Errorf("%s applied %v after the claim, past its %v lease", row.StripeEventID, row.ProcessedAt.Sub(claimed), lease)
			}
		case row.Status != webhookevent.StatusReceived || row.Attempts != 0 || row.LockedUntil != nil:
			t.Errorf("event %s handed back as %s, attempts %d, locked until %v; want received, 0, not leased",
				row.StripeEventID, row.Status, row.Attempts, row.LockedUntil)
		}
	}
	if processed == 0 || processed == len(events) {
		t.Fatalf("%d of %d events applied in the first lease; want some, and the rest handed back", processed, len(events))
	}
	r.worker.Observe = nil
	if n := r.worker.ProcessDue(context.Background()); n != len(events)-processed {
		t.Errorf("next run claimed %d events, want the %d handed back", n, len(events)-processed)
	}
}

// An event applied alone whose run outlives its lease still has its
// failure recorded, as a run of several has: the failed attempt, its
// error and its backoff. Recording it on the run's own, ended context
// left the event as if never tried.
func TestEventAppliedAlonePastItsLeaseHasItsFailureRecorded(t *testing.T) {
	r := newReplica(t, testenv.Postgres(t), 1)
	const lease = time.Second
	r.worker.Lease = lease
	ws := r.workspace(t, "alice")
	postAll(t, r.store.Client, []piEvent{{id: "evt_blocked", typ: "payment_intent.succeeded", object: "pi_blocked",
		status: "succeeded", amount: 100, created: time.Now().Add(-time.Minute).Truncate(time.Second), ws: ws}})

	// Another transaction holds the workspace row: the payment's insert
	// waits on its foreign key until the run's deadline, the lease's end.
	ctx := context.Background()
	blocker, err := r.store.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = blocker.Rollback() }()
	if _, err := blocker.ExecContext(ctx, `SELECT id FROM workspaces WHERE id = $1 FOR UPDATE`, ws); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if n := r.worker.ProcessDue(ctx); n != 1 {
		t.Fatalf("claimed %d events, want 1", n)
	}
	if err := blocker.Rollback(); err != nil {
		t.Fatal(err)
	}
	row, err := r.store.Client.WebhookEvent.Query().Where(webhookevent.StripeEventID("evt_blocked")).Only(svc())
	if err != nil {
		t.Fatal(err)
	}
	if row.Status != webhookevent.StatusFailed || row.Attempts != 1 || row.LastError == "" || row.LockedUntil != nil ||
		row.NextAttemptAt == nil || !row.NextAttemptAt.After(before.Add(lease)) {
		t.Errorf("event past its lease: %s, attempts %d, error %q, locked until %v, next attempt %v; want failed at attempt 1, unleased, retried after a backoff",
			row.Status, row.Attempts, row.LastError, row.LockedUntil, row.NextAttemptAt)
	}
}

// A stored payload the worker cannot decode can never apply: it fails at
// once for good, with the reason, and is not retried.
func TestUndecodableStoredEventFailsForGood(t *testing.T) {
	r := newReplica(t, testenv.SQLite(t), 2)
	err := r.store.Client.WebhookEvent.Create().SetStripeEventID("evt_garbled").SetType("payment_intent.succeeded").
		SetAPIVersion(stripe.APIVersion).SetLivemode(false).SetCreated(time.Now().Add(-time.Minute)).SetPayload([]byte(`{"id":"evt_garbled","created":"yesterday"}`)).
		SetStatus(webhookevent.StatusReceived).SetNextAttemptAt(time.Now()).Exec(svc())
	if err != nil {
		t.Fatal(err)
	}
	if n := r.worker.ProcessDue(context.Background()); n != 1 {
		t.Fatalf("claimed %d events, want 1", n)
	}
	row, err := r.store.Client.WebhookEvent.Query().Where(webhookevent.StripeEventID("evt_garbled")).Only(svc())
	if err != nil {
		t.Fatal(err)
	}
	if row.Status != webhookevent.StatusFailed || row.NextAttemptAt != nil || row.LockedUntil != nil ||
		!strings.Contains(row.LastError, "does not decode") {
		t.Errorf("undecodable event: %s, next attempt %v, locked until %v, error %q; want failed for good with the reason",
			row.Status, row.NextAttemptAt, row.LockedUntil, row.LastError)
	}
	if got := r.outcome("failed"); got != 1 {
		t.Errorf("%d failures reported, want 1", got)
	}
}

// A failure recorded after the run's lease ended, when another worker has
// claimed the event since, must leave that worker's lease and attempt
// alone: clearing them would let a third worker claim the event while the
// second still applies it.
func TestLateFailureLeavesAnotherWorkersLeaseAlone(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			r := newReplica(t, backend.URL(t), 1)
			ws := r.workspace(t, "alice")
			postAll(t, r.store.Client, []piEvent{{id: "evt_late", typ: "payment_intent.succeeded", object: "pi_late",
				status: "succeeded", amount: 100, created: time.Now().Add(-time.Minute).Truncate(time.Second), ws: ws}})
			first := time.Now()
			rows, err := r.worker.claimBatch(svc(), first)
			if err != nil || len(rows) != 1 {
				t.Fatalf("first claim: %d rows, %v", len(rows), err)
			}
			second := first.Add(r.worker.lease() + time.Second) // the first lease has run out
			again, err := r.worker.claimBatch(svc(), second)
			if err != nil || len(again) != 1 {
				t.Fatalf("second claim: %d rows, %v", len(again), err)
			}
			r.worker.fail(context.Background(), rows[0], errors.New("the first run's late failure"), false, first.Add(r.worker.lease()))
			row, err := r.store.Client.WebhookEvent.Get(svc(), rows[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			if row.Status != webhookevent.StatusReceived || row.LastError != "" || row.LockedUntil == nil ||
				row.LockedUntil.Sub(second.Add(r.worker.lease())).Abs() > time.Millisecond || row.Attempts != 2 {
				t.Errorf("after the first run's late failure: %s, %q, locked until %v, attempts %d; want the second worker's lease untouched",
					row.Status, row.LastError, row.LockedUntil, row.Attempts)
			}
		})
	}
}

// TestClaimIsPlannedForTheTableAsItIsNow: PostgreSQL caches one plan for a
// prepared statement after a few runs, and pgx prepares every query. A
// claim plan cached while the events table was small (a new database, or
// the first minutes of a replica's connection) is a sequential scan and a
// sort; kept as the table grew, every claim read the whole table and
// sorted the backlog (B4 showed 5.7 ms a claim). The claim is planned
// afresh each time, so after the table grew it walks the partial index
// and stops at its batch. (Here too, a claim that named the statuses it
// takes was planned on the status index and sorted the backlog.)
// PostgreSQL's auto_explain, loaded into the one
// connection the worker uses here, hands the test each plan the claim ran
// as a notice.
func TestClaimIsPlannedForTheTableAsItIsNow(t *testing.T) {
	const applied, waiting, backlog = 3000, 40, 1500
	url := testenv.Postgres(t)
	store := openStoreAt(t, url)

	explain := explainingClient(t, url)
	w := &Worker{DB: explain.client, Log: slog.New(slog.DiscardHandler), RowLocks: true}

	// Claims while the table holds a handful of events: more runs than
	// PostgreSQL plans afresh before it caches a plan for the statement.
	seedEvents(t, store.Client, "evt_few_", 5, 0, 0)
	for range 10 {
		if _, err := w.claimBatch(svc(), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// The table grows, with no new statistics (autovacuum has not come by).
	seedEvents(t, store.Client, "evt_hist_", applied, waiting, backlog)
	explain.reset()
	rows, err := w.claimBatch(svc(), time.Now())
	if err != nil || len(rows) != batchSize {
		t.Fatalf("claimed %d events (%v), want %d", len(rows), err, batchSize)
	}
	plan, explained := explain.last(t, "ORDER BY")
	for _, n := range steps(explained) {
		if n.NodeType == "Sort" || n.NodeType == "Seq Scan" {
			t.Errorf("the claim ran a %s: %s", n.NodeType, plan)
		}
		if strings.Contains(n.NodeType, "Scan") {
			if read := n.ActualRows + n.RemovedByFilter; read > batchSize+waiting {
				t.Errorf("%s on %s read %d rows, want at most %d: %s", n.NodeType, n.IndexName, read, batchSize+waiting, plan)
			}
		}
	}
}

// explaining is an ent client on one PostgreSQL connection into which
// auto_explain is loaded: each statement it runs sends its plan, with
// the rows each step read, as a notice.
type explaining struct {
	client  *ent.Client
	mu      sync.Mutex
	notices []string
}

func explainingClient(t *testing.T, url string) *explaining {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	e := &explaining{}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.notices = append(e.notices, n.Message)
	}
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(1) // the one connection auto_explain is loaded into
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(0)
	for _, stmt := range []string{"LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
		"SET auto_explain.log_analyze = on", "SET auto_explain.log_format = json", "SET auto_explain.log_level = notice"} {
		if _, err := db.ExecContext(context.Background(), stmt); err != nil {
			t.Fatalf("%s: %v (auto_explain ships with PostgreSQL's server package)", stmt, err)
		}
	}
	e.client = ent.NewClient(ent.Driver(entsql.OpenDB(dialect.Postgres, db)))
	return e
}

// reset forgets the plans sent so far.
func (e *explaining) reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.notices = nil
}

// last returns the plan of the last statement whose text holds marker,
// as sent and decoded.
func (e *explaining) last(t *testing.T, marker string) (string, planNode) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	var plan string
	for _, n := range e.notices {
		if i := strings.Index(n, "{"); i >= 0 && strings.Contains(n, marker) {
			plan = n[i:]
		}
	}
	if plan == "" {
		t.Fatalf("auto_explain sent no plan of a statement with %q among %d notices", marker, len(e.notices))
	}
	var explained struct{ Plan planNode }
	if err := json.Unmarshal([]byte(plan), &explained); err != nil {
		t.Fatalf("plan does not decode (%v): %s", err, plan)
	}
	return plan, explained.Plan
}

// steps lists a plan's steps, depth first.
func steps(n planNode) []planNode {
	out := []planNode{n}
	for _, c := range n.Plans {
		out = append(out, steps(c)...)
	}
	return out
}

// TestReconcilerBeginsFromTheNewestEventsNotTheHistory: where the
// reconciler's first run lists from is read off the newest stored events
// on an index, however long the history: a replica's start must not read
// every event ever stored. It is the newest Stripe created among them,
// less the overlap.
func TestReconcilerBeginsFromTheNewestEventsNotTheHistory(t *testing.T) {
	url := testenv.Postgres(t)
	store := openStoreAt(t, url)
	seedEvents(t, store.Client, "evt_hist_", 3000, 0, 0)
	analyzeEvents(t, store.Client)
	newest, err := store.Client.WebhookEvent.Query().Order(ent.Desc(webhookevent.FieldCreated)).First(svc())
	if err != nil {
		t.Fatal(err)
	}

	explain := explainingClient(t, url)
	r := &Reconciler{DB: explain.client, Log: slog.New(slog.DiscardHandler)}
	explain.reset()
	if err := r.Begin(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := newest.Created.Add(-ReconcileOverlap); !r.from.Equal(want) {
		t.Errorf("begins from %v, want %v (the newest created, less the overlap)", r.from, want)
	}
	plan, explained := explain.last(t, "webhook_events")
	for _, n := range steps(explained) {
		if n.NodeType == "Seq Scan" || n.NodeType == "Sort" {
			t.Errorf("Begin ran a %s: %s", n.NodeType, plan)
		}
		if strings.Contains(n.NodeType, "Scan") && n.ActualRows+n.RemovedByFilter > reconcileSample {
			t.Errorf("%s on %s read %d rows, want at most %d: %s", n.NodeType, n.IndexName, n.ActualRows+n.RemovedByFilter, reconcileSample, plan)
		}
	}
}
