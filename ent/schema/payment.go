package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Payment is a one-time payment: one Stripe PaymentIntent. The row is
// claimed (status `creating`, unique request_key) before Stripe is called,
// so that a retried or concurrent request with the same idempotency key
// finds it instead of paying twice.
type Payment struct {
	ent.Schema
}

// Fields of the Payment.
func (Payment) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New).Immutable(),
		field.String("stripe_payment_intent_id").Optional().Nillable().Unique().MaxLen(255),
		// request_key is the hash of workspace, user and the
		// client's idempotency key: our own record of the request.
		field.String("request_key").Optional().Nillable().Unique().MaxLen(128).Immutable(),
		field.Int64("amount").NonNegative().Immutable(),
		field.String("currency").MaxLen(3).Immutable(),
		field.String("purpose").MaxLen(255).Immutable(),
		// status is the PaymentIntent's status, or `creating` while the
		// request that claimed the row is still talking to Stripe.
		// After success, refunds move it to refund_pending (a refund not yet
		// confirmed), partially_refunded, or refunded (only once Stripe's
		// charge.refunded says the whole amount came back).
		field.Enum("status").Values(
			"creating", "requires_payment_method", "requires_confirmation", "requires_action",
			"processing", "requires_capture", "canceled", "succeeded", "failed",
			"refund_pending", "partially_refunded", "refunded",
		).Default("creating"),
		// amount_refunded is what Stripe's charge.refunded confirmed.
		field.Int64("amount_refunded").NonNegative().Default(0),
		field.String("created_by").MaxLen(255).Immutable(),
		// last_error_code is the code of the last failed Stripe call or
		// payment attempt, for support.
		field.String("last_error_code").Optional().MaxLen(100),
		// last_event_at is the created time of the last Stripe event
		// applied: an older event never rolls the status back.
		field.Time("last_event_at").Optional().Nillable(),
	}
}

// Edges of the Payment.
func (Payment) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("workspace", Workspace.Type).Ref("payments").Field("workspace_id").Unique().Required().Immutable(),
		edge.To("refunds", Refund.Type),
	}
}

// Indexes of the Payment.
func (Payment) Indexes() []ent.Index {
	return []ent.Index{index.Fields("workspace_id", "create_time")}
}

// Mixin of the Payment.
func (Payment) Mixin() []ent.Mixin {
	return []ent.Mixin{TenantMixin{}, TimeMixin{}}
}
