package schema

// Tenancy rules. Every query and mutation of a tenant-owned entity passes
// through these rules, so a resolver that forgets a check still cannot
// read or write another workspace's rows. Each policy ends in a deny: a
// case nobody thought of is refused, not allowed.

import (
	"context"
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
)

// viewerFrom returns the viewer or a deny decision when there is none.
func viewerFrom(ctx context.Context) (auth.Viewer, error) {
	v, ok := auth.FromContext(ctx)
	if !ok {
		return auth.Viewer{}, privacy.Denyf("no viewer in context")
	}
	return v, nil
}

// denyIfNoViewer refuses every query and mutation made without a viewer.
func denyIfNoViewer() privacy.QueryMutationRule {
	return privacy.ContextQueryMutationRule(func(ctx context.Context) error {
		_, err := viewerFrom(ctx)
		if err != nil {
			return err
		}
		return privacy.Skip
	})
}

// allowPlatformAdminReads lets a platform admin read across workspaces
// (support, refunds, webhook replay). It grants no writes.
func allowPlatformAdminReads() privacy.QueryRule {
	return privacy.QueryRuleFunc(func(ctx context.Context, _ ent.Query) error {
		if v, _ := auth.FromContext(ctx); v.Admin {
			return privacy.Allow
		}
		return privacy.Skip
	})
}

// memberOf matches workspaces the user belongs to, optionally with one of
// the given roles.
func memberOf(userID string, roles ...auth.Role) predicate.Workspace {
	preds := []predicate.Membership{membership.UserID(userID)}
	if len(roles) > 0 {
		preds = append(preds, membership.RoleIn(roles...))
	}
	return workspace.HasMembershipsWith(preds...)
}

// workspaceScope returns the predicate on workspaces a viewer may reach:
// the one workspace of a system viewer, or those the user belongs to.
func workspaceScope(v auth.Viewer, roles ...auth.Role) predicate.Workspace {
	if v.IsSystem() {
		return workspace.ID(v.SystemWorkspace)
	}
	return memberOf(v.UserID, roles...)
}

// Policy of the Workspace: members read, owners and admins write, any
// signed-in user creates.
func (Workspace) Policy() ent.Policy {
	return privacy.Policy{
		Query: privacy.QueryPolicy{
			denyIfNoViewer(),
			allowPlatformAdminReads(),
			privacy.WorkspaceQueryRuleFunc(func(ctx context.Context, q *ent.WorkspaceQuery) error {
				v, _ := auth.FromContext(ctx)
				q.Where(workspaceScope(v))
				return privacy.Allow
			}),
		},
		Mutation: privacy.MutationPolicy{
			denyIfNoViewer(),
			privacy.OnMutationOperation(privacy.WorkspaceMutationRuleFunc(func(ctx context.Context, _ *ent.WorkspaceMutation) error {
				if v, _ := auth.FromContext(ctx); v.UserID != "" {
					return privacy.Allow
				}
				return privacy.Denyf("only a signed-in user creates a workspace")
			}), ent.OpCreate),
			privacy.OnMutationOperation(privacy.WorkspaceMutationRuleFunc(func(ctx context.Context, m *ent.WorkspaceMutation) error {
				v, _ := auth.FromContext(ctx)
				m.Where(workspaceScope(v, auth.RoleOwner, auth.RoleAdmin))
				return privacy.Allow
			}), ent.OpUpdate|ent.OpUpdateOne),
			privacy.OnMutationOperation(privacy.WorkspaceMutationRuleFunc(func(ctx context.Context, m *ent.WorkspaceMutation) error {
				v, _ := auth.FromContext(ctx)
				if v.IsSystem() {
					return privacy.Denyf("background work never deletes a workspace")
				}
				m.Where(memberOf(v.UserID, auth.RoleOwner))
				return privacy.Allow
			}), ent.OpDelete|ent.OpDeleteOne),
			privacy.AlwaysDenyRule(),
		},
	}
}

// Policy of the Membership: members of a workspace see its memberships;
// owners and admins add, change and remove them, but only owners touch an
// owner's membership or make someone an owner (as for adding); every
// member may end their own membership (leave).
func (Membership) Policy() ent.Policy {
	return privacy.Policy{
		Query: privacy.QueryPolicy{
			denyIfNoViewer(),
			allowPlatformAdminReads(),
			privacy.MembershipQueryRuleFunc(func(ctx context.Context, q *ent.MembershipQuery) error {
				v, _ := auth.FromContext(ctx)
				q.Where(membership.HasWorkspaceWith(workspaceScope(v)))
				return privacy.Allow
			}),
		},
		Mutation: privacy.MutationPolicy{
			denyIfNoViewer(),
			privacy.OnMutationOperation(privacy.MembershipMutationRuleFunc(allowMembershipCreate), ent.OpCreate),
			privacy.OnMutationOperation(privacy.MembershipMutationRuleFunc(func(ctx context.Context, m *ent.MembershipMutation) error {
				v, _ := auth.FromContext(ctx)
				if v.IsSystem() {
					return privacy.Denyf("background work never changes memberships")
				}
				byOwner := membership.HasWorkspaceWith(memberOf(v.UserID, auth.RoleOwner))
				if role, ok := m.Role(); ok && role == auth.RoleOwner {
					m.Where(byOwner)
					return privacy.Allow
				}
				allowed := []predicate.Membership{byOwner, membership.And(
					membership.HasWorkspaceWith(memberOf(v.UserID, auth.RoleAdmin)),
					membership.RoleNEQ(auth.RoleOwner))}
				if m.Op().Is(ent.OpDelete | ent.OpDeleteOne) {
					// Anyone may leave: their own membership is theirs to end.
					allowed = append(allowed, membership.UserID(v.UserID))
				}
				m.Where(membership.Or(allowed...))
				return privacy.Allow
			}), ent.OpUpdate|ent.OpUpdateOne|ent.OpDelete|ent.OpDeleteOne),
			privacy.AlwaysDenyRule(),
		},
	}
}

// allowMembershipCreate allows an owner or admin to add a member (only an
// owner adds another owner), an invitee to join with the role they were
// invited with, and the creator of a brand-new workspace to become its
// first owner.
func allowMembershipCreate(ctx context.Context, m *ent.MembershipMutation) error {
	v, _ := auth.FromContext(ctx)
	if v.UserID == "" {
		return privacy.Denyf("only a signed-in user adds members")
	}
	wsID, okWS := m.WorkspaceID()
	newRole, okRole := m.Role()
	if !okWS || !okRole {
		return privacy.Denyf("membership needs a workspace and a role")
	}
	// The checks below must see every membership of the workspace, not only
	// those the viewer may read, so they run with an allow decision. They
	// read; they never return rows to the caller.
	sees := privacy.DecisionContext(ctx, privacy.Allow)
	mine, err := m.Client().Membership.Query().
		Where(membership.WorkspaceID(wsID), membership.UserID(v.UserID)).
		Only(sees)
	switch {
	case err == nil:
		if mine.Role == auth.RoleOwner || (mine.Role == auth.RoleAdmin && newRole != auth.RoleOwner) {
			return privacy.Allow
		}
		return privacy.Denyf("role %s may not add a %s", mine.Role, newRole)
	case !ent.IsNotFound(err):
		return err
	}
	newUser, _ := m.UserID()
	if newUser != v.UserID {
		return privacy.Denyf("not a member of the workspace")
	}
	// The invitee joins by accepting: a pending, unexpired invitation to
	// this workspace, with this role, addressed to them.
	invited, err := m.Client().Invitation.Query().
		Where(invitation.WorkspaceID(wsID), invitation.StatusEQ(invitation.StatusPending),
			invitation.ExpiresAtGT(time.Now()), invitation.RoleEQ(newRole), invitee(v)).
		Exist(sees)
	if err != nil {
		return err
	}
	if invited {
		return privacy.Allow
	}
	if newRole != auth.RoleOwner {
		return privacy.Denyf("not a member of the workspace")
	}
	taken, err := m.Client().Membership.Query().Where(membership.WorkspaceID(wsID)).Exist(sees)
	if err != nil {
		return err
	}
	if taken {
		return privacy.Denyf("workspace already has members")
	}
	return privacy.Allow
}

// Policy of the User: a user sees themself and the members of their
// workspaces, and writes only their own row.
func (User) Policy() ent.Policy {
	return privacy.Policy{
		Query: privacy.QueryPolicy{
			denyIfNoViewer(),
			allowPlatformAdminReads(),
			privacy.UserQueryRuleFunc(func(ctx context.Context, q *ent.UserQuery) error {
				v, _ := auth.FromContext(ctx)
				inScope := user.HasMembershipsWith(membership.HasWorkspaceWith(workspaceScope(v)))
				if v.IsSystem() {
					q.Where(inScope)
				} else {
					q.Where(user.Or(user.ID(v.UserID), inScope))
				}
				return privacy.Allow
			}),
		},
		Mutation: privacy.MutationPolicy{
			denyIfNoViewer(),
			privacy.OnMutationOperation(privacy.UserMutationRuleFunc(func(ctx context.Context, m *ent.UserMutation) error {
				v, _ := auth.FromContext(ctx)
				if id, ok := m.ID(); ok && v.UserID != "" && id == v.UserID {
					return privacy.Allow
				}
				return privacy.Denyf("a user writes only their own row")
			}), ent.OpCreate|ent.OpUpdateOne),
			privacy.AlwaysDenyRule(),
		},
	}
}

// invitee matches invitations addressed to the viewer: by user id, or by
// the email of their token (stored lowercased).
func invitee(v auth.Viewer) predicate.Invitation {
	preds := []predicate.Invitation{invitation.UserID(v.UserID)}
	if email := strings.ToLower(strings.TrimSpace(v.Email)); email != "" {
		preds = append(preds, invitation.Email(email))
	}
	return invitation.Or(preds...)
}

// Policy of the Invitation: the owners and admins of its workspace see,
// create and revoke it (only an owner invites an owner); its invitee sees
// it and answers it. Nobody deletes one: answered invitations are the
// workspace's record of who joined on whose word.
func (Invitation) Policy() ent.Policy {
	managers := func(v auth.Viewer) predicate.Invitation {
		return invitation.HasWorkspaceWith(memberOf(v.UserID, auth.RoleOwner, auth.RoleAdmin))
	}
	return privacy.Policy{
		Query: privacy.QueryPolicy{
			denyIfNoViewer(),
			allowPlatformAdminReads(),
			privacy.InvitationQueryRuleFunc(func(ctx context.Context, q *ent.InvitationQuery) error {
				v, _ := auth.FromContext(ctx)
				if v.UserID == "" {
					return privacy.Denyf("invitations are read by users")
				}
				q.Where(invitation.Or(managers(v), invitee(v)))
				return privacy.Allow
			}),
		},
		Mutation: privacy.MutationPolicy{
			denyIfNoViewer(),
			privacy.OnMutationOperation(privacy.InvitationMutationRuleFunc(func(ctx context.Context, m *ent.InvitationMutation) error {
				v, _ := auth.FromContext(ctx)
				wsID, okWS := m.WorkspaceID()
				role, okRole := m.Role()
				if v.UserID == "" || !okWS || !okRole {
					return privacy.Denyf("an invitation needs a signed-in inviter, a workspace and a role")
				}
				roles := []auth.Role{auth.RoleOwner, auth.RoleAdmin}
				if role == auth.RoleOwner {
					roles = roles[:1]
				}
				ok, err := m.Client().Workspace.Query().
					Where(workspace.ID(wsID), memberOf(v.UserID, roles...)).
					Exist(privacy.DecisionContext(ctx, privacy.Allow))
				if err != nil {
					return err
				}
				if !ok {
					return privacy.Denyf("role may not invite a %s", role)
				}
				return privacy.Allow
			}), ent.OpCreate),
			privacy.OnMutationOperation(privacy.InvitationMutationRuleFunc(func(ctx context.Context, m *ent.InvitationMutation) error {
				v, _ := auth.FromContext(ctx)
				if v.UserID == "" {
					return privacy.Denyf("invitations are answered by users")
				}
				m.Where(invitation.Or(managers(v), invitee(v)))
				return privacy.Allow
			}), ent.OpUpdate|ent.OpUpdateOne),
			privacy.AlwaysDenyRule(),
		},
	}
}
