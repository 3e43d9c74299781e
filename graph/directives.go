package graph

import (
	"context"

	"billingapi/auth"
	"billingapi/billing"

	"github.com/99designs/gqlgen/graphql"
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
