package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Refund is money given back on a Payment, created through the API and
// confirmed by Stripe's events. The row is claimed (status `creating`)
// under a lock on the payment before Stripe is called, so concurrent
// refunds can never add up to more than was paid.
type Refund struct {
	ent.Schema
}

// Fields of the Refund.
func (Refund) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New).Immutable(),
		field.String("stripe_refund_id").Optional().Nillable().Unique().MaxLen(255),
		field.String("request_key").Optional().Nillable().Unique().MaxLen(128).Immutable(),
		field.UUID("payment_id", uuid.UUID{}).Immutable(),
		field.Int64("amount").Positive().Immutable(),
		field.String("currency").MaxLen(3).Immutable(),
		field.Enum("reason").Values("requested_by_customer", "duplicate", "fraudulent").Immutable(),
		field.String("reason_detail").Optional().MaxLen(500).Immutable(),
		// status is Stripe's (pending, requires_action, succeeded, failed,
		// canceled), or `creating` while we ask Stripe.
		field.Enum("status").Values("creating", "pending", "requires_action", "succeeded", "failed", "canceled").Default("creating"),
		field.String("refunded_by").MaxLen(255).Immutable(),
		field.String("failure_reason").Optional().MaxLen(255),
		field.Time("last_event_at").Optional().Nillable(),
	}
}

// Edges of the Refund.
func (Refund) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("workspace", Workspace.Type).Ref("refunds").Field("workspace_id").Unique().Required().Immutable(),
		edge.From("payment", Payment.Type).Ref("refunds").Field("payment_id").Unique().Required().Immutable(),
	}
}

// Indexes of the Refund.
func (Refund) Indexes() []ent.Index {
	return []ent.Index{index.Fields("payment_id")}
}

// Mixin of the Refund.
func (Refund) Mixin() []ent.Mixin {
	return []ent.Mixin{TenantMixin{}, TimeMixin{}}
}
