package billing

// Membership lifecycle: invitations, role changes, removal, leaving and
// ownership. The rules, as Slack, GitHub and Linear keep them:
//
//   - owners and admins invite, and remove or re-role members and admins;
//     only an owner invites, makes, demotes or removes an owner;
//   - a membership exists only by the member's consent: an invitation
//     answered by its invitee (AddMember stays for platform admins);
//   - a workspace always has an owner: the last owner can neither leave,
//     be removed, nor be demoted; they transfer ownership first;
//   - every change runs in one transaction that holds the workspace's row
//     lock, and the rules are checked against the memberships as they are
//     under that lock, so two admins removing each other at once leave one
//     of them, never neither.
//
// When a membership ends or its role drops, the member's open event
// subscriptions to the workspace end on every replica (accessEnded), and
// the near cache (and with it the response cache) forgets what it knew of
// the workspace (near.go's hooks), so that nothing answers for them from
// memory. A per-seat subscription's quantity follows every change in the
// member count (seats.go).

import (
	"context"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"billingapi/auth"
	"billingapi/ent"
	"billingapi/ent/invitation"
	"billingapi/ent/membership"
	"billingapi/ent/predicate"
	"billingapi/ent/privacy"
	"billingapi/ent/user"
	"billingapi/ent/workspace"

	"github.com/google/uuid"
)

// InvitationTTL is how long an invitation can be accepted.
const InvitationTTL = 7 * 24 * time.Hour

// maxPendingInvitations bounds a workspace's open invitations, so that a
// compromised admin account cannot fill the table.
const maxPendingInvitations = 500

// Why a member's access to a workspace ended, as AccessRevoker is told.
const (
	AccessEndedRemoved     = "MEMBERSHIP_ENDED"
	AccessEndedRoleChanged = "ROLE_CHANGED"
)

// AccessRevoker ends a user's open event subscriptions to a workspace on
// every replica (eventbus.Bus).
type AccessRevoker interface {
	RevokeAccess(ctx context.Context, workspaceID, userID, reason string) error
}

// InviteInput asks a person to join a workspace. Exactly one of Email and
// UserID names the invitee.
type InviteInput struct {
	WorkspaceID uuid.UUID
	Email       string
	UserID      string
	Role        auth.Role
}

// Invite invites a person to a workspace with a role and returns the
// pending invitation. Owners and admins invite; only an owner invites an
// owner. Inviting someone who has a pending invitation already renews it
// (its role and expiry) rather than making a second one; inviting a member
// is BAD_USER_INPUT.
func (s *Service) Invite(ctx context.Context, in InviteInput) (*ent.Invitation, error) {
	email, userID, err := inviteeOf(in)
	if err != nil {
		return nil, err
	}
	if !validRole(in.Role) {
		return nil, InvalidInput("role", "Unknown role.")
	}
	field := "userId"
	if email != "" {
		field = "email"
	}
	var inv *ent.Invitation
	err = s.memberChange(ctx, in.WorkspaceID, func(tx *ent.Tx, mine auth.Role) error {
		if mine != auth.RoleOwner && mine != auth.RoleAdmin {
			return Errorf(CodeForbidden, "Only owners and admins can invite people.")
		}
		if in.Role == auth.RoleOwner && mine != auth.RoleOwner {
			return Errorf(CodeForbidden, "Only an owner can invite another owner.")
		}
		members := tx.Membership.Query().Where(membership.WorkspaceID(in.WorkspaceID))
		if userID != "" {
			members = members.Where(membership.UserID(userID))
		} else {
			members = members.Where(membership.HasUserWith(user.EmailEqualFold(email)))
		}
		if taken, err := members.Exist(ctx); err != nil {
			return err
		} else if taken {
			return InvalidInput(field, "This person is already a member of the workspace.")
		}
		pending := tx.Invitation.Query().Where(invitation.WorkspaceID(in.WorkspaceID), invitation.StatusEQ(invitation.StatusPending))
		same, err := pending.Clone().Where(invitation.Email(email), invitation.UserID(userID)).First(ctx)
		switch {
		case err == nil:
			inv, err = same.Update().SetRole(in.Role).SetExpiresAt(time.Now().Add(InvitationTTL)).Save(ctx)
			return err
		case !ent.IsNotFound(err):
			return err
		}
		if n, err := pending.Clone().Where(invitation.ExpiresAtGT(time.Now())).Count(ctx); err != nil {
			return err
		} else if n >= maxPendingInvitations {
			return InvalidInput(field, fmt.Sprintf("This workspace has %d open invitations; revoke some first.", n))
		}
		v, _ := auth.FromContext(ctx)
		inv, err = tx.Invitation.Create().
			SetWorkspaceID(in.WorkspaceID).SetEmail(email).SetUserID(userID).SetRole(in.Role).
			SetInvitedBy(v.UserID).SetExpiresAt(time.Now().Add(InvitationTTL)).
			Save(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return inv.Unwrap(), nil
}

// inviteeOf validates and normalizes the invitee of in: a lowercased email
// address or a user id, exactly one.
func inviteeOf(in InviteInput) (email, userID string, err error) {
	email, userID = strings.TrimSpace(in.Email), strings.TrimSpace(in.UserID)
	switch {
	case email == "" && userID == "":
		return "", "", InvalidInput("email", "Give the invitee's email address or user id.")
	case email != "" && userID != "":
		return "", "", InvalidInput("email", "Give the invitee's email address or user id, not both.")
	case userID != "":
		if len(userID) > 255 {
			return "", "", InvalidInput("userId", "User id must be 1 to 255 characters.")
		}
		return "", userID, nil
	}
	addr, perr := mail.ParseAddress(email)
	if perr != nil || addr.Address != email || len(email) > 320 {
		return "", "", InvalidInput("email", "Enter a valid email address, like name@example.com.")
	}
	return strings.ToLower(email), "", nil
}

// MyInvitations returns the viewer's pending, unexpired invitations, newest
// first: those to their user id and those to their token's email.
func (s *Service) MyInvitations(ctx context.Context) ([]*ent.Invitation, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	q := s.db.Invitation.Query().
		Where(invitation.StatusEQ(invitation.StatusPending), invitation.ExpiresAtGT(time.Now()))
	byMe := []predicate.Invitation{invitation.UserID(v.UserID)}
	if email := strings.ToLower(strings.TrimSpace(v.Email)); email != "" {
		byMe = append(byMe, invitation.Email(email))
	}
	return q.Where(invitation.Or(byMe...)).
		Order(ent.Desc(invitation.FieldCreateTime)).Limit(100).All(ctx)
}

// InvitationWorkspaceName returns the name of an invitation's workspace,
// which its invitee may see before joining (the invitation is read
// through the privacy rules first, so only its invitee and the
// workspace's managers get here).
func (s *Service) InvitationWorkspaceName(ctx context.Context, inv *ent.Invitation) (string, error) {
	ws, err := s.db.Workspace.Get(privacy.DecisionContext(ctx, privacy.Allow), inv.WorkspaceID)
	if err != nil {
		return "", err
	}
	return ws.Name, nil
}

// InvitationInviterName returns the name (or, without one, the id) of who
// sent an invitation, for the invitee to recognize.
func (s *Service) InvitationInviterName(ctx context.Context, inv *ent.Invitation) (string, error) {
	u, err := s.db.User.Get(privacy.DecisionContext(ctx, privacy.Allow), inv.InvitedBy)
	switch {
	case ent.IsNotFound(err):
		return inv.InvitedBy, nil
	case err != nil:
		return "", err
	case u.Name != "":
		return u.Name, nil
	}
	return u.ID, nil
}

// pendingInvitation returns an invitation the viewer may see that can
// still be answered: NOT_FOUND for another's (or a missing) invitation,
// BAD_USER_INPUT for one answered or expired.
func pendingInvitation(ctx context.Context, tx *ent.Tx, id uuid.UUID) (*ent.Invitation, error) {
	inv, err := tx.Invitation.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, notFound("invitation")
	}
	if err != nil {
		return nil, err
	}
	switch {
	case inv.Status != invitation.StatusPending:
		return nil, InvalidInput("invitationId", fmt.Sprintf("This invitation was already %s.", inv.Status))
	case !inv.ExpiresAt.After(time.Now()):
		return nil, InvalidInput("invitationId", "This invitation has expired. Ask for a new one.")
	}
	return inv, nil
}

// onlyInvitee refuses (FORBIDDEN) a viewer whom inv does not invite: a
// manager of the workspace sees the invitation too, but only its invitee
// answers it.
func onlyInvitee(inv *ent.Invitation, v auth.Viewer) error {
	invited := inv.UserID == v.UserID
	if inv.UserID == "" {
		invited = inv.Email != "" && strings.EqualFold(inv.Email, strings.TrimSpace(v.Email))
	}
	if !invited {
		return Errorf(CodeForbidden, "This invitation is addressed to someone else.")
	}
	return nil
}

// AcceptInvitation makes the viewer a member of the invitation's workspace
// with its role, and returns the membership. Only the invitee accepts.
func (s *Service) AcceptInvitation(ctx context.Context, id uuid.UUID) (*ent.Membership, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := s.EnsureUser(ctx); err != nil {
		return nil, err
	}
	var m *ent.Membership
	var wsID uuid.UUID
	err = WithTx(ctx, s.db, func(tx *ent.Tx) error {
		inv, err := pendingInvitation(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := onlyInvitee(inv, v); err != nil {
			return err
		}
		wsID = inv.WorkspaceID
		if _, err := lockWorkspace(ctx, tx, wsID, s.rowLocks()); err != nil {
			return err
		}
		// Created before the invitation is marked: the membership's
		// privacy rule admits the invitee by their pending invitation.
		m, err = tx.Membership.Create().SetWorkspaceID(wsID).SetUserID(v.UserID).SetRole(inv.Role).Save(ctx)
		if ent.IsConstraintError(err) {
			return InvalidInput("invitationId", "You are already a member of this workspace.")
		}
		if err != nil {
			return err
		}
		return tx.Invitation.UpdateOne(inv).
			SetStatus(invitation.StatusAccepted).SetUserID(v.UserID).SetRespondedAt(time.Now()).
			Exec(ctx)
	})
	if err != nil {
		return nil, err
	}
	s.membersChanged(ctx, wsID)
	return m.Unwrap(), nil
}

// DeclineInvitation declines an invitation addressed to the viewer and
// returns it.
func (s *Service) DeclineInvitation(ctx context.Context, id uuid.UUID) (*ent.Invitation, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	return s.answerInvitation(ctx, id, invitation.StatusDeclined, func(_ *ent.Tx, inv *ent.Invitation) error {
		return onlyInvitee(inv, v)
	})
}

// RevokeInvitation withdraws a pending invitation of a workspace the
// viewer owns or administers, and returns it. Only an owner revokes an
// invitation to become an owner.
func (s *Service) RevokeInvitation(ctx context.Context, id uuid.UUID) (*ent.Invitation, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	return s.answerInvitation(ctx, id, invitation.StatusRevoked, func(tx *ent.Tx, inv *ent.Invitation) error {
		mine, err := roleOf(ctx, tx.Client(), inv.WorkspaceID, v.UserID)
		switch {
		case err != nil:
			return err
		case mine != auth.RoleOwner && mine != auth.RoleAdmin:
			return Errorf(CodeForbidden, "Only owners and admins can revoke invitations.")
		case inv.Role == auth.RoleOwner && mine != auth.RoleOwner:
			return Errorf(CodeForbidden, "Only an owner can revoke an invitation to become an owner.")
		}
		return nil
	})
}

// answerInvitation moves a pending invitation to status when allowed says
// the viewer may.
func (s *Service) answerInvitation(ctx context.Context, id uuid.UUID, status invitation.Status, allowed func(*ent.Tx, *ent.Invitation) error) (*ent.Invitation, error) {
	var inv *ent.Invitation
	err := WithTx(ctx, s.db, func(tx *ent.Tx) error {
		var err error
		if inv, err = pendingInvitation(ctx, tx, id); err != nil {
			return err
		}
		if err := allowed(tx, inv); err != nil {
			return err
		}
		inv, err = inv.Update().SetStatus(status).SetRespondedAt(time.Now()).Save(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return inv.Unwrap(), nil
}

// RemoveMember ends userID's membership of a workspace. Owners and admins
// remove members and admins; only an owner removes an owner, and never the
// last one. Removing oneself is leaving (LeaveWorkspace).
func (s *Service) RemoveMember(ctx context.Context, workspaceID uuid.UUID, userID string) error {
	v, err := viewer(ctx)
	if err != nil {
		return err
	}
	userID = strings.TrimSpace(userID)
	if userID == v.UserID {
		return s.LeaveWorkspace(ctx, workspaceID)
	}
	err = s.memberChange(ctx, workspaceID, func(tx *ent.Tx, mine auth.Role) error {
		target, err := membershipOf(ctx, tx, workspaceID, userID)
		if err != nil {
			return err
		}
		switch {
		case mine != auth.RoleOwner && mine != auth.RoleAdmin:
			return Errorf(CodeForbidden, "Only owners and admins can remove members.")
		case target.Role == auth.RoleOwner && mine != auth.RoleOwner:
			return Errorf(CodeForbidden, "Only an owner can remove an owner.")
		}
		return tx.Membership.DeleteOne(target).Exec(ctx)
	})
	if err != nil {
		return err
	}
	s.accessEnded(ctx, workspaceID, userID, AccessEndedRemoved)
	s.membersChanged(ctx, workspaceID)
	return nil
}

// LeaveWorkspace ends the viewer's own membership. The last owner cannot
// leave: they transfer ownership, or delete the workspace.
func (s *Service) LeaveWorkspace(ctx context.Context, workspaceID uuid.UUID) error {
	v, err := viewer(ctx)
	if err != nil {
		return err
	}
	err = s.memberChange(ctx, workspaceID, func(tx *ent.Tx, mine auth.Role) error {
		if mine == auth.RoleOwner {
			if err := notLastOwner(ctx, tx, workspaceID, "workspaceId", "You are the workspace's only owner: transfer ownership or delete the workspace instead."); err != nil {
				return err
			}
		}
		_, err := tx.Membership.Delete().
			Where(membership.WorkspaceID(workspaceID), membership.UserID(v.UserID)).Exec(ctx)
		return err
	})
	if err != nil {
		return err
	}
	s.accessEnded(ctx, workspaceID, v.UserID, AccessEndedRemoved)
	s.membersChanged(ctx, workspaceID)
	return nil
}

// ChangeMemberRole sets userID's role in a workspace and returns the
// membership. Owners and admins move people between member and admin;
// only an owner makes or demotes an owner, and the last owner is never
// demoted.
func (s *Service) ChangeMemberRole(ctx context.Context, workspaceID uuid.UUID, userID string, role auth.Role) (*ent.Membership, error) {
	if !validRole(role) {
		return nil, InvalidInput("role", "Unknown role.")
	}
	userID = strings.TrimSpace(userID)
	var m *ent.Membership
	var before auth.Role
	err := s.memberChange(ctx, workspaceID, func(tx *ent.Tx, mine auth.Role) error {
		target, err := membershipOf(ctx, tx, workspaceID, userID)
		if err != nil {
			return err
		}
		before = target.Role
		switch {
		case mine != auth.RoleOwner && mine != auth.RoleAdmin:
			return Errorf(CodeForbidden, "Only owners and admins can change roles.")
		case (role == auth.RoleOwner || target.Role == auth.RoleOwner) && mine != auth.RoleOwner:
			return Errorf(CodeForbidden, "Only an owner can make or demote an owner.")
		case target.Role == role:
			m = target
			return nil
		case target.Role == auth.RoleOwner:
			if err := notLastOwner(ctx, tx, workspaceID, "role", "This is the workspace's only owner: make someone else an owner first."); err != nil {
				return err
			}
		}
		m, err = tx.Membership.UpdateOne(target).SetRole(role).Save(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	if roleRank(role) < roleRank(before) {
		s.accessEnded(ctx, workspaceID, userID, AccessEndedRoleChanged)
	}
	return m.Unwrap(), nil
}

// TransferOwnership makes userID, a member, an owner, and the viewer (an
// owner) an admin, at once; it returns the workspace.
func (s *Service) TransferOwnership(ctx context.Context, workspaceID uuid.UUID, userID string) (*ent.Workspace, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	userID = strings.TrimSpace(userID)
	err = s.memberChange(ctx, workspaceID, func(tx *ent.Tx, mine auth.Role) error {
		if mine != auth.RoleOwner {
			return Errorf(CodeForbidden, "Only an owner can transfer ownership.")
		}
		if userID == v.UserID {
			return InvalidInput("userId", "Choose another member to hand ownership to.")
		}
		target, err := membershipOf(ctx, tx, workspaceID, userID)
		if err != nil {
			return err
		}
		if target.Role != auth.RoleOwner {
			if err := tx.Membership.UpdateOne(target).SetRole(auth.RoleOwner).Exec(ctx); err != nil {
				return err
			}
		}
		_, err = tx.Membership.Update().
			Where(membership.WorkspaceID(workspaceID), membership.UserID(v.UserID)).
			SetRole(auth.RoleAdmin).Save(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.accessEnded(ctx, workspaceID, v.UserID, AccessEndedRoleChanged)
	return s.Workspace(ctx, workspaceID)
}

// memberChange runs change in a transaction that holds the workspace's
// lock, with the viewer's role as it is under that lock; a viewer who is
// not (or no longer) a member is NOT_FOUND, as for any workspace they
// cannot see.
func (s *Service) memberChange(ctx context.Context, workspaceID uuid.UUID, change func(tx *ent.Tx, mine auth.Role) error) error {
	v, err := viewer(ctx)
	if err != nil {
		return err
	}
	return WithTx(ctx, s.db, func(tx *ent.Tx) error {
		if _, err := lockWorkspace(ctx, tx, workspaceID, s.rowLocks()); err != nil {
			return err
		}
		mine, err := roleOf(ctx, tx.Client(), workspaceID, v.UserID)
		if err != nil {
			return err
		}
		if mine == "" {
			return notFound("workspace")
		}
		return change(tx, mine)
	})
}

// lockWorkspace takes the workspace's row lock for the rest of tx (on
// PostgreSQL; SQLite runs one writer at a time) and returns the workspace;
// a deleted or missing one is NOT_FOUND. Membership changes take it so
// that their rules see each other's results.
func lockWorkspace(ctx context.Context, tx *ent.Tx, id uuid.UUID, rowLocks bool) (*ent.Workspace, error) {
	q := tx.Workspace.Query().Where(workspace.ID(id), workspace.DeletedAtIsNil())
	if rowLocks {
		q = q.ForUpdate()
	}
	// The lock is taken for the viewer's change, which the caller checks
	// against their membership read under it; the read itself must see a
	// workspace the viewer may only be leaving.
	ws, err := q.Only(privacy.DecisionContext(ctx, privacy.Allow))
	if ent.IsNotFound(err) {
		return nil, notFound("workspace")
	}
	return ws, err
}

// membershipOf returns userID's membership of a workspace inside tx, or
// NOT_FOUND naming the member.
func membershipOf(ctx context.Context, tx *ent.Tx, workspaceID uuid.UUID, userID string) (*ent.Membership, error) {
	if userID == "" {
		return nil, InvalidInput("userId", "User id must be 1 to 255 characters.")
	}
	m, err := tx.Membership.Query().
		Where(membership.WorkspaceID(workspaceID), membership.UserID(userID)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, notFound("member")
	}
	return m, err
}

// notLastOwner refuses (BAD_USER_INPUT naming field, with message) when
// the workspace has one owner, who is about to stop being one.
func notLastOwner(ctx context.Context, tx *ent.Tx, workspaceID uuid.UUID, field, message string) error {
	n, err := tx.Membership.Query().
		Where(membership.WorkspaceID(workspaceID), membership.RoleEQ(auth.RoleOwner)).Count(ctx)
	if err != nil {
		return err
	}
	if n <= 1 {
		return InvalidInput(field, message)
	}
	return nil
}

// roleRank orders roles by what they may do.
func roleRank(r auth.Role) int {
	switch r {
	case auth.RoleOwner:
		return 3
	case auth.RoleAdmin:
		return 2
	case auth.RoleMember:
		return 1
	}
	return 0
}

// membersChanged follows a change in a workspace's member count: a
// per-seat plan's quantity follows it. It reads as the workspace's
// system: the viewer may have just left it.
func (s *Service) membersChanged(ctx context.Context, workspaceID uuid.UUID) {
	if live, err := hasLiveSubscription(systemCtx(ctx, workspaceID), s.db, workspaceID, ""); err == nil && live {
		s.scheduleSeatSync(workspaceID)
	}
}

// accessEnded tells every replica that userID's access to a workspace
// ended or narrowed (reason), so that their open event subscriptions end.
// The near cache already forgets the workspace by the membership write's
// own hook. A publication that fails is tried again in the background for
// a while: a removed member must not keep listening.
func (s *Service) accessEnded(ctx context.Context, workspaceID uuid.UUID, userID, reason string) {
	if s.access == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	publish := func() error { return s.access.RevokeAccess(ctx, workspaceID.String(), userID, reason) }
	if err := publish(); err == nil {
		return
	}
	go func() {
		delay := 250 * time.Millisecond
		var err error
		for range 8 {
			time.Sleep(delay)
			if err = publish(); err == nil {
				return
			}
			delay *= 2
		}
		s.log.ErrorContext(ctx, "access revocation not published: the user's open subscriptions to the workspace last until their token expires",
			"workspace_id", workspaceID, "user_id", userID, "err", err)
	}()
}
