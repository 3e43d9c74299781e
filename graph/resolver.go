// Package graph is the GraphQL door into billing: resolvers parse input,
// make one billing call and map the result. Schema lives in graph/schema,
// generated execution code in graph/generated.
//
// Reads follow the same rule as writes: graph holds no ent client and
// builds no ent query. A connection resolver checks its page arguments
// (pageArgs), asks billing for the list's query (billing/reads.go:
// r.Service.WorkspacePayments(id, ...), which also makes any role check)
// and pages it with page; a field resolver asks billing for what it shows
// (r.Service.RefundsOf(ctx, payment)).
package graph

//go:generate go run github.com/99designs/gqlgen generate --config ../gqlgen.yml

import (
	"log/slog"

	"billingapi/billing"
	"billingapi/eventbus"
)

// Resolver holds what every resolver needs; it is built once in server/.
type Resolver struct {
	// Service is the billing domain (named so that it does not clash with
	// the Workspace.billing resolver).
	Service *billing.Service
	// Bus carries applied webhook events to billingEvents subscribers.
	Bus *eventbus.Bus
	Log *slog.Logger
}
