package schema

import (
	"context"

	"billingapi/auth"
	"billingapi/ent"
	"billingapi/ent/privacy"

	entgo "entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
	"github.com/google/uuid"
)

// WebhookEvent is one verified Stripe event, stored before Stripe is told
// it arrived, and then applied exactly once.
type WebhookEvent struct {
	entgo.Schema
}

// Fields of the WebhookEvent.
func (WebhookEvent) Fields() []entgo.Field {
	return []entgo.Field{
		field.UUID("id", uuid.UUID{}).Default(uuid.New).Immutable(),
		field.String("stripe_event_id").Unique().NotEmpty().MaxLen(255).Immutable(),
		field.String("type").MaxLen(255).Immutable(),
		field.String("api_version").MaxLen(64).Immutable(),
		// created is Stripe's creation time of the event (whole seconds).
		field.Time("created").Immutable(),
		field.Bool("livemode").Immutable(),
		// object_id is the id of the object the event is about, for
		// ordering and support.
		field.String("object_id").MaxLen(255).Default("").Immutable(),
		field.Bytes("payload").Immutable(),
		field.Enum("status").Values("received", "processed", "failed", "skipped").Default("received"),
		field.Int("attempts").Default(0),
		field.String("last_error").Optional().MaxLen(2000),
		field.Time("processed_at").Optional().Nillable(),
		// next_attempt_at is when a received or failed event is due; nil
		// once it is done or has used up its attempts.
		field.Time("next_attempt_at").Optional().Nillable(),
		// locked_until leases the event to one worker while it applies it.
		field.Time("locked_until").Optional().Nillable(),
		field.UUID("workspace_id", uuid.UUID{}).Optional().Nillable(),
	}
}

// Indexes of the WebhookEvent.
func (WebhookEvent) Indexes() []entgo.Index {
	return []entgo.Index{
		index.Fields("status", "next_attempt_at"),
		// The events still to apply, in the order the worker applies them:
		// a claim walks this and stops at its batch, passing over only the
		// failed events still waiting out a backoff, however long the
		// backlog or the history (without it, every claim read and sorted
		// the whole backlog). next_attempt_at is set exactly while an event
		// is still to apply, and the claim names the condition itself. The
		// claim names no status, so that the status index above is no
		// candidate for it (see webhooks.claimable).
		index.Fields("created", "create_time").
			Annotations(entsql.IndexWhere("next_attempt_at IS NOT NULL")).
			StorageKey("webhookevent_due_by_created"),
		index.Fields("type"),
		index.Fields("create_time"),
	}
}

// Mixin of the WebhookEvent.
func (WebhookEvent) Mixin() []entgo.Mixin {
	return []entgo.Mixin{TimeMixin{}}
}

// Policy of the WebhookEvent: the webhook service reads and writes events;
// platform admins read them and may mark one for replay; nobody else sees
// them (events carry every workspace's data).
func (WebhookEvent) Policy() entgo.Policy {
	webhooks := func(ctx context.Context) bool {
		v, _ := auth.FromContext(ctx)
		return v.Service == auth.WebhooksService
	}
	admin := func(ctx context.Context) bool {
		v, _ := auth.FromContext(ctx)
		return v.Admin && v.UserID != ""
	}
	return privacy.Policy{
		Query: privacy.QueryPolicy{
			denyIfNoViewer(),
			privacy.QueryRuleFunc(func(ctx context.Context, _ ent.Query) error {
				if webhooks(ctx) || admin(ctx) {
					return privacy.Allow
				}
				return privacy.Deny
			}),
		},
		Mutation: privacy.MutationPolicy{
			denyIfNoViewer(),
			privacy.MutationRuleFunc(func(ctx context.Context, m entgo.Mutation) error {
				if webhooks(ctx) || (admin(ctx) && m.Op().Is(entgo.OpUpdateOne)) {
					return privacy.Allow
				}
				return privacy.Deny
			}),
		},
	}
}
