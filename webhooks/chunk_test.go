package webhooks

import (
	"context"
	stdsql "database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"billingapi/billing"
	"billingapi/cache"
	"billingapi/ent"
	"billingapi/ent/webhookevent"
	"billingapi/eventbus"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
)

// countingDriver counts the transactions billing opens, how many of them
// end in a rollback (an event's failure, or a deadlock), and the queries
// it runs outside transactions (planning's reads).
type countingDriver struct {
	dialect.Driver
	begun, rolledBack, reads atomic.Int64
	// afterCommit, when set, runs after each commit.
	afterCommit func()
}

func (d *countingDriver) Query(ctx context.Context, query string, args, v any) error {
	d.reads.Add(1)
	return d.Driver.Query(ctx, query, args, v)
}

func (d *countingDriver) Tx(ctx context.Context) (dialect.Tx, error) {
	tx, err := d.Driver.Tx(ctx)
	if err != nil {
		return nil, err
	}
	d.begun.Add(1)
	return &countingTx{Tx: tx, d: d}, nil
}

type countingTx struct {
	dialect.Tx
	d *countingDriver
}

func (t *countingTx) Commit() error {
	err := t.Tx.Commit()
	if f := t.d.afterCommit; f != nil {
		f()
	}
	return err
}

// QueryContext passes on the statements billing builds by hand (marking a
// run's events processed).
func (t *countingTx) QueryContext(ctx context.Context, query string, args ...any) (*stdsql.Rows, error) {
	return t.Tx.(interface {
		QueryContext(context.Context, string, ...any) (*stdsql.Rows, error)
	}).QueryContext(ctx, query, args...)
}

func (t *countingTx) Rollback() error {
	t.d.rolledBack.Add(1)
	return t.Tx.Rollback()
}

// countedReplica is a replica whose billing service runs on a counting
// driver, with a status cache (on an embedded Redis) for subscription
// events.
func countedReplica(t *testing.T, url string, concurrency int) (*replica, *countingDriver) {
	t.Helper()
	r := newReplica(t, url, concurrency)
	d := &countingDriver{Driver: entsql.OpenDB(r.store.Dialect, r.store.SQL)}
	rdb, closeRedis, err := cache.Open("redis://" + miniredis.RunT(t).Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeRedis() })
	log := slog.New(slog.DiscardHandler)
	r.billing = billing.New(billing.Deps{DB: ent.NewClient(ent.Driver(d)), Bus: r.pub, Log: log, Status: cache.NewStatus(rdb, "test:", log)},
		billing.Config{Dialect: r.store.Dialect})
	r.worker.Billing = r.billing
	return r, d
}

// refusePayment makes the database refuse to record a payment for the
// PaymentIntent pi, as a constraint or an outage would.
func refusePayment(t *testing.T, r *replica, pi string) {
	t.Helper()
	var stmts []string
	if r.store.Dialect == dialect.Postgres {
		stmts = []string{
			`CREATE FUNCTION refuse_payment() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				IF NEW.stripe_payment_intent_id = '` + pi + `' THEN RAISE EXCEPTION 'payment refused by the test'; END IF;
				RETURN NEW;
			END $$`,
			`CREATE TRIGGER refuse_payment BEFORE INSERT ON payments FOR EACH ROW EXECUTE FUNCTION refuse_payment()`,
		}
	} else {
		stmts = []string{`CREATE TRIGGER refuse_payment BEFORE INSERT ON payments
			WHEN NEW.stripe_payment_intent_id = '` + pi + `' BEGIN SELECT RAISE(ABORT, 'payment refused by the test'); END`}
	}
	for _, s := range stmts {
		if _, err := r.store.SQL.ExecContext(context.Background(), s); err != nil {
			t.Fatalf("install the refusal: %v", err)
		}
	}
}

// publishedIDs returns the ids of the events published so far.
func publishedIDs(r *replica) []string {
	var ids []string
	for _, ev := range r.pub.all() {
		ids = append(ids, ev.EventID)
	}
	return ids
}

// One lane's events about distinct objects are applied in one
// transaction, after reading what planning them needs in one query per
// kind (the workspaces named, the payments recorded), and an event whose
// object is recorded for another workspace is still skipped. When one of
// them fails, the transaction is rolled back and
// each event is applied in its own: the others are applied and published
// in order, and only the failing one is left for a retry.
func TestOneLanesEventsAreAppliedTogether(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			r, d := countedReplica(t, backend.URL(t), 1)
			ws := r.workspace(t, "alice")
			base := time.Now().Add(-time.Hour).Truncate(time.Second)
			pay := func(id, pi string, k int) piEvent {
				return piEvent{id: id, typ: "payment_intent.succeeded", object: pi, status: "succeeded", amount: 500,
					created: base.Add(time.Duration(k) * time.Second), ws: ws}
			}
			refusePayment(t, r, "pi_refused")
			bob := r.workspace(t, "bob")
			bobs := pay("evt_bobs", "pi_bobs", 0)
			bobs.ws = bob
			postAll(t, r.store.Client, []piEvent{bobs})
			r.worker.ProcessDue(context.Background())
			r.pub.mu.Lock()
			r.pub.events = nil
			r.pub.mu.Unlock()
			foreign := pay("evt_together_foreign", "pi_bobs", 4) // names alice's workspace

			postAll(t, r.store.Client, []piEvent{pay("evt_together_1", "pi_t1", 1), pay("evt_together_2", "pi_t2", 2), foreign, pay("evt_together_3", "pi_t3", 3)})
			begun, rolledBack, reads := d.begun.Load(), d.rolledBack.Load(), d.reads.Load()
			if n := r.worker.ProcessDue(context.Background()); n != 4 {
				t.Fatalf("claimed %d events, want 4", n)
			}
			if got := d.begun.Load() - begun; got != 1 || d.rolledBack.Load() != rolledBack {
				t.Errorf("three payments took %d transactions (%d rolled back), want 1", got, d.rolledBack.Load()-rolledBack)
			}
			if got := d.reads.Load() - reads; got != 2 {
				t.Errorf("planning four payment events read %d times, want 2: the workspaces, the payments", got)
			}
			if got, want := publishedIDs(r), []string{"evt_together_1", "evt_together_2", "evt_together_3"}; !slices.Equal(got, want) {
				t.Errorf("published %v, want %v", got, want)
			}
			if row, err := r.store.Client.WebhookEvent.Query().Where(webhookevent.StripeEventID("evt_together_foreign")).Only(svc()); err != nil ||
				row.Status != webhookevent.StatusSkipped || !strings.Contains(row.LastError, "another workspace") {
				t.Errorf("the event naming another workspace's payment: %+v, %v; want skipped", row, err)
			}

			postAll(t, r.store.Client, []piEvent{pay("evt_mixed_1", "pi_m1", 4), pay("evt_mixed_refused", "pi_refused", 5), pay("evt_mixed_3", "pi_m3", 6)})
			begun, rolledBack = d.begun.Load(), d.rolledBack.Load()
			if n := r.worker.ProcessDue(context.Background()); n != 3 {
				t.Fatalf("claimed %d events, want 3", n)
			}
			if got, rb := d.begun.Load()-begun, d.rolledBack.Load()-rolledBack; got != 4 || rb != 2 {
				t.Errorf("%d transactions, %d rolled back; want 4 and 2: the three together, then each alone", got, rb)
			}
			if got, want := publishedIDs(r)[3:], []string{"evt_mixed_1", "evt_mixed_3"}; !slices.Equal(got, want) {
				t.Errorf("published %v, want %v", got, want)
			}
			for id, want := range map[string]webhookevent.Status{"evt_mixed_1": webhookevent.StatusProcessed,
				"evt_mixed_refused": webhookevent.StatusFailed, "evt_mixed_3": webhookevent.StatusProcessed} {
				row, err := r.store.Client.WebhookEvent.Query().Where(webhookevent.StripeEventID(id)).Only(svc())
				if err != nil {
					t.Fatal(err)
				}
				if row.Status != want {
					t.Errorf("%s: %s (%q), want %s", id, row.Status, row.LastError, want)
				}
				if want == webhookevent.StatusFailed && (row.NextAttemptAt == nil || !strings.Contains(row.LastError, "refused by the test")) {
					t.Errorf("%s: last error %q, next attempt %v; want the refusal, and a retry", id, row.LastError, row.NextAttemptAt)
				}
			}
			if p, sk, f := r.outcome("processed"), r.outcome("skipped"), r.outcome("failed"); p != 6 || sk != 1 || f != 1 {
				t.Errorf("outcomes %v, want 6 processed, 1 skipped and 1 failed", r.outcomes)
			}
		})
	}
}

// subscriptionEvent is a customer.subscription.updated event.
func subscriptionEvent(id, sub string, ws uuid.UUID, created time.Time) []byte {
	obj := stripefake.SubscriptionJSON(stripefake.Subscription{ID: sub, Status: "active", PriceID: "price_team_monthly",
		Metadata: map[string]string{"workspace_id": ws.String(), "plan": "team"}})
	return stripefake.Event(id, "customer.subscription.updated", obj, created)
}

// subsSharingLanes returns four subscription ids: a1 and b1 share a lane
// (of 8), and a2 and b2 share another.
func subsSharingLanes() (a1, b1, a2, b2 string) {
	var byLane [8][]string
	for i := 0; ; i++ {
		id := fmt.Sprintf("sub_lock_%d", i)
		l := laneOf(id, len(byLane))
		byLane[l] = append(byLane[l], id)
		var full []int
		for l, ids := range byLane {
			if len(ids) >= 2 {
				full = append(full, l)
			}
		}
		if len(full) == 2 {
			return byLane[full[0]][0], byLane[full[0]][1], byLane[full[1]][0], byLane[full[1]][1]
		}
	}
}

// Lanes that apply their events together must not deadlock on the
// workspaces those events lock. Two such deadlocks were seen in bench B4
// (hundreds of them): a subscription event locks its workspace, while a
// payment or invoice inserted in another lane's transaction holds a
// foreign-key lock on it; and two lanes each holding one workspace's lock
// and waiting for the other's. Here workspace A's subscriptions a1 and a2
// and B's b1 and b2 go to two lanes, which meet them in opposite
// orders (a1 then b1; b2 then a2), beside payments of both workspaces.
func TestLanesAppliedTogetherDoNotDeadlockOnWorkspaces(t *testing.T) {
	r, d := countedReplica(t, testenv.Postgres(t), 8)
	wsA, wsB := r.workspace(t, "alice"), r.workspace(t, "bob")
	a1, b1, a2, b2 := subsSharingLanes()
	h := &Handler{DB: r.store.Client, Secrets: []string{firstSecret}, Log: slog.New(slog.DiscardHandler)}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	n := 0
	postBody := func(body []byte) {
		if code := postSigned(h, body); code != http.StatusOK {
			t.Fatalf("post: %d", code)
		}
		n++
	}
	const rounds = 40
	for k := range rounds {
		at := func(i int) time.Time { return base.Add(time.Duration(k*10+i) * time.Second) }
		postBody(piEvent{id: fmt.Sprintf("evt_lock_pa_%d", k), typ: "payment_intent.succeeded", object: fmt.Sprintf("pi_lock_a_%d", k),
			status: "succeeded", amount: 100, created: at(0), ws: wsA}.payload())
		postBody(piEvent{id: fmt.Sprintf("evt_lock_pb_%d", k), typ: "payment_intent.succeeded", object: fmt.Sprintf("pi_lock_b_%d", k),
			status: "succeeded", amount: 100, created: at(1), ws: wsB}.payload())
		postBody(subscriptionEvent(fmt.Sprintf("evt_lock_a1_%d", k), a1, wsA, at(2)))
		postBody(subscriptionEvent(fmt.Sprintf("evt_lock_b2_%d", k), b2, wsB, at(3)))
		postBody(subscriptionEvent(fmt.Sprintf("evt_lock_b1_%d", k), b1, wsB, at(4)))
		postBody(subscriptionEvent(fmt.Sprintf("evt_lock_a2_%d", k), a2, wsA, at(5)))
	}
	runUntil(t, r.store.Client, n, r)
	if rb := d.rolledBack.Load(); rb != 0 {
		t.Errorf("%d of %d transactions rolled back (deadlocks), want none", rb, d.begun.Load())
	}
	if got := r.outcome("processed"); got != n {
		t.Errorf("outcomes %v, want %d processed", r.outcomes, n)
	}
}

// A subscription event serializes on its workspace with FOR NO KEY
// UPDATE, so it does not wait for a transaction that is recording a row
// that references the workspace (a payment being created, whose foreign
// key holds a KEY SHARE lock on it until it commits), nor block it.
func TestSubscriptionEventDoesNotWaitForRowsReferencingItsWorkspace(t *testing.T) {
	r, _ := countedReplica(t, testenv.Postgres(t), 1)
	ws := r.workspace(t, "alice")
	ctx := context.Background()
	other, err := r.store.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Rollback() }()
	if _, err := other.ExecContext(ctx, `SELECT 1 FROM workspaces WHERE id = $1 FOR KEY SHARE`, ws); err != nil {
		t.Fatal(err)
	}
	h := &Handler{DB: r.store.Client, Secrets: []string{firstSecret}, Log: slog.New(slog.DiscardHandler)}
	if code := postSigned(h, subscriptionEvent("evt_nokey", "sub_nokey", ws, time.Now().Add(-time.Minute))); code != http.StatusOK {
		t.Fatalf("post: %d", code)
	}
	r.worker.Lease = 3 * time.Second // how long the event may wait
	r.worker.ProcessDue(ctx)
	if got := r.outcome("processed"); got != 1 {
		t.Fatalf("outcomes %v with a KEY SHARE lock held on the workspace; want the event processed without waiting for it", r.outcomes)
	}
}

// A run holds each object once, however its lane key is made: an
// invoice's events are keyed by its PaymentIntent when they name one, and
// by the invoice otherwise. And a run holds at most maxRun events.
func TestRunsHoldEachObjectOnceAndAreBounded(t *testing.T) {
	invoiceJob := func(paymentIntent string) *job {
		obj := `{"id":"in_1","object":"invoice"` + paymentIntent + `}`
		j := &job{row: &ent.WebhookEvent{ObjectID: "in_1"}, ev: decodeEvent(t, stripefake.Event("evt_x", "invoice.paid", obj, time.Now()))}
		j.key = laneKey(j.ev)
		return j
	}
	withoutPI, withPI := invoiceJob(""), invoiceJob(`,"payment_intent":"pi_1"`)
	if withoutPI.key == withPI.key {
		t.Fatalf("both keyed %q: the case this test is about is gone", withPI.key)
	}
	if run, rest := nextRun([]*job{withoutPI, withPI}); len(run) != 1 || run[0] != withoutPI || len(rest) != 1 {
		t.Errorf("a run took %d of one invoice's two events, keyed %q and %q; want the first alone", len(run), withoutPI.key, withPI.key)
	}

	var payments []*job
	for i := range maxRun + 4 {
		pi := fmt.Sprintf("pi_run_%d", i)
		body := stripefake.Event("evt_"+pi, "payment_intent.succeeded", stripefake.PaymentIntentJSON(pi, "succeeded", 100, "usd", nil), time.Now())
		j := &job{row: &ent.WebhookEvent{ObjectID: pi}, ev: decodeEvent(t, body)}
		j.key = laneKey(j.ev)
		payments = append(payments, j)
	}
	if run, rest := nextRun(payments); len(run) != maxRun || !slices.Equal(run, payments[:maxRun]) || !slices.Equal(rest, payments[maxRun:]) {
		t.Errorf("a run of %d distinct payments took %d, want the first maxRun (%d)", len(payments), len(run), maxRun)
	}
}

// A run passes over an event whose object an event left behind is about,
// and takes the events of other objects after it: each object's events
// keep their order, and a lane's repeated objects do not cut its runs
// short. An event a run cannot take runs alone when it is first.
func TestRunsPassOverRepeatedObjectsInOrder(t *testing.T) {
	ev := func(id, typ, object string) *job {
		j := &job{row: &ent.WebhookEvent{ObjectID: object}}
		var body []byte
		if strings.HasPrefix(object, "pi_") {
			body = stripefake.Event(id, typ, stripefake.PaymentIntentJSON(object, "succeeded", 100, "usd", nil), time.Now())
		} else {
			body = stripefake.Event(id, typ, `{"id":"`+object+`","object":"charge","payment_intent":"pi_a"}`, time.Now())
		}
		j.ev = decodeEvent(t, body)
		j.key = laneKey(j.ev)
		return j
	}
	ids := func(jobs []*job) (out []string) {
		for _, j := range jobs {
			out = append(out, j.ev.ID)
		}
		return out
	}
	a1, a2, a3 := ev("a1", "payment_intent.processing", "pi_a"), ev("a2", "payment_intent.succeeded", "pi_a"), ev("a3", "payment_intent.succeeded", "pi_a")
	b1, c1, b2 := ev("b1", "payment_intent.succeeded", "pi_b"), ev("c1", "payment_intent.succeeded", "pi_c"), ev("b2", "payment_intent.succeeded", "pi_b")
	refund := ev("r1", "charge.refunded", "ch_a") // keyed by its PaymentIntent, pi_a; runs alone

	cases := []struct {
		queue     []*job
		run, rest []string
	}{
		{[]*job{a1, a2, b1, c1, b2, a3}, []string{"a1", "b1", "c1"}, []string{"a2", "b2", "a3"}},
		{[]*job{a2, b2, a3}, []string{"a2", "b2"}, []string{"a3"}},
		// The refund holds pi_a: a3 waits behind it, b1 does not.
		{[]*job{c1, refund, a3, b1}, []string{"c1", "b1"}, []string{"r1", "a3"}},
		{[]*job{refund, a3, b1}, []string{"r1"}, []string{"a3", "b1"}},
	}
	for _, c := range cases {
		run, rest := nextRun(c.queue)
		if !slices.Equal(ids(run), c.run) || !slices.Equal(ids(rest), c.rest) {
			t.Errorf("nextRun(%v) = %v, rest %v; want %v, rest %v", ids(c.queue), ids(run), ids(rest), c.run, c.rest)
		}
	}
}

// livePublisher records the events it publishes and, as a Redis client
// does, refuses a publication whose context has ended (counting it). With
// first and release set, it holds its first publication until released.
type livePublisher struct {
	first, release chan struct{}
	once           sync.Once
	mu             sync.Mutex
	ids            []string // published
	ended          int      // refused: the context had ended
}

func (p *livePublisher) PublishAll(ctx context.Context, pubs []eventbus.Publication) error {
	if p.first != nil {
		p.once.Do(func() {
			close(p.first)
			<-p.release
		})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := ctx.Err(); err != nil {
		p.ended += len(pubs)
		return err
	}
	for _, m := range pubs {
		var ev billing.BillingEvent
		if err := json.Unmarshal(m.Payload, &ev); err != nil {
			return err
		}
		p.ids = append(p.ids, ev.EventID)
	}
	return nil
}

// published returns the ids published, and how many publications were
// refused.
func (p *livePublisher) published() ([]string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ids), p.ended
}

// Events whose transaction committed are published even when the run's
// context ends right after the commit (its lease ran out, or the worker
// stopped): left unpublished, subscribers would miss them and the
// workspace's cached status would stay stale.
func TestCommittedRunIsAnnouncedAfterItsContextEnds(t *testing.T) {
	r, d := countedReplica(t, testenv.SQLite(t), 1)
	pub := &livePublisher{}
	r.billing = billing.New(billing.Deps{DB: ent.NewClient(ent.Driver(d)), Bus: pub, Log: slog.New(slog.DiscardHandler)}, billing.Config{Dialect: r.store.Dialect})
	ws := r.workspace(t, "alice")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var events []billing.StoredEvent
	for i, pi := range []string{"pi_late_1", "pi_late_2"} {
		e := piEvent{id: "evt_" + pi, typ: "payment_intent.succeeded", object: pi, status: "succeeded", amount: 100,
			created: base.Add(time.Duration(i) * time.Second), ws: ws}
		postAll(t, r.store.Client, []piEvent{e})
		row, err := r.store.Client.WebhookEvent.Query().Where(webhookevent.StripeEventID(e.id)).Only(svc())
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, billing.StoredEvent{RowID: row.ID, Event: decodeEvent(t, row.Payload)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.afterCommit = cancel
	for i, res := range r.billing.ApplyEvents(ctx, events) {
		if res.Err != nil || res.Outcome.Status != webhookevent.StatusProcessed {
			t.Errorf("event %d: %+v, %v; want processed", i, res.Outcome, res.Err)
		}
	}
	if ids, _ := pub.published(); !slices.Equal(ids, []string{"evt_pi_late_1", "evt_pi_late_2"}) {
		t.Errorf("published %v after the context ended at the commit, want both events", ids)
	}
}

// A worker stopped while it announces a run finishes that run: every
// event of it is published with a live context, none is left leased, and
// the worker returns.
func TestStoppingWorkerFinishesTheRunInHand(t *testing.T) {
	r := newReplica(t, testenv.SQLite(t), 1)
	pub := &livePublisher{first: make(chan struct{}), release: make(chan struct{})}
	r.billing = billing.New(billing.Deps{DB: r.store.Client, Bus: pub, Log: slog.New(slog.DiscardHandler)}, billing.Config{Dialect: r.store.Dialect})
	r.worker.Billing = r.billing
	ws := r.workspace(t, "alice")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var events []piEvent
	for i := range 3 {
		events = append(events, piEvent{id: fmt.Sprintf("evt_run_stop_%d", i), typ: "payment_intent.succeeded",
			object: fmt.Sprintf("pi_run_stop_%d", i), status: "succeeded", amount: 100, created: base.Add(time.Duration(i) * time.Second), ws: ws})
	}
	postAll(t, r.store.Client, events)

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.worker.Run(ctx) }()
	select {
	case <-pub.first: // the run is committed; its first event is being published
	case <-time.After(30 * time.Second):
		t.Fatal("the run was not applied")
	}
	stop()
	close(pub.release)
	<-done

	ids, ended := pub.published()
	if want := []string{"evt_run_stop_0", "evt_run_stop_1", "evt_run_stop_2"}; !slices.Equal(ids, want) || ended != 0 {
		t.Errorf("published %v (%d refused for an ended context), want %v, all with a live one", ids, ended, want)
	}
	rows, err := r.store.Client.WebhookEvent.Query().All(svc())
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if row.Status != webhookevent.StatusProcessed || row.LockedUntil != nil {
			t.Errorf("%s: %s, locked until %v; want processed and not leased", row.StripeEventID, row.Status, row.LockedUntil)
		}
	}
	if got := r.outcome("processed"); got != 3 {
		t.Errorf("outcomes %v, want 3 processed", r.outcomes)
	}
}

// Read-ahead covers invoices, whose workspace is named in
// subscription_details.metadata, and subscriptions: planning a run of
// one of each, for two workspaces, reads three times (the workspaces, the invoices, the
// subscriptions); the subscription's status refresh after the commit
// reads twice more.
func TestReadAheadCoversInvoicesAndSubscriptions(t *testing.T) {
	r, d := countedReplica(t, testenv.Postgres(t), 1)
	// Two workspaces, so that each event's must be read ahead from its own
	// object.
	ws, other := r.workspace(t, "alice"), r.workspace(t, "bob")
	h := &Handler{DB: r.store.Client, Secrets: []string{firstSecret}, Log: slog.New(slog.DiscardHandler)}
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	inv := stripefake.InvoiceJSON("in_ahead", "", "sub_other", "paid", 900, 900, map[string]string{"workspace_id": other.String()})
	for _, body := range [][]byte{
		stripefake.Event("evt_ahead_invoice", "invoice.paid", inv, at),
		subscriptionEvent("evt_ahead_sub", "sub_ahead", ws, at.Add(time.Second)),
	} {
		if code := postSigned(h, body); code != http.StatusOK {
			t.Fatalf("post: %d", code)
		}
	}
	reads := d.reads.Load()
	if n := r.worker.ProcessDue(context.Background()); n != 2 {
		t.Fatalf("claimed %d events, want 2", n)
	}
	if got := d.reads.Load() - reads; got != 5 {
		t.Errorf("applying an invoice and a subscription event read %d times outside a transaction, want 5", got)
	}
	if got := r.outcome("processed"); got != 2 {
		t.Errorf("outcomes %v, want 2 processed", r.outcomes)
	}
}
