package sandbox

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Checkout Sessions: created through the API, paid on the hosted page at
// PublicURL/checkout/{id} (pages.go), completed when the payment (or the
// subscription's first invoice) succeeds, and expired by the clock at
// expires_at or through POST /v1/checkout/sessions/{id}/expire.

const (
	checkoutMinLifetime     = 30 * 60
	checkoutMaxLifetime     = 24 * 3600
	checkoutDefaultLifetime = 24 * 3600
)

// checkoutParams are the parameters the sandbox implements; any other one
// the spec allows changes what Checkout does, and is refused by name.
var checkoutParams = map[string][]string{
	"mode": nil, "customer": nil, "customer_email": nil, "customer_creation": nil,
	"line_items": {"price", "quantity"}, "success_url": nil, "cancel_url": nil,
	"metadata": nil, "client_reference_id": nil, "allow_promotion_codes": nil,
	"discounts":           {"promotion_code", "coupon"},
	"subscription_data":   {"metadata", "trial_period_days", "description"},
	"payment_intent_data": {"metadata", "setup_future_usage", "description"},
	"expires_at":          nil, "payment_method_types": nil, "expand": nil, "locale": nil,
}

// refuseUnimplemented names the first parameter outside allowed.
func refuseUnimplemented(params map[string]any, allowed map[string][]string, what string) *Error {
	for _, k := range sortedKeys(params) {
		sub, ok := allowed[k]
		if !ok {
			return notImplemented(fmt.Sprintf("the %s parameter %s", what, k))
		}
		if sub == nil {
			continue
		}
		var hashes []map[string]any
		switch v := params[k].(type) {
		case map[string]any:
			if _, indexed := v["0"]; indexed {
				for _, e := range v {
					if m, ok := e.(map[string]any); ok {
						hashes = append(hashes, m)
					}
				}
			} else {
				hashes = append(hashes, v)
			}
		case []any:
			for _, e := range v {
				if m, ok := e.(map[string]any); ok {
					hashes = append(hashes, m)
				}
			}
		}
		for _, h := range hashes {
			for _, hk := range sortedKeys(h) {
				if !slices.Contains(sub, hk) {
					return notImplemented(fmt.Sprintf("the %s parameter %s[%s]", what, k, hk))
				}
			}
		}
	}
	return nil
}

func (s *Server) routesCheckout() {
	s.handle("POST /v1/checkout/sessions", s.createCheckoutSession)
	s.handle("GET /v1/checkout/sessions/{id}", func(c *call) (any, error) {
		return s.must("checkout.session", c.r.PathValue("id"), "session")
	})
	s.handle("GET /v1/checkout/sessions", func(c *call) (any, error) {
		customer, pi, sub, status := c.str("customer"), c.str("payment_intent"), c.str("subscription"), c.str("status")
		return c.page(s.all("checkout.session", func(cs object) bool {
			return (customer == "" || idOf(cs["customer"]) == customer) &&
				(pi == "" || idOf(cs["payment_intent"]) == pi) &&
				(sub == "" || idOf(cs["subscription"]) == sub) &&
				(status == "" || cs["status"] == status)
		}))
	})
	s.handle("GET /v1/checkout/sessions/{id}/line_items", func(c *call) (any, error) {
		cs, err := s.must("checkout.session", c.r.PathValue("id"), "session")
		if err != nil {
			return nil, err
		}
		var items []object
		for _, it := range asList(s.internal(str(cs["id"]))["line_items"]) {
			items = append(items, it.(map[string]any))
		}
		return c.page(items)
	})
	s.handle("POST /v1/checkout/sessions/{id}/expire", func(c *call) (any, error) {
		cs, err := s.must("checkout.session", c.r.PathValue("id"), "session")
		if err != nil {
			return nil, err
		}
		if cs["status"] != "open" {
			return nil, badRequest("", "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of \"%s\".", cs["status"])
		}
		s.expireCheckout(c, cs)
		return cs, nil
	})

	// Sessions expire by themselves at expires_at.
	s.schedule(func(clock string, until int64) (int64, func() error) {
		var due object
		for _, cs := range s.all("checkout.session", func(cs object) bool {
			return cs["status"] == "open" && s.clockOfObject(cs) == clock && num(cs["expires_at"]) <= until
		}) {
			if due == nil || num(cs["expires_at"]) < num(due["expires_at"]) {
				due = cs
			}
		}
		if due == nil {
			return 0, nil
		}
		return num(due["expires_at"]), func() error { s.expireCheckout(nil, due); return nil }
	})

	// A session completes when the payment it is waiting for succeeds: at
	// once, or after 3D Secure.
	s.onIntent(func(c *call, pi object) error {
		if pi["status"] != "succeeded" {
			return nil
		}
		csID := str(s.internal(str(pi["id"]))["checkout_session"])
		cs := s.get("checkout.session", csID)
		if cs == nil || cs["status"] != "open" {
			return nil
		}
		if cs["mode"] == "subscription" {
			sub := s.get("subscription", str(s.internal(csID)["subscription"]))
			if sub == nil || (sub["status"] != "active" && sub["status"] != "trialing") {
				return nil // the invoice's own hook has not activated it (yet)
			}
			s.completeCheckout(c, cs, pi, sub)
			return nil
		}
		s.completeCheckout(c, cs, pi, nil)
		return nil
	})

	s.page("GET /checkout/{id}", s.checkoutPage)
	s.page("POST /checkout/{id}", s.checkoutSubmit)
}

func (s *Server) createCheckoutSession(c *call) (any, error) {
	if err := refuseUnimplemented(c.params, checkoutParams, "Checkout Session"); err != nil {
		return nil, err
	}
	mode := c.str("mode")
	switch mode {
	case "payment", "subscription":
	case "setup":
		return nil, notImplemented("Checkout Sessions in setup mode")
	case "":
		return nil, badRequest("mode", "Missing required param: mode.")
	default:
		return nil, badRequest("mode", "Invalid mode: must be one of payment, setup, or subscription")
	}
	successURL := c.str("success_url")
	if successURL == "" {
		return nil, badRequest("success_url", "Missing required param: success_url.")
	}
	for _, p := range []string{"success_url", "cancel_url"} {
		if u := c.str(p); u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, badRequest(p, "Not a valid URL")
		}
	}
	customer, email := c.str("customer"), c.str("customer_email")
	if customer != "" && email != "" {
		return nil, badRequest("customer_email", "You may only specify one of these parameters: customer, customer_email.")
	}
	clock := ""
	if customer != "" {
		cu, err := s.must("customer", customer, "customer")
		if err != nil {
			return nil, err
		}
		clock = idOf(cu["test_clock"])
	}
	creation := c.str("customer_creation")
	if creation != "" && mode == "subscription" {
		return nil, badRequest("customer_creation", "`customer_creation` can only be used in `payment` and `setup` mode.")
	}
	if creation != "" && customer != "" {
		return nil, badRequest("customer_creation", "You may only specify one of these parameters: customer, customer_creation.")
	}
	if creation == "" && mode == "payment" && customer == "" {
		creation = "if_required"
	}
	for _, t := range c.strings("payment_method_types") {
		if t != "card" {
			return nil, notImplemented("the payment method type " + t + " (it has cards only)")
		}
	}
	if c.bool("allow_promotion_codes") && c.has("discounts") {
		return nil, badRequest("allow_promotion_codes", "You may only specify one of these parameters: allow_promotion_codes, discounts.")
	}
	if mode == "payment" && c.has("subscription_data") {
		return nil, badRequest("subscription_data", "You can not pass `subscription_data` in `payment` mode.")
	}
	if mode == "subscription" && c.has("payment_intent_data") {
		return nil, badRequest("payment_intent_data", "You can not pass `payment_intent_data` in `subscription` mode.")
	}
	if sfu := c.str("payment_intent_data.setup_future_usage"); sfu != "" && sfu != "on_session" && sfu != "off_session" {
		return nil, badRequest("payment_intent_data[setup_future_usage]", "Invalid setup_future_usage: must be on_session or off_session.")
	}
	now := s.nowOn(clock)
	expiresAt := now + checkoutDefaultLifetime
	if at, ok := c.int("expires_at"); ok {
		if at < now+checkoutMinLifetime {
			return nil, badRequest("expires_at", "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.")
		}
		if at > now+checkoutMaxLifetime {
			return nil, badRequest("expires_at", "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.")
		}
		expiresAt = at
	}
	trialDays, hasTrial := c.int("subscription_data.trial_period_days")
	if hasTrial && (trialDays < 1 || trialDays > 730) {
		return nil, badRequest("subscription_data[trial_period_days]", "The trial period must be between 1 and 730 days.")
	}

	// Line items.
	raw := c.list("line_items")
	if len(raw) == 0 {
		return nil, badRequest("line_items", "You must provide `line_items` in `%s` mode.", mode)
	}
	var items []any
	currency, recurring := "", 0
	var subtotal int64
	for i, li := range raw {
		param := fmt.Sprintf("line_items[%d]", i)
		priceID := str(li["price"])
		if priceID == "" {
			return nil, badRequest(param+"[price]", "You must specify `price` in `%s`.", param)
		}
		price := s.get("price", priceID)
		if price == nil {
			return nil, noSuch("price", param+"[price]", priceID)
		}
		if price["active"] != true {
			return nil, badRequest(param+"[price]", "The price specified is inactive. This field only accepts active prices.")
		}
		qty, ok := toInt(li["quantity"])
		if !ok {
			return nil, badRequest(param+"[quantity]", "Quantity is required. Add `quantity` to `%s`.", param)
		}
		if qty < 1 || qty > 999999 {
			return nil, badRequest(param+"[quantity]", "Quantity must be between 1 and 999999.")
		}
		if price["unit_amount"] == nil {
			return nil, notImplemented("prices without a unit_amount (tiered or custom) in Checkout")
		}
		isRecurring := price["type"] == "recurring"
		if isRecurring && mode == "payment" {
			return nil, badRequest(param+"[price]", "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.")
		}
		if isRecurring {
			recurring++
			if rc, _ := price["recurring"].(map[string]any); rc != nil && rc["usage_type"] == "metered" {
				return nil, notImplemented("metered prices in Checkout")
			}
		}
		cur := str(price["currency"])
		if currency != "" && cur != currency {
			return nil, badRequest(param+"[price]", "All line items must have the same currency (%s and %s).", currency, cur)
		}
		currency = cur
		amount := num(price["unit_amount"]) * qty
		subtotal += amount
		desc := ""
		if p := s.get("product", idOf(price["product"])); p != nil {
			desc = str(p["name"])
		}
		items = append(items, object{
			"id": newID("li"), "object": "item", "amount_discount": int64(0), "amount_subtotal": amount,
			"amount_tax": int64(0), "amount_total": amount, "currency": cur, "description": desc,
			"price": clone(price), "quantity": qty,
		})
	}
	if mode == "subscription" && recurring == 0 {
		return nil, badRequest("line_items", "You must provide at least one recurring price in `subscription` mode when using prices.")
	}
	if mode == "subscription" && recurring != len(raw) {
		return nil, notImplemented("one-time prices beside recurring ones in subscription mode")
	}
	if mode == "subscription" {
		iv := func(p any) string {
			rc, _ := p.(object)["recurring"].(map[string]any)
			return str(rc["interval"]) + "/" + fmt.Sprint(num(rc["interval_count"]))
		}
		for _, it := range items[1:] {
			if iv(it.(object)["price"]) != iv(items[0].(object)["price"]) {
				return nil, badRequest("line_items", "All prices on a subscription must have the same `recurring.interval` and `recurring.interval_count`.")
			}
		}
	}

	// Discounts given at creation.
	var promo, coupon object
	discounts := c.list("discounts")
	if len(discounts) > 1 {
		return nil, badRequest("discounts", "You may only specify one discount.")
	}
	for _, d := range discounts {
		co, pc, err := s.resolveDiscount(str(d["coupon"]), str(d["promotion_code"]))
		if err != nil {
			err.Param = "discounts[0][" + orDefault(err.Param, "coupon") + "]"
			return nil, err
		}
		promo, coupon = pc, co
	}

	id := "cs_test_" + randomID(58)
	cs := s.spec.blank("checkout.session")
	for k, v := range (object{
		"id": id, "after_expiration": nil, "allow_promotion_codes": nilIfFalse(c.bool("allow_promotion_codes")),
		"amount_subtotal": subtotal, "amount_total": subtotal,
		"automatic_tax":              object{"enabled": false, "status": nil},
		"billing_address_collection": nil, "cancel_url": nilIfEmpty(c.str("cancel_url")),
		"client_reference_id": nilIfEmpty(c.str("client_reference_id")), "consent": nil, "consent_collection": nil,
		"created": now, "currency": currency, "custom_fields": []any{},
		"custom_text": object{"after_submit": nil, "shipping_address": nil, "submit": nil, "terms_of_service_acceptance": nil},
		"customer":    nilIfEmpty(customer), "customer_creation": nilIfEmpty(creation), "customer_details": nil,
		"customer_email": nilIfEmpty(c.str("customer_email")),
		"expires_at":     expiresAt, "invoice": nil, "invoice_creation": nil, "livemode": false,
		"locale": nilIfEmpty(c.str("locale")), "mode": mode, "payment_intent": nil, "payment_link": nil,
		"payment_method_collection": nil, "payment_method_configuration_details": nil,
		"payment_method_options": object{}, "payment_method_types": []any{"card"},
		"payment_status": "unpaid", "phone_number_collection": object{"enabled": false},
		"recovered_from": nil, "setup_intent": nil, "shipping_address_collection": nil, "shipping_cost": nil,
		"shipping_details": nil, "shipping_options": []any{}, "status": "open", "submit_type": nil,
		"subscription": nil, "success_url": successURL,
		"total_details": object{"amount_discount": int64(0), "amount_shipping": int64(0), "amount_tax": int64(0)},
		"ui_mode":       "hosted", "url": s.opts.PublicURL + "/checkout/" + id,
	}) {
		cs[k] = v
	}
	if mode == "subscription" {
		cs["payment_method_collection"] = "always"
	}
	if err := c.metadata(cs); err != nil {
		return nil, err
	}
	s.put(cs)
	in := s.internal(id)
	in["line_items"] = items
	in["trial_period_days"] = trialDays
	in["subscription_metadata"] = c.hash("subscription_data.metadata")
	in["subscription_description"] = c.str("subscription_data.description")
	in["pi_metadata"] = c.hash("payment_intent_data.metadata")
	in["pi_description"] = c.str("payment_intent_data.description")
	in["setup_future_usage"] = c.str("payment_intent_data.setup_future_usage")
	if promo != nil {
		in["promotion_code"] = promo["id"]
	}
	if coupon != nil && promo == nil {
		in["coupon"] = coupon["id"]
	}
	s.applyCheckoutDiscount(cs)
	return cs, nil
}

func nilIfFalse(b bool) any {
	if !b {
		return nil
	}
	return true
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int, int64, float64:
		return num(x), true
	case string:
		var n int64
		_, err := fmt.Sscan(x, &n)
		return n, err == nil
	}
	return 0, false
}

// couponOf returns a promotion code's coupon (stored, or as embedded).
func (s *Server) couponOf(pc object) object {
	if co := s.get("coupon", idOf(pc["coupon"])); co != nil {
		return co
	}
	co, _ := pc["coupon"].(map[string]any)
	return co
}

// couponOff is how much a coupon takes off an amount.
func couponOff(co object, amount int64, currency string) int64 {
	if co == nil {
		return 0
	}
	if p, ok := co["percent_off"].(float64); ok && p > 0 {
		return min(amount, int64(float64(amount)*p/100+0.5))
	}
	if p := num(co["percent_off"]); p > 0 {
		return min(amount, amount*p/100)
	}
	if off := num(co["amount_off"]); off > 0 && str(co["currency"]) == currency {
		return min(amount, off)
	}
	return 0
}

// applyCheckoutDiscount recomputes the session's and its line items'
// amounts with the session's coupon (spread over the items in proportion).
func (s *Server) applyCheckoutDiscount(cs object) {
	in := s.internal(str(cs["id"]))
	co := s.get("coupon", str(in["coupon"]))
	if co == nil && in["promotion_code"] != nil {
		if pc := s.get("promotion_code", str(in["promotion_code"])); pc != nil {
			co = s.couponOf(pc)
		}
	}
	subtotal := num(cs["amount_subtotal"])
	off := couponOff(co, subtotal, str(cs["currency"]))
	left := off
	items := asList(in["line_items"])
	for i, x := range items {
		it := x.(map[string]any)
		d := int64(0)
		if subtotal > 0 {
			d = off * num(it["amount_subtotal"]) / subtotal
		}
		if i == len(items)-1 {
			d = left
		}
		left -= d
		it["amount_discount"] = d
		it["amount_total"] = num(it["amount_subtotal"]) - d
	}
	cs["amount_total"] = subtotal - off
	cs["total_details"].(map[string]any)["amount_discount"] = off
}

// expireCheckout ends an open session: its PaymentIntent, if a payment was
// tried, is canceled, and checkout.session.expired is sent.
func (s *Server) expireCheckout(c *call, cs object) {
	if pi := s.get("payment_intent", idOf(cs["payment_intent"])); pi != nil &&
		(pi["status"] == "requires_payment_method" || pi["status"] == "requires_action") {
		pi["status"] = "canceled"
		pi["canceled_at"] = s.nowOn(s.clockOfObject(pi))
		pi["cancellation_reason"] = "abandoned"
		pi["next_action"] = nil
		s.emit(c, "payment_intent.canceled", pi, nil)
	}
	cs["status"] = "expired"
	cs["url"] = nil
	s.emit(c, "checkout.session.expired", cs, nil)
}

// completeCheckout marks a session paid and complete, after the events of
// what it paid for, and sends checkout.session.completed.
func (s *Server) completeCheckout(c *call, cs, pi, sub object) {
	in := s.internal(str(cs["id"]))
	customer := str(in["customer"])
	if customer == "" {
		customer = idOf(cs["customer"])
	}
	cs["status"] = "complete"
	cs["url"] = nil
	cs["payment_status"] = "paid"
	if customer != "" {
		cs["customer"] = customer
	}
	email := cs["customer_email"]
	if cu := s.get("customer", customer); cu != nil && cu["email"] != nil {
		email = cu["email"]
	} else if e := str(in["email"]); e != "" {
		email = e
	}
	cs["customer_details"] = object{"address": nil, "email": email, "name": nil, "phone": nil, "tax_exempt": "none", "tax_ids": []any{}}
	if pi != nil && cs["mode"] == "payment" {
		cs["payment_intent"] = pi["id"]
	}
	if sub != nil {
		cs["subscription"] = sub["id"]
		if inv := s.get("invoice", idOf(sub["latest_invoice"])); inv != nil {
			cs["amount_subtotal"] = num(inv["subtotal"])
			cs["amount_total"] = num(inv["total"])
			cs["total_details"].(map[string]any)["amount_discount"] = num(inv["subtotal"]) - num(inv["total"])
		}
	}
	if num(cs["amount_total"]) == 0 {
		cs["payment_status"] = "no_payment_required"
	}
	if sub == nil {
		// A subscription counts its own redemption; a payment's is counted here.
		if pc := s.get("promotion_code", str(in["promotion_code"])); pc != nil {
			pc["times_redeemed"] = num(pc["times_redeemed"]) + 1
			if m := pc["max_redemptions"]; m != nil && num(pc["times_redeemed"]) >= num(m) {
				pc["active"] = false
			}
			if co := s.get("coupon", idOf(pc["coupon"])); co != nil {
				co["times_redeemed"] = num(co["times_redeemed"]) + 1
			}
		} else if co := s.get("coupon", str(in["coupon"])); co != nil {
			co["times_redeemed"] = num(co["times_redeemed"]) + 1
		}
	}
	s.emit(c, "checkout.session.completed", cs, nil)
}

// checkoutCustomer creates the customer a session without one pays as.
func (s *Server) checkoutCustomer(c *call, cs object, email string) object {
	in := s.internal(str(cs["id"]))
	if cu := s.get("customer", str(in["customer"])); cu != nil {
		return cu
	}
	cu := s.spec.blank("customer")
	for k, v := range (object{
		"id": newID("cus"), "test_clock": nil, "created": s.nowOn(""), "email": nilIfEmpty(email),
		"name": nil, "description": nil, "phone": nil, "livemode": false, "balance": int64(0), "delinquent": false,
		"invoice_prefix": randomID(8), "next_invoice_sequence": int64(1), "preferred_locales": []any{}, "tax_exempt": "none",
		"invoice_settings": object{"custom_fields": nil, "default_payment_method": nil, "footer": nil, "rendering_options": nil},
		"metadata":         map[string]any{},
	}) {
		cu[k] = v
	}
	s.put(cu)
	s.emit(c, "customer.created", cu, nil)
	in["customer"] = cu["id"]
	return cu
}

// checkoutOutcome is what a submitted Checkout form leads to: a redirect,
// or the page again with a message.
type checkoutOutcome struct {
	redirect string
	status   int
	msg      string
}

// payCheckout pays an open session with a typed card number (the page's
// form), under the lock.
func (s *Server) payCheckout(c *call, cs object, number, promoCode, email string) checkoutOutcome {
	id := str(cs["id"])
	in := s.internal(id)
	if cs["status"] != "open" {
		return checkoutOutcome{status: http.StatusConflict, msg: "This Checkout Session is " + str(cs["status"]) + "; it can no longer be paid."}
	}
	if email != "" {
		in["email"] = email
	}
	if promoCode = strings.TrimSpace(promoCode); promoCode != "" {
		if cs["allow_promotion_codes"] != true {
			return checkoutOutcome{status: http.StatusBadRequest, msg: "This Checkout Session does not accept promotion codes."}
		}
		var found object
		for _, pc := range s.all("promotion_code", nil) {
			if strings.EqualFold(str(pc["code"]), promoCode) {
				if _, _, err := s.resolveDiscount("", str(pc["id"])); err == nil {
					found = pc
					break
				}
			}
		}
		if found == nil {
			return checkoutOutcome{status: http.StatusBadRequest, msg: "This code is invalid."}
		}
		in["promotion_code"] = found["id"]
		delete(in, "coupon")
		s.applyCheckoutDiscount(cs)
	}
	card, ok := cardForNumber(number)
	if !ok {
		return checkoutOutcome{status: http.StatusBadRequest, msg: "The sandbox does not know the card number " + number + ": use one of the test cards listed below."}
	}
	if cs["mode"] == "subscription" {
		return s.payCheckoutSubscription(c, cs, card)
	}
	// Payment mode.
	customer := idOf(cs["customer"])
	if customer == "" && (cs["customer_creation"] == "always" || str(in["setup_future_usage"]) != "") {
		customer = str(s.checkoutCustomer(c, cs, orDefault(email, str(cs["customer_email"])))["id"])
	}
	clock := s.clockOfCustomer(customer)
	if num(cs["amount_total"]) == 0 {
		s.completeCheckout(c, cs, nil, nil)
		return checkoutOutcome{redirect: successURL(cs)}
	}
	pi := s.get("payment_intent", idOf(cs["payment_intent"]))
	if pi == nil || (pi["status"] != "requires_payment_method" && pi["status"] != "requires_action") {
		meta, _ := clone(object{"m": in["pi_metadata"]})["m"].(map[string]any)
		pi = s.newPaymentIntent(c, intentSpec{Amount: num(cs["amount_total"]), Currency: str(cs["currency"]), Customer: customer,
			Description: str(in["pi_description"]), SetupFutureUsage: str(in["setup_future_usage"]), Metadata: meta, Clock: clock})
		s.internal(str(pi["id"]))["checkout_session"] = id
		cs["payment_intent"] = pi["id"]
	} else if num(pi["amount"]) != num(cs["amount_total"]) {
		pi["amount"] = num(cs["amount_total"]) // a promotion code entered after a decline
	}
	pm := s.newCardPaymentMethod(card, clock)
	if err := s.confirmIntent(c, pi, pm, false); err != nil {
		return checkoutOutcome{status: http.StatusPaymentRequired, msg: err.Message}
	}
	return s.afterConfirm(cs, pi)
}

// afterConfirm sends the customer on: to the 3D Secure challenge, or to
// success_url once the session completed.
func (s *Server) afterConfirm(cs, pi object) checkoutOutcome {
	if pi != nil && pi["status"] == "requires_action" {
		if na, _ := pi["next_action"].(map[string]any); na != nil {
			if r, _ := na["redirect_to_url"].(map[string]any); r != nil {
				r["return_url"] = s.opts.PublicURL + "/checkout/" + str(cs["id"])
				return checkoutOutcome{redirect: str(r["url"])}
			}
		}
		return checkoutOutcome{status: http.StatusInternalServerError, msg: "The payment needs 3D Secure but has no challenge page."}
	}
	if cs["status"] == "complete" {
		return checkoutOutcome{redirect: successURL(cs)}
	}
	return checkoutOutcome{status: http.StatusPaymentRequired, msg: "The payment did not complete (" + str(pi["status"]) + ")."}
}

// payCheckoutSubscription starts the session's subscription with the card,
// or, after a declined first payment, pays its first invoice again.
func (s *Server) payCheckoutSubscription(c *call, cs object, card testCard) checkoutOutcome {
	id := str(cs["id"])
	in := s.internal(id)
	var cu object
	if cid := idOf(cs["customer"]); cid != "" {
		cu = s.get("customer", cid)
	} else {
		cu = s.checkoutCustomer(c, cs, orDefault(str(in["email"]), str(cs["customer_email"])))
	}
	clock := idOf(cu["test_clock"])
	pm := s.newCardPaymentMethod(card, clock)
	if _, err := s.attachPaymentMethod(c, str(pm["id"]), str(cu["id"])); err != nil {
		return checkoutOutcome{status: http.StatusPaymentRequired, msg: err.Message}
	}
	// A first payment declined before: pay the same invoice with this card.
	if sub := s.get("subscription", str(in["subscription"])); sub != nil && sub["status"] == "incomplete" {
		inv := s.get("invoice", idOf(sub["latest_invoice"]))
		pi := s.get("payment_intent", idOf(inv["payment_intent"]))
		if pi == nil {
			return checkoutOutcome{status: http.StatusInternalServerError, msg: "The subscription's first invoice has no payment."}
		}
		prev := map[string]any{"default_payment_method": sub["default_payment_method"]}
		sub["default_payment_method"] = pm["id"]
		s.emit(c, "customer.subscription.updated", sub, prev)
		if err := s.confirmIntent(c, pi, pm, false); err != nil {
			return checkoutOutcome{status: http.StatusPaymentRequired, msg: err.Message}
		}
		return s.afterConfirm(cs, pi)
	}
	var items []itemSpec
	for _, x := range asList(in["line_items"]) {
		it := x.(map[string]any)
		items = append(items, itemSpec{Price: idOf(it["price"]), Quantity: num(it["quantity"])})
	}
	meta, _ := clone(object{"m": in["subscription_metadata"]})["m"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	sub, err := s.startSubscription(c, subscriptionSpec{
		Customer: str(cu["id"]), Items: items, Metadata: meta, TrialPeriodDays: num(in["trial_period_days"]),
		DefaultPaymentMethod: str(pm["id"]), PaymentBehavior: "allow_incomplete", OnSession: true,
		PromotionCode: str(in["promotion_code"]), Coupon: str(in["coupon"]),
	})
	if err != nil {
		return checkoutOutcome{status: err.Status, msg: err.Message}
	}
	in["subscription"] = sub["id"]
	var pi object
	if inv := s.get("invoice", idOf(sub["latest_invoice"])); inv != nil {
		pi = s.get("payment_intent", idOf(inv["payment_intent"]))
	}
	if pi != nil {
		s.internal(str(pi["id"]))["checkout_session"] = id
	}
	switch sub["status"] {
	case "active", "trialing":
		s.completeCheckout(c, cs, pi, sub)
		return checkoutOutcome{redirect: successURL(cs)}
	}
	if pi != nil && pi["status"] == "requires_action" {
		return s.afterConfirm(cs, pi)
	}
	msg := "Your card was declined."
	if pi != nil {
		if le, _ := pi["last_payment_error"].(map[string]any); le != nil && str(le["message"]) != "" {
			msg = str(le["message"])
		}
	}
	return checkoutOutcome{status: http.StatusPaymentRequired, msg: msg}
}

// successURL is the session's success_url with {CHECKOUT_SESSION_ID}
// replaced, as Stripe does at the redirect.
func successURL(cs object) string {
	return strings.ReplaceAll(str(cs["success_url"]), "{CHECKOUT_SESSION_ID}", str(cs["id"]))
}
