package graph

import (
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

// checkPage refuses negative page sizes and sizes above MaxPageSize.
func checkPage(first, last *int) error {
	for name, n := range map[string]*int{"first": first, "last": last} {
		if n != nil && (*n < 0 || *n > MaxPageSize) {
			return billing.InvalidInput(name, "Page size must be between 0 and 100.")
		}
	}
	return nil
}
