package billing

import (
	"context"
	"fmt"
	"sync"
	"time"

	"billingapi/ent/membership"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// DefaultSeatDebounce is how long after the last member change a per-seat
// subscription's quantity is sent to Stripe, so that a bulk invite makes
// one update.
const DefaultSeatDebounce = 2 * time.Second

// seatSync debounces quantity updates per workspace within this process.
type seatSync struct {
	mu     sync.Mutex
	timers map[uuid.UUID]*time.Timer
}

// scheduleSeatSync (re)starts the workspace's debounce timer; when it
// fires, syncSeats runs in the background as the workspace's system.
func (s *Service) scheduleSeatSync(workspaceID uuid.UUID) {
	delay := s.cfg.SeatDebounce
	if delay == 0 {
		delay = DefaultSeatDebounce
	}
	s.seats.mu.Lock()
	defer s.seats.mu.Unlock()
	if s.seats.timers == nil {
		s.seats.timers = map[uuid.UUID]*time.Timer{}
	}
	if t, ok := s.seats.timers[workspaceID]; ok {
		t.Reset(delay)
		return
	}
	s.seats.timers[workspaceID] = time.AfterFunc(delay, func() {
		s.seats.mu.Lock()
		delete(s.seats.timers, workspaceID)
		s.seats.mu.Unlock()
		ctx, cancel := context.WithTimeout(systemCtx(context.Background(), workspaceID), time.Minute)
		defer cancel()
		if err := s.SyncSeats(ctx, workspaceID); err != nil {
			s.log.Warn("per-seat quantity not updated; the next member change retries", "workspace_id", workspaceID, "err", err)
		}
	})
}

// SyncSeats sets a per-seat subscription's quantity to the workspace's
// member count (with Stripe's proration), when they differ. The context's
// viewer must be the workspace's system viewer. It does nothing for other
// plans or without a live subscription.
func (s *Service) SyncSeats(ctx context.Context, workspaceID uuid.UUID) error {
	row, err := s.currentSubscription(ctx, s.db, workspaceID)
	if err != nil || row == nil || row.Status == "canceled" || row.Status == "incomplete_expired" || row.StripeItemID == "" {
		return err
	}
	if row.LookupKey == "" {
		return nil
	}
	plan, err := s.Price(ctx, row.LookupKey)
	if err != nil || !plan.Product.PerSeat {
		return err
	}
	members, err := s.db.Membership.Query().Where(membership.WorkspaceID(workspaceID)).Count(ctx)
	if err != nil || int64(members) == row.Quantity || members == 0 {
		return err
	}
	ws, err := s.db.Workspace.Get(ctx, workspaceID)
	if err != nil {
		return err
	}
	if s.stripe == nil {
		return errStripeNotConfigured
	}
	params := &stripe.SubscriptionParams{
		Items:             []*stripe.SubscriptionItemsParams{{ID: stripe.String(row.StripeItemID), Quantity: stripe.Int64(int64(members))}},
		ProrationBehavior: stripe.String("create_prorations"),
	}
	params.Context = ctx
	params.SetIdempotencyKey(changeKey("sub-seats", ws, row, fmt.Sprint(members)))
	sub, err := retryRateLimited(ctx, func() (*stripe.Subscription, error) {
		return s.stripe.Subscriptions.Update(*row.StripeSubscriptionID, params)
	})
	if err != nil {
		return s.fromStripe(ctx, "subscription.update_seats", err)
	}
	_, err = s.applySubscription(ctx, workspaceID, row.ID, sub, nil)
	return err
}
