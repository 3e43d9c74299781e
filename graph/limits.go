package graph

import (
	"context"
	"strings"

	"billingapi/auth"
	"billingapi/billing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Limits on one operation, checked before anything executes.
const (
	// MaxDepth is the deepest selection an operation may have, not counting
	// introspection (__schema, __type), which has its own fixed shape.
	MaxDepth = 10
	// MaxComplexity bounds the work of one operation; a connection field
	// costs its page size times its selection.
	MaxComplexity = 5000
	// MaxFields bounds the fields one operation selects, aliases and
	// fragment spreads counted out (introspection aside): a thousand
	// aliases of one cheap field is an attack, not a query.
	MaxFields = 300
)

// DepthLimit refuses operations nested deeper than Max or selecting more
// than MaxFields fields.
type DepthLimit struct{ Max, MaxFields int }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = DepthLimit{}

// ExtensionName names the extension in gqlgen's registry.
func (DepthLimit) ExtensionName() string { return "DepthLimit" }

// Validate accepts any schema.
func (DepthLimit) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationContext returns a GRAPHQL_VALIDATION_FAILED error when the
// operation is deeper than the limit or selects too many fields.
func (d DepthLimit) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	w := newSelectionWalk(oc.Doc.Fragments)
	if depth := w.depth(oc.Operation.SelectionSet); depth > d.Max {
		err := gqlerror.Errorf("operation is %d levels deep, which exceeds the limit of %d", depth, d.Max)
		err.Extensions = map[string]any{"code": "GRAPHQL_VALIDATION_FAILED"}
		return err
	}
	if d.MaxFields > 0 {
		if n := w.count(oc.Operation.SelectionSet, d.MaxFields+1); n > d.MaxFields {
			err := gqlerror.Errorf("operation selects more than %d fields", d.MaxFields)
			err.Extensions = map[string]any{"code": "GRAPHQL_VALIDATION_FAILED"}
			return err
		}
	}
	return nil
}

// selectionWalk measures an operation's selections as if its fragments were
// written out, skipping introspection (__schema, __type), which has its
// own fixed shape. Each fragment is measured once, however often it is
// spread: a few hundred bytes of fragments that spread each other ten
// times over expand to billions of fields, and walking them path by path
// is a denial of service before any limit could refuse the operation.
// Validation has refused fragment cycles already; onPath guards anyway.
type selectionWalk struct {
	frags  ast.FragmentDefinitionList
	depths map[string]int
	counts map[string]int
	onPath map[string]bool
}

func newSelectionWalk(frags ast.FragmentDefinitionList) *selectionWalk {
	return &selectionWalk{frags: frags, depths: map[string]int{}, counts: map[string]int{}, onPath: map[string]bool{}}
}

// depth returns the depth of the deepest field in set, 0 for none.
func (w *selectionWalk) depth(set ast.SelectionSet) int {
	deepest := 0
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if !introspection(s) {
				deepest = max(deepest, 1+w.depth(s.SelectionSet))
			}
		case *ast.InlineFragment:
			deepest = max(deepest, w.depth(s.SelectionSet))
		case *ast.FragmentSpread:
			deepest = max(deepest, w.fragment(s.Name, w.depths, func(f *ast.FragmentDefinition) int { return w.depth(f.SelectionSet) }))
		}
	}
	return deepest
}

// count returns the number of fields in set, or any number above limit
// once it passes it.
func (w *selectionWalk) count(set ast.SelectionSet, limit int) int {
	n := 0
	for _, sel := range set {
		if n > limit {
			break
		}
		switch s := sel.(type) {
		case *ast.Field:
			if !introspection(s) {
				n += 1 + w.count(s.SelectionSet, limit-n)
			}
		case *ast.InlineFragment:
			n += w.count(s.SelectionSet, limit-n)
		case *ast.FragmentSpread:
			// A fragment's count is kept whole up to the operation's limit,
			// so that it is right wherever the fragment is spread.
			n += w.fragment(s.Name, w.counts, func(f *ast.FragmentDefinition) int { return w.count(f.SelectionSet, limit) })
		}
	}
	return n
}

// fragment returns the measure of a named fragment from memo, measuring
// it the first time; 0 for an unknown fragment or one spread inside itself.
func (w *selectionWalk) fragment(name string, memo map[string]int, measure func(*ast.FragmentDefinition) int) int {
	if v, ok := memo[name]; ok {
		return v
	}
	f := w.frags.ForName(name)
	if f == nil || w.onPath[name] {
		return 0
	}
	w.onPath[name] = true
	v := measure(f)
	delete(w.onPath, name)
	memo[name] = v
	return v
}

// introspection reports whether a field is introspection other than
// __typename.
func introspection(f *ast.Field) bool {
	return strings.HasPrefix(f.Name, "__") && f.Name != "__typename"
}

// IntrospectionPolicy enables introspection for everyone when Open is
// true (development) and otherwise only for platform admins.
type IntrospectionPolicy struct{ Open bool }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = IntrospectionPolicy{}

// ExtensionName names the extension in gqlgen's registry.
func (IntrospectionPolicy) ExtensionName() string { return "IntrospectionPolicy" }

// Validate accepts any schema.
func (IntrospectionPolicy) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationContext turns introspection on or off for this operation.
// An operation that asks for introspection where it is closed is refused
// before it runs, UNAUTHENTICATED without a viewer and FORBIDDEN for one
// who is not a platform admin (gqlgen's own refusal is an untyped error,
// which would answer INTERNAL).
func (p IntrospectionPolicy) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	v, _ := auth.FromContext(ctx)
	oc.DisableIntrospection = !(p.Open || v.Admin)
	if !oc.DisableIntrospection || oc.Operation == nil || !asksIntrospection(oc.Operation.SelectionSet, oc.Doc, map[string]bool{}) {
		return nil
	}
	code, msg := billing.CodeForbidden, "Introspection is open to platform admins only."
	if v.UserID == "" {
		code, msg = billing.CodeUnauthenticated, "Sign in as a platform admin to introspect the schema."
	}
	return &gqlerror.Error{Message: msg, Extensions: map[string]any{"code": string(code)}}
}

// asksIntrospection reports whether a root selection set selects __schema
// or __type, directly or through fragments.
func asksIntrospection(set ast.SelectionSet, doc *ast.QueryDocument, seen map[string]bool) bool {
	for _, sel := range set {
		switch sel := sel.(type) {
		case *ast.Field:
			if introspection(sel) {
				return true
			}
		case *ast.InlineFragment:
			if asksIntrospection(sel.SelectionSet, doc, seen) {
				return true
			}
		case *ast.FragmentSpread:
			if seen[sel.Name] || doc == nil {
				continue
			}
			seen[sel.Name] = true
			if f := doc.Fragments.ForName(sel.Name); f != nil && asksIntrospection(f.SelectionSet, doc, seen) {
				return true
			}
		}
	}
	return false
}

// Costs of fields that ask Stripe, which are queries and so not
// rate-limited: an operation may hold 4 of those that call Stripe every
// time, or about 20 price lookups (a cache miss calls Stripe), so that one
// request cannot fan out into hundreds of calls on the account's shared
// Stripe rate limit.
const (
	StripeReadCost  = 1000
	PriceLookupCost = 250
)

// stripeCost is the complexity of a field that calls Stripe.
func stripeCost(cost int) func(child int) int {
	return func(child int) int { return cost + child }
}

// pageCost is the complexity of a connection: its page size (default the
// maximum) times the cost of one node.
func pageCost(child int, first, last *int) int {
	n := MaxPageSize
	if first != nil {
		n = *first
	} else if last != nil {
		n = *last
	}
	if n < 1 {
		n = 1
	}
	return 1 + child*n
}
