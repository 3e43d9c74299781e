package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/mixin"
	"github.com/google/uuid"
)

// Workspace is the tenant and the billing entity: it owns the Stripe
// Customer and everything paid for.
type Workspace struct {
	ent.Schema
}

// Fields of the Workspace.
func (Workspace) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New).Immutable(),
		field.String("name").NotEmpty().MaxLen(100),
		field.String("stripe_customer_id").Optional().Nillable().Unique().MaxLen(255),
		// billing_version counts the workspace's billing state changes; the
		// status cache keeps only the newest snapshot it has seen.
		field.Int64("billing_version").Default(0),
		// deleted_at is set when an owner deletes the workspace: its
		// memberships and invitations are gone, so nobody reaches it, and
		// its billing records stay for accounting.
		field.Time("deleted_at").Optional().Nillable(),
	}
}

// Edges of the Workspace.
func (Workspace) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("memberships", Membership.Type),
		edge.To("invitations", Invitation.Type),
		edge.To("payments", Payment.Type),
		edge.To("checkout_sessions", CheckoutSession.Type),
		edge.To("subscriptions", Subscription.Type),
		edge.To("invoices", Invoice.Type),
		edge.To("refunds", Refund.Type),
	}
}

// Mixin of the Workspace.
func (Workspace) Mixin() []ent.Mixin {
	return []ent.Mixin{mixin.Time{}}
}
