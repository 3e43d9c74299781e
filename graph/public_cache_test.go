package graph

import (
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// TestPublicQuery: only queries whose every root field is public may be
// answered from the shared response cache; anything reading the viewer,
// a workspace, or hidden behind a fragment is executed each time.
func TestPublicQuery(t *testing.T) {
	for _, c := range []struct {
		query string
		want  bool
	}{
		{`{ plans { lookupKey } }`, true},
		{`query Q($k: String!) { price(lookupKey: $k) { unitAmount } stripeConfig { mode } }`, true},
		{`{ a: plans { lookupKey } b: plans { currency } }`, true},
		{`{ plans { lookupKey } me { id } }`, false},
		{`{ me { id } }`, false},
		{`{ __typename }`, false},
		{`{ plans { lookupKey } __typename }`, false},
		{`{ ...F } fragment F on Query { plans { lookupKey } }`, false},
		{`{ ... on Query { plans { lookupKey } } }`, false},
		{`mutation { createWorkspace(input: {name: "x"}) { id } }`, false},
		{`subscription { billingEvents(workspaceId: "x") { type } }`, false},
	} {
		doc, err := parser.ParseQuery(&ast.Source{Input: c.query})
		if err != nil {
			t.Fatalf("%s: %v", c.query, err)
		}
		if got := publicQuery(doc.Operations[0]); got != c.want {
			t.Errorf("publicQuery(%s) = %v, want %v", c.query, got, c.want)
		}
	}
	if publicQuery(nil) {
		t.Error("publicQuery(nil) = true")
	}
}
