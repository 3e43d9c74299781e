package schema

import (
	"billingapi/auth"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Invitation asks one person to join a workspace with a role. The invitee
// is named by user id (their token's subject) or by email (matched to the
// email claim of their token, case-insensitively); exactly one of the two
// is set. Only the invitee's acceptance makes a membership.
type Invitation struct {
	ent.Schema
}

// Fields of the Invitation.
func (Invitation) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New).Immutable(),
		field.UUID("workspace_id", uuid.UUID{}).Immutable(),
		// email is stored lowercased; "" when the invitee is named by id.
		field.String("email").MaxLen(320).Default("").Immutable(),
		// user_id is "" when the invitee is named by email; an accepted
		// invitation records who accepted it here.
		field.String("user_id").MaxLen(255).Default(""),
		field.Enum("role").GoType(auth.Role("")),
		field.String("invited_by").MaxLen(255).Immutable(),
		field.Enum("status").Values("pending", "accepted", "declined", "revoked").Default("pending"),
		field.Time("expires_at"),
		field.Time("responded_at").Optional().Nillable(),
	}
}

// Edges of the Invitation.
func (Invitation) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("workspace", Workspace.Type).Ref("invitations").Field("workspace_id").Unique().Required().Immutable(),
	}
}

// Indexes of the Invitation.
func (Invitation) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("workspace_id", "status"),
		index.Fields("user_id", "status"),
		index.Fields("email", "status"),
	}
}

// Mixin of the Invitation.
func (Invitation) Mixin() []ent.Mixin {
	return []ent.Mixin{TimeMixin{}}
}
