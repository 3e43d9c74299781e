package graph

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"

	"billingapi/billing"
	"billingapi/eventbus"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

func decodeBillingEvent(b []byte) (any, error) {
	var ev billing.BillingEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// billingEventStream returns a workspace's billing events for a GraphQL
// subscription; the channel closes when ctx ends (the client unsubscribed
// or disconnected). The bus hands each message over on its own goroutine,
// decoded once for all the replica's subscribers: no goroutine per
// subscriber. A subscriber that falls behind loses its oldest events.
//
// Under SharedEventResponses (the server's), the bus's messages go to the
// interceptor's eventFeed instead, and the returned channel carries only
// the events this subscriber renders for the others.
//
// The stream ends early when the subscriber's access to the workspace
// ends or narrows on any replica (a removal, a role dropped: eventbus.Bus
// RevokeAccess), or when its caller calls end; EndedSubscriptions then
// answers the reason as the subscription's last response.
func billingEventStream(ctx context.Context, bus *eventbus.Bus, workspaceID, userID string, log *slog.Logger) (events <-chan *billing.BillingEvent, end func(*eventbus.Revocation)) {
	if feed := feedFrom(ctx); feed != nil {
		feed.src = make(chan *eventbus.Message, eventbus.SubscriberBuffer)
		feed.out = make(chan *billing.BillingEvent, 1)
		end = bus.SubscribeAs(ctx, workspaceID, userID, func(m *eventbus.Message) { eventbus.Deliver(feed.src, m) }, func(r *eventbus.Revocation) {
			endedBy(ctx, r)
			close(feed.src)
		})
		return feed.out, end
	}
	out := make(chan *billing.BillingEvent, eventbus.SubscriberBuffer)
	end = bus.SubscribeAs(ctx, workspaceID, userID, func(m *eventbus.Message) {
		ev, err := m.Decode(decodeBillingEvent)
		if err != nil {
			log.WarnContext(ctx, "event bus: undecodable event dropped", "err", err)
			return
		}
		eventbus.Deliver(out, ev.(*billing.BillingEvent))
	}, func(r *eventbus.Revocation) {
		endedBy(ctx, r)
		close(out)
	})
	return out, end
}

// EndedSubscriptions answers a subscription that the server ended (its
// viewer's access to the workspace ended: billingEventStream) with one
// last response carrying why, as an error with extensions.code FORBIDDEN
// and extensions.reason (MEMBERSHIP_ENDED or ROLE_CHANGED), before gqlgen
// completes it. A client tells it from a normal end by that error, and
// subscribes again (after a role change) or leaves the workspace's page.
type EndedSubscriptions struct{}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = EndedSubscriptions{}

// ExtensionName implements graphql.HandlerExtension.
func (EndedSubscriptions) ExtensionName() string { return "EndedSubscriptions" }

// Validate implements graphql.HandlerExtension.
func (EndedSubscriptions) Validate(graphql.ExecutableSchema) error { return nil }

// subscriptionEndKey keys, in a subscription's context, where its stream
// records why the server ended it: an *atomic.Pointer[eventbus.Revocation].
type subscriptionEndKey struct{}

// endedBy records on the operation of ctx that r ended its subscription
// (nil: it ended normally).
func endedBy(ctx context.Context, r *eventbus.Revocation) {
	if why, ok := ctx.Value(subscriptionEndKey{}).(*atomic.Pointer[eventbus.Revocation]); ok && r != nil {
		why.Store(r)
	}
}

// InterceptOperation implements graphql.OperationInterceptor.
func (EndedSubscriptions) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
		return next(ctx)
	}
	ended := &atomic.Pointer[eventbus.Revocation]{}
	handler := next(context.WithValue(ctx, subscriptionEndKey{}, ended))
	finished := false
	return func(ctx context.Context) *graphql.Response {
		if finished {
			return nil // the inner handler has ended; it must not be asked again
		}
		resp := handler(ctx)
		if resp != nil {
			return resp
		}
		finished = true
		why := ended.Load()
		if why == nil || ctx.Err() != nil {
			return nil
		}
		msg := "You are no longer a member of this workspace."
		if why.Reason == billing.AccessEndedRoleChanged {
			msg = "Your role in this workspace changed. Subscribe again to continue."
		}
		return &graphql.Response{Errors: gqlerror.List{{
			Message:    msg,
			Extensions: map[string]any{"code": string(billing.CodeForbidden), "reason": why.Reason},
		}}}
	}
}
