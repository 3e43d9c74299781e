package billing

import (
	"context"
	"fmt"

	"billingapi/auth"
	"billingapi/ent"
	"billingapi/ent/workspace"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

// EnsureCustomer returns the workspace's Stripe Customer id, creating the
// customer on first use with the viewer's email and name and metadata
// user_id and workspace_id. Concurrent first calls for one workspace
// create one customer: the workspace row is locked (PostgreSQL) or the
// write is serialized (SQLite) while the first caller asks Stripe, and the
// idempotency key makes a retry after a crash return the same customer.
// Only owners and admins (or a system viewer for the workspace) may.
func (s *Service) EnsureCustomer(ctx context.Context, workspaceID uuid.UUID) (string, error) {
	v, ok := auth.FromContext(ctx)
	if !ok {
		return "", Errorf(CodeUnauthenticated, "Sign in to continue.")
	}
	ws, err := s.Workspace(ctx, workspaceID)
	if err != nil {
		return "", err
	}
	if ws.StripeCustomerID != nil {
		return *ws.StripeCustomerID, nil
	}
	if !v.IsSystem() {
		if _, _, err := s.requireRole(ctx, workspaceID, auth.RoleOwner, auth.RoleAdmin); err != nil {
			return "", err
		}
	}
	if s.stripe == nil {
		return "", errStripeNotConfigured
	}
	createdBy := v.UserID
	if createdBy == "" {
		createdBy = "system"
	}
	meta, err := CustomerMetadata(createdBy, workspaceID)
	if err != nil {
		return "", fmt.Errorf("customer metadata: %w", err)
	}

	var customerID string
	err = WithTx(ctx, s.db, func(tx *ent.Tx) error {
		q := tx.Workspace.Query().Where(workspace.ID(workspaceID))
		if s.cfg.RowLocks {
			q = q.ForUpdate()
		}
		locked, err := q.Only(ctx)
		if err != nil {
			return err
		}
		if locked.StripeCustomerID != nil {
			customerID = *locked.StripeCustomerID
			return nil
		}
		// This Stripe call runs under the row lock on purpose: it is the
		// lock that makes concurrent first payments share one customer.
		// Creating a customer moves no money, so a rollback after it
		// leaves at worst an unused customer, which the idempotency key
		// hands back on the next try.
		params := &stripe.CustomerParams{Metadata: meta}
		if v.Email != "" {
			params.Email = stripe.String(v.Email)
		}
		if v.Name != "" {
			params.Name = stripe.String(v.Name)
		}
		params.Context = ctx
		params.SetIdempotencyKey(idempotencyKey("customer", workspaceID.String(), createdBy, v.Email, v.Name))
		c, err := s.stripe.Customers.New(params)
		if err != nil {
			return s.fromStripe(ctx, "customer.create", err)
		}
		customerID = c.ID
		return tx.Workspace.UpdateOneID(workspaceID).SetStripeCustomerID(c.ID).Exec(ctx)
	})
	if err != nil {
		return "", err
	}
	return customerID, nil
}

// requireAdmin returns the viewer when they are a platform admin:
// UNAUTHENTICATED without a user, FORBIDDEN for anyone else.
func requireAdmin(ctx context.Context) (auth.Viewer, error) {
	v, err := viewer(ctx)
	if err != nil {
		return v, err
	}
	if !v.Admin {
		return v, Errorf(CodeForbidden, "Only a platform admin can do this.")
	}
	return v, nil
}
