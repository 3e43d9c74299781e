// Package stripeevent builds and signs Stripe webhook events the way
// Stripe does, and makes up the Stripe objects they carry (objects.go):
// the `trigger` development command sends them, and tests and the load
// benchmark post them. It imports nothing of the test tooling, so the
// server binary stays free of it.
package stripeevent

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

var seq atomic.Int64

// Event wraps an object (its JSON) in a Stripe event envelope of the given
// type, created at created (whole seconds, as Stripe's are), with the API
// version stripe-go v76 expects. id "" gets a fresh evt_ id.
func Event(id, eventType string, object string, created time.Time) []byte {
	if id == "" {
		id = fmt.Sprintf("evt_local_%d_%d", time.Now().UnixNano(), seq.Add(1))
	}
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "type": eventType, "api_version": stripe.APIVersion,
		"created": created.Unix(), "livemode": false, "pending_webhooks": 1,
		"request": map[string]any{"id": nil, "idempotency_key": nil},
		"data":    map[string]any{"object": json.RawMessage(object)},
	})
	if err != nil {
		panic(fmt.Sprintf("stripeevent: object is not JSON: %v", err))
	}
	return b
}

// Sign returns the Stripe-Signature header for payload, made with
// stripe-go's own helper as Stripe would sign it at time at.
func Sign(payload []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload: payload, Secret: secret, Timestamp: at,
	}).Header
}
