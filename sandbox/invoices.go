package sandbox

import (
	"fmt"
	"html"
	"net/http"
	"strings"
)

// Invoices: a subscription's first invoice, its renewals and its updates'
// prorations; finalized (open) with a PaymentIntent, then paid, failed and
// retried, voided or marked uncollectible.

// retrySchedule is when a failed renewal is retried, in days after its
// first failure: a simple fixed form of Stripe's Smart Retries (whose
// default policy retries up to 4 times within 2 weeks); after the last
// failed retry the subscription is canceled or left unpaid
// (Options.FailedRenewal).
var retrySchedule = []int64{3, 5, 7}

// line makes an invoice line for a subscription item.
func (s *Server) line(sub, item, price object, qty, amount, start, end int64, desc string) object {
	return object{
		"id": newID("il"), "object": "line_item", "amount": amount, "amount_excluding_tax": amount,
		"currency": price["currency"], "description": desc, "discount_amounts": []any{}, "discountable": true,
		"discounts": []any{}, "livemode": false, "metadata": map[string]any{},
		"period": object{"start": start, "end": end}, "plan": planOf(price), "price": clone(price),
		"proration": false, "proration_details": object{"credited_items": nil}, "quantity": qty,
		"subscription": sub["id"], "subscription_item": item["id"], "tax_amounts": []any{}, "tax_rates": []any{},
		"type": "subscription", "unit_amount_excluding_tax": itoa(num(price["unit_amount"])),
	}
}

func (s *Server) productName(price object) string {
	if p := s.get("product", idOf(price["product"])); p != nil {
		return str(p["name"])
	}
	return idOf(price["product"])
}

// money renders an amount as Stripe's line descriptions do: $29.00.
func money(amount int64, currency string) string {
	sign := ""
	if amount < 0 {
		sign, amount = "-", -amount
	}
	if currency == "usd" {
		return fmt.Sprintf("%s$%d.%02d", sign, amount/100, amount%100)
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, amount/100, amount%100, strings.ToUpper(currency))
}

// periodLines are the lines for one period of the subscription's items
// (zero amounts for a trial).
func (s *Server) periodLines(sub object, start, end int64, trial bool) []any {
	var out []any
	for _, it := range subItems(sub) {
		pr := it["price"].(map[string]any)
		qty := num(it["quantity"])
		amount := num(pr["unit_amount"]) * qty
		rec, _ := pr["recurring"].(map[string]any)
		desc := fmt.Sprintf("%d × %s (at %s / %s)", qty, s.productName(pr), money(num(pr["unit_amount"]), str(pr["currency"])), str(rec["interval"]))
		if trial {
			amount = 0
			desc = fmt.Sprintf("Trial period for %s", s.productName(pr))
		}
		out = append(out, s.line(sub, it, pr, qty, amount, start, end, desc))
	}
	return out
}

func sumLines(lines []any) int64 {
	var t int64
	for _, l := range lines {
		t += num(l.(map[string]any)["amount"])
	}
	return t
}

// buildInvoice makes an invoice object (not stored) for the subscription
// with the lines, applying its discount.
func (s *Server) buildInvoice(sub object, reason string, lines []any, periodStart, periodEnd int64) object {
	clock := s.clockOfObject(sub)
	now := s.nowOn(clock)
	cu := s.get("customer", idOf(sub["customer"]))
	inv := s.spec.blank("invoice")
	inv["account_country"] = "US"
	inv["account_name"] = "Stripe sandbox"
	inv["account_tax_ids"] = nil
	inv["amount_shipping"] = 0
	inv["application"] = nil
	inv["application_fee_amount"] = nil
	inv["attempt_count"] = 0
	inv["attempted"] = false
	inv["auto_advance"] = true
	inv["automatic_tax"] = object{"enabled": false, "liability": nil, "status": nil}
	inv["billing_reason"] = reason
	inv["charge"] = nil
	inv["collection_method"] = "charge_automatically"
	inv["created"] = now
	inv["currency"] = sub["currency"]
	inv["custom_fields"] = nil
	inv["customer"] = sub["customer"]
	inv["customer_address"] = nil
	inv["customer_email"] = cu["email"]
	inv["customer_name"] = cu["name"]
	inv["customer_phone"] = cu["phone"]
	inv["customer_shipping"] = nil
	inv["customer_tax_exempt"] = "none"
	inv["customer_tax_ids"] = []any{}
	inv["default_payment_method"] = nil
	inv["default_source"] = nil
	inv["default_tax_rates"] = []any{}
	inv["description"] = nil
	inv["discount"] = nil
	inv["discounts"] = []any{}
	inv["due_date"] = nil
	inv["effective_at"] = nil
	inv["ending_balance"] = nil
	inv["footer"] = nil
	inv["from_invoice"] = nil
	inv["hosted_invoice_url"] = nil
	inv["invoice_pdf"] = nil
	inv["issuer"] = object{"type": "self"}
	inv["last_finalization_error"] = nil
	inv["latest_revision"] = nil
	inv["livemode"] = false
	inv["metadata"] = map[string]any{}
	inv["next_payment_attempt"] = nil
	inv["number"] = nil
	inv["on_behalf_of"] = nil
	inv["paid"] = false
	inv["paid_out_of_band"] = false
	inv["payment_intent"] = nil
	inv["payment_settings"] = object{"default_mandate": nil, "payment_method_options": nil, "payment_method_types": nil}
	inv["period_start"] = periodStart
	inv["period_end"] = periodEnd
	inv["post_payment_credit_notes_amount"] = 0
	inv["pre_payment_credit_notes_amount"] = 0
	inv["quote"] = nil
	inv["receipt_number"] = nil
	inv["rendering"] = nil
	inv["shipping_cost"] = nil
	inv["shipping_details"] = nil
	inv["starting_balance"] = 0
	inv["statement_descriptor"] = nil
	inv["status"] = "draft"
	inv["status_transitions"] = object{"finalized_at": nil, "marked_uncollectible_at": nil, "paid_at": nil, "voided_at": nil}
	inv["subscription"] = sub["id"]
	inv["subscription_details"] = object{"metadata": clone(object{"m": sub["metadata"]})["m"]}
	inv["test_clock"] = sub["test_clock"]
	inv["total_tax_amounts"] = []any{}
	inv["transfer_data"] = nil
	inv["webhooks_delivered_at"] = nil
	inv["lines"] = object{"object": "list", "data": lines, "has_more": false, "total_count": len(lines), "url": ""}
	subtotal := sumLines(lines)
	off := int64(0)
	if d, _ := sub["discount"].(map[string]any); d != nil && (d["end"] == nil || num(d["end"]) > now) {
		off = discountOff(d, subtotal)
		inv["discount"] = clone(d)
		inv["discounts"] = []any{d["id"]}
		if off > 0 {
			inv["total_discount_amounts"] = []any{object{"amount": off, "discount": d["id"]}}
		}
	}
	if inv["total_discount_amounts"] == nil {
		inv["total_discount_amounts"] = []any{}
	}
	total := subtotal - off
	inv["subtotal"] = subtotal
	inv["subtotal_excluding_tax"] = subtotal
	inv["tax"] = nil
	inv["total"] = total
	inv["total_excluding_tax"] = total
	// The customer's balance (negative: a credit, e.g. from a downgrade's
	// prorations) applies to the invoice; a negative total adds to it.
	balance := num(cu["balance"])
	due := total + balance
	inv["starting_balance"] = balance
	inv["amount_due"] = max(0, due)
	inv["amount_paid"] = 0
	inv["amount_remaining"] = max(0, due)
	inv["ending_balance"] = nil
	return inv
}

// newInvoice stores a draft invoice for the subscription, makes it the
// subscription's latest, uses up a once-only discount, and emits
// invoice.created.
func (s *Server) newInvoice(c *call, sub object, reason string, lines []any, periodStart, periodEnd int64) object {
	return s.newInvoiceWithID(c, newID("in"), sub, reason, lines, periodStart, periodEnd)
}

// newInvoiceWithID is newInvoice with the id chosen beforehand (a new
// subscription names its first invoice in customer.subscription.created).
func (s *Server) newInvoiceWithID(c *call, id string, sub object, reason string, lines []any, periodStart, periodEnd int64) object {
	inv := s.buildInvoice(sub, reason, lines, periodStart, periodEnd)
	inv["id"] = id
	inv["lines"].(map[string]any)["url"] = "/v1/invoices/" + id + "/lines"
	s.put(inv)
	if num(inv["subtotal"]) > 0 {
		if d, _ := sub["discount"].(map[string]any); d != nil {
			co, _ := d["coupon"].(map[string]any)
			now := s.nowOn(s.clockOfObject(sub))
			if co["duration"] == "once" || (d["end"] != nil && num(d["end"]) <= now) {
				sub["discount"] = nil
			}
		}
	}
	sub["latest_invoice"] = id
	s.emit(c, "invoice.created", inv, nil)
	return inv
}

// finalizeInvoice numbers the invoice, opens it, and gives it a
// PaymentIntent when it asks for money.
func (s *Server) finalizeInvoice(c *call, inv object, saveCard bool) {
	clock := s.clockOfObject(inv)
	now := s.nowOn(clock)
	cu := s.get("customer", idOf(inv["customer"]))
	seq := num(cu["next_invoice_sequence"])
	cu["next_invoice_sequence"] = seq + 1
	inv["number"] = fmt.Sprintf("%s-%04d", cu["invoice_prefix"], seq)
	inv["status"] = "open"
	inv["effective_at"] = now
	ending := min(0, num(inv["total"])+num(inv["starting_balance"]))
	if num(inv["starting_balance"]) > 0 && num(inv["total"]) >= 0 {
		ending = 0
	}
	inv["ending_balance"] = ending
	if ending != num(cu["balance"]) {
		prev := object{"balance": cu["balance"]}
		cu["balance"] = ending
		s.emit(c, "customer.updated", cu, prev)
	}
	inv["status_transitions"].(map[string]any)["finalized_at"] = now
	inv["hosted_invoice_url"] = s.opts.PublicURL + "/invoices/" + str(inv["id"])
	inv["invoice_pdf"] = s.opts.PublicURL + "/invoices/" + str(inv["id"]) + "/pdf"
	if num(inv["amount_due"]) > 0 {
		desc := "Subscription update"
		switch inv["billing_reason"] {
		case "subscription_create":
			desc = "Subscription creation"
		case "subscription_cycle":
			desc = "Subscription cycle"
		}
		spec := intentSpec{Amount: num(inv["amount_due"]), Currency: str(inv["currency"]), Customer: idOf(inv["customer"]),
			Description: desc, Invoice: str(inv["id"]), Clock: clock}
		if saveCard {
			spec.SetupFutureUsage = "off_session"
		}
		pi := s.newPaymentIntent(c, spec)
		inv["payment_intent"] = pi["id"]
	}
	s.emit(c, "invoice.finalized", inv, nil)
}

// markInvoicePaid records an invoice's payment (pi nil for nothing to
// pay) and brings its subscription back to active.
func (s *Server) markInvoicePaid(c *call, inv object, pi object) {
	now := s.nowOn(s.clockOfObject(inv))
	inv["status"] = "paid"
	inv["paid"] = true
	inv["attempted"] = true
	inv["amount_paid"] = inv["amount_due"]
	inv["amount_remaining"] = 0
	inv["next_payment_attempt"] = nil
	inv["status_transitions"].(map[string]any)["paid_at"] = now
	if pi != nil {
		inv["attempt_count"] = num(inv["attempt_count"]) + 1
		inv["charge"] = pi["latest_charge"]
	}
	s.emit(c, "invoice.paid", inv, nil)
	s.emit(c, "invoice.payment_succeeded", inv, nil)
	sub := s.get("subscription", idOf(inv["subscription"]))
	if sub == nil || idOf(sub["latest_invoice"]) != inv["id"] {
		return
	}
	before := clone(sub)
	switch sub["status"] {
	case "incomplete", "past_due", "unpaid":
		sub["status"] = "active"
	}
	if pi != nil && sub["default_payment_method"] == nil {
		if ps, _ := sub["payment_settings"].(map[string]any); ps["save_default_payment_method"] == "on_subscription" {
			sub["default_payment_method"] = pi["payment_method"]
		}
	}
	if prev := changed(before, sub); len(prev) > 0 {
		s.emit(c, "customer.subscription.updated", sub, prev)
	}
}

// invoicePaymentFailed records a failed attempt: the first invoice leaves
// its subscription incomplete; a renewal's makes it past_due and schedules
// the next retry, and after the last one cancels it or leaves it unpaid.
func (s *Server) invoicePaymentFailed(c *call, inv object) {
	now := s.nowOn(s.clockOfObject(inv))
	inv["attempted"] = true
	inv["attempt_count"] = num(inv["attempt_count"]) + 1
	sub := s.get("subscription", idOf(inv["subscription"]))
	final := false
	if inv["billing_reason"] != "subscription_create" {
		ii := s.internal(str(inv["id"]))
		if ii["first_failure"] == nil {
			ii["first_failure"] = now
		}
		r := num(ii["retries"])
		if r < int64(len(retrySchedule)) {
			inv["next_payment_attempt"] = num(ii["first_failure"]) + retrySchedule[r]*day
		} else {
			inv["next_payment_attempt"] = nil
			final = true
		}
	}
	s.emit(c, "invoice.payment_failed", inv, nil)
	if sub == nil || inv["billing_reason"] == "subscription_create" || idOf(sub["latest_invoice"]) != inv["id"] {
		return
	}
	switch {
	case final && s.opts.FailedRenewal == "cancel":
		if sub["status"] != "canceled" {
			s.endSubscription(c, sub, object{"comment": nil, "feedback": nil, "reason": "payment_failed"})
		}
	case final:
		if sub["status"] != "unpaid" {
			before := clone(sub)
			sub["status"] = "unpaid"
			s.emit(c, "customer.subscription.updated", sub, changed(before, sub))
		}
	default:
		s.awaitPayment(c, inv)
	}
}

// awaitPayment makes a live subscription past_due while the invoice it
// raised after its first (a renewal, a plan change) waits for payment: a
// decline, 3D Secure, or default_incomplete leaving it to the client.
func (s *Server) awaitPayment(c *call, inv object) {
	sub := s.get("subscription", idOf(inv["subscription"]))
	if sub == nil || inv["billing_reason"] == "subscription_create" || idOf(sub["latest_invoice"]) != inv["id"] {
		return
	}
	if sub["status"] == "active" || sub["status"] == "trialing" {
		before := clone(sub)
		sub["status"] = "past_due"
		s.emit(c, "customer.subscription.updated", sub, changed(before, sub))
	}
}

// invoiceIntentHook follows the PaymentIntent of an invoice.
func (s *Server) invoiceIntentHook(c *call, pi object) error {
	inv := s.get("invoice", idOf(pi["invoice"]))
	if inv == nil || inv["status"] != "open" {
		return nil
	}
	switch pi["status"] {
	case "succeeded":
		s.markInvoicePaid(c, inv, pi)
	case "requires_action":
		s.emit(c, "invoice.payment_action_required", inv, nil)
		s.awaitPayment(c, inv)
	case "requires_payment_method":
		if pi["last_payment_error"] != nil {
			s.invoicePaymentFailed(c, inv)
		}
	}
	return nil
}

// chargeInvoice attempts an open invoice's payment with the payment method
// (nil: none, which fails the attempt); offSession for renewals and
// retries, on-session when the customer asked (a plan change, /pay with
// off_session=false), where 3D Secure can be passed.
func (s *Server) chargeInvoice(c *call, inv object, pm object, offSession bool) *Error {
	if num(inv["amount_due"]) == 0 {
		s.markInvoicePaid(c, inv, nil)
		return nil
	}
	pi := s.get("payment_intent", str(inv["payment_intent"]))
	if pm == nil || pi == nil {
		s.invoicePaymentFailed(c, inv)
		return badRequest("payment_method", "There is no default payment method to charge this invoice with.")
	}
	if pi["status"] == "requires_action" {
		pi["status"] = "requires_payment_method"
	}
	return s.confirmIntent(c, pi, pm, offSession)
}

// invoiceCycle invoices a subscription now: its pending prorations, plus
// the current period's items for a renewal or a trial ended early; the
// invoice is finalized and charged unless the payment behaviour leaves it
// to the client.
func (s *Server) invoiceCycle(c *call, sub object, reason, behaviour string, offSession bool) object {
	si := s.internal(str(sub["id"]))
	lines := append([]any{}, pendingLines(s, sub)...)
	delete(si, "pending")
	start, end := num(sub["current_period_start"]), num(sub["current_period_end"])
	periodStart, periodEnd := start, start
	if reason == "subscription_cycle" || sub["trial_end"] != nil && num(sub["trial_end"]) == start {
		lines = append(lines, s.periodLines(sub, start, end, false)...)
		if reason == "subscription_cycle" {
			periodStart = num(si["previous_period_start"])
		}
	}
	inv := s.newInvoice(c, sub, reason, lines, periodStart, periodEnd)
	if reason == "subscription_cycle" {
		// Stripe leaves a renewal invoice in draft for an hour after
		// invoice.created (time for a webhook to add to it), then finalizes
		// and charges it: see finalizeDraft.
		s.internal(str(inv["id"]))["finalize_at"] = num(inv["created"]) + draftHour
		return inv
	}
	s.finalizeInvoice(c, inv, false)
	if behaviour == "default_incomplete" && num(inv["amount_due"]) > 0 {
		s.awaitPayment(c, inv)
		return inv
	}
	s.chargeInvoice(c, inv, s.subPaymentMethod(sub), offSession)
	return inv
}

// draftHour is how long a renewal invoice stays a draft.
const draftHour = 3600

// finalizeDraft finalizes a renewal invoice after its draft hour and
// charges it off-session, unless its subscription has ended meanwhile.
func (s *Server) finalizeDraft(inv object) {
	delete(s.internal(str(inv["id"])), "finalize_at")
	s.finalizeInvoice(nil, inv, false)
	sub := s.get("subscription", idOf(inv["subscription"]))
	if sub == nil || sub["status"] == "canceled" || sub["status"] == "incomplete_expired" {
		return
	}
	s.chargeInvoice(nil, inv, s.subPaymentMethod(sub), true)
}

func (s *Server) routesInvoices() {
	s.handle("GET /v1/invoices/{id}", func(c *call) (any, error) {
		return s.must("invoice", c.r.PathValue("id"), "id")
	})
	s.handle("GET /v1/invoices/{id}/lines", func(c *call) (any, error) {
		inv, err := s.must("invoice", c.r.PathValue("id"), "id")
		if err != nil {
			return nil, err
		}
		return c.page(linesOf(inv))
	})
	s.handle("GET /v1/invoices", func(c *call) (any, error) {
		customer, subscription, status := c.str("customer"), c.str("subscription"), c.str("status")
		if c.has("collection_method") && c.str("collection_method") != "charge_automatically" {
			return c.page(nil)
		}
		return c.page(s.all("invoice", func(inv object) bool {
			return (customer == "" || idOf(inv["customer"]) == customer) &&
				(subscription == "" || idOf(inv["subscription"]) == subscription) &&
				(status == "" || inv["status"] == status)
		}))
	})
	s.handle("POST /v1/invoices/{id}/pay", func(c *call) (any, error) {
		inv, err := s.must("invoice", c.r.PathValue("id"), "id")
		if err != nil {
			return nil, err
		}
		for _, p := range []string{"forgive", "mandate", "source"} {
			if c.has(p) {
				return nil, notImplemented("paying an invoice with " + p)
			}
		}
		switch inv["status"] {
		case "paid":
			return nil, badRequest("", "Invoice is already paid.")
		case "open":
		default:
			return nil, badRequest("", "You can only pay an open invoice; this one is %s.", inv["status"])
		}
		if c.bool("paid_out_of_band") {
			inv["paid_out_of_band"] = true
			s.markInvoicePaid(c, inv, nil)
			return inv, nil
		}
		var pm object
		if id := c.str("payment_method"); id != "" {
			p, e := s.resolvePaymentMethod(id, "payment_method", s.clockOfObject(inv))
			if e != nil {
				return nil, e
			}
			pm = p
		} else if sub := s.get("subscription", idOf(inv["subscription"])); sub != nil {
			pm = s.subPaymentMethod(sub)
		}
		// Stripe's /pay is off-session unless told otherwise.
		if e := s.chargeInvoice(c, inv, pm, !c.has("off_session") || c.bool("off_session")); e != nil {
			return nil, e
		}
		return inv, nil
	})
	s.handle("POST /v1/invoices/{id}/void", func(c *call) (any, error) {
		inv, err := s.must("invoice", c.r.PathValue("id"), "id")
		if err != nil {
			return nil, err
		}
		if inv["status"] != "open" && inv["status"] != "uncollectible" {
			return nil, badRequest("", "You can only void an open or uncollectible invoice; this one is %s.", inv["status"])
		}
		s.voidInvoice(c, inv)
		return inv, nil
	})
	s.handle("POST /v1/invoices/{id}/mark_uncollectible", func(c *call) (any, error) {
		inv, err := s.must("invoice", c.r.PathValue("id"), "id")
		if err != nil {
			return nil, err
		}
		if inv["status"] != "open" {
			return nil, badRequest("", "You can only mark an open invoice uncollectible; this one is %s.", inv["status"])
		}
		inv["status"] = "uncollectible"
		inv["next_payment_attempt"] = nil
		inv["status_transitions"].(map[string]any)["marked_uncollectible_at"] = s.nowOn(s.clockOfObject(inv))
		s.emit(c, "invoice.marked_uncollectible", inv, nil)
		return inv, nil
	})
	upcoming := func(c *call) (object, *Error) {
		for _, p := range []string{"invoice_items", "schedule", "subscription_billing_cycle_anchor", "subscription_cancel_at",
			"subscription_cancel_at_period_end", "subscription_cancel_now", "subscription_default_tax_rates",
			"subscription_start_date", "subscription_trial_end", "subscription_trial_from_plan", "subscription_resume_at",
			"coupon", "discounts", "automatic_tax", "customer_details"} {
			if c.has(p) {
				return nil, notImplemented("the upcoming invoice's " + p)
			}
		}
		return s.upcomingInvoice(c)
	}
	s.handle("GET /v1/invoices/upcoming", func(c *call) (any, error) {
		inv, err := upcoming(c)
		if err != nil {
			return nil, err
		}
		return inv, nil
	})
	s.handle("GET /v1/invoices/upcoming/lines", func(c *call) (any, error) {
		inv, err := upcoming(c)
		if err != nil {
			return nil, err
		}
		return c.page(linesOf(inv))
	})
	s.page("GET /invoices/{id}", s.invoicePage)
	s.page("GET /invoices/{id}/pdf", s.invoicePage)
}

func linesOf(inv object) []object {
	var out []object
	for _, l := range asList(inv["lines"].(map[string]any)["data"]) {
		out = append(out, l.(map[string]any))
	}
	return out
}

// voidInvoice voids an open invoice and cancels its PaymentIntent.
func (s *Server) voidInvoice(c *call, inv object) {
	inv["status"] = "void"
	inv["amount_remaining"] = 0
	inv["next_payment_attempt"] = nil
	inv["status_transitions"].(map[string]any)["voided_at"] = s.nowOn(s.clockOfObject(inv))
	if pi := s.get("payment_intent", str(inv["payment_intent"])); pi != nil && pi["status"] != "succeeded" && pi["status"] != "canceled" {
		pi["status"] = "canceled"
		pi["canceled_at"] = s.nowOn(s.clockOfObject(inv))
		pi["cancellation_reason"] = "void_invoice"
		pi["next_action"] = nil
		s.emit(c, "payment_intent.canceled", pi, nil)
	}
	s.emit(c, "invoice.voided", inv, nil)
}

// upcomingInvoice previews the subscription's next invoice: its next
// period, the prorations pending, and those the subscription_items[] change
// would make.
func (s *Server) upcomingInvoice(c *call) (object, *Error) {
	customer, subID := c.str("customer"), c.str("subscription")
	var sub object
	if subID != "" {
		sub = s.get("subscription", subID)
		if sub == nil {
			return nil, noSuch("subscription", "subscription", subID)
		}
		if customer != "" && idOf(sub["customer"]) != customer {
			return nil, badRequest("subscription", "The subscription %s does not belong to customer %s.", subID, customer)
		}
		customer = idOf(sub["customer"])
	} else {
		if customer == "" {
			return nil, badRequest("customer", "Missing required param: customer (or subscription).")
		}
		if s.get("customer", customer) == nil {
			return nil, noSuch("customer", "customer", customer)
		}
		for _, x := range s.all("subscription", func(o object) bool { return idOf(o["customer"]) == customer }) {
			switch x["status"] {
			case "active", "trialing", "past_due":
				if sub == nil {
					sub = x
				}
			}
		}
	}
	none := &Error{Status: 404, Type: invalidRequest, Code: "invoice_upcoming_none",
		Message: fmt.Sprintf("No upcoming invoices for customer: %s", customer)}
	if sub == nil || sub["cancel_at_period_end"] == true {
		return nil, none
	}
	switch sub["status"] {
	case "active", "trialing", "past_due":
	default:
		return nil, none
	}
	sim := clone(sub)
	lines := []any{}
	for _, l := range pendingLines(s, sub) {
		lines = append(lines, clone(l.(map[string]any)))
	}
	if changes := c.list("subscription_items"); len(changes) > 0 {
		at := s.nowOn(s.clockOfObject(sub))
		if d, ok := c.int("subscription_proration_date"); ok {
			at = d
		}
		items, prorations, err := s.planItemChanges(sim, changes, at)
		if err != nil {
			err.Param = strings.Replace(err.Param, "items", "subscription_items", 1)
			return nil, err
		}
		sim["items"].(map[string]any)["data"] = items
		if b := orDefault(c.str("subscription_proration_behavior"), "create_prorations"); b != "none" && sub["status"] != "trialing" {
			for i, p := range prorations {
				p.(object)["id"] = fmt.Sprintf("il_tmp_%s_%d", str(sub["id"])[4:], i)
				lines = append(lines, p)
			}
		}
	}
	start := num(sub["current_period_end"])
	cycle := num(s.internal(str(sub["id"]))["cycle"])
	end := s.periodEnd(sim, cycle+1)
	for _, l := range s.periodLines(sim, start, end, false) {
		l.(object)["id"] = "il_tmp_" + str(l.(object)["subscription_item"])[3:]
		lines = append(lines, l)
	}
	inv := s.buildInvoice(sim, "upcoming", lines, num(sub["current_period_start"]), start)
	inv["created"] = start
	inv["next_payment_attempt"] = start
	inv["billing_reason"] = "upcoming"
	inv["lines"].(map[string]any)["url"] = "/v1/invoices/upcoming/lines"
	return inv, nil
}

// invoicePage is the hosted invoice page (and its "PDF", the same page).
func (s *Server) invoicePage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	inv := s.get("invoice", r.PathValue("id"))
	var b strings.Builder
	if inv != nil {
		fmt.Fprintf(&b, "<!doctype html><title>Invoice %s</title><h1>Invoice %s</h1><p>Status: %s</p><table>",
			html.EscapeString(str(inv["number"])), html.EscapeString(str(inv["number"])), html.EscapeString(str(inv["status"])))
		for _, l := range linesOf(inv) {
			fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td></tr>", html.EscapeString(str(l["description"])), money(num(l["amount"]), str(inv["currency"])))
		}
		fmt.Fprintf(&b, "</table><p>Total: %s</p><p>Amount due: %s</p><p>Amount paid: %s</p>",
			money(num(inv["total"]), str(inv["currency"])), money(num(inv["amount_due"]), str(inv["currency"])),
			money(num(inv["amount_paid"]), str(inv["currency"])))
	}
	s.mu.Unlock()
	if inv == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write([]byte(b.String()))
}
