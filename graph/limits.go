package graph

import (
	"context"
	"strings"

	"billingapi/auth"

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
// operation is deeper than the limit.
func (d DepthLimit) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	if depth := selectionDepth(oc.Operation.SelectionSet, oc.Doc.Fragments, 0, map[string]bool{}); depth > d.Max {
		err := gqlerror.Errorf("operation is %d levels deep, which exceeds the limit of %d", depth, d.Max)
		err.Extensions = map[string]any{"code": "GRAPHQL_VALIDATION_FAILED"}
		return err
	}
	if d.MaxFields > 0 {
		if n := countFields(oc.Operation.SelectionSet, oc.Doc.Fragments, map[string]bool{}, d.MaxFields+1); n > d.MaxFields {
			err := gqlerror.Errorf("operation selects more than %d fields", d.MaxFields)
			err.Extensions = map[string]any{"code": "GRAPHQL_VALIDATION_FAILED"}
			return err
		}
	}
	return nil
}

// selectionDepth returns the depth of the deepest field in set; fragments
// are followed once per path so that a cycle cannot loop.
func selectionDepth(set ast.SelectionSet, frags ast.FragmentDefinitionList, depth int, seen map[string]bool) int {
	deepest := depth
	for _, sel := range set {
		var d int
		switch s := sel.(type) {
		case *ast.Field:
			if strings.HasPrefix(s.Name, "__") && s.Name != "__typename" {
				continue
			}
			d = selectionDepth(s.SelectionSet, frags, depth+1, seen)
		case *ast.InlineFragment:
			d = selectionDepth(s.SelectionSet, frags, depth, seen)
		case *ast.FragmentSpread:
			if seen[s.Name] {
				continue
			}
			f := frags.ForName(s.Name)
			if f == nil {
				continue
			}
			seen[s.Name] = true
			d = selectionDepth(f.SelectionSet, frags, depth, seen)
			delete(seen, s.Name)
		}
		deepest = max(deepest, d)
	}
	return deepest
}

// countFields counts the fields of set, following fragments once per path
// and skipping introspection; it stops counting past limit.
func countFields(set ast.SelectionSet, frags ast.FragmentDefinitionList, seen map[string]bool, limit int) int {
	n := 0
	for _, sel := range set {
		if n > limit {
			return n
		}
		switch s := sel.(type) {
		case *ast.Field:
			if strings.HasPrefix(s.Name, "__") && s.Name != "__typename" {
				continue
			}
			n += 1 + countFields(s.SelectionSet, frags, seen, limit-n)
		case *ast.InlineFragment:
			n += countFields(s.SelectionSet, frags, seen, limit-n)
		case *ast.FragmentSpread:
			f := frags.ForName(s.Name)
			if f == nil || seen[s.Name] {
				continue
			}
			seen[s.Name] = true
			n += countFields(f.SelectionSet, frags, seen, limit-n)
			delete(seen, s.Name)
		}
	}
	return n
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
func (p IntrospectionPolicy) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	v, _ := auth.FromContext(ctx)
	oc.DisableIntrospection = !(p.Open || v.Admin)
	return nil
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
