package billing

import (
	"context"
	"fmt"
	"sync"
	"time"

	"billingapi/ent"
	"billingapi/ent/membership"
	"billingapi/ent/predicate"
	"billingapi/ent/privacy"
	"billingapi/ent/subscription"
	"billingapi/internal/tick"

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
// anyway. The timers live in this process: what a restart loses, or a
// change whose attempts all failed, SweepSeats catches up with.
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
		_, err := s.syncSeats(ctx, workspaceID, fmt.Sprint("attempt ", attempt))
		switch {
		case err == nil:
		case attempt+1 >= seatSyncAttempts:
			s.log.Error("per-seat quantity not updated after every attempt; the next member change or seat sweep retries",
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
	_, err := s.syncSeats(ctx, workspaceID, "attempt 0")
	return err
}

// syncSeats is one try (named by try) at SyncSeats, and reports whether it
// sent Stripe a quantity. Each try has an idempotency key of its own:
// Stripe answers a key it saw fail with a 500 with the same 500 for a
// day, and setting a quantity twice changes nothing the second time.
func (s *Service) syncSeats(ctx context.Context, workspaceID uuid.UUID, try string) (bool, error) {
	row, err := s.currentSubscription(ctx, s.db, workspaceID)
	if err != nil || row == nil || subscriptionEnded(row.Status) || row.StripeItemID == "" {
		return false, err
	}
	if row.LookupKey == "" {
		return false, nil
	}
	plan, err := s.Price(ctx, row.LookupKey)
	if err != nil || !plan.Product.PerSeat {
		return false, err
	}
	members, err := s.db.Membership.Query().Where(membership.WorkspaceID(workspaceID)).Count(ctx)
	if err != nil || int64(members) == row.Quantity || members == 0 {
		return false, err
	}
	ws, err := s.db.Workspace.Get(ctx, workspaceID)
	if err != nil {
		return false, err
	}
	if s.stripe == nil {
		return false, errStripeNotConfigured
	}
	params := &stripe.SubscriptionParams{
		Items:             []*stripe.SubscriptionItemsParams{{ID: stripe.String(row.StripeItemID), Quantity: stripe.Int64(int64(members))}},
		ProrationBehavior: stripe.String("create_prorations"),
	}
	params.Context = ctx
	params.SetIdempotencyKey(changeKey("sub-seats", ws, row, fmt.Sprint(members), try))
	sub, err := retryRateLimited(ctx, func() (*stripe.Subscription, error) {
		return s.stripe.Subscriptions.Update(*row.StripeSubscriptionID, params)
	})
	if err != nil {
		return true, s.fromStripe(ctx, "subscription.update_seats", err)
	}
	_, err = s.applySubscription(ctx, workspaceID, row.ID, sub, nil)
	return true, err
}

// SeatSweepInterval is how often RunSeatSweep compares per-seat
// quantities with member counts.
const SeatSweepInterval = 15 * time.Minute

// seatSweepPage is how many subscriptions one read of a sweep takes.
const seatSweepPage = 500

// RunSeatSweep runs SweepSeats every interval, the first time one
// interval after it starts, until ctx ends.
func (s *Service) RunSeatSweep(ctx context.Context, interval time.Duration) {
	tick.Every(ctx, interval, func() {
		if n, err := s.SweepSeats(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "seat sweep: stopped early", "updated", n, "err", err)
		} else if n > 0 {
			s.log.InfoContext(ctx, "seat sweep: per-seat quantities set", "workspaces", n)
		}
	})
}

// SweepSeats sets the quantity of every per-seat subscription whose
// workspace's member count differs from it: a member change whose
// debounced update was lost with its process (a restart, a crash), or
// whose attempts all failed, is billed after all. Workspaces with an
// update pending in this process are left to it. It returns how many
// subscriptions it sent Stripe a quantity for; one workspace's failure
// is logged and the sweep goes on (the next sweep retries it).
//
// Each sweep's tries have idempotency keys of their own: a key Stripe saw
// fail with a 500 would fail the next sweep too. Replicas sweeping at
// once may both send a quantity; the second changes nothing.
func (s *Service) SweepSeats(ctx context.Context) (int, error) {
	// Reads across workspaces that learn ids, keys and counts only; each
	// update then runs as its workspace's system viewer.
	all := privacy.DecisionContext(ctx, privacy.Allow)
	// Subscriptions whose quantity syncSeats may set: not ended, and made
	// at Stripe with an item.
	settable := []predicate.Subscription{subscription.StatusNotIn(endedStatuses...),
		subscription.StripeSubscriptionIDNotNil(), subscription.StripeItemIDNEQ("")}
	keys, err := s.db.Subscription.Query().Where(settable...).Where(subscription.LookupKeyNEQ("")).
		Unique(true).Select(subscription.FieldLookupKey).Strings(all)
	if err != nil {
		return 0, err
	}
	var perSeat []string
	for _, key := range keys {
		plan, err := s.Price(ctx, key)
		if err != nil {
			s.log.WarnContext(ctx, "seat sweep: plan not found; its subscriptions are passed over", "lookup_key", key, "err", err)
			continue
		}
		if plan.Product.PerSeat {
			perSeat = append(perSeat, key)
		}
	}
	if len(perSeat) == 0 {
		return 0, nil
	}
	try := "sweep " + time.Now().UTC().Format(time.RFC3339Nano)
	updated := 0
	for after := uuid.Nil; ; {
		rows, err := s.db.Subscription.Query().Where(settable...).
			Where(subscription.IDGT(after), subscription.LookupKeyIn(perSeat...)).
			Order(ent.Asc(subscription.FieldID)).Limit(seatSweepPage).All(all)
		if err != nil || len(rows) == 0 {
			return updated, err
		}
		after = rows[len(rows)-1].ID
		counts, err := s.memberCounts(all, rows)
		if err != nil {
			return updated, err
		}
		for _, row := range rows {
			if n := counts[row.WorkspaceID]; n == 0 || n == row.Quantity || s.seatSyncPending(row.WorkspaceID) {
				continue
			}
			sent, err := s.syncSeats(systemCtx(ctx, row.WorkspaceID), row.WorkspaceID, try)
			if sent {
				updated++
			}
			if err != nil {
				if ctx.Err() != nil {
					return updated, ctx.Err()
				}
				s.log.WarnContext(ctx, "seat sweep: per-seat quantity not updated; the next sweep retries",
					"workspace_id", row.WorkspaceID, "err", err)
			}
		}
		if len(rows) < seatSweepPage {
			return updated, nil
		}
	}
}

// memberCounts counts the members of the subscriptions' workspaces.
func (s *Service) memberCounts(ctx context.Context, rows []*ent.Subscription) (map[uuid.UUID]int64, error) {
	ids := make([]uuid.UUID, len(rows))
	for i, row := range rows {
		ids[i] = row.WorkspaceID
	}
	var counts []struct {
		WorkspaceID uuid.UUID `json:"workspace_id"`
		Count       int64     `json:"count"`
	}
	err := s.db.Membership.Query().Where(membership.WorkspaceIDIn(ids...)).
		GroupBy(membership.FieldWorkspaceID).Aggregate(ent.Count()).Scan(ctx, &counts)
	if err != nil {
		return nil, err
	}
	m := make(map[uuid.UUID]int64, len(counts))
	for _, c := range counts {
		m[c.WorkspaceID] = c.Count
	}
	return m, nil
}

// seatSyncPending reports whether this process has a quantity update
// waiting for the workspace.
func (s *Service) seatSyncPending(workspaceID uuid.UUID) bool {
	s.seats.mu.Lock()
	defer s.seats.mu.Unlock()
	_, ok := s.seats.timers[workspaceID]
	return ok
}
