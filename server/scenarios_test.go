package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestScenarios runs every scenario of `make scenarios` against its own
// sandbox and API; each fails unless the API ends in the state the
// scenario expects.
func TestScenarios(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := playScenario(context.Background(), sc, t.TempDir(), &out, false)
			if err != nil {
				t.Fatalf("%v\ntimeline:\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), "events: ") {
				t.Fatalf("no timeline printed:\n%s", out.String())
			}
		})
	}
}

// TestScenariosUnderChaos runs the scenarios with every webhook delivered
// twice and out of order: the API must apply each event once and end in
// the same states.
func TestScenariosUnderChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: plays every scenario again with duplicated, reordered webhooks (TestScenarios plays them once)")
	}
	for _, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			if err := playScenario(context.Background(), sc, t.TempDir(), &out, true); err != nil {
				t.Fatalf("%v\ntimeline:\n%s", err, out.String())
			}
		})
	}
}

func TestScenariosCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"scenarios", "-list"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, sc := range scenarios {
		if !strings.Contains(out.String(), sc.Name) {
			t.Errorf("-list leaves out %s", sc.Name)
		}
	}
	if err := run(context.Background(), []string{"scenarios", "no-such"}, func(string) string { return "" }, &out, &out); err == nil ||
		!strings.Contains(err.Error(), "no-such") {
		t.Fatalf("an unknown scenario: %v", err)
	}
}
