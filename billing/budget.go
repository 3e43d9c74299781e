package billing

import (
	"context"
	"sync"

	"github.com/google/uuid"
)

// Budget is the per-minute Stripe budget of workspaces as one viewer's
// call spends it. The door that serves the call (graph's @rateLimited
// directive) puts one in the call's context with WithBudget; the methods
// that reach Stripe for a workspace's billing spend it only once the call
// has passed its role and input checks, right before the call's first
// Stripe request, so that a call refused for the caller's role or for its
// input spends nothing of the workspace's budget, and no member can block
// its owner's billing with calls they may not make.
//
// Some input only Stripe can judge (a promotion code, whose card a payment
// method is): the call spends to ask, and the door gives the spend back
// when the call ends as BAD_USER_INPUT or NOT_FOUND. Plan lookups by
// lookup key go through the shared price cache and are the catalog's, not
// a workspace's: they spend nothing (as for webhooks and the seat sweep).
type Budget interface {
	// SpendWorkspace spends one call of the workspace's budget. It
	// refuses with RATE_LIMITED (RetryAfter set) when the budget is spent,
	// and also when it cannot be counted: these calls move money.
	SpendWorkspace(ctx context.Context, workspace uuid.UUID) error
}

// budgetKey is the context key of a call's budget.
type budgetKey struct{}

// callBudget is one call's Budget and the workspaces it has spent.
type callBudget struct {
	b     Budget
	mu    sync.Mutex
	spent map[uuid.UUID]bool
}

// WithBudget returns ctx carrying b as the budget of the call ctx is for.
func WithBudget(ctx context.Context, b Budget) context.Context {
	return context.WithValue(ctx, budgetKey{}, &callBudget{b: b, spent: map[uuid.UUID]bool{}})
}

// spendWorkspaceBudget spends one call of the workspace's budget for the
// call ctx is for, once however many Stripe requests the call makes: the
// methods call it right before each Stripe request that may be their
// first, after their checks, so that the first one spends and a path that
// reaches no Stripe request (a repeat answered from our own record)
// spends nothing. Work that is no viewer's rate-limited call (webhooks,
// the seat sweep, queries, the domain's own tests) carries no budget and
// spends nothing.
func spendWorkspaceBudget(ctx context.Context, workspace uuid.UUID) error {
	cb, ok := ctx.Value(budgetKey{}).(*callBudget)
	if !ok {
		return nil
	}
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if cb.spent[workspace] {
		return nil
	}
	if err := cb.b.SpendWorkspace(ctx, workspace); err != nil {
		return err
	}
	cb.spent[workspace] = true
	return nil
}
