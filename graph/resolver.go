// Package graph is the GraphQL door into billing: resolvers parse input,
// make one billing call and map the result. Schema lives in graph/schema,
// generated execution code in graph/generated.
package graph

//go:generate go run github.com/99designs/gqlgen generate --config ../gqlgen.yml

import (
	"billingapi/billing"
)

// Resolver holds what every resolver needs; it is built once in server/.
type Resolver struct {
	Billing *billing.Service
}
