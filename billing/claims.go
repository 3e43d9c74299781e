package billing

import (
	"context"
	"errors"
	"time"

	"billingapi/ent"

	"github.com/google/uuid"
)

// Stripe is never trusted to deduplicate (stripe-mock ignores idempotency
// keys, and a real key expires after 24 hours), so each create request is
// first recorded in our own table: a row with a UNIQUE request_key in
// status `creating`, inserted before Stripe is called. The request that
// inserts it (the claim) calls Stripe and fills the row in; a concurrent
// or retried request with the same key finds the row and waits for it.

// errKeyTaken is what an insert that found the request key's row before
// inserting returns, so that checks made for a new request (what is still
// refundable) do not refuse its repeat.
var errKeyTaken = errors.New("the request key has its row")

// claimWait bounds how long a duplicate request waits for the claiming
// request to finish talking to Stripe.
const claimWait = 45 * time.Second

// staleClaim is how old a `creating` row must be before a retry may assume
// its request died (the server crashed mid-call) and take over. It is
// longer than any Stripe call with its retries.
const staleClaim = 2 * time.Minute

// claimPoll is how often a waiting duplicate looks at the row.
const claimPoll = 50 * time.Millisecond

// claimOps are the table-specific steps of claimRequest.
type claimOps[T any] struct {
	// insert creates the row in status `creating`; a constraint error or
	// errKeyTaken means another request holds the key.
	insert func(ctx context.Context) (T, error)
	// find loads the row with the request key.
	find func(ctx context.Context) (T, error)
	// sameRequest reports whether a row found with the request key was
	// claimed with this request's parameters (claimedWith).
	sameRequest func(row T) bool
	// pending reports whether the row is still `creating` and since when.
	pending func(row T) (bool, time.Time)
	// removeStale deletes the row if it is still `creating` and was last
	// touched at the given time; it reports whether it did.
	removeStale func(ctx context.Context, row T, touched time.Time) (bool, error)
}

// claimRequest returns the row for a request key and whether this request
// owns it (and must now call Stripe). A duplicate waits until the owner
// has finished and returns the finished row with mine false; a request
// whose key was claimed with other parameters is refused at once with
// errKeyReused, without waiting.
func claimRequest[T any](ctx context.Context, ops claimOps[T]) (row T, mine bool, err error) {
	deadline := time.Now().Add(claimWait)
	for {
		row, err = ops.insert(ctx)
		if err == nil {
			return row, true, nil
		}
		if !ent.IsConstraintError(err) && !errors.Is(err, errKeyTaken) {
			return row, false, err
		}
		row, err = ops.find(ctx)
		switch {
		case ent.IsNotFound(err):
			continue // the owner failed and removed its claim: try again
		case err != nil:
			return row, false, err
		}
		if !ops.sameRequest(row) {
			return row, false, errKeyReused
		}
		isPending, touched := ops.pending(row)
		if !isPending {
			return row, false, nil
		}
		if time.Since(touched) > staleClaim {
			if _, err := ops.removeStale(ctx, row, touched); err != nil {
				return row, false, err
			}
			continue
		}
		if time.Now().After(deadline) {
			return row, false, Errorf(CodeProviderUnavailable, "This request is still being processed. Please retry shortly with the same idempotency key.")
		}
		select {
		case <-ctx.Done():
			return row, false, ctx.Err()
		case <-time.After(claimPoll):
		}
	}
}

// createForClaim makes the Stripe create call of a claimed request, with
// the bounded 429 retry. When it fails, nothing was created, so the claim
// is released (a retry with the same key then asks Stripe again, which
// replays its own answer for that key) and Stripe's error becomes ours.
func createForClaim[R any](ctx context.Context, s *Service, op string, release func(context.Context) error, create func() (R, error)) (R, error) {
	out, err := retryRateLimited(ctx, create)
	if err != nil {
		s.releaseClaim(ctx, op, release)
		return out, s.fromStripe(ctx, op, err)
	}
	return out, nil
}

// createForWorkspace is createForClaim for a request of a workspace's
// billing: it first spends the workspace's budget (spendWorkspaceBudget),
// and releases the claim when the budget is spent, so that the same
// request may go ahead once the budget allows.
func createForWorkspace[R any](ctx context.Context, s *Service, ws uuid.UUID, op string, release func(context.Context) error, create func() (R, error)) (R, error) {
	if err := spendWorkspaceBudget(ctx, ws); err != nil {
		s.releaseClaim(ctx, op, release)
		var none R
		return none, err
	}
	return createForClaim(ctx, s, op, release, create)
}

// releaseClaim deletes the claim of a request that created nothing. The
// request may be cancelled (the client gave up); the release must happen
// anyway, or the key stays blocked until the claim is stale.
func (s *Service) releaseClaim(ctx context.Context, op string, release func(context.Context) error) {
	if err := release(context.WithoutCancel(ctx)); err != nil {
		s.log.ErrorContext(ctx, "could not release the claim of a request that created nothing", "op", op, "err", err)
	}
}
