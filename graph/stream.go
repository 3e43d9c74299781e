package graph

import (
	"context"
	"encoding/json"
	"log/slog"

	"billingapi/billing"
)

// billingEventStream decodes a workspace's bus messages into billing
// events for a GraphQL subscription; the channel closes when ctx ends (the
// client unsubscribed or disconnected).
func billingEventStream(ctx context.Context, in <-chan []byte, log *slog.Logger) <-chan *billing.BillingEvent {
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
				var ev billing.BillingEvent
				if err := json.Unmarshal(msg, &ev); err != nil {
					log.WarnContext(ctx, "event bus: undecodable event dropped", "err", err)
					continue
				}
				select {
				case out <- &ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
