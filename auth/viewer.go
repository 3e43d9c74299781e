// Package auth verifies bearer tokens and carries the resulting Viewer in a
// request's context. It knows nothing of the database: the data layer reads
// the Viewer to decide what rows a request may see.
package auth

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Viewer is who is asking. A request viewer has a UserID taken from the JWT
// `sub` claim; a system viewer (webhook worker, reconciler) has no user and
// is scoped to exactly one workspace.
type Viewer struct {
	UserID string
	Email  string
	Name   string
	// Admin marks a platform admin (JWT claim role: "admin").
	Admin bool
	// SystemWorkspace is set only for background work, which may touch
	// this one workspace and nothing else.
	SystemWorkspace uuid.UUID
	// Service names an internal service that is not a user and not scoped
	// to a workspace (the webhook receiver). The data layer lets it reach
	// only its own tables, never a workspace's rows.
	Service string
	// Expires is when the token the viewer came from stops being accepted
	// (its exp plus the verifier's leeway); zero for a viewer not made from
	// a token. A websocket, authenticated once, ends then.
	Expires time.Time
}

// IsSystem reports whether v is a background viewer scoped to one workspace.
func (v Viewer) IsSystem() bool { return v.UserID == "" && v.SystemWorkspace != uuid.Nil }

// RegularUser reports whether v is a signed-in user with no more than a
// user's rights: not an admin, a system viewer or a service. What such a
// viewer may see depends on its memberships alone, so an answer read for
// it may be kept for it.
func (v Viewer) RegularUser() bool {
	return v.UserID != "" && !v.Admin && v.SystemWorkspace == uuid.Nil && v.Service == ""
}

// SystemViewer returns a viewer for background work on one workspace.
func SystemViewer(workspaceID uuid.UUID) Viewer { return Viewer{SystemWorkspace: workspaceID} }

// WebhooksService is the Service of the webhook receiver and worker.
const WebhooksService = "webhooks"

// ServiceViewer returns the viewer of an internal service.
func ServiceViewer(name string) Viewer { return Viewer{Service: name} }

type ctxKey struct{}

// NewContext returns a copy of ctx that carries v.
func NewContext(ctx context.Context, v Viewer) context.Context {
	return context.WithValue(ctx, ctxKey{}, v)
}

// FromContext returns the Viewer in ctx and whether there is one.
func FromContext(ctx context.Context) (Viewer, bool) {
	v, ok := ctx.Value(ctxKey{}).(Viewer)
	return v, ok && (v.UserID != "" || v.SystemWorkspace != uuid.Nil || v.Service != "")
}
