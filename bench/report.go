package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Results is what a run writes to latest.json.
type Results struct {
	Commit    string      `json:"commit"`
	Dirty     bool        `json:"dirty"`
	Date      string      `json:"date"`
	Cores     int         `json:"cores"`
	GoVersion string      `json:"go_version"`
	Command   string      `json:"command"`
	Settings  Settings    `json:"settings"`
	Scenarios []*Scenario `json:"scenarios"`
	Notes     []string    `json:"notes,omitempty"`
}

// Settings are the run's parameters.
type Settings struct {
	Quick           bool     `json:"quick"`
	WarmupSeconds   float64  `json:"warmup_seconds"`
	MeasureSeconds  float64  `json:"measure_seconds"`
	Connections     int      `json:"connections"`
	Subscribers     int      `json:"subscribers"`
	FanoutEvents    int      `json:"fanout_events"`
	MemoryEvents    int      `json:"memory_events"`
	SeedEvents      int      `json:"seed_events"`
	SeedWorkspaces  int      `json:"seed_workspaces"`
	SeedSubscripts  int      `json:"seed_subscriptions"`
	PlanLookupKeys  string   `json:"plan_lookup_keys"`
	StripeLatencyMs int      `json:"b3_stripe_latency_ms"`
	ServerEnv       []string `json:"server_env,omitempty"`
}

// Scenario is one line of the table.
type Scenario struct {
	ID      string         `json:"id"`
	Name    string         `json:"name"`
	Figures map[string]any `json:"figures"`
	Summary string         `json:"summary"`         // the figures
	Short   string         `json:"short,omitempty"` // for a table row without targets
	Targets []Target       `json:"targets"`
	Notes   []string       `json:"notes,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// Target is one checked goal: Value compared with Limit.
type Target struct {
	Name     string  `json:"name"`
	Op       string  `json:"op"` // ">=", "<=", "=="
	Value    float64 `json:"value"`
	Limit    float64 `json:"limit"`
	Measured string  `json:"measured"`
	Pass     bool    `json:"pass"`
}

func check(name, op string, value, limit float64, measured string) Target {
	t := Target{Name: name, Op: op, Value: value, Limit: limit, Measured: measured}
	switch op {
	case ">=":
		t.Pass = value >= limit
	case "<=":
		t.Pass = value <= limit
	case "==":
		t.Pass = value == limit
	}
	return t
}

func (r *Results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "latest.md"), []byte(r.markdown()), 0o644)
}

func (r *Results) markdown() string {
	var b strings.Builder
	dirty := ""
	if r.Dirty {
		dirty = " (with uncommitted changes)"
	}
	fmt.Fprintf(&b, "Commit `%s`%s, %d cores, %s, %s, `%s`", r.Commit, dirty, r.Cores, r.GoVersion, r.Date, r.Command)
	if r.Settings.Quick {
		b.WriteString(" (quick run: short phases, scaled-down counts; not for comparison)")
	}
	fmt.Fprintf(&b, ". Phases: %.0f s warm-up, %.0f s measured, %d connections", r.Settings.WarmupSeconds, r.Settings.MeasureSeconds, r.Settings.Connections)
	if len(r.Settings.ServerEnv) > 0 {
		fmt.Fprintf(&b, "; servers run with %s", strings.Join(r.Settings.ServerEnv, " "))
	}
	b.WriteString(".\n\n")
	b.WriteString("| # | scenario | target | measured | result |\n|---|---|---|---|---|\n")
	pass, fail := 0, 0
	for _, s := range r.Scenarios {
		if s.Error != "" {
			fmt.Fprintf(&b, "| %s | %s | | **did not run:** %s | FAIL |\n", s.ID, s.Name, esc(s.Error))
			fail++
			continue
		}
		if len(s.Targets) == 0 {
			fmt.Fprintf(&b, "| %s | %s | reported | %s | |\n", s.ID, s.Name, esc(s.Short))
			continue
		}
		for i, t := range s.Targets {
			id, name := "", ""
			if i == 0 {
				id, name = s.ID, s.Name
			}
			res := "FAIL"
			if t.Pass {
				res = "PASS"
				pass++
			} else {
				fail++
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", id, name, esc(t.Name), esc(t.Measured), res)
		}
	}
	fmt.Fprintf(&b, "\n%d targets pass, %d fail.\n\n## Figures\n\n", pass, fail)
	for _, s := range r.Scenarios {
		if s.Summary != "" {
			fmt.Fprintf(&b, "- **%s** %s\n", s.ID, s.Summary)
		}
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	b.WriteString("\nCPU µs/op: CPU time per request (or per applied event) during the measured window, by process: the server(s), PostgreSQL, Redis, this load generator; irq is interrupt time (loopback networking); other is the rest of the machine (other users of a shared machine, kernel threads); machine is all busy time.\n")
	return b.String()
}

func esc(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
