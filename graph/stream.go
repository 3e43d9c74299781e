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

// billingEventStream turns a workspace's bus messages into billing events
// for a GraphQL subscription; the channel closes when ctx ends (the client
// unsubscribed or disconnected). Each message is decoded once for all the
// replica's subscribers.
func billingEventStream(ctx context.Context, in <-chan *cache.Message, log *slog.Logger) <-chan *billing.BillingEvent {
	out := make(chan *billing.BillingEvent)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case msg, ok := <-in:
				if !ok {
					return
				}
				ev, err := msg.Decode(decodeBillingEvent)
				if err != nil {
					log.WarnContext(ctx, "event bus: undecodable event dropped", "err", err)
					continue
				}
				select {
				case out <- ev.(*billing.BillingEvent):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
