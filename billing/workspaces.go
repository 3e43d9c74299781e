package billing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"billingapi/auth"
	"billingapi/ent"
	"billingapi/ent/checkoutsession"
	"billingapi/ent/invitation"
	"billingapi/ent/membership"
	"billingapi/ent/privacy"
	"billingapi/ent/user"
	"billingapi/internal/pgtext"
)

// viewer returns the signed-in user of ctx or UNAUTHENTICATED.
func viewer(ctx context.Context) (auth.Viewer, error) {
	v, ok := auth.FromContext(ctx)
	if !ok || v.UserID == "" {
		return auth.Viewer{}, Errorf(CodeUnauthenticated, "sign in to continue")
	}
	return v, nil
}

// The users table's email and name hold at most 320 and 200 bytes (ent's
// MaxLen counts bytes, not characters): longer claims are clipped, since
// they would fail the insert.
const maxUserEmail, maxUserName = 320, 200

// EnsureUser creates or refreshes the viewer's user row from their token's
// claims and returns it. Email and name follow the latest token.
func (s *Service) EnsureUser(ctx context.Context) (*ent.User, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	email, name := pgtext.Clip(v.Email, maxUserEmail), pgtext.Clip(v.Name, maxUserName)
	err = s.db.User.Create().
		SetID(v.UserID).SetEmail(email).SetName(name).
		OnConflictColumns(user.FieldID).
		Update(func(u *ent.UserUpsert) {
			u.SetEmail(email)
			u.SetName(name)
			u.UpdateUpdateTime()
		}).
		Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("upsert user: %w", err)
	}
	return s.db.User.Get(ctx, v.UserID)
}

// Me returns the viewer's user row, creating it on first use and
// refreshing its email and name when the token's claims changed.
func (s *Service) Me(ctx context.Context) (*ent.User, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	u, err := s.db.User.Get(ctx, v.UserID)
	switch {
	case ent.IsNotFound(err):
		return s.EnsureUser(ctx)
	case err != nil:
		return nil, err
	case u.Email != pgtext.Clip(v.Email, maxUserEmail) || u.Name != pgtext.Clip(v.Name, maxUserName):
		return s.EnsureUser(ctx)
	}
	return u, nil
}

// maxWorkspaceNameBytes is what the workspaces table's name holds: ent's
// MaxLen counts bytes, so a name of 100 characters, accented ones, would
// fail the insert (as INTERNAL).
const maxWorkspaceNameBytes = 100

// CreateWorkspace creates a workspace with the viewer as its owner and
// returns it. The name is trimmed and must be 1 to 100 characters.
func (s *Service) CreateWorkspace(ctx context.Context, name string) (*ent.Workspace, error) {
	if _, err := viewer(ctx); err != nil {
		return nil, err
	}
	name, err := validName(name)
	if err != nil {
		return nil, err
	}
	if _, err := s.EnsureUser(ctx); err != nil {
		return nil, err
	}
	var ws *ent.Workspace
	err = WithTx(ctx, s.db, func(tx *ent.Tx) error {
		var err error
		ws, err = tx.Workspace.Create().SetName(name).Save(ctx)
		if err != nil {
			return fmt.Errorf("create workspace: %w", err)
		}
		v, _ := auth.FromContext(ctx)
		return tx.Membership.Create().
			SetWorkspaceID(ws.ID).SetUserID(v.UserID).SetRole(auth.RoleOwner).
			Exec(ctx)
	})
	if err != nil {
		return nil, err
	}
	ws = ws.Unwrap()
	if s.cfg.EagerCustomers {
		// The workspace exists either way; a failed eager creation is
		// retried lazily at the first payment.
		if _, err := s.EnsureCustomer(ctx, ws.ID); err != nil {
			s.log.WarnContext(ctx, "eager Stripe customer creation failed; will retry at first payment", "workspace_id", ws.ID, "err", err)
		} else if ws, err = s.Workspace(ctx, ws.ID); err != nil {
			return nil, err
		}
	}
	return ws, nil
}

// Workspace returns a workspace the viewer may see; any other id, and a
// missing one, is NOT_FOUND.
func (s *Service) Workspace(ctx context.Context, id uuid.UUID) (*ent.Workspace, error) {
	ws, err := s.db.Workspace.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, notFound("workspace")
	}
	return ws, err
}

// RoleIn returns the viewer's role in a workspace, or "" when the viewer
// is not a member.
func (s *Service) RoleIn(ctx context.Context, workspaceID uuid.UUID) (auth.Role, error) {
	v, ok := auth.FromContext(ctx)
	if !ok || v.UserID == "" {
		return "", nil
	}
	return roleOf(ctx, s.db, workspaceID, v.UserID)
}

// roleOf returns userID's role in a workspace, read through db (inside a
// transaction, its client), or "" when they are not a member.
func roleOf(ctx context.Context, db *ent.Client, workspaceID uuid.UUID, userID string) (auth.Role, error) {
	m, err := db.Membership.Query().
		Where(membership.WorkspaceID(workspaceID), membership.UserID(userID)).
		Only(ctx)
	switch {
	case ent.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", err
	}
	return m.Role, nil
}

// requireRole returns the workspace when the viewer is a member with one of
// roles: NOT_FOUND when they are not a member, FORBIDDEN when the role is
// too weak.
func (s *Service) requireRole(ctx context.Context, workspaceID uuid.UUID, roles ...auth.Role) (*ent.Workspace, auth.Role, error) {
	if _, err := viewer(ctx); err != nil {
		return nil, "", err
	}
	ws, err := s.Workspace(ctx, workspaceID)
	if err != nil {
		return nil, "", err
	}
	role, err := s.RoleIn(ctx, workspaceID)
	if err != nil {
		return nil, "", err
	}
	if role == "" {
		// A platform admin may see a workspace it is not a member of, but
		// membership roles are needed to act in it.
		return nil, "", Errorf(CodeForbidden, "You are not a member of this workspace.")
	}
	for _, r := range roles {
		if role == r {
			return ws, role, nil
		}
	}
	return nil, role, Errorf(CodeForbidden, "Your role in this workspace does not allow this.")
}

// AddMember adds userID to a workspace with a role and returns the
// membership, without asking them: a platform admin's tool (support,
// migrations), logged. Everyone else invites (Invite), and the invitee
// joins by accepting. A user already in the workspace is BAD_USER_INPUT.
func (s *Service) AddMember(ctx context.Context, workspaceID uuid.UUID, userID string, role auth.Role) (*ent.Membership, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	userID = strings.TrimSpace(userID)
	if userID == "" || len(userID) > 255 {
		return nil, InvalidInput("userId", "User id must be 1 to 255 characters.")
	}
	if !validRole(role) {
		return nil, InvalidInput("role", "Unknown role.")
	}
	if _, err := s.Workspace(ctx, workspaceID); err != nil {
		return nil, err
	}
	if !v.Admin {
		return nil, Errorf(CodeForbidden, "Invite people with inviteWorkspaceMember: they join when they accept.")
	}
	// A platform admin is no member: the privacy rules admit members' own
	// writes, so this one write is allowed explicitly, after the check above.
	allowed := privacy.DecisionContext(ctx, privacy.Allow)
	var m *ent.Membership
	err = WithTx(allowed, s.db, func(tx *ent.Tx) error {
		if _, err := lockWorkspace(allowed, tx, workspaceID, s.rowLocks()); err != nil {
			return err
		}
		// The new member may never have signed in; their row is created
		// bare and filled from their token on first use.
		if err := tx.User.Create().SetID(userID).
			OnConflictColumns(user.FieldID).DoNothing().
			Exec(allowed); err != nil && !isNoRowsFromDoNothing(err) {
			return fmt.Errorf("ensure member user: %w", err)
		}
		m, err = tx.Membership.Create().
			SetWorkspaceID(workspaceID).SetUserID(userID).SetRole(role).
			Save(allowed)
		if ent.IsConstraintError(err) {
			return InvalidInput("userId", "This user is already a member of the workspace.")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "platform admin added a workspace member", "admin", v.UserID, "workspace_id", workspaceID, "user_id", userID, "role", role)
	s.membersChanged(ctx, workspaceID)
	return m.Unwrap(), nil
}

// validName trims a workspace name and checks it fits its column: 1 to
// 100 bytes.
func validName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > maxWorkspaceNameBytes {
		return "", InvalidInput("name", "Workspace name must be 1 to 100 characters, and at most 100 bytes (fewer characters with accents or non-Latin letters).")
	}
	return name, nil
}

// RenameWorkspace renames a workspace (owners and admins) and returns it.
func (s *Service) RenameWorkspace(ctx context.Context, workspaceID uuid.UUID, name string) (*ent.Workspace, error) {
	name, err := validName(name)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.requireRole(ctx, workspaceID, auth.RoleOwner, auth.RoleAdmin); err != nil {
		return nil, err
	}
	ws, err := s.db.Workspace.UpdateOneID(workspaceID).SetName(name).Save(ctx)
	if ent.IsNotFound(err) {
		return nil, notFound("workspace")
	}
	return ws, err
}

// DeleteWorkspace deletes a workspace (owners only). It first ends what
// could still charge the customer at Stripe: open Checkout Sessions are
// expired and the live subscription is canceled now, so that a Stripe
// failure leaves the workspace as it was. Then, in one transaction, every
// membership and pending invitation ends and the workspace is marked
// deleted: nobody reaches it any more (tenancy needs a membership), while
// its payments, invoices, refunds, subscriptions and Stripe Customer stay
// for accounting, readable by platform admins. Every former member's open
// subscriptions to its events end.
func (s *Service) DeleteWorkspace(ctx context.Context, workspaceID uuid.UUID) (*ent.Workspace, error) {
	if _, _, err := s.requireRole(ctx, workspaceID, auth.RoleOwner); err != nil {
		return nil, err
	}
	if err := s.endBilling(ctx, workspaceID); err != nil {
		return nil, err
	}
	var ws *ent.Workspace
	var former []string
	err := s.memberChange(ctx, workspaceID, func(tx *ent.Tx, mine auth.Role) error {
		if mine != auth.RoleOwner {
			return Errorf(CodeForbidden, "Only an owner can delete the workspace.")
		}
		var err error
		if former, err = tx.Membership.Query().Where(membership.WorkspaceID(workspaceID)).
			Select(membership.FieldUserID).Strings(ctx); err != nil {
			return err
		}
		if _, err := tx.Invitation.Update().
			Where(invitation.WorkspaceID(workspaceID), invitation.StatusEQ(invitation.StatusPending)).
			SetStatus(invitation.StatusRevoked).SetRespondedAt(time.Now()).Save(ctx); err != nil {
			return err
		}
		if ws, err = tx.Workspace.UpdateOneID(workspaceID).SetDeletedAt(time.Now()).Save(ctx); err != nil {
			return err
		}
		// Last: the owner's own membership is what allowed the writes above.
		_, err = tx.Membership.Delete().Where(membership.WorkspaceID(workspaceID)).Exec(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	for _, u := range former {
		s.accessEnded(ctx, workspaceID, u, AccessEndedRemoved)
	}
	s.log.InfoContext(ctx, "workspace deleted", "workspace_id", workspaceID, "members", len(former))
	return ws.Unwrap(), nil
}

// endBilling expires a workspace's open Checkout Sessions and cancels its
// live subscription at Stripe, now; it spends the workspace's Stripe
// budget only when there is something to end.
func (s *Service) endBilling(ctx context.Context, workspaceID uuid.UUID) error {
	open, err := s.db.CheckoutSession.Query().
		Where(checkoutsession.WorkspaceID(workspaceID), checkoutsession.StatusIn(checkoutsession.StatusOpen, checkoutsession.StatusCreating)).
		All(ctx)
	if err != nil {
		return err
	}
	for _, row := range open {
		if row.StripeSessionID == nil {
			return errCheckoutBeingOpened
		}
		if err := spendWorkspaceBudget(ctx, workspaceID); err != nil {
			return err
		}
		// A session completed meanwhile has been applied; its
		// subscription is canceled below.
		if err := s.expireCheckout(ctx, row); err != nil && !errors.Is(err, errSecondSubscription) {
			return err
		}
	}
	row, err := s.currentSubscription(ctx, s.db, workspaceID)
	if err != nil || row == nil || subscriptionEnded(row.Status) {
		return err
	}
	if s.stripe == nil {
		return errStripeNotConfigured
	}
	ws, err := s.Workspace(ctx, workspaceID)
	if err != nil {
		return err
	}
	if err := spendWorkspaceBudget(ctx, workspaceID); err != nil {
		return err
	}
	_, err = s.cancelNow(ctx, ws, row)
	return err
}

func validRole(r auth.Role) bool {
	for _, v := range r.Values() {
		if string(r) == v {
			return true
		}
	}
	return false
}
