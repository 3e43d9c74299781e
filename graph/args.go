package graph

import (
	"context"
	"strings"

	"billingapi/billing"
	"billingapi/graph/relay"

	"entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
)

// MaxPageSize is the largest `first` or `last` a connection accepts.
const MaxPageSize = 100

// parseID parses a node id; a malformed id is NOT_FOUND like a missing
// one, so that ids cannot be probed by their shape.
func parseID(id, what string) (uuid.UUID, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return uuid.Nil, billing.Errorf(billing.CodeNotFound, "%s not found", what)
	}
	return u, nil
}

// pageArgs checks a connection's arguments: page sizes must be between 0
// and MaxPageSize, and with neither first nor last a page holds
// MaxPageSize rows, so that no connection is ever unbounded.
func pageArgs(after *relay.Cursor, first *int, before *relay.Cursor, last *int) (relay.Args, error) {
	for name, n := range map[string]*int{"first": first, "last": last} {
		if n != nil && (*n < 0 || *n > MaxPageSize) {
			return relay.Args{}, billing.InvalidInput(name, "Page size must be between 0 and 100.")
		}
	}
	if first == nil && last == nil {
		// The default page is the one next to the cursor given: after a
		// cursor the rows that follow it, before one the rows just before.
		n := MaxPageSize
		if before != nil && after == nil {
			last = &n
		} else {
			first = &n
		}
	}
	return relay.Args{After: after, First: first, Before: before, Last: last}, nil
}

// The orders of the connections: payments, sessions, invoices and webhook
// events newest first; workspaces, members and invitations by id, which
// is stable.
var (
	newestFirst = relay.Order{TimeColumn: "create_time", IDColumn: "id", Desc: true}
	byID        = relay.Order{IDColumn: "id"}
)

// entQuery is what every ent query of rows T offers (Q is the query's own
// type, P its predicate and O its order option, both functions of the
// SELECT): what page needs to run one.
type entQuery[Q any, T any, P, O ~func(*sql.Selector)] interface {
	Clone() Q
	Where(...P) Q
	Order(...O) Q
	Limit(int) Q
	All(context.Context) ([]T, error)
	Count(context.Context) (int, error)
}

// page is every connection resolver's paging: it loads the page args ask
// for of q (a query billing returned), in order, each row's cursor given
// by cursorOf.
func page[T any, Q entQuery[Q, T, P, O], P, O ~func(*sql.Selector)](ctx context.Context, q Q, args relay.Args, order relay.Order, cursorOf func(T) relay.Cursor) (*relay.Connection[T], error) {
	return relay.Paginate(ctx, args, order, relay.Source[T]{
		Load: func(ctx context.Context, p relay.Plan) ([]T, error) {
			return q.Clone().Where(P(p.Where)).Order(O(p.OrderBy)).Limit(p.Limit).All(ctx)
		},
		Count:    q.Clone().Count,
		CursorOf: cursorOf,
	})
}

// deref returns *p, or the zero value for nil.
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// nilIfEmpty returns nil for "", so that an absent value reads as null.
func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// upperEnum converts a stored lowercase value (a Stripe status) to the
// UPPER_SNAKE GraphQL enum value.
func upperEnum[T ~string](s string) T { return T(strings.ToUpper(s)) }

// nilIfZero returns nil for 0, so that an absent number reads as null.
func nilIfZero(n int64) *int {
	if n == 0 {
		return nil
	}
	i := int(n)
	return &i
}

// pointers turns a billing list into the pointer list gqlgen binds.
func pointers[T any](items []T, err error) ([]*T, error) {
	if err != nil {
		return nil, err
	}
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out, nil
}
