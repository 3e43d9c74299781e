package stripefake

import (
	"encoding/json"
	"time"

	"billingapi/internal/stripeevent"
)

// Event wraps an object in a Stripe event envelope (stripeevent.Event).
func Event(id, eventType string, object string, created time.Time) []byte {
	return stripeevent.Event(id, eventType, object, created)
}

// Sign returns the Stripe-Signature header for payload (stripeevent.Sign).
func Sign(payload []byte, secret string, at time.Time) string {
	return stripeevent.Sign(payload, secret, at)
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
