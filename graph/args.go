package graph

import (
	"strings"

	"billingapi/billing"
	"billingapi/ent"
	"billingapi/ent/refund"
	"billingapi/graph/relay"

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
// events newest first; workspaces and members by id, which is stable.
var (
	newestFirst = relay.Order{TimeColumn: "create_time", IDColumn: "id", Desc: true}
	byID        = relay.Order{IDColumn: "id"}
)

// refundsInOrder orders a payment's refunds oldest first, the same whether
// a page of payments loads them or one payment queries its own.
func refundsInOrder(q *ent.RefundQuery) {
	q.Order(ent.Asc(refund.FieldCreateTime), ent.Asc(refund.FieldID))
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
