package stripeevent

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Stripe objects, in the shape of API version 2023-10-16 (stripe-go v76),
// for the events and answers we make up: Sample gives whole objects (the
// `trigger` command and stripefake's catalog start from them when no
// stripe-mock is there to copy), the *JSON functions small ones with only
// what the server reads (tests and the load benchmark post thousands).

// samples are trimmed copies of stripe-mock's fixtures: the fields the
// server reads, and enough around them to look like Stripe.
var samples = map[string]string{
	"payment_intent": `{
		"id": "pi_trigger", "object": "payment_intent", "amount": 1099, "amount_capturable": 0,
		"amount_received": 0, "currency": "usd", "customer": null, "description": null,
		"capture_method": "automatic", "confirmation_method": "automatic",
		"automatic_payment_methods": {"enabled": true},
		"payment_method": null, "payment_method_types": ["card"],
		"last_payment_error": null, "latest_charge": null, "next_action": null,
		"canceled_at": null, "cancellation_reason": null, "metadata": {},
		"status": "requires_payment_method", "livemode": false, "created": 1234567890}`,

	"checkout.session": `{
		"id": "cs_trigger", "object": "checkout.session", "mode": "payment",
		"status": "open", "payment_status": "unpaid", "currency": null,
		"amount_subtotal": null, "amount_total": null, "customer": null, "customer_email": null,
		"customer_details": {"email": "example@example.com", "name": null},
		"payment_intent": "pi_1PgafyB7WZ01zgkWSjxsAJo3", "subscription": null, "invoice": null,
		"client_reference_id": null, "success_url": "https://example.com/success",
		"cancel_url": "https://example.com/cancel", "url": null, "expires_at": 1234567890,
		"metadata": {}, "payment_method_types": ["card"], "livemode": false, "created": 1234567890}`,

	"subscription": `{
		"id": "sub_trigger", "object": "subscription", "status": "active",
		"customer": "cus_QXg1o8vcGmoR32", "currency": "usd", "collection_method": "charge_automatically",
		"billing_cycle_anchor": 1234567890, "start_date": 1234567890,
		"cancel_at": null, "cancel_at_period_end": false, "canceled_at": null, "ended_at": null,
		"trial_start": null, "trial_end": null, "latest_invoice": null, "default_payment_method": null,
		"items": {
			"object": "list", "has_more": false, "url": "/v1/subscription_items?subscription=sub_trigger",
			"data": [{
				"id": "si_QXhVBoJ7NQdNXh", "object": "subscription_item", "quantity": 1,
				"subscription": "sub_trigger", "created": 1234567890, "metadata": {},
				"current_period_start": 1234567890, "current_period_end": 1234567890,
				"price": {
					"id": "price_1PgafmB7WZ01zgkW6dKueIc5", "object": "price", "active": true,
					"currency": "usd", "unit_amount": 2000, "unit_amount_decimal": "2000",
					"lookup_key": null, "nickname": null, "product": "prod_QXg1hqf4jFNsqG",
					"type": "recurring", "billing_scheme": "per_unit", "metadata": {},
					"recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
					"livemode": false, "created": 1234567890
				}
			}]
		},
		"metadata": {}, "livemode": false, "created": 1234567890}`,

	"invoice": `{
		"id": "in_trigger", "object": "invoice", "status": "draft",
		"customer": "cus_QXg1o8vcGmoR32", "currency": "usd",
		"amount_due": 1000, "amount_paid": 0, "amount_remaining": 1000,
		"subtotal": 1000, "total": 1000, "attempt_count": 0, "attempted": false,
		"billing_reason": "manual", "collection_method": "charge_automatically",
		"number": null, "hosted_invoice_url": null, "invoice_pdf": null,
		"period_start": 1234567890, "period_end": 1234567890,
		"status_transitions": {"finalized_at": null, "marked_uncollectible_at": null, "paid_at": null, "voided_at": null},
		"lines": {
			"object": "list", "has_more": false, "url": "/v1/invoices/in_trigger/lines",
			"data": [{
				"id": "il_tmp_1Pgc6sB7WZ01zgkWrG16hkdl", "object": "line_item", "amount": 1000,
				"currency": "usd", "description": "My First Invoice Item (created for API docs)",
				"invoice": "in_trigger", "quantity": 1, "metadata": {},
				"period": {"start": 1234567890, "end": 1234567890}, "livemode": false
			}]
		},
		"metadata": {}, "livemode": false, "created": 1234567890}`,

	"price": `{
		"id": "price_trigger", "object": "price", "active": true, "currency": "usd",
		"unit_amount": 2000, "unit_amount_decimal": "2000", "lookup_key": null, "nickname": null,
		"product": "prod_QXg1hqf4jFNsqG", "type": "recurring", "billing_scheme": "per_unit",
		"recurring": {"aggregate_usage": null, "interval": "month", "interval_count": 1, "meter": null,
			"trial_period_days": null, "usage_type": "licensed"},
		"custom_unit_amount": null, "tiers_mode": null, "transform_quantity": null,
		"tax_behavior": "unspecified", "metadata": {}, "livemode": false, "created": 1234567890}`,

	"product": `{
		"id": "prod_trigger", "object": "product", "active": true, "name": "T-shirt",
		"description": "Comfortable gray cotton t-shirt", "default_price": "price_1PgafmB7WZ01zgkW02Hf9z6c",
		"images": [], "marketing_features": [], "metadata": {},
		"package_dimensions": null, "shippable": null, "statement_descriptor": null,
		"tax_code": null, "unit_label": null, "url": null,
		"livemode": false, "created": 1234567890, "updated": 1234567890}`,

	"customer": `{
		"id": "cus_trigger", "object": "customer", "email": null, "name": null, "description": null,
		"balance": 0, "currency": "usd", "delinquent": false, "invoice_prefix": "7FE1103",
		"invoice_settings": {"custom_fields": null, "default_payment_method": null, "footer": null},
		"preferred_locales": [], "tax_exempt": "none", "metadata": {},
		"livemode": false, "created": 1234567890}`,
}

// Sample returns a fresh copy, free to change, of a whole Stripe object of
// the given type: payment_intent, checkout.session, subscription, invoice,
// price, product or customer. Integers are json.Number. It panics on any
// other type.
func Sample(object string) map[string]any {
	s, ok := samples[object]
	if !ok {
		panic(fmt.Sprintf("stripeevent: no sample %q", object))
	}
	obj, err := DecodeObject([]byte(s))
	if err != nil {
		panic(fmt.Sprintf("stripeevent: sample %q: %v", object, err))
	}
	return obj
}

// DecodeObject decodes a JSON object, keeping numbers as json.Number so
// that they are written back unchanged; anything but an object is an
// error.
func DecodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, errors.New("not a JSON object")
	}
	return obj, nil
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

// SubscriptionJSON renders s in Stripe's JSON shape.
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

// nullable is s, or JSON null for "".
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
