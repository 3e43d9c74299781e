package sandbox

import (
	"fmt"
	"slices"
	"time"
)

// Subscriptions: created with their first invoice (startSubscription),
// changed with prorations, canceled now or at the period's end, and moved
// along by the clock (billing.go): trials ending, renewals, retries.

const day = int64(24 * 3600)

// incompleteWindow is how long a subscription's first invoice may stay
// unpaid before the subscription expires (Stripe: 23 hours).
const incompleteWindow = 23 * 3600

// refusedOnSubscriptions are parameters of the subscription endpoints that
// would change billing in ways the sandbox does not model; it refuses them
// by name rather than ignore them.
var refusedOnSubscriptions = []string{
	"add_invoice_items", "application_fee_percent", "backdate_start_date", "billing_cycle_anchor",
	"billing_cycle_anchor_config", "billing_thresholds", "cancel_at", "collection_method", "days_until_due",
	"default_source", "default_tax_rates", "on_behalf_of", "pause_collection", "pending_invoice_item_interval",
	"transfer_data", "trial_from_plan", "trial_settings", "automatic_tax", "invoice_settings",
	"payment_settings.payment_method_types", "payment_settings.payment_method_options",
}

func refuseUnsupported(c *call, names []string) *Error {
	for _, p := range names {
		if c.has(p) {
			return notImplemented("the subscription parameter " + p)
		}
	}
	for _, it := range c.list("items") {
		for _, p := range []string{"price_data", "tax_rates", "billing_thresholds", "discounts"} {
			if _, ok := it[p]; ok {
				return notImplemented("items[][" + p + "] on subscriptions")
			}
		}
	}
	return nil
}

func (s *Server) routesSubscriptions() {
	s.handle("POST /v1/subscriptions", func(c *call) (any, error) {
		if err := refuseUnsupported(c, refusedOnSubscriptions); err != nil {
			return nil, err
		}
		if c.has("proration_behavior") {
			return nil, notImplemented("proration_behavior on a new subscription (it only matters with billing_cycle_anchor)")
		}
		in := subscriptionSpec{
			Customer:             c.str("customer"),
			DefaultPaymentMethod: c.str("default_payment_method"),
			PaymentBehavior:      c.str("payment_behavior"),
			PromotionCode:        c.str("promotion_code"),
			Coupon:               c.str("coupon"),
			OnSession:            !c.bool("off_session"), // Stripe: on-session unless off_session=true
		}
		if m := c.hash("metadata"); m != nil {
			in.Metadata = m
		}
		for i, it := range c.list("items") {
			spec := itemSpec{Price: str(it["price"]), Quantity: 1}
			if q, ok := it["quantity"]; ok {
				spec.Quantity = num(q)
				if sq, ok := q.(string); ok {
					n, _ := fmt.Sscan(sq, &spec.Quantity)
					_ = n
				}
			}
			if spec.Price == "" {
				if _, ok := it["plan"]; ok {
					return nil, notImplemented("items[][plan] (pass items[][price])")
				}
				return nil, badRequest(fmt.Sprintf("items[%d][price]", i), "Missing required param: items[%d][price].", i)
			}
			in.Items = append(in.Items, spec)
		}
		if n, ok := c.int("trial_period_days"); ok {
			in.TrialPeriodDays = n
		}
		if c.has("trial_end") {
			if c.str("trial_end") == "now" {
				return nil, notImplemented("trial_end=now on a new subscription (leave the trial out)")
			}
			in.TrialEnd, _ = c.int("trial_end")
		}
		o := startOpts{saveDefault: c.str("payment_settings.save_default_payment_method") == "on_subscription",
			cancelAtPeriodEnd: c.bool("cancel_at_period_end")}
		return s.startSub(c, in, o)
	})
	s.handle("GET /v1/subscriptions/{id}", func(c *call) (any, error) {
		return s.must("subscription", c.r.PathValue("id"), "id")
	})
	s.handle("GET /v1/subscriptions", func(c *call) (any, error) {
		customer, status, price := c.str("customer"), c.str("status"), c.str("price")
		return c.page(s.all("subscription", func(sub object) bool {
			if customer != "" && idOf(sub["customer"]) != customer {
				return false
			}
			switch st := str(sub["status"]); {
			case status == "" && (st == "canceled" || st == "incomplete_expired"):
				return false
			case status == "ended" && st != "canceled" && st != "incomplete_expired":
				return false
			case status != "" && status != "all" && status != "ended" && st != status:
				return false
			}
			if price != "" {
				found := false
				for _, it := range subItems(sub) {
					found = found || idOf(it["price"]) == price
				}
				return found
			}
			return true
		}))
	})
	s.handle("POST /v1/subscriptions/{id}", func(c *call) (any, error) {
		sub, err := s.must("subscription", c.r.PathValue("id"), "id")
		if err != nil {
			return nil, err
		}
		return s.updateSubscription(c, sub)
	})
	s.handle("DELETE /v1/subscriptions/{id}", func(c *call) (any, error) {
		sub, err := s.must("subscription", c.r.PathValue("id"), "id")
		if err != nil {
			return nil, err
		}
		if c.bool("invoice_now") {
			return nil, notImplemented("invoice_now on cancellation")
		}
		if c.bool("prorate") {
			return nil, notImplemented("prorate on cancellation (a credit for the unused time)")
		}
		switch sub["status"] {
		case "canceled", "incomplete_expired":
			return nil, badRequest("", "This subscription has already been canceled.")
		}
		details := object{"comment": nilIfEmpty(c.str("cancellation_details.comment")),
			"feedback": nilIfEmpty(c.str("cancellation_details.feedback")), "reason": "cancellation_requested"}
		s.endSubscription(c, sub, details)
		return sub, nil
	})
}

// subItems returns a subscription's items.
func subItems(sub object) []map[string]any {
	var out []map[string]any
	items, _ := sub["items"].(map[string]any)
	for _, it := range asList(items["data"]) {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// checkPrices validates the prices of a subscription's items: they exist,
// are active and recurring, appear once, and share currency and interval.
func (s *Server) checkPrices(items []itemSpec) ([]object, *Error) {
	if len(items) == 0 {
		return nil, badRequest("items", "Missing required param: items.")
	}
	if len(items) > 20 {
		return nil, badRequest("items", "A subscription may have at most 20 items.")
	}
	var prices []object
	for i, it := range items {
		param := fmt.Sprintf("items[%d][price]", i)
		pr := s.get("price", it.Price)
		if pr == nil {
			return nil, noSuch("price", param, it.Price)
		}
		if pr["active"] != true {
			return nil, badRequest(param, "The price specified is inactive. This field only accepts active prices.")
		}
		if pr["type"] != "recurring" {
			return nil, badRequest(param, "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.")
		}
		if it.Quantity < 0 {
			return nil, badRequest(fmt.Sprintf("items[%d][quantity]", i), "Invalid quantity: must be at least 0.")
		}
		for j, other := range prices {
			if other["id"] == pr["id"] {
				return nil, badRequest(param, "Cannot add multiple subscription items with the same price: %s (items %d and %d).", pr["id"], j, i)
			}
			if other["currency"] != pr["currency"] {
				return nil, badRequest(param, "All prices on a subscription must have the same currency.")
			}
			ro, rp := other["recurring"].(map[string]any), pr["recurring"].(map[string]any)
			if ro["interval"] != rp["interval"] || num(ro["interval_count"]) != num(rp["interval_count"]) {
				return nil, badRequest(param, "All prices on a subscription must have the same `recurring.interval` and `recurring.interval_count`.")
			}
		}
		prices = append(prices, pr)
	}
	return prices, nil
}

// newPendingSetupIntent stores the SetupIntent of a subscription that has
// nothing to charge yet (a trial), for the client to save a card with.
func (s *Server) newPendingSetupIntent(c *call, sub object) object {
	si := s.newSetupIntent(idOf(sub["customer"]), s.clockOfObject(sub), nil, []any{"card"}, "off_session")
	s.put(si)
	s.emit(c, "setup_intent.created", si, nil)
	return si
}

// settlePendingSetup makes the card a subscription's pending SetupIntent
// saved its default payment method, as Stripe does once the intent
// succeeds. (The SetupIntent API lives with the payments family, which has
// no hook for it, so this runs when the subscription next needs a card.)
func (s *Server) settlePendingSetup(sub object) {
	si := s.get("setup_intent", idOf(sub["pending_setup_intent"]))
	if si == nil || si["status"] != "succeeded" || idOf(si["payment_method"]) == "" {
		return
	}
	before := clone(sub)
	sub["pending_setup_intent"] = nil
	if sub["default_payment_method"] == nil {
		sub["default_payment_method"] = idOf(si["payment_method"])
	}
	s.emit(nil, "customer.subscription.updated", sub, changed(before, sub))
}

// subPaymentMethod returns the payment method invoices of the subscription
// are charged with: the subscription's default, else the customer's.
func (s *Server) subPaymentMethod(sub object) object {
	s.settlePendingSetup(sub)
	if id := idOf(sub["default_payment_method"]); id != "" {
		if pm := s.get("payment_method", id); pm != nil {
			return pm
		}
	}
	if cu := s.get("customer", idOf(sub["customer"])); cu != nil {
		if is, ok := cu["invoice_settings"].(map[string]any); ok {
			if pm := s.get("payment_method", idOf(is["default_payment_method"])); pm != nil {
				return pm
			}
		}
	}
	return nil
}

// wouldFail reports the card error a payment with pm would end in, without
// making it (error_if_incomplete creates nothing on a decline).
func (s *Server) wouldFail(pm object, offSession bool) *Error {
	card := s.cardOf(str(pm["id"]))
	authenticated := s.rec(str(pm["id"])).Internal["authenticated"] == true
	needsAuth := card.Behaviour == "auth_always" || (card.Behaviour == "auth_setup" && !authenticated)
	switch {
	case card.Behaviour == "decline" || card.Behaviour == "decline_later":
		return &Error{Status: 402, Type: cardError, Code: card.Code, DeclineCode: card.DeclineCode, Message: declineMessage(card)}
	case needsAuth && offSession:
		return &Error{Status: 402, Type: cardError, Code: "authentication_required", DeclineCode: "authentication_required",
			Message: "Your card was declined. This transaction requires authentication."}
	case needsAuth:
		return &Error{Status: 402, Type: cardError, Code: "subscription_payment_intent_requires_action",
			Message: "Payment for this subscription requires additional user action before it can be completed successfully."}
	}
	return nil
}

func (s *Server) newSubscriptionItem(sub object, pr object, qty int64, created int64) object {
	it := s.spec.blank("subscription_item")
	it["id"] = newID("si")
	it["billing_thresholds"] = nil
	it["created"] = created
	it["metadata"] = map[string]any{}
	it["price"] = clone(pr)
	it["plan"] = planOf(pr)
	it["quantity"] = qty
	it["subscription"] = sub["id"]
	it["tax_rates"] = []any{}
	return it
}

// planOf renders a price as the legacy plan object Stripe still embeds.
func planOf(pr object) object {
	rec, _ := pr["recurring"].(map[string]any)
	return object{"id": pr["id"], "object": "plan", "active": pr["active"], "aggregate_usage": nil,
		"amount": pr["unit_amount"], "amount_decimal": pr["unit_amount_decimal"], "billing_scheme": "per_unit",
		"created": pr["created"], "currency": pr["currency"], "interval": rec["interval"],
		"interval_count": rec["interval_count"], "livemode": false, "metadata": clone(object{"m": pr["metadata"]})["m"],
		"nickname": pr["nickname"], "product": pr["product"], "tiers_mode": nil, "transform_usage": nil,
		"trial_period_days": nil, "usage_type": "licensed"}
}

// setLegacyPlan keeps the subscription's plan and quantity fields, which
// Stripe fills only when the subscription has exactly one item.
func setLegacyPlan(sub object) {
	items := subItems(sub)
	if len(items) == 1 {
		sub["plan"] = items[0]["plan"]
		sub["quantity"] = items[0]["quantity"]
	} else {
		sub["plan"] = nil
		sub["quantity"] = nil
	}
}

// startSubscription creates a subscription and its first invoice: a $0
// invoice for a trial, else an invoice charged now (allow_incomplete,
// error_if_incomplete) or left for the client to confirm
// (default_incomplete).
func (s *Server) startSubscription(c *call, in subscriptionSpec) (object, *Error) {
	return s.startSub(c, in, startOpts{})
}

// startOpts are what POST /v1/subscriptions may ask for beyond the shared
// subscriptionSpec.
type startOpts struct {
	saveDefault       bool // payment_settings[save_default_payment_method]=on_subscription
	cancelAtPeriodEnd bool
}

func (s *Server) startSub(c *call, in subscriptionSpec, o startOpts) (object, *Error) {
	cu := s.get("customer", in.Customer)
	if cu == nil {
		if in.Customer == "" {
			return nil, badRequest("customer", "Missing required param: customer.")
		}
		return nil, noSuch("customer", "customer", in.Customer)
	}
	clock := s.clockOfCustomer(in.Customer)
	now := s.nowOn(clock)
	prices, err := s.checkPrices(in.Items)
	if err != nil {
		return nil, err
	}
	behaviour := orDefault(in.PaymentBehavior, "allow_incomplete")
	switch behaviour {
	case "allow_incomplete", "default_incomplete", "error_if_incomplete":
	default:
		return nil, notImplemented("payment_behavior=" + behaviour)
	}
	var defaultPM object
	if in.DefaultPaymentMethod != "" {
		defaultPM = s.get("payment_method", in.DefaultPaymentMethod)
		if defaultPM == nil {
			return nil, noSuch("PaymentMethod", "default_payment_method", in.DefaultPaymentMethod)
		}
		if idOf(defaultPM["customer"]) != in.Customer {
			return nil, badRequest("default_payment_method", "The customer does not have a payment method with the ID %s. The payment method must be attached to the customer.", in.DefaultPaymentMethod)
		}
	}
	trialEnd := int64(0)
	switch {
	case in.TrialEnd != 0 && in.TrialPeriodDays != 0:
		return nil, badRequest("trial_end", "You may only specify one of these parameters: trial_end, trial_period_days.")
	case in.TrialEnd != 0:
		if in.TrialEnd <= now {
			return nil, badRequest("trial_end", "Invalid timestamp: must be an integer Unix timestamp in the future.")
		}
		if in.TrialEnd > now+730*day {
			return nil, badRequest("trial_end", "Invalid timestamp: can be no more than two years in the future.")
		}
		trialEnd = in.TrialEnd
	case in.TrialPeriodDays < 0 || in.TrialPeriodDays > 730:
		return nil, badRequest("trial_period_days", "Invalid trial_period_days: must be between 0 and 730.")
	case in.TrialPeriodDays > 0:
		trialEnd = now + in.TrialPeriodDays*day
	}
	coupon, promo, err := s.resolveDiscount(in.Coupon, in.PromotionCode)
	if err != nil {
		return nil, err
	}
	if err := couponFits(coupon, str(prices[0]["currency"])); err != nil {
		return nil, err
	}

	sub := s.spec.blank("subscription")
	sub["id"] = newID("sub")
	sub["application"] = nil
	sub["application_fee_percent"] = nil
	sub["automatic_tax"] = object{"enabled": false, "liability": nil}
	sub["billing_thresholds"] = nil
	sub["cancel_at"] = nil
	sub["cancel_at_period_end"] = false
	sub["canceled_at"] = nil
	sub["cancellation_details"] = object{"comment": nil, "feedback": nil, "reason": nil}
	sub["collection_method"] = "charge_automatically"
	sub["created"] = now
	sub["currency"] = prices[0]["currency"]
	sub["customer"] = in.Customer
	sub["days_until_due"] = nil
	sub["default_payment_method"] = nilIfEmpty(in.DefaultPaymentMethod)
	sub["default_source"] = nil
	sub["default_tax_rates"] = []any{}
	sub["description"] = nil
	sub["discount"] = nil
	sub["ended_at"] = nil
	sub["latest_invoice"] = nil
	sub["livemode"] = false
	sub["metadata"] = map[string]any{}
	for k, v := range in.Metadata {
		sub["metadata"].(map[string]any)[k] = fmt.Sprint(v)
	}
	sub["next_pending_invoice_item_invoice"] = nil
	sub["on_behalf_of"] = nil
	sub["pause_collection"] = nil
	save := "off"
	if o.saveDefault {
		save = "on_subscription"
	}
	sub["payment_settings"] = object{"payment_method_options": nil, "payment_method_types": nil, "save_default_payment_method": save}
	sub["pending_invoice_item_interval"] = nil
	sub["pending_setup_intent"] = nil
	sub["pending_update"] = nil
	sub["schedule"] = nil
	sub["start_date"] = now
	sub["test_clock"] = nilIfEmpty(clock)
	sub["transfer_data"] = nil
	sub["trial_settings"] = object{"end_behavior": object{"missing_payment_method": "create_invoice"}}
	sub["trial_start"] = nil
	sub["trial_end"] = nil
	anchor := now
	if trialEnd != 0 {
		sub["trial_start"] = now
		sub["trial_end"] = trialEnd
		anchor = trialEnd
	}
	rec := prices[0]["recurring"].(map[string]any)
	sub["billing_cycle_anchor"] = anchor
	sub["current_period_start"] = now
	sub["current_period_end"] = anchor
	if trialEnd == 0 {
		sub["current_period_end"] = addInterval(anchor, str(rec["interval"]), num(rec["interval_count"]))
	}
	items := []any{}
	for i, pr := range prices {
		items = append(items, s.newSubscriptionItem(sub, pr, in.Items[i].Quantity, now))
	}
	sub["items"] = object{"object": "list", "data": items, "has_more": false, "total_count": len(items),
		"url": "/v1/subscription_items?subscription=" + str(sub["id"])}
	setLegacyPlan(sub)
	if o.cancelAtPeriodEnd {
		applyCancelAtPeriodEnd(sub, true, now)
	}

	// What the first invoice will ask for decides how the subscription
	// starts: nothing to pay (a trial, a 100% coupon) starts it at once.
	var disc object
	if coupon != nil {
		disc = object{"coupon": coupon}
	}
	lines := s.periodLines(sub, num(sub["current_period_start"]), num(sub["current_period_end"]), trialEnd != 0)
	due := sumLines(lines) - discountOff(disc, sumLines(lines))
	payWith := defaultPM
	if payWith == nil {
		payWith = s.subPaymentMethod(sub)
	}
	if due > 0 && behaviour != "default_incomplete" {
		if payWith == nil {
			return nil, badRequest("", "This customer has no attached payment source or default payment method. Please consider adding a default payment method. For more information, visit https://stripe.com/docs/billing/subscriptions/payment-methods-setting#payment-method-priority.")
		}
		if behaviour == "error_if_incomplete" {
			if e := s.wouldFail(payWith, !in.OnSession); e != nil {
				return nil, e
			}
		}
	}
	switch {
	case trialEnd != 0:
		sub["status"] = "trialing"
	case due <= 0:
		sub["status"] = "active"
	default:
		sub["status"] = "incomplete"
	}
	s.put(sub)
	si := s.internal(str(sub["id"]))
	si["anchor"] = anchor
	si["cycle"] = int64(0)
	if trialEnd != 0 {
		si["cycle"] = int64(-1) // the trial; the first paid period is cycle 0
	}
	si["payment_behavior"] = behaviour
	if coupon != nil {
		sub["discount"] = s.newDiscount(c, coupon, promo, sub, now)
	}
	if behaviour == "default_incomplete" && due <= 0 && payWith == nil {
		// Nothing to pay now and no card to charge later: Stripe gives the
		// subscription a SetupIntent for the client to save one with.
		sub["pending_setup_intent"] = s.newPendingSetupIntent(c, sub)["id"]
	}
	firstInvoice := newID("in")
	sub["latest_invoice"] = firstInvoice
	s.emit(c, "customer.subscription.created", sub, nil)

	inv := s.newInvoiceWithID(c, firstInvoice, sub, "subscription_create", lines, num(sub["current_period_start"]), num(sub["current_period_start"]))
	s.finalizeInvoice(c, inv, o.saveDefault && behaviour == "default_incomplete")
	switch {
	case num(inv["amount_due"]) == 0:
		s.markInvoicePaid(c, inv, nil)
	case behaviour == "default_incomplete":
		// The PaymentIntent waits for the client to confirm it.
	default:
		pi := s.get("payment_intent", str(inv["payment_intent"]))
		if e := s.confirmIntent(c, pi, payWith, !in.OnSession); e != nil && e.Status >= 500 {
			return nil, e
		}
	}
	return sub, nil
}

// setCancelAtPeriodEnd schedules or unschedules a subscription's
// cancellation at the end of its period; Stripe sets canceled_at when it is
// scheduled and clears it when it is not.
func (s *Server) setCancelAtPeriodEnd(c *call, sub object, cancel bool) *Error {
	switch sub["status"] {
	case "canceled", "incomplete_expired":
		return badRequest("cancel_at_period_end", "A canceled subscription can only update its cancellation_details and metadata.")
	}
	before := clone(sub)
	applyCancelAtPeriodEnd(sub, cancel, s.nowOn(s.clockOfObject(sub)))
	if prev := changed(before, sub); len(prev) > 0 {
		s.emit(c, "customer.subscription.updated", sub, prev)
	}
	return nil
}

// applyCancelAtPeriodEnd sets the fields a scheduled (or unscheduled)
// cancellation changes.
func applyCancelAtPeriodEnd(sub object, cancel bool, now int64) {
	if sub["cancel_at_period_end"] == cancel {
		return
	}
	sub["cancel_at_period_end"] = cancel
	if cancel {
		sub["cancel_at"] = sub["current_period_end"]
		sub["canceled_at"] = now
		sub["cancellation_details"] = object{"comment": nil, "feedback": nil, "reason": "cancellation_requested"}
	} else {
		sub["cancel_at"] = nil
		sub["canceled_at"] = nil
		sub["cancellation_details"] = object{"comment": nil, "feedback": nil, "reason": nil}
	}
}

// endSubscription cancels a subscription now: pending prorations are
// dropped, and customer.subscription.deleted is sent.
func (s *Server) endSubscription(c *call, sub object, details object) {
	now := s.nowOn(s.clockOfObject(sub))
	sub["status"] = "canceled"
	if sub["canceled_at"] == nil || sub["cancel_at_period_end"] != true {
		sub["canceled_at"] = now
	}
	sub["ended_at"] = now
	if details != nil {
		sub["cancellation_details"] = details
	}
	delete(s.internal(str(sub["id"])), "pending")
	// Stripe stops collecting a canceled subscription's open invoices.
	for _, inv := range s.all("invoice", func(o object) bool { return idOf(o["subscription"]) == sub["id"] && o["status"] == "open" }) {
		inv["next_payment_attempt"] = nil
	}
	s.emit(c, "customer.subscription.deleted", sub, nil)
}

// updateSubscription applies POST /v1/subscriptions/{id}: item changes
// with prorations, cancellation at period end, the default payment method,
// a discount, metadata, ending a trial now.
func (s *Server) updateSubscription(c *call, sub object) (any, error) {
	if err := refuseUnsupported(c, refusedOnSubscriptions); err != nil {
		return nil, err
	}
	if c.has("trial_end") && c.str("trial_end") != "now" {
		return nil, notImplemented("moving a trial's end to another time (only trial_end=now)")
	}
	if c.has("trial_period_days") {
		return nil, notImplemented("trial_period_days on an existing subscription")
	}
	switch sub["status"] {
	case "canceled", "incomplete_expired":
		for k := range c.params {
			if k != "metadata" && k != "cancellation_details" && k != "expand" {
				return nil, badRequest(k, "A canceled subscription can only update its cancellation_details and metadata.")
			}
		}
	}
	behaviour := orDefault(c.str("payment_behavior"), "allow_incomplete")
	switch behaviour {
	case "allow_incomplete", "error_if_incomplete", "default_incomplete":
	default:
		return nil, notImplemented("payment_behavior=" + behaviour + " on updates")
	}
	proration := orDefault(c.str("proration_behavior"), "create_prorations")
	clock := s.clockOfObject(sub)
	now := s.nowOn(clock)
	prorationDate := now
	if d, ok := c.int("proration_date"); ok {
		if d < num(sub["current_period_start"]) || d > num(sub["current_period_end"]) {
			return nil, badRequest("proration_date", "The proration_date must be within the subscription's current period.")
		}
		prorationDate = d
	}
	before := clone(sub)

	// Items: work on a copy, then check the result as a whole.
	newItems, prorations, err := s.planItemChanges(sub, c.list("items"), prorationDate)
	if err != nil {
		return nil, err
	}
	coupon, promo, err := s.resolveDiscount(c.str("coupon"), c.str("promotion_code"))
	if err != nil {
		return nil, err
	}
	if err := couponFits(coupon, str(sub["currency"])); err != nil {
		return nil, err
	}
	var pm object
	if c.has("default_payment_method") {
		if id := c.str("default_payment_method"); id != "" {
			pm = s.get("payment_method", id)
			if pm == nil {
				return nil, noSuch("PaymentMethod", "default_payment_method", id)
			}
			if idOf(pm["customer"]) != idOf(sub["customer"]) {
				return nil, badRequest("default_payment_method", "The customer does not have a payment method with the ID %s. The payment method must be attached to the customer.", id)
			}
		}
	}
	if proration == "none" || sub["status"] == "trialing" {
		prorations = nil
	}
	if proration == "always_invoice" && len(prorations) > 0 && behaviour == "error_if_incomplete" {
		sum := sumLines(prorations) + sumLines(pendingLines(s, sub))
		payWith := pm
		if payWith == nil {
			payWith = s.subPaymentMethod(sub)
		}
		if sum > 0 {
			if payWith == nil {
				return nil, badRequest("", "This customer has no attached payment source or default payment method.")
			}
			if e := s.wouldFail(payWith, true); e != nil {
				return nil, e
			}
		}
	}

	// Apply.
	if newItems != nil {
		sub["items"].(map[string]any)["data"] = newItems
		sub["items"].(map[string]any)["total_count"] = len(newItems)
		setLegacyPlan(sub)
	}
	si := s.internal(str(sub["id"]))
	if len(prorations) > 0 {
		pend, _ := si["pending"].([]any)
		si["pending"] = append(pend, prorations...)
	}
	if c.has("default_payment_method") {
		sub["default_payment_method"] = nilIfEmpty(c.str("default_payment_method"))
	}
	if coupon != nil {
		sub["discount"] = s.newDiscount(c, coupon, promo, sub, now)
	} else if c.has("coupon") && c.str("coupon") == "" || c.has("promotion_code") && c.str("promotion_code") == "" {
		sub["discount"] = nil
	}
	if c.has("metadata") {
		if err := c.metadata(sub); err != nil {
			return nil, err
		}
	}
	if c.has("description") {
		sub["description"] = nilIfEmpty(c.str("description"))
	}
	if c.has("cancellation_details") {
		cd, _ := sub["cancellation_details"].(map[string]any)
		if cd == nil {
			cd = object{"comment": nil, "feedback": nil, "reason": nil}
		}
		if c.has("cancellation_details.comment") {
			cd["comment"] = nilIfEmpty(c.str("cancellation_details.comment"))
		}
		if c.has("cancellation_details.feedback") {
			cd["feedback"] = nilIfEmpty(c.str("cancellation_details.feedback"))
		}
		sub["cancellation_details"] = cd
	}
	if c.has("payment_settings.save_default_payment_method") {
		sub["payment_settings"].(map[string]any)["save_default_payment_method"] = c.str("payment_settings.save_default_payment_method")
	}
	if c.has("cancel_at_period_end") {
		switch sub["status"] {
		case "incomplete":
			return nil, badRequest("cancel_at_period_end", "An incomplete subscription cannot be scheduled for cancellation; cancel it instead.")
		}
		applyCancelAtPeriodEnd(sub, c.bool("cancel_at_period_end"), now)
	}
	endTrial := c.str("trial_end") == "now" && sub["status"] == "trialing"
	if endTrial {
		sub["trial_end"] = now
		sub["status"] = "active"
		sub["billing_cycle_anchor"] = now
		si["anchor"] = now
		si["cycle"] = int64(0)
		sub["current_period_start"] = now
		sub["current_period_end"] = s.periodEnd(sub, 0)
	}
	if prev := changed(before, sub); len(prev) > 0 {
		s.emit(c, "customer.subscription.updated", sub, prev)
	}
	switch {
	case endTrial:
		s.invoiceCycle(c, sub, "subscription_update", behaviour, c.bool("off_session"))
	case proration == "always_invoice" && len(pendingLines(s, sub)) > 0:
		s.invoiceCycle(c, sub, "subscription_update", behaviour, c.bool("off_session"))
	}
	return sub, nil
}

// planItemChanges works out the items after an update's items[] and the
// proration lines the change makes (credit for the unused time on what
// was, a charge for the remaining time on what is). It returns nil items
// when items[] was not sent.
func (s *Server) planItemChanges(sub object, changes []map[string]any, at int64) ([]any, []any, *Error) {
	if len(changes) == 0 {
		return nil, nil, nil
	}
	type state struct {
		item  object
		price object
		qty   int64
		gone  bool
	}
	var cur []*state
	for _, it := range subItems(sub) {
		pr := s.get("price", idOf(it["price"]))
		if pr == nil {
			pr = it["price"].(map[string]any)
		}
		cur = append(cur, &state{item: it, price: pr, qty: num(it["quantity"])})
	}
	old := make([]state, len(cur))
	for i, st := range cur {
		old[i] = *st
	}
	for i, ch := range changes {
		param := fmt.Sprintf("items[%d]", i)
		id := str(ch["id"])
		var target *state
		if id != "" {
			for _, st := range cur {
				if st.item["id"] == id {
					target = st
				}
			}
			if target == nil {
				return nil, nil, noSuch("subscription item", param+"[id]", id)
			}
		} else {
			if str(ch["price"]) == "" {
				return nil, nil, badRequest(param+"[price]", "Missing required param: %s[price] (or %s[id]).", param, param)
			}
			target = &state{qty: 1}
			cur = append(cur, target)
		}
		if d, ok := ch["deleted"]; ok && (d == true || d == "true") {
			if target.item == nil {
				return nil, nil, badRequest(param+"[deleted]", "deleted needs the id of an existing item.")
			}
			target.gone = true
			continue
		}
		if p := str(ch["price"]); p != "" {
			pr := s.get("price", p)
			if pr == nil {
				return nil, nil, noSuch("price", param+"[price]", p)
			}
			target.price = pr
		}
		if q, ok := ch["quantity"]; ok {
			target.qty = num(q)
			if sq, ok := q.(string); ok {
				fmt.Sscan(sq, &target.qty)
			}
		}
	}
	var specs []itemSpec
	for _, st := range cur {
		if !st.gone {
			specs = append(specs, itemSpec{Price: str(st.price["id"]), Quantity: st.qty})
		}
	}
	prices, err := s.checkPrices(specs)
	if err != nil {
		return nil, nil, err
	}
	if len(subItems(sub)) > 0 {
		a := subItems(sub)[0]["price"].(map[string]any)["recurring"].(map[string]any)
		b := prices[0]["recurring"].(map[string]any)
		if a["interval"] != b["interval"] || num(a["interval_count"]) != num(b["interval_count"]) {
			return nil, nil, notImplemented("changing a subscription's billing interval (it resets the billing cycle)")
		}
	}

	start, end := num(sub["current_period_start"]), num(sub["current_period_end"])
	var prorations []any
	var items []any
	for i, st := range cur {
		was := state{}
		if i < len(old) {
			was = old[i]
		}
		changedItem := st.gone || was.item == nil || was.price["id"] != st.price["id"] || was.qty != st.qty
		if was.item != nil && changedItem && (was.qty > 0) {
			prorations = append(prorations, s.prorationLine(sub, was.item, was.price, was.qty, at, start, end, true))
		}
		if st.gone {
			continue
		}
		var it object
		if st.item == nil {
			it = s.newSubscriptionItem(sub, st.price, st.qty, s.nowOn(s.clockOfObject(sub)))
		} else {
			it = st.item
			it["price"] = clone(st.price)
			it["plan"] = planOf(st.price)
			it["quantity"] = st.qty
		}
		if changedItem && st.qty > 0 {
			prorations = append(prorations, s.prorationLine(sub, it, st.price, st.qty, at, start, end, false))
		}
		items = append(items, it)
	}
	for _, p := range prorations {
		if num(p.(object)["amount"]) == 0 {
			prorations = slices.DeleteFunc(prorations, func(x any) bool { return num(x.(object)["amount"]) == 0 })
			break
		}
	}
	return items, prorations, nil
}

// prorationLine is one pending proration: the unused time on what the item
// was (credit, negative) or the remaining time on what it is, from at to
// the period's end, to the second as Stripe prorates.
func (s *Server) prorationLine(sub, item, price object, qty, at, start, end int64, credit bool) object {
	full := num(price["unit_amount"]) * qty
	amount := int64(0)
	if end > start {
		amount = int64(float64(full)*float64(end-at)/float64(end-start) + 0.5)
	}
	desc := "Remaining time on "
	if credit {
		amount = -amount
		desc = "Unused time on "
	}
	desc += fmt.Sprintf("%s%s after %s", qtyPrefix(qty), s.productName(price), time.Unix(at, 0).UTC().Format("02 Jan 2006"))
	l := s.line(sub, item, price, qty, amount, start, end, desc)
	l["id"] = newID("il")
	l["invoice_item"] = newID("ii")
	l["type"] = "invoiceitem"
	l["proration"] = true
	l["period"] = object{"start": at, "end": end}
	return l
}

func qtyPrefix(q int64) string {
	if q == 1 {
		return ""
	}
	return fmt.Sprintf("%d × ", q)
}

// pendingLines returns the prorations waiting for the subscription's next
// invoice.
func pendingLines(s *Server, sub object) []any {
	r := s.rec(str(sub["id"]))
	if r == nil || r.Internal == nil {
		return nil
	}
	l, _ := r.Internal["pending"].([]any)
	return l
}

// changed returns the previous values of the top-level fields that differ
// between before and after, as previous_attributes.
func changed(before, after object) map[string]any {
	prev := map[string]any{}
	a := clone(after)
	for k, v := range a {
		if string(mustJSON(v)) != string(mustJSON(before[k])) {
			prev[k] = before[k]
		}
	}
	return prev
}

// addInterval adds n intervals to a Unix time; months and years keep the
// day of the month, clamped to the month's last day as Stripe does.
func addInterval(t int64, interval string, n int64) int64 {
	tt := time.Unix(t, 0).UTC()
	switch interval {
	case "day":
		return t + n*day
	case "week":
		return t + 7*n*day
	case "year":
		n *= 12
	}
	y, m, d := tt.Date()
	total := int(m) - 1 + int(n)
	ny, nm := y+total/12, time.Month(total%12+1)
	last := time.Date(ny, nm+1, 0, 0, 0, 0, 0, time.UTC).Day()
	return time.Date(ny, nm, min(d, last), tt.Hour(), tt.Minute(), tt.Second(), 0, time.UTC).Unix()
}

// periodEnd returns the end of the subscription's k-th period after its
// anchor (k = 0: the first), counted from the anchor so that months do not
// drift (Jan 31, Feb 28, Mar 31).
func (s *Server) periodEnd(sub object, k int64) int64 {
	items := subItems(sub)
	rec := items[0]["price"].(map[string]any)["recurring"].(map[string]any)
	anchor := num(s.internal(str(sub["id"]))["anchor"])
	return addInterval(anchor, str(rec["interval"]), num(rec["interval_count"])*(k+1))
}
