package graph

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/ratelimit"

	"github.com/99designs/gqlgen/graphql"
	"github.com/google/uuid"
)

// Authenticated is the @authenticated directive: UNAUTHENTICATED without a
// signed-in user.
func Authenticated(ctx context.Context, _ any, next graphql.Resolver) (any, error) {
	if v, ok := auth.FromContext(ctx); !ok || v.UserID == "" {
		return nil, billing.Errorf(billing.CodeUnauthenticated, "Sign in to continue.")
	}
	return next(ctx)
}

// PlatformAdmin is the @platformAdmin directive: UNAUTHENTICATED without a
// signed-in user, FORBIDDEN for anyone but a platform admin.
func PlatformAdmin(ctx context.Context, _ any, next graphql.Resolver) (any, error) {
	v, ok := auth.FromContext(ctx)
	if !ok || v.UserID == "" {
		return nil, billing.Errorf(billing.CodeUnauthenticated, "Sign in to continue.")
	}
	if !v.Admin {
		return nil, billing.Errorf(billing.CodeForbidden, "Only a platform admin can do this.")
	}
	return next(ctx)
}

// UserBudget is the rate limiter's key of a caller's per-minute budget of
// Stripe mutations.
func UserBudget(userID string) string { return "user:" + userID }

// WorkspaceBudget is the rate limiter's key of a workspace's per-minute
// budget of Stripe mutations: keyed by the parsed id, so that other
// spellings of it share one budget.
func WorkspaceBudget(ws uuid.UUID) string { return "workspace:" + ws.String() }

// RateLimited returns the @rateLimited directive. Each call spends one of
// the caller's per-minute budget before it runs, allowed or refused, so
// that no caller can hammer these mutations whatever they answer. The
// workspace's budget is left to the call: its context carries a
// billing.Budget (callBudget) that the billing methods spend once the
// call has passed its role and input checks, right before its first
// Stripe request (billing/budget.go), so that calls refused for the
// caller's role or for bad input (any member's, or an outsider's) spend
// nothing of it and cannot block the workspace's billing. A call that
// still ends as BAD_USER_INPUT or NOT_FOUND (input that only Stripe could
// judge) gets the workspace's spend back. Every budget is shared by every
// replica through Redis. A spent budget answers RATE_LIMITED with
// extensions.retryAfter in seconds. When Redis cannot count, the call is
// refused (fail closed): these mutations move money, and an uncounted
// burst is what the limit exists to stop; queries are not rate-limited
// and stay up.
func RateLimited(limiter *ratelimit.Limiter, log *slog.Logger) func(ctx context.Context, obj any, next graphql.Resolver) (any, error) {
	return func(ctx context.Context, obj any, next graphql.Resolver) (any, error) {
		v, ok := auth.FromContext(ctx)
		if !ok || v.UserID == "" {
			return nil, billing.Errorf(billing.CodeUnauthenticated, "Sign in to continue.")
		}
		if limiter == nil {
			return next(ctx)
		}
		allowed, retry, err := limiter.Allow(ctx, UserBudget(v.UserID))
		if err != nil {
			log.WarnContext(ctx, "rate limiter unavailable; refusing a Stripe mutation", "err", err)
			return nil, limiterUnavailable()
		}
		if !allowed {
			return nil, rateLimited(retry)
		}
		b := &callBudget{limiter: limiter, log: log}
		res, err := next(billing.WithBudget(ctx, b))
		switch billing.ErrorCode(err) {
		case billing.CodeBadUserInput, billing.CodeNotFound:
			b.giveBack(ctx)
		}
		return res, err
	}
}

// callBudget is the billing.Budget of one @rateLimited call: it spends
// workspaces' budgets in Redis and remembers what it spent, to give it
// back when the call ends as bad input.
type callBudget struct {
	limiter *ratelimit.Limiter
	log     *slog.Logger
	mu      sync.Mutex
	spent   []ratelimit.Counted
}

// SpendWorkspace spends one of the workspace's calls: RATE_LIMITED when
// the budget is spent or cannot be counted.
func (b *callBudget) SpendWorkspace(ctx context.Context, ws uuid.UUID) error {
	counted, allowed, retry, err := b.limiter.Take(ctx, WorkspaceBudget(ws))
	if err != nil {
		b.log.WarnContext(ctx, "rate limiter unavailable; refusing a Stripe mutation", "err", err)
		return limiterUnavailable()
	}
	if !allowed {
		return rateLimited(retry)
	}
	b.mu.Lock()
	b.spent = append(b.spent, counted)
	b.mu.Unlock()
	return nil
}

// giveBack returns what the call spent of workspaces' budgets. A failure
// leaves the spend counted until its window ends: the safe side.
func (b *callBudget) giveBack(ctx context.Context) {
	b.mu.Lock()
	spent := b.spent
	b.spent = nil
	b.mu.Unlock()
	for _, c := range spent {
		if err := b.limiter.GiveBack(context.WithoutCancel(ctx), c); err != nil {
			b.log.WarnContext(ctx, "could not give back a workspace's rate limit spend", "err", err)
		}
	}
}

// rateLimited is the answer of a spent budget.
func rateLimited(retry time.Duration) error {
	return &billing.Error{Code: billing.CodeRateLimited, Message: "Too many requests. Please wait a moment and try again.", RetryAfter: retry}
}

// limiterUnavailable is the answer when Redis cannot count a budget.
func limiterUnavailable() error {
	return &billing.Error{Code: billing.CodeRateLimited, Message: "This action is briefly unavailable. Please try again in a moment.", RetryAfter: 5 * time.Second}
}
