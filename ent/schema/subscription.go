package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// Subscription mirrors one Stripe subscription of a workspace. A
// workspace has at most one live subscription at a time (the domain
// enforces it under a workspace lock); ended ones stay as history.
type Subscription struct {
	ent.Schema
}

// Fields of the Subscription.
func (Subscription) Fields() []ent.Field {
	return []ent.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New).Immutable(),
		field.String("stripe_subscription_id").Optional().Nillable().Unique().MaxLen(255),
		field.String("request_key").Optional().Nillable().Unique().MaxLen(128).Immutable(),
		// status is Stripe's subscription status, kept as a string: Stripe
		// may add statuses, and an unknown one must be stored (and grant
		// nothing), not refused. `creating` while we ask Stripe.
		field.String("status").MaxLen(64).Default("creating"),
		field.String("plan").MaxLen(200),
		field.String("lookup_key").MaxLen(200),
		field.String("price_id").MaxLen(255),
		field.String("stripe_item_id").Optional().MaxLen(255),
		field.Int64("quantity").Positive().Default(1),
		// features are the plan product's feature_set when the plan was
		// last set.
		field.Strings("features").Optional(),
		// critical_features are the features kept while past_due (the
		// product's critical_features metadata).
		field.Strings("critical_features").Optional(),
		field.Time("current_period_start").Optional().Nillable(),
		field.Time("current_period_end").Optional().Nillable(),
		field.Bool("cancel_at_period_end").Default(false),
		field.Time("canceled_at").Optional().Nillable(),
		field.Time("trial_end").Optional().Nillable(),
		// The discount applied (a promotion code's coupon): a percentage
		// or an amount in the smallest currency unit, never both.
		field.String("discount_code").Optional().MaxLen(255),
		field.Float("discount_percent_off").Optional(),
		field.Int64("discount_amount_off").Optional(),
		// last_event_at and last_event_id are the Stripe event last applied
		// to this row: an older event never rolls the state back.
		field.Time("last_event_at").Optional().Nillable(),
		field.String("last_event_id").Optional().MaxLen(255),
		field.String("created_by").MaxLen(255).Immutable(),
	}
}

// Edges of the Subscription.
func (Subscription) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("workspace", Workspace.Type).Ref("subscriptions").Field("workspace_id").Unique().Required().Immutable(),
	}
}

// Indexes of the Subscription.
func (Subscription) Indexes() []ent.Index {
	return []ent.Index{index.Fields("workspace_id", "create_time")}
}

// Mixin of the Subscription.
func (Subscription) Mixin() []ent.Mixin {
	return []ent.Mixin{TenantMixin{}, TimeMixin{}}
}
