package graph

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"

	"billingapi/billing"
	"billingapi/internal/pgtext"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// refuseUnstorableText is a field middleware that refuses a field whose
// arguments hold text PostgreSQL cannot store (the NUL character, bytes
// that are not UTF-8) with BAD_USER_INPUT naming the offending input
// field, before the field's directives and resolver run: such text would
// otherwise reach the database and come back as INTERNAL, and a refused
// call spends nothing of a @rateLimited budget.
//
// It reads the arguments as the client sent them, the field's literals
// and the operation's coerced variables, rather than the Go values the
// resolver gets: every argument of every field, root or nested, query,
// mutation or subscription (the websocket runs the same executor), and
// every input type added later, arrives in the same few shapes (strings,
// lists, objects), named as the schema names them, with no type to
// register. A custom scalar is checked as the string (or list or object)
// the client sent; what it decodes that into is the scalar's own concern
// (relay.Cursor decodes into a time and a UUID only).
//
// Invalid UTF-8 cannot come through JSON (encoding/json replaces it, in
// POST bodies, websocket messages and GET's variables), nor through a
// string literal's escapes (the lexer writes U+FFFD for a lone
// surrogate), but a literal written with raw bytes in a GET query string
// keeps them.
func refuseUnstorableText(ctx context.Context, next graphql.Resolver) (any, error) {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || fc.Field.Field == nil || len(fc.Field.Arguments) == 0 {
		return next(ctx)
	}
	var vars map[string]any
	if graphql.HasOperationContext(ctx) {
		vars = graphql.GetOperationContext(ctx).Variables
	}
	for _, arg := range fc.Field.Arguments {
		w := textWalk{vars: vars, path: []string{arg.Name}}
		if w.literal(arg.Value) {
			return nil, w.refusal()
		}
	}
	return next(ctx)
}

// textWalk finds the first string PostgreSQL cannot store in one argument,
// keeping the path of input field names that leads to it.
type textWalk struct {
	vars map[string]any
	path []string
	err  error // why the string found was refused
}

// literal reports whether v, a value written in the document (or a
// variable it names), holds unstorable text.
func (w *textWalk) literal(v *ast.Value) bool {
	if v == nil {
		return false
	}
	switch v.Kind {
	case ast.Variable:
		return w.value(w.vars[v.Raw])
	case ast.StringValue, ast.BlockValue:
		return w.text(v.Raw)
	case ast.ListValue:
		for _, c := range v.Children {
			if w.literal(c.Value) {
				return true
			}
		}
	case ast.ObjectValue:
		for _, c := range v.Children {
			w.path = append(w.path, c.Name)
			if w.literal(c.Value) {
				return true
			}
			w.path = w.path[:len(w.path)-1]
		}
	}
	// Enums are names, numbers and booleans are digits and letters.
	return false
}

// value reports whether v, a variable's coerced value (JSON's shapes, or
// the slices and maps gqlparser's coercion builds by reflection), holds
// unstorable text. A map is an input object, or a custom scalar's JSON:
// its keys are checked as text too, and name the path either way.
func (w *textWalk) value(v any) bool {
	switch v := v.(type) {
	case nil, bool, int, int64, float64:
		return false
	case string:
		return w.text(v)
	case []any:
		for _, e := range v {
			if w.value(e) {
				return true
			}
		}
		return false
	case map[string]any:
		// Sorted, so that of two bad fields the same one is named each time.
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if w.text(k) {
				return true
			}
			w.path = append(w.path, k)
			if w.value(v[k]) {
				return true
			}
			w.path = w.path[:len(w.path)-1]
		}
		return false
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String: // json.Number, or a named string type
		return w.text(rv.String())
	case reflect.Pointer:
		return !rv.IsNil() && w.value(rv.Elem().Interface())
	case reflect.Slice, reflect.Array:
		for i := range rv.Len() {
			if w.value(rv.Index(i).Interface()) {
				return true
			}
		}
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return false // JSON has no such maps
		}
		keys := rv.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			if w.text(k.String()) {
				return true
			}
			w.path = append(w.path, k.String())
			if w.value(rv.MapIndex(k).Interface()) {
				return true
			}
			w.path = w.path[:len(w.path)-1]
		}
	}
	return false
}

// text reports whether s cannot be stored, and keeps why.
func (w *textWalk) text(s string) bool {
	w.err = pgtext.Check(s)
	return w.err != nil
}

// refusal returns the BAD_USER_INPUT error for the string found. Its field
// is named as the rest of the API names input fields: the Relay-style
// `input` argument is left out ("name", "recurring.interval"), any other
// argument is named itself ("userId", "type"); list positions are not
// named ("features").
func (w *textWalk) refusal() error {
	path := w.path
	if len(path) > 1 && path[0] == "input" {
		path = path[1:]
	}
	field := strings.Join(path, ".")
	if errors.Is(w.err, pgtext.ErrNUL) {
		return billing.InvalidInput(field, field+" must not contain the NUL character (U+0000).")
	}
	return billing.InvalidInput(field, field+" must be valid UTF-8 text.")
}
