//go:build tools

// Package tools pins the code generators and the Stripe mock that the
// Makefile runs, so every machine uses the versions in go.mod.
package tools

import (
	_ "entgo.io/ent/cmd/ent"
	_ "github.com/99designs/gqlgen"
	_ "github.com/stripe/stripe-mock"
)
