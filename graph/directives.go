package graph

import (
	"context"
	"log/slog"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/cache"

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

// rateLimitedWorkspace is implemented by mutation inputs that name the
// workspace whose budget they spend.
type rateLimitedWorkspace interface{ RateLimitWorkspace() string }

// RateLimited returns the @rateLimited directive: each call spends one of
// the viewer's and (when the input names one the viewer is a member of,
// as member says) the workspace's per-minute budget, shared by every
// replica through Redis. Only members spend a workspace's budget, or an
// outsider could spend it for them and block its billing; the workspace is
// keyed by its parsed id, so that other spellings of it share one budget.
// A spent budget answers RATE_LIMITED with extensions.retryAfter in
// seconds. When Redis cannot count, the directive fails closed: these
// mutations move money, and an uncounted burst is what the limit exists to
// stop; queries are not rate-limited and stay up.
func RateLimited(limiter *cache.RateLimiter, log *slog.Logger, member func(context.Context, uuid.UUID) bool) func(ctx context.Context, obj any, next graphql.Resolver) (any, error) {
	return func(ctx context.Context, obj any, next graphql.Resolver) (any, error) {
		v, ok := auth.FromContext(ctx)
		if !ok || v.UserID == "" {
			return nil, billing.Errorf(billing.CodeUnauthenticated, "Sign in to continue.")
		}
		if limiter == nil {
			return next(ctx)
		}
		keys := []string{"user:" + v.UserID}
		if ws, ok := rateLimitedWorkspaceOf(ctx); ok && member(ctx, ws) {
			keys = append(keys, "workspace:"+ws.String())
		}
		allowed, retry, err := limiter.Allow(ctx, keys...)
		if err != nil {
			log.WarnContext(ctx, "rate limiter unavailable; refusing a Stripe mutation", "err", err)
			return nil, &billing.Error{Code: billing.CodeRateLimited, Message: "This action is briefly unavailable. Please try again in a moment.", RetryAfter: 5 * time.Second}
		}
		if !allowed {
			return nil, &billing.Error{Code: billing.CodeRateLimited, Message: "Too many requests. Please wait a moment and try again.", RetryAfter: retry}
		}
		return next(ctx)
	}
}

// rateLimitedWorkspaceOf returns the workspace a rate-limited mutation's
// arguments name, if they name a well-formed one (a malformed id is the
// resolver's NOT_FOUND).
func rateLimitedWorkspaceOf(ctx context.Context) (uuid.UUID, bool) {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil {
		return uuid.Nil, false
	}
	raw := ""
	if in, ok := fc.Args["input"].(rateLimitedWorkspace); ok {
		raw = in.RateLimitWorkspace()
	} else if ws, ok := fc.Args["workspaceId"].(string); ok {
		raw = ws
	}
	id, err := uuid.Parse(raw)
	return id, err == nil
}

// memberOf reports whether the viewer may see a workspace (is a member, or
// a platform admin), through the near-cached read every workspace
// resolver makes anyway.
func memberOf(svc *billing.Service) func(context.Context, uuid.UUID) bool {
	return func(ctx context.Context, ws uuid.UUID) bool {
		_, err := svc.VisibleWorkspace(ctx, ws)
		return err == nil
	}
}
