package billing

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"billingapi/auth"
	"billingapi/billing/stripemeta"
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
	meta, err := stripemeta.Customer(createdBy, workspaceID)
	if err != nil {
		return "", fmt.Errorf("customer metadata: %w", err)
	}

	if err := spendWorkspaceBudget(ctx, workspaceID); err != nil {
		return "", err
	}
	customerID, err := s.createCustomerLocked(ctx, workspaceID, v, createdBy, meta)
	if !errors.Is(err, errCustomerBeingCreated) {
		return customerID, err
	}
	// Another request holds the workspace row and is asking Stripe: wait
	// for its answer rather than queue behind its timeouts, and never
	// become a creator after it (a waiter that did would ask a Stripe that
	// just failed, and answer only after its own timeouts).
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(customerPoll):
		}
		ws, err := s.Workspace(ctx, workspaceID)
		if err != nil {
			return "", err
		}
		if ws.StripeCustomerID != nil {
			return *ws.StripeCustomerID, nil
		}
		if !s.customerLockHeld(ctx, workspaceID) {
			// The other request has finished: read its result, which may
			// have been committed just after the read above.
			ws, err := s.Workspace(ctx, workspaceID)
			if err != nil {
				return "", err
			}
			if ws.StripeCustomerID != nil {
				return *ws.StripeCustomerID, nil
			}
			// It finished without a customer: Stripe failed it, and
			// would most likely fail this one too.
			return "", &Error{Code: CodeProviderUnavailable, Message: "The payment provider is unavailable. Please try again shortly."}
		}
	}
}

// customerPoll is how often a request waiting for another's customer
// creation looks again.
const customerPoll = 100 * time.Millisecond

// errCustomerBeingCreated means another request holds the workspace row.
var errCustomerBeingCreated = errors.New("another request is creating the customer")

// createCustomerLocked creates the workspace's customer while holding the
// workspace's customer lock (PostgreSQL: a transaction-scoped advisory
// lock taken without waiting, so that a second request learns at once that
// a first is at it; SQLite serializes writers). It returns
// errCustomerBeingCreated when the lock is held. The lock is the
// customer's own, not the workspace row's, so that a transaction that
// merely locks the row (a subscription being applied) is never mistaken
// for a customer being created.
func (s *Service) createCustomerLocked(ctx context.Context, workspaceID uuid.UUID, v auth.Viewer, createdBy string, meta map[string]string) (string, error) {
	var customerID string
	err := WithTx(ctx, s.db, func(tx *ent.Tx) error {
		if s.rowLocks() {
			got, err := tryCustomerLock(ctx, tx, workspaceID)
			if err != nil {
				return err
			}
			if !got {
				return errCustomerBeingCreated
			}
		}
		// Read after taking the lock: a customer made by the previous
		// holder is committed and seen.
		locked, err := tx.Workspace.Query().Where(workspace.ID(workspaceID)).Only(ctx)
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
		if s.cfg.CustomerTestClocks {
			clock, err := s.newTestClock(ctx, workspaceID)
			if err != nil {
				return err
			}
			params.TestClock = stripe.String(clock)
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
	return customerID, err
}

// newTestClock creates the Stripe test clock a workspace's customer lives
// on, frozen at the current time; a retry gets the same clock.
func (s *Service) newTestClock(ctx context.Context, workspaceID uuid.UUID) (string, error) {
	params := &stripe.TestHelpersTestClockParams{
		FrozenTime: stripe.Int64(time.Now().Unix()),
		Name:       stripe.String("workspace " + workspaceID.String()),
	}
	params.Context = ctx
	params.SetIdempotencyKey(idempotencyKey("test-clock", workspaceID.String()))
	tc, err := s.stripe.TestHelpersTestClocks.New(params)
	if err != nil {
		return "", s.fromStripe(ctx, "test_clock.create", err)
	}
	return tc.ID, nil
}

// customerLockHeld reports whether another transaction holds the
// workspace's customer lock (always false without row locks). An error
// counts as held: the caller then looks again.
func (s *Service) customerLockHeld(ctx context.Context, workspaceID uuid.UUID) bool {
	if !s.rowLocks() {
		return false
	}
	held := true
	_ = WithTx(ctx, s.db, func(tx *ent.Tx) error {
		got, err := tryCustomerLock(ctx, tx, workspaceID)
		held = err != nil || !got
		return err
	})
	return held
}

// tryCustomerLock takes the workspace's customer lock for the rest of tx
// if no other transaction holds it, and reports whether it did.
func tryCustomerLock(ctx context.Context, tx *ent.Tx, workspaceID uuid.UUID) (bool, error) {
	h := fnv.New64a()
	h.Write([]byte("billing.customer:"))
	h.Write(workspaceID[:])
	rows, err := tx.QueryContext(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(h.Sum64()))
	if err != nil {
		return false, err
	}
	defer rows.Close()
	var got bool
	if rows.Next() {
		err = rows.Scan(&got)
	}
	if err == nil {
		err = rows.Err()
	}
	return got, err
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

// customer.deleted events (eventHandlers).

// customerDeletedEvents handles customer.deleted events.
var customerDeletedEvents = on("customer", customerRefs, (*Service).planCustomerDeleted)

// customerRefs is what a customer names: nothing beyond itself.
func customerRefs(c *stripe.Customer) objectRefs { return objectRefs{id: c.ID} }

// planCustomerDeleted plans a customer.deleted event: the workspace it
// was the customer of (by its metadata, or its id) forgets it, and its
// billing status changes.
func (s *Service) planCustomerDeleted(ctx context.Context, ahead *readAhead, _ *Event, c *stripe.Customer) (uuid.UUID, eventChange, error) {
	ws, err := s.workspaceFor(ctx, ahead, c.Metadata, c.ID)
	if err != nil {
		return uuid.Nil, nil, err
	}
	return ws, func(ctx context.Context, tx *ent.Tx) (*BillingEvent, bool, error) {
		n, err := tx.Workspace.Update().
			Where(workspace.ID(ws), workspace.StripeCustomerID(c.ID)).
			ClearStripeCustomerID().AddBillingVersion(1).Save(ctx)
		return nil, n > 0, err
	}, nil
}
