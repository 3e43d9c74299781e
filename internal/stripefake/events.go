package stripefake

import (
	"time"

	"billingapi/internal/stripeevent"
)

// The events and objects tests post are stripeevent's; these names keep
// them at hand beside the fake.

// Event wraps an object in a Stripe event envelope (stripeevent.Event).
func Event(id, eventType string, object string, created time.Time) []byte {
	return stripeevent.Event(id, eventType, object, created)
}

// Sign returns the Stripe-Signature header for payload (stripeevent.Sign).
func Sign(payload []byte, secret string, at time.Time) string {
	return stripeevent.Sign(payload, secret, at)
}

// PaymentIntentJSON renders a PaymentIntent for an event
// (stripeevent.PaymentIntentJSON).
func PaymentIntentJSON(id, status string, amount int64, currency string, metadata map[string]string) string {
	return stripeevent.PaymentIntentJSON(id, status, amount, currency, metadata)
}

// InvoiceJSON renders an invoice for an event (stripeevent.InvoiceJSON).
func InvoiceJSON(id, customer, subscription, status string, due, paid int64, metadata map[string]string) string {
	return stripeevent.InvoiceJSON(id, customer, subscription, status, due, paid, metadata)
}

// Subscription describes a Stripe subscription (stripeevent.Subscription).
type Subscription = stripeevent.Subscription

// SubscriptionJSON renders s in Stripe's JSON shape
// (stripeevent.SubscriptionJSON).
func SubscriptionJSON(s Subscription) string { return stripeevent.SubscriptionJSON(s) }
