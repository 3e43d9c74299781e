package webhooks

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/ent"
	"billingapi/ent/webhookevent"
	"billingapi/internal/tick"

	"github.com/stripe/stripe-go/v76"
)

// ReconcileOverlap is how far before the newest stored event the
// reconciler starts listing: events arrive out of order, and an event
// created a little earlier may still be missing.
const ReconcileOverlap = 10 * time.Minute

// Reconciler heals webhook outages: it lists Stripe's events since its
// last run (at first, since the newest one stored when it began) and
// ingests any we never received, through the same durable path as the
// endpoint (Store, then the worker).
type Reconciler struct {
	DB      *ent.Client
	Billing *billing.Service
	Log     *slog.Logger
	// Interval between runs; default 10 minutes.
	Interval time.Duration
	// Wake is called when events were ingested (the worker's Wake).
	Wake func()

	// from is where the next run lists from; zero until Begin or the
	// first run sets it.
	from time.Time
}

// Begin records where the first run will list from: the newest event
// stored now, less the overlap. Run calls it as it starts, so that after
// an outage and a restart the events that arrive first do not hide the
// outage behind them: the first run still lists from before it.
func (r *Reconciler) Begin(ctx context.Context) error {
	svc := auth.NewContext(ctx, auth.ServiceViewer(auth.WebhooksService))
	r.from = time.Now().Add(-billing.StripeEventRetention)
	// The newest created is read among the newest events stored, on the
	// create_time index: an index on created would cost every webhook's
	// insert, and ordering by it unindexed read the whole history at each
	// start. Events are stored about when Stripe creates them; an old one
	// delivered late among them only moves the start earlier.
	var newest []eventCreated
	err := r.DB.WebhookEvent.Query().Order(ent.Desc(webhookevent.FieldCreateTime)).Limit(reconcileSample).
		Select(webhookevent.FieldCreated).Scan(svc, &newest)
	if err != nil {
		r.from = time.Time{}
		return err
	}
	if len(newest) > 0 {
		latest := slices.MaxFunc(newest, func(a, b eventCreated) int { return a.Created.Compare(b.Created) })
		r.from = latest.Created.Add(-ReconcileOverlap)
	}
	return nil
}

// eventCreated is the column Begin reads of each event.
type eventCreated struct {
	Created time.Time `json:"created"`
}

// reconcileSample is how many of the newest stored events Begin reads.
const reconcileSample = 100

// Run reconciles every Interval, the first time one Interval after it
// starts (webhooks deliver almost everything; the reconciler heals what
// an outage lost), until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	if r.Interval == 0 {
		r.Interval = 10 * time.Minute
	}
	if err := r.Begin(ctx); err != nil && ctx.Err() == nil {
		r.Log.WarnContext(ctx, "webhook reconciler: could not read where to start; the first run will", "err", err)
	}
	tick.Every(ctx, r.Interval, func() {
		if _, err := r.ReconcileOnce(ctx); err != nil && ctx.Err() == nil {
			r.Log.WarnContext(ctx, "webhook reconciler: run failed; will retry", "err", err)
		}
	})
}

// ReconcileOnce ingests the events Stripe has that we do not, and returns
// how many it stored. It lists from where the last successful run began
// (less the overlap), so that runs cover the time between them without a
// gap; before any run, from where Begin was, or is now, called.
func (r *Reconciler) ReconcileOnce(ctx context.Context) (int, error) {
	svc := auth.NewContext(ctx, auth.ServiceViewer(auth.WebhooksService))
	began := time.Now()
	if r.from.IsZero() {
		if err := r.Begin(ctx); err != nil {
			return 0, err
		}
	}
	stored := 0
	err := r.Billing.EachEventSince(ctx, r.from, func(ev *stripe.Event, raw []byte) error {
		if err := checkStorable(ev, eventObjectID(ev)); err != nil {
			// The endpoint refuses it too; failing on it would stop the
			// events after it and hold every later run at this window.
			r.Log.WarnContext(ctx, "webhook reconciler: passing over an event that can never be stored",
				"event_id", eventIDForLog(ev.ID), "reason", err.Error())
			return nil
		}
		known, err := r.DB.WebhookEvent.Query().Where(webhookevent.StripeEventID(ev.ID)).Exist(svc)
		if err != nil || known {
			return err
		}
		if _, err := Store(ctx, r.DB, ev, raw); err != nil {
			if neverStorable(err) {
				r.Log.WarnContext(ctx, "webhook reconciler: passing over an event the database refuses for good",
					"event_id", eventIDForLog(ev.ID), "err", err)
				return nil
			}
			return err
		}
		stored++
		return nil
	})
	if stored > 0 {
		r.Log.InfoContext(ctx, "webhook reconciler: ingested events we never received", "count", stored)
		if r.Wake != nil {
			r.Wake()
		}
	}
	if err == nil {
		r.from = began.Add(-ReconcileOverlap) // a failed run is listed again
	}
	return stored, err
}
