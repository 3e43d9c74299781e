// Package ent holds the data model's generated client; the hand-written
// schema and its tenancy rules live in ent/schema.
package ent

//go:generate go run -mod=mod entc.go
