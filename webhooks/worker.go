package webhooks

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/ent"
	"billingapi/ent/predicate"
	"billingapi/ent/webhookevent"
	"billingapi/internal/pgtext"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
)

// batchSize is how many due events one claim takes.
const batchSize = 100

// Worker applies stored events in the order Stripe created them. Any
// number of workers (one per replica) may run: an event is leased to one
// of them at a time, and billing.ApplyEvent applies it at most once anyway.
//
// A worker claims a batch of due events in one transaction, then applies
// it in Concurrency lanes: the events of one Stripe object always go to
// the same lane, in order, while different objects are applied in
// parallel. The next batch is claimed once the whole batch is done.
type Worker struct {
	DB      *ent.Client
	Billing *billing.Service
	Log     *slog.Logger
	// MaxAttempts bounds the retries of a failing event; it then stays
	// failed until replayed. Default 8.
	MaxAttempts int
	// Lease is how long one worker holds an event; default 15 seconds.
	// An event whose worker died is taken up again after it. A lease that
	// runs out mid-apply is harmless: ApplyEvent applies an event once.
	Lease time.Duration
	// Poll is how often the worker looks for due events when not woken;
	// default 1 second.
	Poll time.Duration
	// Concurrency is how many lanes apply a batch at once; default 8. With
	// 1, events are applied one at a time in the order they were claimed.
	Concurrency int
	// RowLocks claims batches with SELECT ... FOR UPDATE SKIP LOCKED
	// (PostgreSQL), so that workers of several replicas take disjoint
	// batches rather than colliding. SQLite, which has one writer, claims
	// with a conditional update instead.
	RowLocks bool
	// Observe, when set, is told the outcome of each attempt: "processed",
	// "skipped", "duplicate" (already applied) or "failed", and the time
	// since Stripe created the event. For metrics. Lanes call it
	// concurrently.
	Observe func(eventType, outcome string, lag time.Duration)

	wakeOnce sync.Once
	wake     chan struct{}
}

// backoff is the wait before retry n (1-based) of a failed event.
func backoff(n int) time.Duration {
	steps := []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour}
	if n-1 < len(steps) {
		return steps[max(n-1, 0)]
	}
	return steps[len(steps)-1]
}

// Wake asks the worker to look for due events now (the fast path after an
// event is stored). It never blocks.
func (w *Worker) Wake() {
	select {
	case w.wakeChan() <- struct{}{}:
	default:
	}
}

func (w *Worker) wakeChan() chan struct{} {
	// Once: the webhook handler may call Wake before Run has started.
	w.wakeOnce.Do(func() { w.wake = make(chan struct{}, 1) })
	return w.wake
}

// Run applies due events until ctx ends. Events left unprocessed by a
// crash (received, failed, or leased past their lease) are picked up
// again, so a restart resumes where the last run stopped.
func (w *Worker) Run(ctx context.Context) {
	poll := w.Poll
	if poll == 0 {
		poll = time.Second
	}
	wake := w.wakeChan()
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	for {
		for w.ProcessDue(ctx) > 0 && ctx.Err() == nil {
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-ticker.C:
		}
	}
}

// ProcessDue claims a batch of the events that are due now, oldest first,
// applies it, and returns how many events it claimed.
func (w *Worker) ProcessDue(ctx context.Context) int {
	svc := auth.NewContext(ctx, auth.ServiceViewer(auth.WebhooksService))
	now := time.Now()
	batch, err := w.claimBatch(svc, now)
	if err != nil {
		if ctx.Err() == nil {
			w.Log.ErrorContext(ctx, "webhook worker: claiming due events failed", "err", err)
		}
		return 0
	}
	if len(batch) == 0 {
		return 0
	}
	leasedUntil := now.Add(w.lease())
	if left := w.applyBatch(ctx, batch, leasedUntil); len(left) > 0 {
		w.release(svc, left, leasedUntil)
	}
	return len(batch)
}

// claimable is the condition for leasing an event: still to apply (its
// next attempt is set exactly while it is: received, or failed with
// attempts left), and not leased to a worker whose lease still runs.
//
// It names no status: the claim must be planned on the partial index
// webhookevent_due_by_created whatever the table's statistics say. Named,
// the statuses offered PostgreSQL the status index, and statistics taken
// while hardly any event waited (the usual state, which a month-end burst
// finds) promised one row there: every claim then read and sorted the
// whole backlog, and its lease update read the backlog's entries of that
// index again, so claims slowed as the backlog grew.
func claimable(now time.Time) []predicate.WebhookEvent {
	return []predicate.WebhookEvent{
		webhookevent.NextAttemptAtNotNil(),
		webhookevent.Or(webhookevent.LockedUntilIsNil(), webhookevent.LockedUntilLT(now)),
	}
}

// claimBatch leases up to batchSize due events to this worker in one
// transaction and returns them oldest first (by Stripe's created, then by
// arrival). With RowLocks the rows are selected FOR UPDATE SKIP LOCKED, so
// a concurrent claimer skips them instead of waiting, and the update that
// leases them names their ids alone: they are locked, nothing can have
// changed them since. Without row locks the update repeats the claim
// conditions; if it leases fewer rows than were listed, another worker got
// some of them first: the transaction is rolled back (so that nothing is
// leased by halves) and the events are claimed one by one.
func (w *Worker) claimBatch(ctx context.Context, now time.Time) ([]*ent.WebhookEvent, error) {
	tx, err := w.DB.Tx(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	if w.RowLocks {
		// PostgreSQL plans the claim afresh each time, with the table as it
		// is now. pgx prepares every query, and PostgreSQL soon caches one
		// plan for a prepared statement; cached while the table was small
		// (the first minutes of a database, or the events table on a new
		// replica's connection), a sequential scan and a sort served every
		// later claim, read the whole table and sorted the backlog. Planning
		// once per batch costs far less than one such read.
		if _, err := tx.ExecContext(ctx, "SET LOCAL plan_cache_mode = force_custom_plan"); err != nil {
			return nil, err
		}
	}
	q := tx.WebhookEvent.Query().
		Where(webhookevent.NextAttemptAtLTE(now)).
		Where(claimable(now)...).
		Order(ent.Asc(webhookevent.FieldCreated), ent.Asc(webhookevent.FieldCreateTime)).
		Limit(batchSize)
	if w.RowLocks {
		q = q.ForUpdate(entsql.WithLockAction(entsql.SkipLocked))
	}
	rows, err := q.All(ctx)
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	ids := make([]uuid.UUID, len(rows))
	for i, row := range rows {
		ids[i] = row.ID
	}
	upd := tx.WebhookEvent.Update().Where(webhookevent.IDIn(ids...))
	if !w.RowLocks {
		upd.Where(claimable(now)...)
	}
	n, err := upd.SetLockedUntil(now.Add(w.lease())).AddAttempts(1).Save(ctx)
	if err != nil {
		return nil, err
	}
	if n == len(rows) {
		if err := tx.Commit(); err != nil {
			return nil, err
		}
		return rows, nil
	}
	if err := tx.Rollback(); err != nil {
		return nil, err
	}
	w.Log.WarnContext(ctx, "webhook worker: batch claim raced another worker; claiming one by one",
		"listed", len(rows), "claimed", n)
	claimed := rows[:0]
	for _, row := range rows {
		if w.claim(ctx, row.ID, now) {
			claimed = append(claimed, row)
		}
	}
	return claimed, nil
}

// claim leases one event to this worker; it reports false when another
// worker got it first.
func (w *Worker) claim(ctx context.Context, id uuid.UUID, now time.Time) bool {
	n, err := w.DB.WebhookEvent.Update().
		Where(webhookevent.ID(id)).
		Where(claimable(now)...).
		SetLockedUntil(now.Add(w.lease())).
		AddAttempts(1).
		Save(ctx)
	return err == nil && n == 1
}

// job is one claimed event with its payload, decoded once
// (billing.DecodeEvent): what decides its lane and what billing applies.
type job struct {
	row       *ent.WebhookEvent
	ev        *billing.Event // nil when decodeErr is set
	decodeErr error
	key       string // laneKey
}

// applyBatch applies claimed events in lanes and waits for all of them. It
// returns the events it did not start because ctx ended, or because less
// than half the batch's lease was left to start them in: a run must end
// within the lease (applyInHand), or another worker could claim its
// events meanwhile and count an attempt for them twice.
//
// An event it has started is finished even when ctx ends (the worker is
// stopping): its commit, status cache refresh and publication run with ctx's
// values but not its cancellation, within the event's lease. Cut in the
// middle, an event could be committed as processed while its apply
// reported a failure, leaving it unpublished and its workspace's cached
// status stale.
func (w *Worker) applyBatch(ctx context.Context, rows []*ent.WebhookEvent, leasedUntil time.Time) []*ent.WebhookEvent {
	lanes := make([][]*job, w.concurrency())
	for _, row := range rows {
		j := &job{row: row}
		ev, err := billing.DecodeEvent(row.Payload)
		if err != nil {
			j.decodeErr = fmt.Errorf("stored payload does not decode: %w", err)
		}
		j.ev, j.key = ev, laneKey(ev)
		i := laneOf(j.key, len(lanes))
		lanes[i] = append(lanes[i], j)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		left []*ent.WebhookEvent
	)
	for _, lane := range lanes {
		if len(lane) == 0 {
			continue
		}
		wg.Go(func() {
			for queue := lane; len(queue) > 0; {
				if ctx.Err() != nil || time.Until(leasedUntil) < w.lease()/2 {
					mu.Lock()
					for _, rest := range queue {
						left = append(left, rest.row)
					}
					mu.Unlock()
					return
				}
				var run []*job
				run, queue = nextRun(queue)
				w.applyInHand(ctx, run, leasedUntil)
			}
		})
	}
	wg.Wait()
	return left
}

// maxRun is the most events applied together in one transaction: a run
// shares one lease, and its transaction holds its rows' locks until the
// last event.
const maxRun = 16

// nextRun takes a lane's next run from the front of its queue, and
// returns it with the rest of the queue, in order. An event that
// billing.ApplyEvents does not take (not batchable, not decoded, without
// an object) at the front runs alone. Otherwise the run is up to maxRun
// events that ApplyEvents takes, about distinct objects, in queue order,
// passing over every event whose object an event left in the queue before
// it is about: each object's events stay in order, so that each is
// planned with its object's latest state, while the events of different
// objects need no order among them (other lanes apply them in parallel
// already). Objects are told apart by their lane key and by their own id,
// as an invoice's lane key is its PaymentIntent in some of its events and
// its own id in others.
func nextRun(queue []*job) (run, rest []*job) {
	if !runnable(queue[0]) {
		return queue[:1], queue[1:]
	}
	held := map[string]bool{}
	for _, j := range queue {
		object := "object:" + j.row.ObjectID
		if len(run) < maxRun && runnable(j) && !held[j.key] && !held[object] {
			run = append(run, j)
		} else {
			rest = append(rest, j)
		}
		held[j.key], held[object] = true, true
	}
	return run, rest
}

// runnable reports whether billing.ApplyEvents takes the job in a run with
// others.
func runnable(j *job) bool {
	return j.decodeErr == nil && j.ev.Batchable() && j.key != ""
}

// laneKey is what decides an event's lane: the PaymentIntent for charges
// and refunds (their events change the same payment row as the
// PaymentIntent's own, so they must not run beside them), else the id of
// the Stripe object the event is about; "" for an event without one, or
// one that does not decode (nil).
func laneKey(ev *billing.Event) string {
	if ev == nil {
		return ""
	}
	if pi := ev.PaymentIntent(); pi != "" {
		return pi
	}
	return ev.ObjectID()
}

// laneOf picks the lane of a Stripe object: always the same one for the
// same object, so that its events are applied one after another in order.
// Events without an object go to lane 0.
func laneOf(objectID string, lanes int) int {
	if objectID == "" || lanes <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(objectID))
	return int(h.Sum32() % uint32(lanes))
}

// release hands back events this worker claimed but never started (it was
// stopped mid-batch): their lease is cleared and the attempt it counted is
// taken back, so that they are due again at once, as if never claimed.
// Only events still under this worker's lease (leasedUntil) are touched.
func (w *Worker) release(ctx context.Context, rows []*ent.WebhookEvent, leasedUntil time.Time) {
	ids := make([]uuid.UUID, len(rows))
	for i, row := range rows {
		ids[i] = row.ID
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := w.DB.WebhookEvent.Update().
		Where(
			webhookevent.IDIn(ids...),
			webhookevent.StatusIn(webhookevent.StatusReceived, webhookevent.StatusFailed),
			webhookevent.LockedUntil(leasedUntil),
		).
		ClearLockedUntil().
		AddAttempts(-1).
		Exec(ctx)
	if err != nil {
		w.Log.WarnContext(ctx, "webhook worker: releasing unstarted events failed; they are due again when their lease ends",
			"events", len(ids), "err", err)
	}
}

// applyInHand applies started events to the end, whatever happens to ctx,
// within their lease: one alone, or several together (nextRun). An event
// whose stored payload does not decode is always alone, and fails for good.
func (w *Worker) applyInHand(ctx context.Context, jobs []*job, leasedUntil time.Time) {
	run, cancel := context.WithDeadline(context.WithoutCancel(ctx), leasedUntil)
	defer cancel()
	var results []billing.EventResult
	switch {
	case jobs[0].decodeErr != nil:
		results = []billing.EventResult{{Err: jobs[0].decodeErr}}
	case len(jobs) == 1:
		out, err := w.Billing.ApplyEvent(run, jobs[0].row.ID, jobs[0].ev)
		results = []billing.EventResult{{Outcome: out, Err: err}}
	default:
		events := make([]billing.StoredEvent, len(jobs))
		for i, j := range jobs {
			events[i] = billing.StoredEvent{RowID: j.row.ID, Event: j.ev}
		}
		results = w.Billing.ApplyEvents(run, events)
	}
	// Recording the outcomes gets time of its own, should the run have
	// used up its lease.
	ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for i, r := range results {
		if jobs[i].decodeErr != nil {
			w.fail(ctx, jobs[i].row, r.Err, true, leasedUntil)
			continue
		}
		w.settle(ctx, jobs[i], r.Outcome, r.Err, leasedUntil)
	}
}

// settle records what applying an event gave: a failure to retry, or the
// outcome in the metrics and the log.
func (w *Worker) settle(ctx context.Context, j *job, out billing.EventOutcome, err error, leasedUntil time.Time) {
	if err != nil {
		w.fail(ctx, j.row, err, false, leasedUntil)
		return
	}
	if w.Observe != nil {
		outcome := string(out.Status)
		if out.Duplicate {
			outcome = "duplicate"
		}
		w.Observe(j.row.Type, outcome, time.Since(j.row.Created))
	}
	w.Log.InfoContext(ctx, "webhook applied", "event_id", j.ev.ID, "type", j.ev.Type,
		"status", out.Status, "duplicate", out.Duplicate, "reason", out.Reason)
}

// fail records a failed attempt and schedules the next, until the event
// has used its attempts (or can never succeed) and stays failed. It
// records it only while the event is still under this worker's lease
// (leasedUntil): a run that overran it may find the event claimed by
// another worker, whose lease and attempt it must not undo.
func (w *Worker) fail(ctx context.Context, row *ent.WebhookEvent, cause error, permanent bool, leasedUntil time.Time) {
	attempts := row.Attempts + 1
	if w.Observe != nil {
		w.Observe(row.Type, "failed", 0)
	}
	w.Log.WarnContext(ctx, "webhook event failed", "event_id", row.StripeEventID, "type", row.Type,
		"attempt", attempts, "err", cause)
	upd := w.DB.WebhookEvent.UpdateOneID(row.ID).
		Where(webhookevent.StatusIn(webhookevent.StatusReceived, webhookevent.StatusFailed), webhookevent.LockedUntil(leasedUntil)).
		SetStatus(webhookevent.StatusFailed).
		SetLastError(pgtext.Clip(cause.Error(), 2000)).
		ClearLockedUntil()
	if permanent || attempts >= w.maxAttempts() {
		upd.ClearNextAttemptAt()
	} else {
		upd.SetNextAttemptAt(time.Now().Add(backoff(attempts)))
	}
	switch err := upd.Exec(auth.NewContext(ctx, auth.ServiceViewer(auth.WebhooksService))); {
	case ent.IsNotFound(err):
		w.Log.InfoContext(ctx, "webhook worker: a failure not recorded: the event is no longer under this lease", "event_id", row.StripeEventID)
	case err != nil:
		w.Log.ErrorContext(ctx, "webhook worker: recording a failure failed", "event_id", row.StripeEventID, "err", err)
	}
}

// lease returns Lease, or its default.
func (w *Worker) lease() time.Duration {
	if w.Lease == 0 {
		return 15 * time.Second
	}
	return w.Lease
}

// maxAttempts returns MaxAttempts, or its default.
func (w *Worker) maxAttempts() int {
	if w.MaxAttempts <= 0 {
		return 8
	}
	return w.MaxAttempts
}

// concurrency returns Concurrency, or its default.
func (w *Worker) concurrency() int {
	if w.Concurrency <= 0 {
		return 8
	}
	return w.Concurrency
}
