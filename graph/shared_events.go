package graph

import (
	"context"
	"log/slog"
	"slices"

	"billingapi/billing"
	"billingapi/eventbus"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// SharedEventResponses renders a billing event once for all of a
// replica's subscribers that sent the same subscription (the same
// document, operation and variables), instead of once per subscriber:
// with a thousand browser tabs on one workspace, executing the selection
// and encoding the result a thousand times was most of the server's work
// in a fan-out, before any byte was written to a socket.
//
// Why sharing is correct: the subscribers of one event are the members of
// its workspace (billingEvents checks membership before it subscribes),
// and every field under BillingEvent is either a copy of the published
// event or a read of that workspace's rows, which every member reads
// alike; no field there depends on who asks. TestBillingEventFieldsAreTheSameForEveryMember
// keeps it so: it fails when a field under BillingEvent gains a resolver
// or a directive that nobody has checked.
//
// How: the subscription's resolver hands this interceptor the bus's
// messages (an eventFeed) instead of decoded events. For each message the
// first subscriber with a given key passes the event on to gqlgen's
// execution, and the response is kept on the message (eventbus.Message.Share)
// for the others, which arrive meanwhile or later and wait for it rather
// than execute. A response cut short (its subscriber left while it was
// being rendered) is not shared: the next subscriber renders its own.
type SharedEventResponses struct {
	Log *slog.Logger
	// Observe, when set, is told for each response whether it was shared
	// (rendered for another subscriber) or rendered.
	Observe func(shared bool)
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = SharedEventResponses{}

// ExtensionName implements graphql.HandlerExtension.
func (SharedEventResponses) ExtensionName() string { return "SharedEventResponses" }

// Validate implements graphql.HandlerExtension.
func (SharedEventResponses) Validate(graphql.ExecutableSchema) error { return nil }

// eventFeed carries one subscription's events from the bus to gqlgen:
// billingEventStream fills in src (the bus's messages, closed when the
// subscription ends) and returns out to gqlgen, which reads one event
// from it for each response it renders.
type eventFeed struct {
	src chan *eventbus.Message
	out chan *billing.BillingEvent
}

type eventFeedKey struct{}

// feedFrom returns the eventFeed that SharedEventResponses put in ctx for
// the subscription's resolver, or nil.
func feedFrom(ctx context.Context) *eventFeed {
	f, _ := ctx.Value(eventFeedKey{}).(*eventFeed)
	return f
}

// InterceptOperation implements graphql.OperationInterceptor.
func (s SharedEventResponses) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
		return next(ctx)
	}
	key, ok := responseKey(oc, "") // the same for every member (TestBillingEventFieldsAreTheSameForEveryMember)
	if !ok {
		return next(ctx)
	}
	feed := &eventFeed{}
	handler := next(context.WithValue(ctx, eventFeedKey{}, feed))
	if feed.src == nil {
		// Refused before its resolver subscribed: handler answers the error.
		return handler
	}
	return s.respond(feed, key, handler)
}

// respond returns the subscription's response handler: it waits for the
// next message, then returns the response shared under key, rendering it
// with handler when no other subscriber has.
func (s SharedEventResponses) respond(feed *eventFeed, key string, handler graphql.ResponseHandler) graphql.ResponseHandler {
	return func(ctx context.Context) *graphql.Response {
		for {
			var m *eventbus.Message
			select {
			case msg, open := <-feed.src:
				if !open {
					close(feed.out)
					return handler(ctx) // sees the end of out: nil
				}
				m = msg
			case <-ctx.Done():
				return nil
			}
			ev, err := m.Decode(decodeBillingEvent)
			if err != nil {
				s.log().WarnContext(ctx, "event bus: undecodable event dropped", "err", err)
				continue
			}
			rendered := false
			shared, err := m.Share(ctx, key, func() (any, bool) {
				rendered = true
				// out is empty here: each event sent is read by the
				// handler call that follows, unless ctx ended first,
				// and then this subscription ends.
				eventbus.Deliver(feed.out, ev.(*billing.BillingEvent))
				r := handler(ctx)
				if r == nil || ctx.Err() != nil {
					return r, false
				}
				// gqlgen renders every response of a subscription into
				// one buffer, so Data is overwritten by this
				// subscriber's next event: the others get a copy.
				c := *r
				c.Data = slices.Clone(r.Data)
				return &c, true
			})
			if err != nil || ctx.Err() != nil {
				// The subscriber left while waiting for another's
				// rendering, or while it was rendered: nothing to send.
				return nil
			}
			if s.Observe != nil {
				s.Observe(!rendered)
			}
			resp, _ := shared.(*graphql.Response)
			return resp
		}
	}
}

func (s SharedEventResponses) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}
