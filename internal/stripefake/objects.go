package stripefake

import (
	"cmp"
	"encoding/json"
	"time"
)

// Subscription describes a Stripe subscription for a scripted answer or a
// webhook event; SubscriptionJSON renders it as Stripe would.
type Subscription struct {
	ID                string
	Status            string
	CustomerID        string
	ItemID            string
	PriceID           string
	LookupKey         string
	Quantity          int64
	CancelAtPeriodEnd bool
	// Metadata usually carries workspace_id and plan.
	Metadata     map[string]string
	PeriodStart  time.Time
	PeriodEnd    time.Time
	TrialEnd     time.Time
	CanceledAt   time.Time
	ClientSecret string // of the latest invoice's PaymentIntent, if any
	// PaymentStatus is that PaymentIntent's status; requires_payment_method
	// if empty.
	PaymentStatus string
}

// SubscriptionJSON renders s in Stripe's JSON shape (API 2023-10-16).
func SubscriptionJSON(s Subscription) string {
	unix := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.Unix()
	}
	if s.ItemID == "" {
		s.ItemID = "si_" + s.ID
	}
	if s.Quantity == 0 {
		s.Quantity = 1
	}
	obj := map[string]any{
		"id": s.ID, "object": "subscription", "status": s.Status, "customer": s.CustomerID,
		"cancel_at_period_end": s.CancelAtPeriodEnd, "metadata": s.Metadata,
		"current_period_start": unix(s.PeriodStart), "current_period_end": unix(s.PeriodEnd),
		"trial_end": unix(s.TrialEnd), "canceled_at": unix(s.CanceledAt),
		"items": map[string]any{"object": "list", "data": []any{map[string]any{
			"id": s.ItemID, "object": "subscription_item", "quantity": s.Quantity,
			"price": map[string]any{"id": s.PriceID, "object": "price", "lookup_key": nullable(s.LookupKey),
				"recurring": map[string]any{"interval": "month", "interval_count": 1}},
		}}},
	}
	if s.ClientSecret != "" {
		obj["latest_invoice"] = map[string]any{"id": "in_" + s.ID, "object": "invoice",
			"payment_intent": map[string]any{"id": "pi_" + s.ID, "object": "payment_intent",
				"status": cmp.Or(s.PaymentStatus, "requires_payment_method"), "client_secret": s.ClientSecret}}
	}
	b, _ := json.Marshal(obj)
	return string(b)
}
