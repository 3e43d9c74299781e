package auth_test

import (
	"testing"

	"billingapi/auth"

	"github.com/google/uuid"
)

// TestRegularUser: only a signed-in user with no more than a user's rights
// is a regular user, whose answers may be kept for them.
func TestRegularUser(t *testing.T) {
	ws := uuid.New()
	for _, c := range []struct {
		name string
		v    auth.Viewer
		want bool
	}{
		{"user", auth.Viewer{UserID: "carol", Email: "carol@example.com"}, true},
		{"nobody", auth.Viewer{}, false},
		{"admin", auth.Viewer{UserID: "root", Admin: true}, false},
		{"system", auth.SystemViewer(ws), false},
		{"service", auth.ServiceViewer(auth.WebhooksService), false},
		{"user with a service", auth.Viewer{UserID: "x", Service: auth.WebhooksService}, false},
		{"user with a system workspace", auth.Viewer{UserID: "x", SystemWorkspace: ws}, false},
	} {
		if got := c.v.RegularUser(); got != c.want {
			t.Errorf("%s: RegularUser() = %v, want %v", c.name, got, c.want)
		}
	}
}
