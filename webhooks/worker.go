package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/ent"
	"billingapi/ent/webhookevent"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// Worker applies stored events in the order Stripe created them. Any
// number of workers (one per replica) may run: an event is leased to one
// of them at a time, and billing.ApplyEvent applies it at most once anyway.
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
	// Observe, when set, is told the outcome of each attempt: "processed",
	// "skipped", "duplicate" (already applied) or "failed", and the time
	// since Stripe created the event. For metrics.
	Observe func(eventType, outcome string, lag time.Duration)

	wake chan struct{}
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
	if w.wake == nil {
		w.wake = make(chan struct{}, 1)
	}
	return w.wake
}

// Run applies due events until ctx ends. Events left unprocessed by a
// crash (received, failed, or leased past their lease) are picked up
// again, so a restart resumes where the last run stopped.
func (w *Worker) Run(ctx context.Context) {
	if w.MaxAttempts == 0 {
		w.MaxAttempts = 8
	}
	if w.Poll == 0 {
		w.Poll = time.Second
	}
	wake := w.wakeChan()
	ticker := time.NewTicker(w.Poll)
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

// ProcessDue applies the events that are due now, oldest first, and
// returns how many it handled.
func (w *Worker) ProcessDue(ctx context.Context) int {
	svc := auth.NewContext(ctx, auth.ServiceViewer(auth.WebhooksService))
	now := time.Now()
	due, err := w.DB.WebhookEvent.Query().
		Where(
			webhookevent.StatusIn(webhookevent.StatusReceived, webhookevent.StatusFailed),
			webhookevent.NextAttemptAtLTE(now),
			webhookevent.Or(webhookevent.LockedUntilIsNil(), webhookevent.LockedUntilLT(now)),
		).
		Order(ent.Asc(webhookevent.FieldCreated), ent.Asc(webhookevent.FieldCreateTime)).
		Limit(100).
		All(svc)
	if err != nil {
		if ctx.Err() == nil {
			w.Log.ErrorContext(ctx, "webhook worker: listing due events failed", "err", err)
		}
		return 0
	}
	handled := 0
	for _, ev := range due {
		if ctx.Err() != nil {
			break
		}
		if w.claim(svc, ev.ID, now) {
			w.apply(ctx, ev)
			handled++
		}
	}
	return handled
}

// claim leases an event to this worker; it reports false when another
// worker got it first.
func (w *Worker) claim(ctx context.Context, id uuid.UUID, now time.Time) bool {
	n, err := w.DB.WebhookEvent.Update().
		Where(
			webhookevent.ID(id),
			webhookevent.StatusIn(webhookevent.StatusReceived, webhookevent.StatusFailed),
			webhookevent.Or(webhookevent.LockedUntilIsNil(), webhookevent.LockedUntilLT(now)),
		).
		SetLockedUntil(now.Add(w.lease())).
		AddAttempts(1).
		Save(ctx)
	return err == nil && n == 1
}

// apply runs one leased event through billing and records a failure.
func (w *Worker) apply(ctx context.Context, row *ent.WebhookEvent) {
	var ev stripe.Event
	if err := json.Unmarshal(row.Payload, &ev); err != nil {
		w.fail(ctx, row, fmt.Errorf("stored payload does not decode: %w", err), true)
		return
	}
	out, err := w.Billing.ApplyEvent(ctx, row.ID, &ev)
	if err != nil {
		w.fail(ctx, row, err, false)
		return
	}
	if w.Observe != nil {
		outcome := string(out.Status)
		if out.Duplicate {
			outcome = "duplicate"
		}
		w.Observe(row.Type, outcome, time.Since(row.Created))
	}
	w.Log.InfoContext(ctx, "webhook applied", "event_id", ev.ID, "type", ev.Type,
		"status", out.Status, "duplicate", out.Duplicate, "reason", out.Reason)
}

// fail records a failed attempt and schedules the next, until the event
// has used its attempts (or can never succeed) and stays failed.
func (w *Worker) fail(ctx context.Context, row *ent.WebhookEvent, cause error, permanent bool) {
	attempts := row.Attempts + 1
	if w.Observe != nil {
		w.Observe(row.Type, "failed", 0)
	}
	w.Log.WarnContext(ctx, "webhook event failed", "event_id", row.StripeEventID, "type", row.Type,
		"attempt", attempts, "err", cause)
	upd := w.DB.WebhookEvent.UpdateOneID(row.ID).
		Where(webhookevent.StatusIn(webhookevent.StatusReceived, webhookevent.StatusFailed)).
		SetStatus(webhookevent.StatusFailed).
		SetLastError(clip(cause.Error(), 2000)).
		ClearLockedUntil()
	if permanent || attempts >= w.MaxAttempts {
		upd.ClearNextAttemptAt()
	} else {
		upd.SetNextAttemptAt(time.Now().Add(backoff(attempts)))
	}
	if err := upd.Exec(auth.NewContext(ctx, auth.ServiceViewer(auth.WebhooksService))); err != nil && !ent.IsNotFound(err) {
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
