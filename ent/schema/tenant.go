package schema

import (
	"context"
	"time"

	"billingapi/auth"
	"billingapi/ent"
	"billingapi/ent/membership"
	"billingapi/ent/privacy"

	entgo "entgo.io/ent"
	"entgo.io/ent/entql"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"entgo.io/ent/schema/mixin"
	"github.com/google/uuid"
)

// TenantMixin makes an entity belong to one workspace: a workspace_id
// column, and a privacy policy that confines every query and mutation to
// the viewer's workspaces. Each entity using it declares its own
// `workspace` edge on that field.
type TenantMixin struct {
	mixin.Schema
}

// Fields of the TenantMixin.
func (TenantMixin) Fields() []entgo.Field {
	return []entgo.Field{
		field.UUID("workspace_id", uuid.UUID{}).Immutable(),
	}
}

// Indexes of the TenantMixin.
func (TenantMixin) Indexes() []entgo.Index {
	return []entgo.Index{index.Fields("workspace_id")}
}

// Policy of the TenantMixin: rows are read and changed only within the
// viewer's workspaces (or the one workspace of a system viewer); platform
// admins read all; a row is created only in a workspace the viewer belongs
// to. Role checks (who may pay, refund) are the domain's, on top.
func (TenantMixin) Policy() entgo.Policy {
	return privacy.Policy{
		Query: privacy.QueryPolicy{
			denyIfNoViewer(),
			allowPlatformAdminReads(),
			privacy.FilterFunc(func(ctx context.Context, f privacy.Filter) error {
				v, _ := auth.FromContext(ctx)
				f.Where(tenantScope(v))
				return privacy.Allow
			}),
		},
		Mutation: privacy.MutationPolicy{
			denyIfNoViewer(),
			privacy.OnMutationOperation(privacy.MutationRuleFunc(allowTenantCreate), entgo.OpCreate),
			privacy.FilterFunc(func(ctx context.Context, f privacy.Filter) error {
				v, _ := auth.FromContext(ctx)
				f.Where(tenantScope(v))
				return privacy.Allow
			}),
			privacy.AlwaysDenyRule(),
		},
	}
}

// tenantScope is the entql predicate on a tenant-owned row that a viewer
// may reach: its workspace has the viewer as a member, or is the system
// viewer's workspace.
func tenantScope(v auth.Viewer) entql.P {
	if v.IsSystem() {
		return entql.FieldEQ("workspace_id", v.SystemWorkspace)
	}
	return entql.HasEdgeWith("workspace",
		entql.HasEdgeWith("memberships", entql.FieldEQ(membership.FieldUserID, v.UserID)))
}

// allowTenantCreate allows creating a row in a workspace the viewer is a
// member of (or the system viewer's workspace).
func allowTenantCreate(ctx context.Context, m entgo.Mutation) error {
	v, _ := auth.FromContext(ctx)
	tm, ok := m.(interface {
		WorkspaceID() (uuid.UUID, bool)
		Client() *ent.Client
	})
	if !ok {
		return privacy.Denyf("%s is not tenant-owned", m.Type())
	}
	wsID, ok := tm.WorkspaceID()
	if !ok {
		return privacy.Denyf("%s needs a workspace", m.Type())
	}
	if v.IsSystem() {
		if wsID == v.SystemWorkspace {
			return privacy.Allow
		}
		return privacy.Denyf("system viewer is scoped to another workspace")
	}
	member, err := tm.Client().Membership.Query().
		Where(membership.WorkspaceID(wsID), membership.UserID(v.UserID)).
		Exist(ctx)
	if err != nil {
		return err
	}
	if !member {
		return privacy.Denyf("not a member of the workspace")
	}
	return privacy.Allow
}

// TimeMixin adds create_time and update_time; connections list rows
// newest first by create_time.
type TimeMixin struct {
	mixin.Schema
}

// Fields of the TimeMixin.
func (TimeMixin) Fields() []entgo.Field {
	return []entgo.Field{
		field.Time("create_time").Default(time.Now).Immutable(),
		field.Time("update_time").Default(time.Now).UpdateDefault(time.Now),
	}
}
