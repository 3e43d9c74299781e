package main

import (
	"bytes"
	"os"
	"testing"
)

// TestCommittedSchemaIsCurrent fails when schema.graphql at the
// repository root is not what the .graphqls files print: an SDL change
// made without `make generate`.
func TestCommittedSchemaIsCurrent(t *testing.T) {
	printed, err := printSchema("../schema")
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("../../schema.graphql")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(printed, committed) {
		t.Fatal("schema.graphql is stale: run `make generate` and commit it")
	}
}
