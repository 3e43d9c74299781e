package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// CheckoutSession is a hosted Stripe Checkout Session. Nothing is granted
// when it is created; it completes through the checkout.session.completed
// webhook (or an early, verified sync).
type CheckoutSession struct {
	ent.Schema
}

// Fields of the CheckoutSession.
func (CheckoutSession) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New).Immutable(),
		field.String("stripe_session_id").Optional().Nillable().Unique().MaxLen(255),
		field.String("request_key").Optional().Nillable().Unique().MaxLen(128).Immutable(),
		field.Enum("mode").Values("payment", "subscription").Immutable(),
		field.String("lookup_key").MaxLen(200).Immutable(),
		field.String("price_id").MaxLen(255).Immutable(),
		field.String("plan").MaxLen(200).Immutable(),
		field.Int64("quantity").Positive().Immutable(),
		// status is the session's: open, complete or expired; `creating`
		// while the claiming request talks to Stripe.
		field.Enum("status").Values("creating", "open", "complete", "expired").Default("creating"),
		field.String("url").Optional().MaxLen(2048),
		field.String("created_by").MaxLen(255).Immutable(),
		// What the completed session produced.
		field.String("stripe_payment_intent_id").Optional().Nillable().MaxLen(255),
		field.String("stripe_subscription_id").Optional().Nillable().MaxLen(255),
		field.Time("completed_at").Optional().Nillable(),
	}
}

// Edges of the CheckoutSession.
func (CheckoutSession) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("workspace", Workspace.Type).Ref("checkout_sessions").Field("workspace_id").Unique().Required().Immutable(),
	}
}

// Indexes of the CheckoutSession.
func (CheckoutSession) Indexes() []ent.Index {
	return []ent.Index{index.Fields("workspace_id", "create_time")}
}

// Mixin of the CheckoutSession.
func (CheckoutSession) Mixin() []ent.Mixin {
	return []ent.Mixin{TenantMixin{}, TimeMixin{}}
}
