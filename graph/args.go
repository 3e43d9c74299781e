package graph

import (
	"strings"

	"billingapi/billing"

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

// pageSize refuses negative page sizes and sizes above MaxPageSize, and
// returns the `first` to use: MaxPageSize when neither first nor last is
// given, so that no connection is ever unbounded.
func pageSize(first, last *int) (*int, error) {
	for name, n := range map[string]*int{"first": first, "last": last} {
		if n != nil && (*n < 0 || *n > MaxPageSize) {
			return nil, billing.InvalidInput(name, "Page size must be between 0 and 100.")
		}
	}
	if first == nil && last == nil {
		n := MaxPageSize
		return &n, nil
	}
	return first, nil
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
