package billing

import (
	"context"
	"encoding/json"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// StripeEventRetention is how long Stripe keeps events to list.
const StripeEventRetention = 30 * 24 * time.Hour

// EachEventSince calls fn with every Stripe event created at or after
// since (clamped to Stripe's 30-day retention), oldest first, with its raw
// JSON, so that events a webhook outage kept from us can be ingested
// through the same durable path. It stops at fn's first error.
func (s *Service) EachEventSince(ctx context.Context, since time.Time, fn func(ev *stripe.Event, raw []byte) error) error {
	if s.stripe == nil {
		return errStripeNotConfigured
	}
	if floor := time.Now().Add(-StripeEventRetention); since.Before(floor) {
		since = floor
	}
	params := &stripe.EventListParams{CreatedRange: &stripe.RangeQueryParams{GreaterThanOrEqual: since.Unix()}}
	params.Context = ctx
	params.Limit = stripe.Int64(100)
	// Stripe lists newest first; collect, then hand them over oldest first
	// so that ordering rules see them in the order they happened.
	var events []*stripe.Event
	iter := s.stripe.Events.List(params)
	for iter.Next() {
		events = append(events, iter.Event())
	}
	if err := iter.Err(); err != nil {
		return s.fromStripe(ctx, "event.list", err)
	}
	for i := len(events) - 1; i >= 0; i-- {
		raw, err := json.Marshal(events[i])
		if err != nil {
			return err
		}
		if err := fn(events[i], raw); err != nil {
			return err
		}
	}
	return nil
}
