package billing

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

func TestAccessFor(t *testing.T) {
	features := []string{"projects", "reports", "api"}
	critical := []string{"projects"}
	cases := []struct {
		status       string
		atPeriodEnd  bool
		level        AccessLevel
		warn         bool
		wantFeatures []string
	}{
		{"", false, AccessFree, false, []string{}},
		{"active", false, AccessFull, false, features},
		{"active", true, AccessFull, true, features},
		{"trialing", false, AccessFull, false, features},
		{"past_due", false, AccessLimited, true, []string{"projects"}},
		{"unpaid", false, AccessRestricted, true, []string{}},
		{"canceled", false, AccessNone, true, []string{}},
		{"incomplete", false, AccessNone, true, []string{}},
		{"incomplete_expired", false, AccessNone, false, []string{}},
		{"paused", false, AccessNone, false, []string{}},
		{"creating", false, AccessNone, true, []string{}},
		{"some_status_stripe_adds_later", false, AccessNone, false, []string{}},
	}
	for _, tc := range cases {
		name := tc.status
		if name == "" {
			name = "NoSubscription"
		}
		t.Run(name, func(t *testing.T) {
			got := AccessFor(tc.status, features, critical, tc.atPeriodEnd, nil)
			if got.Level != tc.level || (got.Warning != "") != tc.warn || !slices.Equal(got.Features, tc.wantFeatures) {
				t.Fatalf("AccessFor(%q) = %+v, want level %s, warning %t, features %v", tc.status, got, tc.level, tc.warn, tc.wantFeatures)
			}
		})
	}
	t.Run("UnknownStatusIsLogged", func(t *testing.T) {
		var buf bytes.Buffer
		AccessFor("frozen", features, critical, false, slog.New(slog.NewTextHandler(&buf, nil)))
		if !strings.Contains(buf.String(), "frozen") {
			t.Fatalf("unknown status not logged: %q", buf.String())
		}
	})
	t.Run("PastDueWithoutCriticalFeaturesKeepsNone", func(t *testing.T) {
		if got := AccessFor("past_due", features, nil, false, nil); len(got.Features) != 0 || got.Level != AccessLimited {
			t.Fatalf("got %+v", got)
		}
	})
}
