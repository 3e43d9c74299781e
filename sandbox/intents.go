package sandbox

import (
	"fmt"
)

// The PaymentIntent core: every payment in the sandbox (a one-time payment,
// an invoice's payment, a Checkout payment) is a PaymentIntent confirmed
// with a card PaymentMethod, whose test card decides the outcome.

// intentSpec describes a PaymentIntent to create.
type intentSpec struct {
	Amount           int64
	Currency         string
	Customer         string
	Description      string
	Invoice          string // the invoice it pays, if any
	SetupFutureUsage string
	Metadata         map[string]any
	Clock            string
	// PaymentMethod, when set, is the stored PaymentMethod the intent will
	// be confirmed with: it starts in requires_confirmation.
	PaymentMethod string
	// Prepare, when set, fills in more of the new intent (fields of the
	// request that created it) before payment_intent.created is emitted.
	Prepare func(pi object)
}

// intentHook runs after a PaymentIntent's status changed (succeeded,
// requires_action, requires_payment_method after a failure, canceled), so
// that what it pays (an invoice, a Checkout Session) follows.
type intentHook func(c *call, pi object) error

// onIntent registers a hook (invoices and Checkout register theirs).
func (s *Server) onIntent(h intentHook) { s.intentHooks = append(s.intentHooks, h) }

// newPaymentIntent stores a new PaymentIntent awaiting a payment method and
// emits payment_intent.created.
func (s *Server) newPaymentIntent(c *call, in intentSpec) object {
	pi := s.spec.blank("payment_intent")
	id := newID("pi")
	pi["id"] = id
	pi["amount"] = in.Amount
	pi["amount_capturable"] = 0
	pi["amount_received"] = 0
	pi["capture_method"] = "automatic"
	pi["confirmation_method"] = "automatic"
	pi["client_secret"] = id + "_secret_" + randomID(24)
	pi["created"] = s.nowOn(in.Clock)
	pi["currency"] = in.Currency
	pi["customer"] = nilIfEmpty(in.Customer)
	pi["description"] = nilIfEmpty(in.Description)
	pi["invoice"] = nilIfEmpty(in.Invoice)
	pi["livemode"] = false
	pi["metadata"] = in.Metadata
	if pi["metadata"] == nil {
		pi["metadata"] = map[string]any{}
	}
	pi["payment_method_types"] = []any{"card"}
	pi["payment_method_options"] = object{"card": object{"installments": nil, "mandate_options": nil, "network": nil, "request_three_d_secure": "automatic"}}
	pi["setup_future_usage"] = nilIfEmpty(in.SetupFutureUsage)
	pi["status"] = "requires_payment_method"
	if in.PaymentMethod != "" {
		pi["payment_method"] = in.PaymentMethod
		pi["status"] = "requires_confirmation"
	}
	s.put(pi)
	if in.Prepare != nil {
		in.Prepare(pi)
	}
	s.emit(c, "payment_intent.created", pi, nil)
	return pi
}

// confirmIntent pays a PaymentIntent with a stored card PaymentMethod.
// offSession is true for renewals and other payments made without the
// customer present. It leaves the intent succeeded, requires_action (3D
// Secure, on session only) or requires_payment_method with
// last_payment_error, emits Stripe's events, runs the hooks, and returns
// the card error Stripe answers a confirm with (402), or nil.
func (s *Server) confirmIntent(c *call, pi object, pm object, offSession bool) *Error {
	switch pi["status"] {
	case "requires_payment_method", "requires_confirmation", "requires_action":
	default:
		return badRequest("", "You cannot confirm this PaymentIntent because it has a status of %s.", pi["status"])
	}
	pmID := str(pm["id"])
	if owner := idOf(pm["customer"]); owner != "" && pi["customer"] != nil && owner != idOf(pi["customer"]) {
		return badRequest("payment_method", "The provided PaymentMethod belongs to another customer.")
	}
	pi["payment_method"] = pmID
	pi["last_payment_error"] = nil
	card := s.cardOf(pmID)
	authenticated := s.rec(pmID).Internal["authenticated"] == true
	needsAuth := card.Behaviour == "auth_always" || (card.Behaviour == "auth_setup" && !authenticated)
	switch {
	case card.Behaviour == "decline" || card.Behaviour == "decline_later":
		return s.failIntent(c, pi, pm, card.Code, card.DeclineCode, declineMessage(card))
	case needsAuth && offSession:
		return s.failIntent(c, pi, pm, "authentication_required", "authentication_required",
			"Your card was declined. This transaction requires authentication.")
	case needsAuth:
		pi["status"] = "requires_action"
		pi["next_action"] = s.threeDSAction(str(pi["id"]))
		s.emit(c, "payment_intent.requires_action", pi, nil)
		return s.runIntentHooks(c, pi)
	}
	s.succeedIntent(c, pi, pm)
	return s.runIntentHooks(c, pi)
}

// completeAuthentication finishes a 3D Secure challenge on an intent in
// requires_action: passed, the payment goes through (and an auth_setup
// card is remembered as authenticated when the intent saves it); failed,
// the intent goes back to requires_payment_method.
func (s *Server) completeAuthentication(c *call, pi object, passed bool) error {
	if pi["status"] != "requires_action" {
		return badRequest("", "This PaymentIntent is not waiting for authentication (status %s).", pi["status"])
	}
	pm := s.get("payment_method", str(pi["payment_method"]))
	if pm == nil {
		return fmt.Errorf("payment intent %s in requires_action without its payment method", pi["id"])
	}
	pi["next_action"] = nil
	if !passed {
		if err := s.failIntent(c, pi, pm, "payment_intent_authentication_failure", "",
			"The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new PaymentMethod to attempt to fulfill this PaymentIntent again."); err != nil && err.Status >= 500 {
			return err
		}
		return nil
	}
	s.internal(str(pm["id"]))["authenticated"] = true
	s.succeedIntent(c, pi, pm)
	if err := s.runIntentHooks(c, pi); err != nil {
		return err
	}
	return nil
}

// threeDSAction is the next_action of an intent (pi_ or seti_) waiting for
// 3D Secure: the sandbox's 3D Secure page, as a redirect when the intent
// was given a return_url (as Stripe answers then), else for Stripe.js.
func (s *Server) threeDSAction(id string) object {
	page := s.opts.PublicURL + "/3ds/" + id
	ret := str(s.internal(id)["return_url"])
	if ret != "" {
		return object{"type": "redirect_to_url", "redirect_to_url": object{"url": page, "return_url": ret}}
	}
	return object{"type": "use_stripe_sdk", "use_stripe_sdk": object{"type": "three_d_secure_redirect", "stripe_js": page},
		"redirect_to_url": object{"url": page, "return_url": nil}}
}

func (s *Server) runIntentHooks(c *call, pi object) *Error {
	for _, h := range s.intentHooks {
		if err := h(c, pi); err != nil {
			if e, ok := err.(*Error); ok {
				return e
			}
			return &Error{Status: 500, Type: "api_error", Message: err.Error()}
		}
	}
	return nil
}

func (s *Server) succeedIntent(c *call, pi, pm object) {
	ch := s.newCharge(pi, pm, "succeeded", "", "", "")
	s.emit(c, "charge.succeeded", ch, nil)
	pi["status"] = "succeeded"
	pi["amount_received"] = pi["amount"]
	pi["latest_charge"] = ch["id"]
	pi["next_action"] = nil
	if pi["setup_future_usage"] != nil && pi["customer"] != nil && pm["customer"] == nil {
		pm["customer"] = pi["customer"]
		s.emit(c, "payment_method.attached", pm, nil)
	}
	s.emit(c, "payment_intent.succeeded", pi, nil)
}

// failIntent records a declined payment: a failed charge, the intent back
// in requires_payment_method with last_payment_error, and the events; it
// returns the 402 card error carrying the intent, as Stripe answers.
func (s *Server) failIntent(c *call, pi, pm object, code, declineCode, message string) *Error {
	ch := s.newCharge(pi, pm, "failed", code, declineCode, message)
	s.emit(c, "charge.failed", ch, nil)
	lastErr := object{"type": cardError, "code": code, "message": message, "payment_method": clone(pm), "charge": ch["id"]}
	if declineCode != "" {
		lastErr["decline_code"] = declineCode
	}
	pi["status"] = "requires_payment_method"
	pi["last_payment_error"] = lastErr
	pi["latest_charge"] = ch["id"]
	pi["next_action"] = nil
	s.emit(c, "payment_intent.payment_failed", pi, nil)
	if e := s.runIntentHooks(c, pi); e != nil {
		return e
	}
	return &Error{Status: 402, Type: cardError, Code: code, DeclineCode: declineCode, Message: message, Keep: true,
		Extra: object{"payment_intent": clone(pi), "charge": ch["id"]}}
}

// newCharge stores the charge of one payment attempt.
func (s *Server) newCharge(pi, pm object, status, code, declineCode, message string) object {
	ch := s.spec.blank("charge")
	id := newID("ch")
	ch["id"] = id
	amount := num(pi["amount"])
	ch["amount"] = amount
	ch["amount_captured"] = 0
	ch["amount_refunded"] = 0
	ch["billing_details"] = pm["billing_details"]
	ch["calculated_statement_descriptor"] = "SANDBOX"
	ch["captured"] = false
	ch["created"] = s.nowOn(s.clockOfObject(pi))
	ch["currency"] = pi["currency"]
	ch["customer"] = pi["customer"]
	ch["description"] = pi["description"]
	ch["disputed"] = false
	ch["invoice"] = pi["invoice"]
	ch["livemode"] = false
	ch["metadata"] = clone(object{"m": pi["metadata"]})["m"]
	ch["paid"] = status == "succeeded"
	ch["payment_intent"] = pi["id"]
	ch["payment_method"] = pm["id"]
	card := pm["card"].(map[string]any)
	ch["payment_method_details"] = object{"type": "card", "card": object{
		"brand": card["brand"], "last4": card["last4"], "exp_month": card["exp_month"], "exp_year": card["exp_year"],
		"funding": card["funding"], "country": card["country"], "fingerprint": card["fingerprint"],
		"checks": card["checks"], "installments": nil, "mandate": nil, "network": card["brand"],
		"three_d_secure": nil, "wallet": nil,
	}}
	ch["refunded"] = false
	// No refunds list: since API 2022-11-15 a charge shows it only when
	// expanded (expand[]=refunds), which expand builds from the refunds.
	ch["status"] = status
	ch["receipt_url"] = nil // the sandbox sends no receipts
	outcome := object{"network_status": "approved_by_network", "reason": nil, "risk_level": "normal",
		"seller_message": "Payment complete.", "type": "authorized"}
	if status == "succeeded" {
		ch["captured"] = true
		ch["amount_captured"] = amount
	} else {
		ch["failure_code"] = code
		ch["failure_message"] = message
		outcome = object{"network_status": "declined_by_network", "reason": nilIfEmpty(declineCode), "risk_level": "normal",
			"seller_message": "The bank did not return any further details with this decline.", "type": "issuer_declined"}
	}
	ch["outcome"] = outcome
	s.put(ch)
	return ch
}
