package billing

// The rows the doors list. A resolver reads through billing like it
// writes: one call. A list is returned as an ent query that the caller
// pages (graph/relay keyset pagination) and runs with the viewer's
// context, so the tenancy rules filter it like every other query; a role
// check, where a list has one, runs here before the query is handed out.

import (
	"context"

	"billingapi/auth"
	"billingapi/ent"
	"billingapi/ent/checkoutsession"
	"billingapi/ent/invitation"
	"billingapi/ent/invoice"
	"billingapi/ent/membership"
	"billingapi/ent/payment"
	"billingapi/ent/refund"
	"billingapi/ent/webhookevent"
	"billingapi/ent/workspace"

	"github.com/google/uuid"
)

// UserWorkspaces returns the query of the workspaces userID is a member of.
func (s *Service) UserWorkspaces(userID string) *ent.WorkspaceQuery {
	return s.db.Workspace.Query().Where(workspace.HasMembershipsWith(membership.UserID(userID)))
}

// WorkspaceMembers returns the query of a workspace's memberships, each
// with its user.
func (s *Service) WorkspaceMembers(workspaceID uuid.UUID) *ent.MembershipQuery {
	return s.db.Membership.Query().Where(membership.WorkspaceID(workspaceID)).WithUser()
}

// MemberUser returns the user of a membership: the one loaded with it, or
// else read.
func (s *Service) MemberUser(ctx context.Context, m *ent.Membership) (*ent.User, error) {
	if u, err := m.Edges.UserOrErr(); err == nil {
		return u, nil
	}
	return m.QueryUser().Only(ctx)
}

// MemberWorkspace returns the workspace of a membership: the one loaded
// with it, or else read.
func (s *Service) MemberWorkspace(ctx context.Context, m *ent.Membership) (*ent.Workspace, error) {
	if w, err := m.Edges.WorkspaceOrErr(); err == nil {
		return w, nil
	}
	return m.QueryWorkspace().Only(ctx)
}

// WorkspaceInvitations returns the query of a workspace's pending
// invitations (expired ones included, marked by their expiry), for owners
// and admins; others are FORBIDDEN.
func (s *Service) WorkspaceInvitations(ctx context.Context, workspaceID uuid.UUID) (*ent.InvitationQuery, error) {
	if _, _, err := s.requireRole(ctx, workspaceID, auth.RoleOwner, auth.RoleAdmin); err != nil {
		return nil, err
	}
	return s.db.Invitation.Query().
		Where(invitation.WorkspaceID(workspaceID), invitation.StatusEQ(invitation.StatusPending)), nil
}

// WorkspacePayments returns the query of a workspace's payments; with
// refunds, each payment comes with its refunds (as RefundsOf orders them),
// all of a page's in one query rather than one or two per payment.
func (s *Service) WorkspacePayments(workspaceID uuid.UUID, withRefunds bool) *ent.PaymentQuery {
	q := s.db.Payment.Query().Where(payment.WorkspaceID(workspaceID))
	if withRefunds {
		q = q.WithRefunds(refundsInOrder)
	}
	return q
}

// RefundsOf returns a payment's refunds, oldest first: those loaded with
// it, or else read.
func (s *Service) RefundsOf(ctx context.Context, p *ent.Payment) ([]*ent.Refund, error) {
	if loaded, err := p.Edges.RefundsOrErr(); err == nil {
		return loaded, nil
	}
	// Through the service's client, not p.QueryRefunds(): a payment
	// decoded from a billing event has no client of its own.
	q := s.db.Refund.Query().Where(refund.PaymentID(p.ID))
	refundsInOrder(q)
	return q.All(ctx)
}

// refundsInOrder orders a payment's refunds oldest first, the same whether
// a page of payments loads them or one payment queries its own.
func refundsInOrder(q *ent.RefundQuery) {
	q.Order(ent.Asc(refund.FieldCreateTime), ent.Asc(refund.FieldID))
}

// WorkspaceCheckoutSessions returns the query of a workspace's Checkout
// Sessions.
func (s *Service) WorkspaceCheckoutSessions(workspaceID uuid.UUID) *ent.CheckoutSessionQuery {
	return s.db.CheckoutSession.Query().Where(checkoutsession.WorkspaceID(workspaceID))
}

// WorkspaceInvoices returns the query of a workspace's invoices.
func (s *Service) WorkspaceInvoices(workspaceID uuid.UUID) *ent.InvoiceQuery {
	return s.db.Invoice.Query().Where(invoice.WorkspaceID(workspaceID))
}

// WebhookEventFilter narrows WebhookEvents; a nil field does not filter.
type WebhookEventFilter struct {
	Status *webhookevent.Status
	Type   *string
}

// WebhookEvents returns the query of the stored Stripe events that f
// lets through (platform admins and the webhook service read them; the
// tenancy rules show nobody else any).
func (s *Service) WebhookEvents(f WebhookEventFilter) *ent.WebhookEventQuery {
	q := s.db.WebhookEvent.Query()
	if f.Status != nil {
		q = q.Where(webhookevent.StatusEQ(*f.Status))
	}
	if f.Type != nil {
		q = q.Where(webhookevent.Type(*f.Type))
	}
	return q
}
