package graph

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// limitError runs DepthLimit on a document and returns its error message,
// "" for none. It fails the test if the check does not end within 10 s:
// the documents below expand to 10^12 fields, which a walk that follows
// every spread would take hours over, while a walk that measures each
// fragment once takes microseconds.
func limitError(t *testing.T, doc string) string {
	t.Helper()
	q, err := parser.ParseQuery(&ast.Source{Input: doc})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		oc := &graphql.OperationContext{Doc: q, Operation: q.Operations[0]}
		msg := ""
		if gerr := (DepthLimit{Max: MaxDepth, MaxFields: MaxFields}).MutateOperationContext(context.Background(), oc); gerr != nil {
			msg = gerr.Message
		}
		done <- msg
	}()
	select {
	case msg := <-done:
		return msg
	case <-time.After(10 * time.Second):
		t.Fatal("the depth and field limits did not finish within 10 s")
		return ""
	}
}

// fragmentBomb is an operation whose fragments spread the next one ten
// times over, levels deep, ending in leaf.
func fragmentBomb(levels int, leaf string) string {
	var b strings.Builder
	b.WriteString("query { plans { ...F0 } }\n")
	for i := range levels {
		fmt.Fprintf(&b, "fragment F%d on Plan {%s}\n", i, strings.Repeat(fmt.Sprintf(" ...F%d", i+1), 10))
	}
	fmt.Fprintf(&b, "fragment F%d on Plan { %s }\n", levels, leaf)
	return b.String()
}

func TestLimitsMeasureEachFragmentOnce(t *testing.T) {
	if msg := limitError(t, fragmentBomb(12, "lookupKey")); !strings.Contains(msg, "more than 300 fields") {
		t.Errorf("a fragment bomb of 10^12 fields: %q; want the field limit", msg)
	}
	// Introspection is not counted, so a bomb of it never reaches the
	// field limit; its walk must still end.
	if msg := limitError(t, fragmentBomb(12, "__type(name: \"Plan\") { name }")); msg != "" {
		t.Errorf("a fragment bomb of introspection: %q; want no refusal here", msg)
	}
}

func TestLimitsCountFragmentsAsWrittenOut(t *testing.T) {
	nest := func(n int) string { // n levels of fields
		return strings.Repeat("a { ", n-1) + "b" + strings.Repeat(" }", n-1)
	}
	cases := []struct {
		name, doc, want string
	}{
		{"DepthThroughFragments", "query { ...A } fragment A on Q { " + nest(5) + " ...B } fragment B on Q { c { " + nest(10) + " } }", "11 levels deep"},
		{"DepthOfTenThroughFragments", "query { ...A } fragment A on Q { " + nest(5) + " ...B } fragment B on Q { c { " + nest(9) + " } }", ""},
		// The same fragment spread at two depths counts at the deeper one.
		{"FragmentAtTwoDepths", "query { x { ...D } y { z { w { v { u { ...D } } } } } } fragment D on Q { " + nest(6) + " }", "11 levels deep"},
		{"ExactlyTheFieldLimit", "query { " + strings.Repeat("...E ", 3) + " } fragment E on Q { " + fields(100) + " }", ""},
		{"OneFieldOverTheLimit", "query { x " + strings.Repeat("...E ", 3) + " } fragment E on Q { " + fields(100) + " }", "more than 300 fields"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := limitError(t, c.doc)
			switch {
			case c.want == "" && msg != "":
				t.Errorf("refused: %q; want accepted", msg)
			case c.want != "" && !strings.Contains(msg, c.want):
				t.Errorf("got %q; want %q", msg, c.want)
			}
		})
	}
}

// fields is n distinct fields f0 ... f(n-1).
func fields(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "f%d ", i)
	}
	return b.String()
}
