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
	timers map[uuid.UUID]*seatTimer
}

// seatTimer is a workspace's pending quantity update, and which attempt
// it is for the latest member change.
type seatTimer struct {
	t       *time.Timer
	attempt int
}

// seatSyncAttempts is how many times a quantity update is tried for one
// member change before it waits for the next; the delay between tries
// grows fourfold from the debounce, up to an hour.
const seatSyncAttempts = 8

// scheduleSeatSync (re)starts the workspace's debounce timer; when it
// fires, syncSeats runs in the background as the workspace's system.
func (s *Service) scheduleSeatSync(workspaceID uuid.UUID) {
	s.scheduleSeats(workspaceID, s.seatDebounce(), 0)
}

func (s *Service) seatDebounce() time.Duration {
	if s.cfg.SeatDebounce == 0 {
		return DefaultSeatDebounce
	}
	return s.cfg.SeatDebounce
}

// scheduleSeats runs SyncSeats for the workspace after delay, and tries
// again later when it fails (Stripe down or refusing): a member added and
// never billed for is money lost. A member change (attempt 0) restarts the
// debounce, or replaces a pending retry with a fresh try and a full count
// of attempts; a retry leaves a pending update alone, as that one syncs
// anyway. The timers live in this process: a restart loses the pending
// ones until the workspace's next member change.
func (s *Service) scheduleSeats(workspaceID uuid.UUID, delay time.Duration, attempt int) {
	s.seats.mu.Lock()
	defer s.seats.mu.Unlock()
	if s.seats.timers == nil {
		s.seats.timers = map[uuid.UUID]*seatTimer{}
	}
	if pending, ok := s.seats.timers[workspaceID]; ok {
		if attempt > 0 {
			return
		}
		if pending.t.Stop() && pending.attempt == 0 {
			pending.t.Reset(delay)
			return
		}
	}
	st := &seatTimer{attempt: attempt}
	st.t = time.AfterFunc(delay, func() {
		s.seats.mu.Lock()
		if s.seats.timers[workspaceID] == st {
			delete(s.seats.timers, workspaceID)
		}
		s.seats.mu.Unlock()
		ctx, cancel := context.WithTimeout(systemCtx(context.Background(), workspaceID), time.Minute)
		defer cancel()
		err := s.syncSeats(ctx, workspaceID, attempt)
		switch {
		case err == nil:
		case attempt+1 >= seatSyncAttempts:
			s.log.Error("per-seat quantity not updated after every attempt; the next member change retries",
				"workspace_id", workspaceID, "attempts", attempt+1, "err", err)
		default:
			next := min(s.seatDebounce()<<(2*(attempt+1)), time.Hour)
			s.log.Warn("per-seat quantity not updated; retrying", "workspace_id", workspaceID, "in", next, "err", err)
			s.scheduleSeats(workspaceID, next, attempt+1)
		}
	})
	s.seats.timers[workspaceID] = st
}

// SyncSeats sets a per-seat subscription's quantity to the workspace's
// member count (with Stripe's proration), when they differ. The context's
// viewer must be the workspace's system viewer. It does nothing for other
// plans or without a live subscription.
func (s *Service) SyncSeats(ctx context.Context, workspaceID uuid.UUID) error {
	return s.syncSeats(ctx, workspaceID, 0)
}

// syncSeats is SyncSeats' attempt number attempt for one member change.
// Each attempt has an idempotency key of its own: Stripe answers a key it
// saw fail with a 500 with the same 500 for a day, and setting a quantity
// twice changes nothing the second time.
func (s *Service) syncSeats(ctx context.Context, workspaceID uuid.UUID, attempt int) error {
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
	params.SetIdempotencyKey(changeKey("sub-seats", ws, row, fmt.Sprint(members), fmt.Sprint("attempt ", attempt)))
	sub, err := retryRateLimited(ctx, func() (*stripe.Subscription, error) {
		return s.stripe.Subscriptions.Update(*row.StripeSubscriptionID, params)
	})
	if err != nil {
		return s.fromStripe(ctx, "subscription.update_seats", err)
	}
	_, err = s.applySubscription(ctx, workspaceID, row.ID, sub, nil)
	return err
}
