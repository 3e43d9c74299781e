package graph

import (
	"context"
	"encoding/json"
	"log/slog"

	"billingapi/billing"
	"billingapi/cache"
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
func billingEventStream(ctx context.Context, bus *cache.Bus, workspaceID string, log *slog.Logger) <-chan *billing.BillingEvent {
	if feed := feedFrom(ctx); feed != nil {
		feed.src = make(chan *cache.Message, cache.SubscriberBuffer)
		feed.out = make(chan *billing.BillingEvent, 1)
		bus.SubscribeFunc(ctx, workspaceID, func(m *cache.Message) { cache.Deliver(feed.src, m) }, func() { close(feed.src) })
		return feed.out
	}
	out := make(chan *billing.BillingEvent, cache.SubscriberBuffer)
	bus.SubscribeFunc(ctx, workspaceID, func(m *cache.Message) {
		ev, err := m.Decode(decodeBillingEvent)
		if err != nil {
			log.WarnContext(ctx, "event bus: undecodable event dropped", "err", err)
			return
		}
		cache.Deliver(out, ev.(*billing.BillingEvent))
	}, func() { close(out) })
	return out
}
