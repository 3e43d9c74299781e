package sandbox

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// routesPayments registers PaymentMethods, SetupIntents, PaymentIntents,
// charges and refunds, and the 3D Secure page.
func (s *Server) routesPayments() {
	s.routesPaymentMethods()
	s.routesSetupIntents()
	s.routesPaymentIntents()
	s.routesRefunds()
	s.routesThreeDS()
}

// refuse answers notImplemented for the first parameter the request sent
// that the sandbox does not implement and that would change what happens.
func (c *call) refuse(endpoint string, params ...string) *Error {
	for _, p := range params {
		if c.has(p) {
			return notImplemented("the parameter " + p + " of " + endpoint)
		}
	}
	return nil
}

// unexpectedState is Stripe's 400 for an intent in a status that does not
// allow the request.
func unexpectedState(code, format string, args ...any) *Error {
	e := badRequest("", format, args...)
	e.Code = code
	return e
}

// ---- PaymentMethods ----

// testTokenCard returns the card a tok_ test token stands for: Stripe's
// tok_visa, tok_chargeDeclined, ... name the same cards as pm_card_visa,
// pm_card_chargeDeclined, ...
func testTokenCard(tok string) (testCard, bool) {
	name, ok := strings.CutPrefix(tok, "tok_")
	if !ok {
		return testCard{}, false
	}
	card, ok := testTokens["pm_card_"+name]
	return card, ok
}

func (s *Server) routesPaymentMethods() {
	s.handle("POST /v1/payment_methods", func(c *call) (any, error) {
		if e := c.refuse("POST /v1/payment_methods", "customer", "payment_method", "radar_options"); e != nil {
			return nil, e
		}
		if t := c.str("type"); t != "card" {
			return nil, notImplemented("PaymentMethods of type " + orDefault(t, "(none)") + " (only card, with card[token]=tok_visa and the other test tokens)")
		}
		tok := c.str("card.token")
		if tok == "" {
			return nil, notImplemented("PaymentMethods from raw card data (card[number]); pass a test token as card[token]=tok_visa, or use pm_card_visa")
		}
		card, ok := testTokenCard(tok)
		if !ok {
			return nil, notImplemented("the test token " + tok + " (see the README for the test cards it knows)")
		}
		pm := s.newCardPaymentMethod(card, "")
		if bd := c.hash("billing_details"); bd != nil {
			cur := pm["billing_details"].(object)
			for _, f := range []string{"email", "name", "phone"} {
				if v, ok := bd[f]; ok {
					cur[f] = nilIfEmpty(str(v))
				}
			}
			if a, ok := bd["address"].(map[string]any); ok {
				addr := cur["address"].(object)
				for k, v := range a {
					addr[k] = nilIfEmpty(str(v))
				}
			}
		}
		if err := c.metadata(pm); err != nil {
			return nil, err
		}
		return pm, nil
	})
	s.handle("GET /v1/payment_methods/{id}", func(c *call) (any, error) {
		return s.paymentMethod(c.r.PathValue("id"), "payment_method")
	})
	s.handle("GET /v1/payment_methods", func(c *call) (any, error) {
		cus := c.str("customer")
		if cus != "" && s.get("customer", cus) == nil {
			return nil, noSuch("customer", "customer", cus)
		}
		typ := c.str("type")
		if typ != "" && typ != "card" {
			return nil, notImplemented("PaymentMethods of type " + typ)
		}
		return c.page(s.all("payment_method", func(pm object) bool {
			return (cus == "" || idOf(pm["customer"]) == cus) && (typ == "" || pm["type"] == typ)
		}))
	})
	s.handle("POST /v1/payment_methods/{id}/attach", func(c *call) (any, error) {
		cus := c.str("customer")
		if cus == "" {
			return nil, badRequest("customer", "Missing required param: customer.")
		}
		return s.attachPaymentMethod(c, c.r.PathValue("id"), cus)
	})
	s.handle("POST /v1/payment_methods/{id}/detach", func(c *call) (any, error) {
		pm, err := s.paymentMethod(c.r.PathValue("id"), "payment_method")
		if err != nil {
			return nil, err
		}
		return pm, s.detachPaymentMethod(c, pm)
	})
}

// paymentMethod returns a stored PaymentMethod or Stripe's 404.
func (s *Server) paymentMethod(id, param string) (object, *Error) {
	if pm := s.get("payment_method", id); pm != nil {
		return pm, nil
	}
	return nil, noSuch("PaymentMethod", param, id)
}

// detachPaymentMethod detaches a card from its customer: it is no longer
// the customer's invoice default, nor any subscription's default.
func (s *Server) detachPaymentMethod(c *call, pm object) *Error {
	cusID := idOf(pm["customer"])
	if cusID == "" {
		return badRequest("payment_method", "The payment method you provided is not attached to a customer so detachment is impossible.")
	}
	pmID := str(pm["id"])
	pm["customer"] = nil
	s.emit(c, "payment_method.detached", pm, map[string]any{"customer": cusID})
	if cu := s.get("customer", cusID); cu != nil {
		if is, _ := cu["invoice_settings"].(map[string]any); is != nil && is["default_payment_method"] == pmID {
			prev := clone(is)
			is["default_payment_method"] = nil
			s.emit(c, "customer.updated", cu, map[string]any{"invoice_settings": prev})
		}
	}
	for _, sub := range s.all("subscription", func(o object) bool { return o["default_payment_method"] == pmID }) {
		sub["default_payment_method"] = nil
		s.emit(c, "customer.subscription.updated", sub, map[string]any{"default_payment_method": pmID})
	}
	return nil
}

// ---- SetupIntents ----

// setupIntentRefused are SetupIntent parameters that would change what
// happens and that the sandbox does not implement.
var setupIntentRefused = []string{"attach_to_self", "flow_directions", "mandate_data", "on_behalf_of",
	"payment_method_data", "payment_method_options", "single_use", "payment_method_configuration"}

// newSetupIntent returns a SetupIntent awaiting a payment method (not yet
// stored): the API's and a trial subscription's pending one.
func (s *Server) newSetupIntent(customer, clock string, apm any, types []any, usage string) object {
	si := s.spec.blank("setup_intent")
	id := newID("seti")
	for k, v := range (object{
		"id": id, "application": nil, "automatic_payment_methods": apm, "cancellation_reason": nil,
		"client_secret": id + "_secret_" + randomID(24), "created": s.nowOn(clock), "customer": nilIfEmpty(customer),
		"description": nil, "flow_directions": nil, "last_setup_error": nil, "latest_attempt": nil, "livemode": false,
		"mandate": nil, "metadata": map[string]any{}, "next_action": nil, "on_behalf_of": nil, "payment_method": nil,
		"payment_method_configuration_details": nil,
		"payment_method_options":               object{"card": object{"mandate_options": nil, "network": nil, "request_three_d_secure": "automatic"}},
		"payment_method_types":                 types, "single_use_mandate": nil, "status": "requires_payment_method", "usage": usage,
	}) {
		si[k] = v
	}
	return si
}

func (s *Server) routesSetupIntents() {
	s.handle("POST /v1/setup_intents", func(c *call) (any, error) {
		if e := c.refuse("POST /v1/setup_intents", setupIntentRefused...); e != nil {
			return nil, e
		}
		cus := c.str("customer")
		if cus != "" && s.get("customer", cus) == nil {
			return nil, noSuch("customer", "customer", cus)
		}
		apm, types, err := paymentMethodTypes(c)
		if err != nil {
			return nil, err
		}
		usage := orDefault(c.str("usage"), "off_session")
		if c.has("return_url") && !c.bool("confirm") {
			return nil, badRequest("return_url", "You can only pass return_url when confirming (confirm=true).")
		}
		si := s.newSetupIntent(cus, s.clockOfCustomer(cus), apm, types, usage)
		id := str(si["id"])
		si["description"] = nilIfEmpty(c.str("description"))
		if err := c.metadata(si); err != nil {
			return nil, err
		}
		var pm object
		if ref := c.str("payment_method"); ref != "" {
			var e *Error
			if pm, e = s.resolvePaymentMethod(ref, "payment_method", s.clockOfCustomer(cus)); e != nil {
				return nil, e
			}
			if e := checkOwner(pm, cus); e != nil {
				return nil, e
			}
			si["payment_method"] = pm["id"]
			si["status"] = "requires_confirmation"
		}
		if c.bool("confirm") && pm == nil {
			return nil, badRequest("payment_method", "You cannot confirm this SetupIntent because it's missing a payment method.")
		}
		s.put(si)
		if u := c.str("return_url"); u != "" {
			s.internal(id)["return_url"] = u
		}
		s.emit(c, "setup_intent.created", si, nil)
		if c.bool("confirm") {
			if e := s.confirmSetupIntent(c, si, pm); e != nil {
				return nil, e
			}
		}
		return si, nil
	})
	s.handle("GET /v1/setup_intents/{id}", func(c *call) (any, error) {
		return s.setupIntent(c.r.PathValue("id"))
	})
	s.handle("GET /v1/setup_intents", func(c *call) (any, error) {
		cus := c.str("customer")
		pmID := c.str("payment_method")
		return c.page(s.all("setup_intent", func(si object) bool {
			return (cus == "" || idOf(si["customer"]) == cus) && (pmID == "" || idOf(si["payment_method"]) == pmID)
		}))
	})
	s.handle("POST /v1/setup_intents/{id}/confirm", func(c *call) (any, error) {
		if e := c.refuse("POST /v1/setup_intents/{id}/confirm", "mandate_data", "payment_method_data", "payment_method_options"); e != nil {
			return nil, e
		}
		si, err := s.setupIntent(c.r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		var pm object
		if ref := c.str("payment_method"); ref != "" {
			if pm, err = s.resolvePaymentMethod(ref, "payment_method", s.clockOfObject(si)); err != nil {
				return nil, err
			}
		}
		if u := c.str("return_url"); u != "" {
			s.internal(str(si["id"]))["return_url"] = u
		}
		if e := s.confirmSetupIntent(c, si, pm); e != nil {
			return nil, e
		}
		return si, nil
	})
	s.handle("POST /v1/setup_intents/{id}/cancel", func(c *call) (any, error) {
		si, err := s.setupIntent(c.r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		switch si["status"] {
		case "requires_payment_method", "requires_confirmation", "requires_action":
		default:
			return nil, unexpectedState("setup_intent_unexpected_state",
				"You cannot cancel this SetupIntent because it has a status of %s. Only a SetupIntent with one of the following statuses may be canceled: requires_payment_method, requires_confirmation, requires_action.", si["status"])
		}
		si["status"] = "canceled"
		si["next_action"] = nil
		si["cancellation_reason"] = nilIfEmpty(c.str("cancellation_reason"))
		s.emit(c, "setup_intent.canceled", si, nil)
		return si, nil
	})
}

// paymentMethodTypes reads automatic_payment_methods and
// payment_method_types as Stripe does at 2023-10-16: without
// payment_method_types, automatic payment methods are on. Only cards are
// implemented.
func paymentMethodTypes(c *call) (apm any, types []any, err *Error) {
	if t := c.strings("payment_method_types"); len(t) > 0 {
		if c.has("automatic_payment_methods") {
			return nil, nil, badRequest("automatic_payment_methods", "You may only specify one of these parameters: automatic_payment_methods, payment_method_types.")
		}
		for _, x := range t {
			if x != "card" {
				return nil, nil, notImplemented("payment method type " + x + " (only card)")
			}
		}
		return nil, []any{"card"}, nil
	}
	if c.has("automatic_payment_methods.enabled") && !c.bool("automatic_payment_methods.enabled") {
		return nil, nil, badRequest("payment_method_types", "Missing required param: payment_method_types (automatic_payment_methods is disabled).")
	}
	return object{"enabled": true, "allow_redirects": orDefault(c.str("automatic_payment_methods.allow_redirects"), "always")},
		[]any{"card"}, nil
}

// setupIntent returns a stored SetupIntent or Stripe's 404.
func (s *Server) setupIntent(id string) (object, *Error) {
	if si := s.get("setup_intent", id); si != nil {
		return si, nil
	}
	return nil, noSuch("setupintent", "intent", id)
}

// confirmSetupIntent sets up a card on a SetupIntent: a card that declines
// fails it (402), a card that asks for 3D Secure leaves it in
// requires_action, any other is attached to the customer and succeeds.
func (s *Server) confirmSetupIntent(c *call, si, pm object) *Error {
	switch si["status"] {
	case "requires_payment_method", "requires_confirmation", "requires_action":
	case "succeeded":
		return unexpectedState("setup_intent_unexpected_state",
			"You cannot confirm this SetupIntent because it has already succeeded after being previously confirmed.")
	default:
		return unexpectedState("setup_intent_unexpected_state",
			"You cannot confirm this SetupIntent because it has a status of %s.", si["status"])
	}
	if pm == nil {
		pm = s.get("payment_method", idOf(si["payment_method"]))
	}
	if pm == nil {
		return badRequest("payment_method", "You cannot confirm this SetupIntent because it's missing a payment method. Update the SetupIntent with a payment method and then confirm it again.")
	}
	cus := idOf(si["customer"])
	if owner := idOf(pm["customer"]); owner != "" && owner != cus {
		return badRequest("payment_method", "The provided PaymentMethod belongs to another customer.")
	}
	si["payment_method"] = pm["id"]
	si["last_setup_error"] = nil
	card := s.cardOf(str(pm["id"]))
	authenticated := s.internal(str(pm["id"]))["authenticated"] == true
	switch {
	case card.Behaviour == "decline":
		return s.failSetupIntent(c, si, pm, card.Code, card.DeclineCode, declineMessage(card))
	case card.Behaviour == "auth_always" || (card.Behaviour == "auth_setup" && !authenticated):
		si["status"] = "requires_action"
		si["next_action"] = s.threeDSAction(str(si["id"]))
		s.emit(c, "setup_intent.requires_action", si, nil)
		return nil
	}
	return s.succeedSetupIntent(c, si, pm)
}

// succeedSetupIntent attaches the card to the SetupIntent's customer.
func (s *Server) succeedSetupIntent(c *call, si, pm object) *Error {
	if cus := idOf(si["customer"]); cus != "" && idOf(pm["customer"]) == "" {
		if _, e := s.attachPaymentMethod(c, str(pm["id"]), cus); e != nil {
			return e
		}
	}
	si["status"] = "succeeded"
	si["next_action"] = nil
	s.emit(c, "setup_intent.succeeded", si, nil)
	return nil
}

// failSetupIntent records a failed set-up: the intent back in
// requires_payment_method with last_setup_error, setup_intent.setup_failed,
// and the 402 card error carrying the intent.
func (s *Server) failSetupIntent(c *call, si, pm object, code, declineCode, message string) *Error {
	lastErr := object{"type": cardError, "code": code, "message": message, "payment_method": clone(pm)}
	if declineCode != "" {
		lastErr["decline_code"] = declineCode
	}
	si["status"] = "requires_payment_method"
	si["payment_method"] = nil
	si["next_action"] = nil
	si["last_setup_error"] = lastErr
	s.emit(c, "setup_intent.setup_failed", si, nil)
	return &Error{Status: 402, Type: cardError, Code: code, DeclineCode: declineCode, Message: message, Keep: true,
		Extra: object{"setup_intent": clone(si), "payment_method": clone(pm)}}
}

// completeSetupAuthentication finishes a 3D Secure challenge on a
// SetupIntent in requires_action: passed, the card is remembered as
// authenticated and set up; failed, the intent goes back to
// requires_payment_method.
func (s *Server) completeSetupAuthentication(c *call, si object, passed bool) *Error {
	if si["status"] != "requires_action" {
		return badRequest("", "This SetupIntent is not waiting for authentication (status %s).", si["status"])
	}
	pm := s.get("payment_method", idOf(si["payment_method"]))
	if pm == nil {
		return &Error{Status: http.StatusInternalServerError, Type: "api_error", Message: "setup intent in requires_action without its payment method"}
	}
	if !passed {
		s.failSetupIntent(c, si, pm, "setup_intent_authentication_failure", "",
			"The latest attempt to set up the payment method has failed because authentication failed.")
		return nil
	}
	s.internal(str(pm["id"]))["authenticated"] = true
	return s.succeedSetupIntent(c, si, pm)
}

// ---- PaymentIntents and charges ----

// paymentIntentRefused are PaymentIntent parameters that would change what
// happens and that the sandbox does not implement.
var paymentIntentRefused = []string{"application_fee_amount", "error_on_requires_action", "mandate", "mandate_data",
	"on_behalf_of", "payment_method_configuration", "payment_method_data", "payment_method_options", "radar_options",
	"shipping", "transfer_data", "transfer_group"}

// minimumCharge is Stripe's minimum amount per currency (smallest unit);
// currencies not listed take 50.
var minimumCharge = map[string]int64{"gbp": 30, "jpy": 50, "huf": 17500, "mxn": 1000, "hkd": 400, "nok": 300, "sek": 300, "dkk": 250, "czk": 1500, "pln": 200, "ron": 200, "aed": 200, "myr": 200, "thb": 1000, "sgd": 50, "inr": 50, "brl": 50}

const maximumCharge = 99999999

func (s *Server) routesPaymentIntents() {
	s.handle("POST /v1/payment_intents", func(c *call) (any, error) {
		if e := c.refuse("POST /v1/payment_intents", paymentIntentRefused...); e != nil {
			return nil, e
		}
		if m := c.str("capture_method"); m != "" && m != "automatic" && m != "automatic_async" {
			return nil, notImplemented("capture_method=" + m + " (payments are captured at once)")
		}
		if m := c.str("confirmation_method"); m == "manual" {
			return nil, notImplemented("confirmation_method=manual")
		}
		currency := strings.ToLower(c.str("currency"))
		if !isCurrency(currency) {
			return nil, badRequest("currency", "Invalid currency: %s. Stripe currently supports these currencies: usd, eur, gbp, ...", c.str("currency"))
		}
		amount, _ := c.int("amount")
		if e := checkAmount(amount, currency); e != nil {
			return nil, e
		}
		cus := c.str("customer")
		if cus != "" && s.get("customer", cus) == nil {
			return nil, noSuch("customer", "customer", cus)
		}
		apm, types, e := paymentMethodTypes(c)
		if e != nil {
			return nil, e
		}
		confirm := c.bool("confirm")
		if offSession(c) && !confirm {
			return nil, badRequest("off_session", "You may only specify off_session when confirming the PaymentIntent (confirm=true).")
		}
		if c.has("return_url") && !confirm {
			return nil, badRequest("return_url", "You may only specify return_url when confirming the PaymentIntent (confirm=true).")
		}
		sfu := c.str("setup_future_usage")
		if sfu != "" && cus == "" {
			return nil, badRequest("setup_future_usage", "You must provide a customer when setting setup_future_usage, so that the PaymentMethod can be attached to it.")
		}
		clock := s.clockOfCustomer(cus)
		var pm object
		if ref := c.str("payment_method"); ref != "" {
			if pm, e = s.resolvePaymentMethod(ref, "payment_method", clock); e != nil {
				return nil, e
			}
			if e := checkOwner(pm, cus); e != nil {
				return nil, e
			}
		}
		if confirm {
			if pm == nil {
				return nil, badRequest("payment_method", "You cannot confirm this PaymentIntent because it's missing a payment method. To confirm the PaymentIntent with %s, specify a payment method attached to this customer along with the customer ID.", orDefault(cus, "a customer"))
			}
			if apm != nil && apm.(object)["allow_redirects"] != "never" && c.str("return_url") == "" {
				return nil, badRequest("return_url", "This PaymentIntent is configured to accept payment methods enabled in your Dashboard, because some of these payment methods might redirect your customer off of your page, you must provide a `return_url`. If you don't want to accept redirect-based payment methods, set `automatic_payment_methods[enabled]` to `true` and `automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and Payment Intents.")
			}
		}
		meta := object{}
		if err := c.metadata(meta); err != nil {
			return nil, err
		}
		spec := intentSpec{Amount: amount, Currency: currency, Customer: cus, Description: c.str("description"),
			SetupFutureUsage: sfu, Metadata: meta["metadata"].(map[string]any), Clock: clock}
		if pm != nil {
			spec.PaymentMethod = str(pm["id"])
		}
		// Set before the created event, so that it shows them too.
		spec.Prepare = func(pi object) {
			pi["automatic_payment_methods"] = apm
			pi["payment_method_types"] = types
			pi["receipt_email"] = nilIfEmpty(c.str("receipt_email"))
			pi["statement_descriptor"] = nilIfEmpty(c.str("statement_descriptor"))
			pi["statement_descriptor_suffix"] = nilIfEmpty(c.str("statement_descriptor_suffix"))
			pi["capture_method"] = orDefault(c.str("capture_method"), "automatic")
			if u := c.str("return_url"); u != "" {
				s.internal(str(pi["id"]))["return_url"] = u
			}
		}
		pi := s.newPaymentIntent(c, spec)
		if confirm {
			if e := s.confirmIntent(c, pi, pm, offSession(c)); e != nil {
				return nil, e
			}
		}
		return pi, nil
	})
	s.handle("GET /v1/payment_intents/{id}", func(c *call) (any, error) {
		return s.paymentIntent(c.r.PathValue("id"))
	})
	s.handle("GET /v1/payment_intents", func(c *call) (any, error) {
		cus := c.str("customer")
		return c.page(s.all("payment_intent", func(pi object) bool { return cus == "" || idOf(pi["customer"]) == cus }))
	})
	s.handle("POST /v1/payment_intents/{id}", func(c *call) (any, error) {
		if e := c.refuse("POST /v1/payment_intents/{id}", append(paymentIntentRefused, "capture_method")...); e != nil {
			return nil, e
		}
		pi, err := s.paymentIntent(c.r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		switch pi["status"] {
		case "requires_payment_method", "requires_confirmation", "requires_action":
		default:
			return nil, unexpectedState("payment_intent_unexpected_state",
				"This PaymentIntent's %s could not be updated because it has a status of %s. You may only update the %[1]s of a PaymentIntent with one of the following statuses: requires_payment_method, requires_confirmation, requires_action.",
				firstSent(c, "amount", "currency", "payment_method", "customer", "metadata", "description"), pi["status"])
		}
		if c.has("amount") || c.has("currency") {
			cur := orDefault(strings.ToLower(c.str("currency")), str(pi["currency"]))
			amt, ok := c.int("amount")
			if !ok {
				amt = num(pi["amount"])
			}
			if !isCurrency(cur) {
				return nil, badRequest("currency", "Invalid currency: %s.", c.str("currency"))
			}
			if e := checkAmount(amt, cur); e != nil {
				return nil, e
			}
			pi["amount"], pi["currency"] = amt, cur
		}
		if c.has("customer") {
			cus := c.str("customer")
			if old := idOf(pi["customer"]); old != "" && old != cus {
				return nil, badRequest("customer", "You cannot change the customer of a PaymentIntent once it is set.")
			}
			if s.get("customer", cus) == nil {
				return nil, noSuch("customer", "customer", cus)
			}
			pi["customer"] = cus
		}
		if ref := c.str("payment_method"); ref != "" {
			pm, e := s.resolvePaymentMethod(ref, "payment_method", s.clockOfObject(pi))
			if e != nil {
				return nil, e
			}
			if e := checkOwner(pm, idOf(pi["customer"])); e != nil {
				return nil, e
			}
			pi["payment_method"] = pm["id"]
			pi["status"] = "requires_confirmation"
			pi["next_action"] = nil
		}
		for _, f := range []string{"description", "receipt_email", "setup_future_usage", "statement_descriptor", "statement_descriptor_suffix"} {
			if c.has(f) {
				pi[f] = nilIfEmpty(c.str(f))
			}
		}
		if err := c.metadata(pi); err != nil {
			return nil, err
		}
		return pi, nil
	})
	s.handle("POST /v1/payment_intents/{id}/confirm", func(c *call) (any, error) {
		if e := c.refuse("POST /v1/payment_intents/{id}/confirm", "capture_method", "error_on_requires_action", "mandate",
			"mandate_data", "payment_method_data", "payment_method_options", "radar_options", "shipping"); e != nil {
			return nil, e
		}
		pi, err := s.paymentIntent(c.r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		switch pi["status"] {
		case "requires_payment_method", "requires_confirmation", "requires_action":
		case "succeeded":
			return nil, unexpectedState("payment_intent_unexpected_state",
				"You cannot confirm this PaymentIntent because it has already succeeded after being previously confirmed.")
		default:
			return nil, unexpectedState("payment_intent_unexpected_state",
				"You cannot confirm this PaymentIntent because it has a status of %s.", pi["status"])
		}
		var pm object
		if ref := c.str("payment_method"); ref != "" {
			if pm, err = s.resolvePaymentMethod(ref, "payment_method", s.clockOfObject(pi)); err != nil {
				return nil, err
			}
		} else if pm = s.get("payment_method", idOf(pi["payment_method"])); pm == nil {
			return nil, badRequest("payment_method", "You cannot confirm this PaymentIntent because it's missing a payment method. You can either update the PaymentIntent with a payment method and then confirm it again, or confirm it again directly with a payment method.")
		}
		if e := checkOwner(pm, idOf(pi["customer"])); e != nil {
			return nil, e
		}
		u := c.str("return_url")
		if u != "" {
			s.internal(str(pi["id"]))["return_url"] = u
		} else {
			u = str(s.internal(str(pi["id"]))["return_url"])
		}
		if apm, _ := pi["automatic_payment_methods"].(map[string]any); apm != nil && apm["allow_redirects"] != "never" && u == "" {
			return nil, badRequest("return_url", "This PaymentIntent is configured to accept payment methods enabled in your Dashboard, because some of these payment methods might redirect your customer off of your page, you must provide a `return_url`.")
		}
		if c.has("setup_future_usage") {
			pi["setup_future_usage"] = nilIfEmpty(c.str("setup_future_usage"))
		}
		if c.has("receipt_email") {
			pi["receipt_email"] = nilIfEmpty(c.str("receipt_email"))
		}
		if e := s.confirmIntent(c, pi, pm, offSession(c)); e != nil {
			return nil, e
		}
		return pi, nil
	})
	s.handle("POST /v1/payment_intents/{id}/cancel", func(c *call) (any, error) {
		pi, err := s.paymentIntent(c.r.PathValue("id"))
		if err != nil {
			return nil, err
		}
		switch pi["status"] {
		case "requires_payment_method", "requires_capture", "requires_confirmation", "requires_action", "processing":
		default:
			return nil, unexpectedState("payment_intent_unexpected_state",
				"You cannot cancel this PaymentIntent because it has a status of %s. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action, processing.", pi["status"])
		}
		if idOf(pi["invoice"]) != "" {
			return nil, badRequest("", "You cannot cancel this PaymentIntent because it was created by an invoice. Void the invoice instead.")
		}
		pi["status"] = "canceled"
		pi["next_action"] = nil
		pi["canceled_at"] = s.nowOn(s.clockOfObject(pi))
		pi["cancellation_reason"] = nilIfEmpty(c.str("cancellation_reason"))
		s.emit(c, "payment_intent.canceled", pi, nil)
		if e := s.runIntentHooks(c, pi); e != nil {
			return nil, e
		}
		return pi, nil
	})

	s.handle("GET /v1/charges/{id}", func(c *call) (any, error) {
		if ch := s.get("charge", c.r.PathValue("id")); ch != nil {
			return ch, nil
		}
		return nil, noSuch("charge", "id", c.r.PathValue("id"))
	})
	s.handle("GET /v1/charges", func(c *call) (any, error) {
		piID, cus := c.str("payment_intent"), c.str("customer")
		return c.page(s.all("charge", func(ch object) bool {
			return (piID == "" || idOf(ch["payment_intent"]) == piID) && (cus == "" || idOf(ch["customer"]) == cus)
		}))
	})
}

// paymentIntent returns a stored PaymentIntent or Stripe's 404.
func (s *Server) paymentIntent(id string) (object, *Error) {
	if pi := s.get("payment_intent", id); pi != nil {
		return pi, nil
	}
	return nil, noSuch("payment_intent", "intent", id)
}

// checkAmount applies Stripe's minimum and maximum charge amounts.
func checkAmount(amount int64, currency string) *Error {
	min := int64(50)
	if m, ok := minimumCharge[currency]; ok {
		min = m
	}
	if amount < min {
		e := badRequest("amount", "Amount must be at least %s %s", plainAmount(min, currency), currency)
		e.Code = "amount_too_small"
		return e
	}
	if amount > maximumCharge {
		e := badRequest("amount", "Amount must be no more than %s %s", plainAmount(maximumCharge, currency), currency)
		e.Code = "amount_too_large"
		return e
	}
	return nil
}

// checkOwner refuses a PaymentMethod attached to a customer other than the
// intent's (or to any customer when the intent has none).
func checkOwner(pm object, customer string) *Error {
	owner := idOf(pm["customer"])
	switch {
	case owner == "" || owner == customer:
		return nil
	case customer == "":
		return badRequest("payment_method", "The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment, shared with a connected account without Customer attachment, or was detached from a Customer. It may not be used again. To use a PaymentMethod multiple times, you must attach it to a Customer first.")
	}
	return badRequest("payment_method", "The provided PaymentMethod belongs to another customer.")
}

// firstSent names the first of the parameters the request sent.
func firstSent(c *call, params ...string) string {
	for _, p := range params {
		if c.has(p) {
			return p
		}
	}
	return "fields"
}

// plainAmount renders an amount in its currency's unit, e.g. $12.50 as
// "12.50" for usd and 1200 as "1200" for jpy.
func plainAmount(amount int64, currency string) string {
	if zeroDecimal[currency] {
		return itoa(amount)
	}
	sign := ""
	if amount < 0 {
		sign, amount = "-", -amount
	}
	cents := itoa(amount % 100)
	if len(cents) < 2 {
		cents = "0" + cents
	}
	return sign + itoa(amount/100) + "." + cents
}

// ---- 3D Secure ----

// The 3D Secure page: where next_action sends a customer whose card asks
// for authentication. It stands in for the bank's challenge: "Complete
// authentication" or "Fail authentication". The form (POST, field
// result=pass|fail) is scriptable with curl or http.PostForm.

var threeDSPage = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("3ds").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>3D Secure — Stripe sandbox</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;background:#f6f9fc;color:#1a1f36;margin:0;display:flex;justify-content:center}
main{background:#fff;margin:48px 16px;padding:32px;border-radius:8px;box-shadow:0 2px 8px rgba(0,0,0,.08);max-width:420px;width:100%}
h1{font-size:20px;margin:0 0 8px}p{line-height:1.5}.amount{font-size:28px;font-weight:600;margin:16px 0}
.note{color:#697386;font-size:13px}button{font:inherit;padding:10px 16px;border-radius:6px;border:1px solid #c1c9d2;cursor:pointer;margin:4px 8px 4px 0}
button.pass{background:#635bff;color:#fff;border-color:#635bff}.error{color:#df1b41}
</style></head>
<body><main>
<h1>{{.Title}}</h1>
{{if .Amount}}<div class="amount">{{.Amount}}</div>{{end}}
{{if .Card}}<p>Card ending in {{.Card}}</p>{{end}}
{{if .Message}}<p class="{{if .Failed}}error{{end}}">{{.Message}}</p>{{end}}
{{if .Ask}}<form method="post">
<button class="pass" name="result" value="pass" type="submit">Complete authentication</button>
<button class="fail" name="result" value="fail" type="submit">Fail authentication</button>
</form>{{end}}
<p class="note">Stripe sandbox: this page stands in for the card issuer's 3D Secure challenge.</p>
</main></body></html>
`))
})

type threeDSView struct {
	Title, Amount, Card, Message string
	Ask, Failed                  bool
}

func (s *Server) routesThreeDS() {
	s.page("GET /3ds/{id}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		v, status := s.threeDSView(r.PathValue("id"))
		s.mu.Unlock()
		renderThreeDS(w, status, v)
	})
	s.page("POST /3ds/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		result := r.PostFormValue("result")
		if result != "pass" && result != "fail" {
			renderThreeDS(w, http.StatusBadRequest, threeDSView{Title: "3D Secure", Failed: true,
				Message: "The form needs result=pass or result=fail."})
			return
		}
		var redirect string
		var view threeDSView
		status := http.StatusOK
		err := s.locked(func(c *call) error {
			var e *Error
			kind := "payment"
			switch {
			case s.get("payment_intent", id) != nil:
				pi := s.get("payment_intent", id)
				if err := s.completeAuthentication(c, pi, result == "pass"); err != nil {
					if !errors.As(err, &e) {
						return err
					}
				}
			case s.get("setup_intent", id) != nil:
				kind = "setup"
				e = s.completeSetupAuthentication(c, s.get("setup_intent", id), result == "pass")
				if e != nil && e.Status >= 500 {
					return e
				}
			}
			view, status = s.threeDSView(id)
			if e != nil {
				view.Message, view.Failed, status = e.Message, true, e.Status
				return nil
			}
			if ret := str(s.internal(id)["return_url"]); ret != "" {
				redirect = returnURL(ret, kind, id, s.st.Objects[id].Obj)
			}
			return nil
		})
		switch {
		case err != nil:
			http.Error(w, "The Stripe sandbox failed: "+err.Error(), http.StatusInternalServerError)
		case redirect != "":
			http.Redirect(w, r, redirect, http.StatusSeeOther)
		default:
			renderThreeDS(w, status, view)
		}
	})
}

// threeDSView describes an intent's 3D Secure page; under the lock.
func (s *Server) threeDSView(id string) (threeDSView, int) {
	var o object
	title := "Confirm your payment"
	if o = s.get("payment_intent", id); o == nil {
		title = "Confirm your card"
		if o = s.get("setup_intent", id); o == nil {
			return threeDSView{Title: "3D Secure", Failed: true, Message: "There is no payment or card set-up " + id + "."}, http.StatusNotFound
		}
	}
	v := threeDSView{Title: title}
	if o["object"] == "payment_intent" {
		cur := str(o["currency"])
		v.Amount = strings.ToUpper(cur) + " " + plainAmount(num(o["amount"]), cur)
	}
	if pm := s.get("payment_method", idOf(o["payment_method"])); pm != nil {
		if card, ok := pm["card"].(map[string]any); ok {
			v.Card = str(card["last4"])
		}
	}
	switch o["status"] {
	case "requires_action":
		v.Ask = true
		v.Message = "Your bank asks you to confirm this with 3D Secure."
	case "succeeded":
		v.Message = "Authentication complete: " + map[string]string{"payment_intent": "the payment succeeded.", "setup_intent": "the card is saved."}[str(o["object"])]
	case "requires_payment_method":
		v.Failed = true
		v.Message = "Authentication failed: "
		if o["object"] == "payment_intent" {
			v.Message += "the payment was not made."
		} else {
			v.Message += "the card was not saved."
		}
	default:
		v.Message = "Nothing to authenticate: the status is " + str(o["status"]) + "."
	}
	return v, http.StatusOK
}

// returnURL is where Stripe sends the customer back after a redirect: the
// return_url with the intent's id, client secret and redirect_status.
func returnURL(ret, kind, id string, o object) string {
	u, err := url.Parse(ret)
	if err != nil {
		return ret
	}
	q := u.Query()
	prefix := "payment_intent"
	if kind == "setup" {
		prefix = "setup_intent"
	}
	q.Set(prefix, id)
	q.Set(prefix+"_client_secret", str(o["client_secret"]))
	status := "succeeded"
	if o["status"] != "succeeded" {
		status = "failed"
	}
	q.Set("redirect_status", status)
	u.RawQuery = q.Encode()
	return u.String()
}

func renderThreeDS(w http.ResponseWriter, status int, v threeDSView) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	threeDSPage().Execute(w, v)
}

// offSession reads off_session, which is true/false or, on confirm,
// one_off/recurring (both off session).
func offSession(c *call) bool {
	return c.has("off_session") && c.str("off_session") != "false"
}
