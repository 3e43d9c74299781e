package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Invoice is a line of a workspace's billing history, kept from invoice
// webhooks.
type Invoice struct {
	ent.Schema
}

// Fields of the Invoice.
func (Invoice) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New).Immutable(),
		field.String("stripe_invoice_id").Unique().MaxLen(255).Immutable(),
		field.String("stripe_subscription_id").Optional().MaxLen(255),
		field.String("number").Optional().MaxLen(255),
		// status is Stripe's (draft, open, paid, uncollectible, void);
		// payment_failed is set when an attempt to pay it failed.
		field.String("status").MaxLen(64),
		field.Bool("payment_failed").Default(false),
		field.Int64("amount_due").NonNegative(),
		field.Int64("amount_paid").NonNegative(),
		field.String("currency").MaxLen(3),
		field.Time("period_start").Optional().Nillable(),
		field.Time("period_end").Optional().Nillable(),
		field.String("hosted_invoice_url").Optional().MaxLen(2048),
		field.String("invoice_pdf").Optional().MaxLen(2048),
		field.Time("last_event_at").Optional().Nillable(),
	}
}

// Edges of the Invoice.
func (Invoice) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("workspace", Workspace.Type).Ref("invoices").Field("workspace_id").Unique().Required().Immutable(),
	}
}

// Indexes of the Invoice.
func (Invoice) Indexes() []ent.Index {
	return []ent.Index{index.Fields("workspace_id", "create_time")}
}

// Mixin of the Invoice.
func (Invoice) Mixin() []ent.Mixin {
	return []ent.Mixin{TenantMixin{}, TimeMixin{}}
}
