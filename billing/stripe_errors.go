package billing

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/stripe/stripe-go/v76"
)

// errStripeNotConfigured is returned by Stripe features when the server
// runs without STRIPE_SECRET_KEY.
var errStripeNotConfigured = &Error{
	Code:    CodeProviderUnavailable,
	Message: "Payments are not configured on this server.",
}

// fromStripe turns a stripe-go error into an *Error whose message is ours,
// never Stripe's, and logs what an operator needs (Stripe's request id,
// type and code).
func (s *Service) fromStripe(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var se *stripe.Error
	if !errors.As(err, &se) {
		// Network error, timeout, or a body stripe-go could not decode.
		s.log.WarnContext(ctx, "stripe call failed", "op", op, "err", err)
		return &Error{Code: CodeProviderUnavailable, Message: "The payment provider is unavailable. Please try again shortly.", Err: err}
	}
	s.log.WarnContext(ctx, "stripe error", "op", op, "status", se.HTTPStatusCode,
		"type", se.Type, "code", se.Code, "decline_code", se.DeclineCode, "stripe_request_id", se.RequestID)
	cause := fmt.Errorf("stripe %s: %s/%s (request %s)", op, se.Type, se.Code, se.RequestID)
	switch {
	case se.Type == stripe.ErrorTypeCard:
		return declined(se, cause)
	case se.HTTPStatusCode == http.StatusTooManyRequests:
		return &Error{Code: CodeRateLimited, Message: "Too many requests to the payment provider. Please try again in a moment.", Err: cause}
	case se.HTTPStatusCode >= 500 || se.Type == stripe.ErrorTypeAPI:
		return &Error{Code: CodeProviderUnavailable, Message: "The payment provider is unavailable. Please try again shortly.", Err: cause}
	case se.Type == stripe.ErrorTypeIdempotency:
		// Our own claims refuse a reused key first; Stripe's refusal is
		// reached only where we keep no record (the catalog) or after a
		// released claim, and answers the same.
		return &Error{Code: CodeBadUserInput, Field: errKeyReused.Field, Message: errKeyReused.Message, Err: cause}
	}
	if bad, ok := userInputError(se); ok {
		bad.Err = cause
		return bad
	}
	// Other invalid requests are our bug: we validate input before calling.
	return &Error{Code: CodeInternal, Message: genericInternal, Err: cause}
}

// userInputError returns BAD_USER_INPUT for the invalid-request errors
// that a user's own input causes (an unknown payment method id, an amount
// Stripe refuses for the account's settlement currency).
func userInputError(se *stripe.Error) (*Error, bool) {
	switch {
	case se.Code == stripe.ErrorCodeAmountTooSmall:
		return InvalidInput("amount", "Amount is below the minimum charge."), true
	case se.Code == stripe.ErrorCodeAmountTooLarge:
		return InvalidInput("amount", "Amount is above the maximum charge."), true
	case se.Code == stripe.ErrorCodeResourceMissing && se.Param == "payment_method":
		return InvalidInput("paymentMethodId", "Payment method not found."), true
	case se.Code == stripe.ErrorCodePaymentIntentUnexpectedState:
		return InvalidInput("", "This payment can no longer be changed."), true
	// A refund Stripe refuses for the charge's state, which we may not know
	// yet (refunded or disputed in the Dashboard, its webhook not applied).
	case se.Code == stripe.ErrorCodeChargeAlreadyRefunded:
		return InvalidInput("paymentId", "This payment has already been refunded in full."), true
	case se.Code == stripe.ErrorCodeChargeDisputed:
		return InvalidInput("paymentId", "This payment is disputed; it cannot be refunded until the dispute is settled."), true
	// A promotion code we found active that Stripe will not apply: its
	// coupon expired since, or a restriction (first purchase only, a
	// minimum amount, another customer) rules it out.
	case se.Code == stripe.ErrorCodeCouponExpired || se.Param == "promotion_code" || se.Param == "coupon" || se.Param == "discounts":
		return InvalidInput("promotionCode", "This promotion code cannot be applied to this purchase."), true
	}
	return nil, false
}

// declineMessages are the friendly messages for Stripe decline codes.
// Codes that would reveal why a card is blocked (lost_card, stolen_card,
// fraudulent, ...) get the generic message on purpose.
var declineMessages = map[string]string{
	"card_declined":      "Your card was declined. Please try a different card.",
	"generic_decline":    "Your card was declined. Please try a different card.",
	"insufficient_funds": "Your card has insufficient funds.",
	"incorrect_cvc":      "Your card's security code is incorrect.",
	"expired_card":       "Your card has expired.",
	"processing_error":   "An error occurred. Please try again.",
}

const genericDecline = "Your card was declined. Please try a different card."

// declined returns CARD_DECLINED with our message for the decline code.
// The code shown to the client is Stripe's only when it is in our table;
// every other code (lost_card, stolen_card, fraudulent, ...) is shown as
// generic_decline, so that a declined card never learns why it is
// blocked. The real code is in the log.
func declined(se *stripe.Error, cause error) *Error {
	code := string(se.DeclineCode)
	if code == "" {
		code = string(se.Code)
	}
	msg, ok := declineMessages[code]
	if !ok {
		msg, code = genericDecline, "generic_decline"
	}
	return &Error{Code: CodeCardDeclined, Message: msg, DeclineCode: code, Err: cause}
}

// asStripe reports whether err is (or wraps) a Stripe API error.
func asStripe(err error, target **stripe.Error) bool { return errors.As(err, target) }
