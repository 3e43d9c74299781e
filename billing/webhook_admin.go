package billing

import (
	"context"
	"time"

	"billingapi/ent"
	"billingapi/ent/webhookevent"

	"github.com/google/uuid"
)

// ReplayWebhookEvent puts a stored event back in the queue (platform
// admins): the worker applies it again as if it had just arrived. State
// already newer than the event is not rolled back by it.
func (s *Service) ReplayWebhookEvent(ctx context.Context, id uuid.UUID) (*ent.WebhookEvent, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	ev, err := s.db.WebhookEvent.UpdateOneID(id).
		SetStatus(webhookevent.StatusReceived).
		SetNextAttemptAt(time.Now()).
		SetAttempts(0).
		ClearLockedUntil().
		ClearProcessedAt().
		SetLastError("").
		Save(ctx)
	if ent.IsNotFound(err) {
		return nil, notFound("webhook event")
	}
	if err != nil {
		return nil, err
	}
	if s.wakeWorker != nil {
		s.wakeWorker()
	}
	return ev, nil
}

// SetWorkerWake registers the function that wakes the webhook worker after
// a replay.
func (s *Service) SetWorkerWake(wake func()) { s.wakeWorker = wake }

// RequireMember returns nil when the viewer is a member of the workspace
// (any role): NOT_FOUND otherwise, so that ids cannot be probed, and
// UNAUTHENTICATED without a user.
func (s *Service) RequireMember(ctx context.Context, workspaceID uuid.UUID) error {
	if _, err := viewer(ctx); err != nil {
		return err
	}
	role, err := s.RoleIn(ctx, workspaceID)
	if err != nil {
		return err
	}
	if role == "" {
		return notFound("workspace")
	}
	return nil
}
