package stripefake

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

var eventSeq atomic.Int64

// Event wraps an object (its JSON) in a Stripe event envelope of the given
// type, created at created (whole seconds, as Stripe's are), with the API
// version stripe-go v76 expects. id "" gets a fresh evt_ id.
func Event(id, eventType string, object string, created time.Time) []byte {
	if id == "" {
		id = fmt.Sprintf("evt_test_%d_%d", time.Now().UnixNano(), eventSeq.Add(1))
	}
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "type": eventType, "api_version": stripe.APIVersion,
		"created": created.Unix(), "livemode": false, "pending_webhooks": 1,
		"request": map[string]any{"id": nil, "idempotency_key": nil},
		"data":    map[string]any{"object": json.RawMessage(object)},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// Sign returns the Stripe-Signature header for payload, made with
// stripe-go's own test helper as Stripe would sign it at time at.
func Sign(payload []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload: payload, Secret: secret, Timestamp: at,
	}).Header
}

// PaymentIntentJSON renders a PaymentIntent for an event.
func PaymentIntentJSON(id, status string, amount int64, currency string, metadata map[string]string) string {
	b, _ := json.Marshal(map[string]any{
		"id": id, "object": "payment_intent", "status": status, "amount": amount, "currency": currency,
		"metadata": metadata, "client_secret": id + "_secret_x",
	})
	return string(b)
}

// InvoiceJSON renders an invoice for an event.
func InvoiceJSON(id, customer, subscription, status string, due, paid int64, metadata map[string]string) string {
	b, _ := json.Marshal(map[string]any{
		"id": id, "object": "invoice", "customer": customer, "subscription": nullable(subscription),
		"status": status, "amount_due": due, "amount_paid": paid, "currency": "usd", "number": "INV-" + id,
		"period_start": time.Now().Add(-30 * 24 * time.Hour).Unix(), "period_end": time.Now().Unix(),
		"hosted_invoice_url": "https://invoice.stripe.com/i/" + id, "invoice_pdf": "https://pay.stripe.com/invoice/" + id + "/pdf",
		"subscription_details": map[string]any{"metadata": metadata},
	})
	return string(b)
}
