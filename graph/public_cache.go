package graph

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sync"

	"billingapi/cache"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// publicFields are the root fields whose answer is the same for every
// caller, signed in or not: the plan catalog and the Stripe configuration.
var publicFields = []string{"plans", "price", "stripeConfig"}

// PublicResponseCache answers a repeated query that reads only public
// fields (a page loading the plan catalog) with the response the first
// one got, without executing it again. Responses live in the near cache's
// catalog group, so every price or product change drops them on every
// replica, like the decoded plans they were built from; they also expire
// with it. Only complete answers are kept: none with errors, and none
// built from plans that Redis did not hold (cache.SkipFill).
type PublicResponseCache struct {
	Near *cache.Near
	// Observe, when set, is told whether each cacheable query was a hit.
	Observe func(hit bool)
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = PublicResponseCache{}

// ExtensionName implements graphql.HandlerExtension.
func (PublicResponseCache) ExtensionName() string { return "PublicResponseCache" }

// Validate implements graphql.HandlerExtension.
func (PublicResponseCache) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptOperation implements graphql.OperationInterceptor. It works on
// the operation, not on each response: a transport that asks for responses
// until there are none (a websocket) gets the cached one once.
func (c PublicResponseCache) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if c.Near == nil || !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	oc := graphql.GetOperationContext(ctx)
	if !publicQuery(oc.Operation) {
		return next(ctx)
	}
	key, ok := responseKey(oc)
	if !ok {
		return next(ctx)
	}
	v, hit, ticket := c.Near.Get(cache.PricesGroup, key)
	if hit {
		c.observe(true)
		return graphql.OneShot(&graphql.Response{Data: v.(json.RawMessage)})
	}
	c.observe(false)
	ctx, kept := cache.WithFillHint(ctx)
	handler := next(ctx)
	var first sync.Once
	return func(ctx context.Context) *graphql.Response {
		res := handler(ctx)
		first.Do(func() {
			if res != nil && len(res.Errors) == 0 && len(res.Data) > 0 && len(res.Extensions) == 0 && kept() {
				c.Near.Fill(cache.PricesGroup, key, slices.Clone(res.Data), ticket)
			}
		})
		return res
	}
}

func (c PublicResponseCache) observe(hit bool) {
	if c.Observe != nil {
		c.Observe(hit)
	}
}

// publicQuery reports whether op is a query whose root selections are all
// plain public fields (no fragments at the root, so that what is read is
// plain to see).
func publicQuery(op *ast.OperationDefinition) bool {
	if op == nil || op.Operation != ast.Query || len(op.SelectionSet) == 0 {
		return false
	}
	for _, sel := range op.SelectionSet {
		f, ok := sel.(*ast.Field)
		if !ok || !slices.Contains(publicFields, f.Name) {
			return false
		}
	}
	return true
}

// responseKey identifies a response by the query's text, the operation
// chosen and the variables.
func responseKey(oc *graphql.OperationContext) (string, bool) {
	vars, err := json.Marshal(oc.Variables) // map keys come out sorted
	if err != nil {
		return "", false
	}
	h := sha256.New()
	for _, part := range []string{oc.RawQuery, oc.OperationName, string(vars)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return "response:" + hex.EncodeToString(h.Sum(nil)), true
}
