package sandbox

import "strings"

// testCard is one of Stripe's documented test cards and what it does.
type testCard struct {
	Brand, Last4, Funding, Country string
	ExpMonth, ExpYear              int64
	// Behaviour:
	//   ""               every payment succeeds
	//   "decline"        every payment, and attaching it to a customer, is declined (DeclineCode)
	//   "decline_later"  attaching succeeds, every payment is declined (4000000000000341)
	//   "auth_always"    every payment needs 3D Secure, off-session ones fail (4000002760003184)
	//   "auth_setup"     needs 3D Secure once; off-session payments after a set-up succeed (4000002500003155)
	Behaviour   string
	DeclineCode string // generic_decline, insufficient_funds, ...
	Code        string // card_declined, expired_card, incorrect_cvc
}

var (
	cardVisa       = testCard{Brand: "visa", Last4: "4242", Funding: "credit", Country: "US"}
	cardMastercard = testCard{Brand: "mastercard", Last4: "4444", Funding: "credit", Country: "US"}
	cardDeclined   = testCard{Brand: "visa", Last4: "0002", Funding: "credit", Country: "US", Behaviour: "decline", DeclineCode: "generic_decline", Code: "card_declined"}
	cardNoFunds    = testCard{Brand: "visa", Last4: "9995", Funding: "credit", Country: "US", Behaviour: "decline", DeclineCode: "insufficient_funds", Code: "card_declined"}
	cardExpired    = testCard{Brand: "visa", Last4: "0069", Funding: "credit", Country: "US", Behaviour: "decline", DeclineCode: "expired_card", Code: "expired_card"}
	cardBadCVC     = testCard{Brand: "visa", Last4: "0127", Funding: "credit", Country: "US", Behaviour: "decline", DeclineCode: "incorrect_cvc", Code: "incorrect_cvc"}
	cardFailLater  = testCard{Brand: "visa", Last4: "0341", Funding: "credit", Country: "US", Behaviour: "decline_later", DeclineCode: "generic_decline", Code: "card_declined"}
	cardAuthAlways = testCard{Brand: "visa", Last4: "3184", Funding: "credit", Country: "US", Behaviour: "auth_always"}
	cardAuthSetup  = testCard{Brand: "visa", Last4: "3155", Funding: "credit", Country: "US", Behaviour: "auth_setup"}
)

// testTokens are the PaymentMethod tokens Stripe's test mode accepts in
// place of a pm_ id (https://docs.stripe.com/testing).
var testTokens = map[string]testCard{
	"pm_card_visa":                                 cardVisa,
	"pm_card_mastercard":                           cardMastercard,
	"pm_card_visa_chargeDeclined":                  cardDeclined,
	"pm_card_chargeDeclined":                       cardDeclined,
	"pm_card_chargeDeclinedInsufficientFunds":      cardNoFunds,
	"pm_card_visa_chargeDeclinedInsufficientFunds": cardNoFunds,
	"pm_card_chargeDeclinedExpiredCard":            cardExpired,
	"pm_card_chargeDeclinedIncorrectCvc":           cardBadCVC,
	"pm_card_chargeCustomerFail":                   cardFailLater,
	"pm_card_authenticationRequired":               cardAuthAlways,
	"pm_card_threeDSecure2Required":                cardAuthAlways,
	"pm_card_authenticationRequiredOnSetup":        cardAuthSetup,
}

// testNumbers are the card numbers the hosted pages accept.
var testNumbers = map[string]testCard{
	"4242424242424242": cardVisa,
	"5555555555554444": cardMastercard,
	"4000000000000002": cardDeclined,
	"4000000000009995": cardNoFunds,
	"4000000000000069": cardExpired,
	"4000000000000127": cardBadCVC,
	"4000000000000341": cardFailLater,
	"4000002760003184": cardAuthAlways,
	"4000002500003155": cardAuthSetup,
}

// cardForNumber returns the test card a typed number stands for (spaces
// and dashes ignored).
func cardForNumber(number string) (testCard, bool) {
	n := strings.NewReplacer(" ", "", "-", "").Replace(number)
	c, ok := testNumbers[n]
	return c, ok
}

// TestCards lists the card numbers the hosted pages accept and what each
// does, for banners and pages.
var TestCards = []struct{ Number, Does string }{
	{"4242 4242 4242 4242", "succeeds"},
	{"4000 0025 0000 3155", "asks for 3D Secure once, then renews without it"},
	{"4000 0027 6000 3184", "asks for 3D Secure on every payment (renewals fail)"},
	{"4000 0000 0000 0341", "is saved, then every charge is declined (a failing renewal)"},
	{"4000 0000 0000 9995", "is declined: insufficient funds"},
	{"4000 0000 0000 0002", "is declined: generic decline"},
}

// newCardPaymentMethod stores a new card PaymentMethod for a test card, not
// attached to any customer.
func (s *Server) newCardPaymentMethod(card testCard, clock string) object {
	pm := s.spec.blank("payment_method")
	pm["id"] = newID("pm")
	pm["type"] = "card"
	pm["created"] = s.nowOn(clock)
	pm["livemode"] = false
	pm["customer"] = nil
	pm["metadata"] = map[string]any{}
	pm["billing_details"] = object{"address": object{"city": nil, "country": nil, "line1": nil, "line2": nil, "postal_code": nil, "state": nil},
		"email": nil, "name": nil, "phone": nil}
	exp := card.ExpYear
	if exp == 0 {
		exp = int64(2034)
	}
	month := card.ExpMonth
	if month == 0 {
		month = 12
	}
	pm["card"] = object{
		"brand": card.Brand, "last4": card.Last4, "exp_month": month, "exp_year": exp,
		"funding": card.Funding, "country": card.Country, "fingerprint": randomID(16),
		"checks":        object{"address_line1_check": nil, "address_postal_code_check": nil, "cvc_check": "pass"},
		"display_brand": card.Brand, "generated_from": nil, "networks": object{"available": []any{card.Brand}, "preferred": nil},
		"three_d_secure_usage": object{"supported": true}, "wallet": nil,
	}
	s.put(pm)
	s.internal(str(pm["id"]))["card"] = cardToMap(card)
	return pm
}

func cardToMap(c testCard) map[string]any {
	return map[string]any{"behaviour": c.Behaviour, "decline_code": c.DeclineCode, "code": c.Code}
}

// cardOf returns the behaviour of a stored card PaymentMethod.
func (s *Server) cardOf(pmID string) testCard {
	r := s.rec(pmID)
	if r == nil || r.Internal == nil {
		return testCard{}
	}
	m, _ := r.Internal["card"].(map[string]any)
	return testCard{Behaviour: str(m["behaviour"]), DeclineCode: str(m["decline_code"]), Code: str(m["code"])}
}

// resolvePaymentMethod turns a pm_ id or a test token into a stored
// PaymentMethod; a token makes a new one each time, as in Stripe's test mode.
func (s *Server) resolvePaymentMethod(idOrToken, param, clock string) (object, *Error) {
	if pm := s.get("payment_method", idOrToken); pm != nil {
		return pm, nil
	}
	if card, ok := testTokens[idOrToken]; ok {
		return s.newCardPaymentMethod(card, clock), nil
	}
	if strings.HasPrefix(idOrToken, "pm_card_") || strings.HasPrefix(idOrToken, "tok_") {
		return nil, notImplemented("the test payment method " + idOrToken + " (see the README for the test cards it knows)")
	}
	return nil, noSuch("PaymentMethod", param, idOrToken)
}

// attachPaymentMethod attaches a PaymentMethod (or test token) to a
// customer. Cards that Stripe declines at attach (4000000000000002 and the
// other decline cards) are refused with a card error, as Stripe does.
func (s *Server) attachPaymentMethod(c *call, idOrToken, customerID string) (object, *Error) {
	cu := s.get("customer", customerID)
	if cu == nil {
		return nil, noSuch("customer", "customer", customerID)
	}
	pm, err := s.resolvePaymentMethod(idOrToken, "payment_method", s.clockOfCustomer(customerID))
	if err != nil {
		return nil, err
	}
	if owner := idOf(pm["customer"]); owner != "" {
		if owner == customerID {
			return pm, nil
		}
		return nil, badRequest("payment_method", "The payment method you provided has already been attached to a customer.")
	}
	card := s.cardOf(str(pm["id"]))
	if card.Behaviour == "decline" {
		return nil, &Error{Status: 402, Type: cardError, Code: card.Code, DeclineCode: card.DeclineCode,
			Message: declineMessage(card), Param: "payment_method"}
	}
	pm["customer"] = customerID
	s.emit(c, "payment_method.attached", pm, nil)
	return pm, nil
}

// declineMessage is Stripe's own text for a decline.
func declineMessage(card testCard) string {
	switch card.DeclineCode {
	case "insufficient_funds":
		return "Your card has insufficient funds."
	case "expired_card":
		return "Your card has expired."
	case "incorrect_cvc":
		return "Your card's security code is incorrect."
	}
	return "Your card was declined."
}
