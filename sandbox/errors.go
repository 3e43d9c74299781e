package sandbox

import (
	"fmt"
	"net/http"
)

const (
	invalidRequest = "invalid_request_error"
	cardError      = "card_error"
	idempotency    = "idempotency_error"
)

// Error is a Stripe API error as Stripe sends it: the HTTP status and the
// body {"error": {...}}.
type Error struct {
	Status      int
	Type        string
	Code        string
	DeclineCode string
	Message     string
	Param       string
	// Objects carried by the error, as Stripe does for card errors
	// (payment_intent, setup_intent, payment_method).
	Extra object
	// Keep says the request's changes stand although it failed: a declined
	// confirmation leaves the intent with its failed attempt. Any other
	// error leaves the sandbox as it was before the request.
	Keep bool
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

func (e *Error) body() object {
	inner := object{"type": e.Type, "message": e.Message}
	if e.Code != "" {
		inner["code"] = e.Code
	}
	if e.DeclineCode != "" {
		inner["decline_code"] = e.DeclineCode
	}
	if e.Param != "" {
		inner["param"] = e.Param
	}
	for k, v := range e.Extra {
		inner[k] = v
	}
	return object{"error": inner}
}

// badRequest is Stripe's 400 for a parameter it cannot accept.
func badRequest(param, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: invalidRequest, Param: param,
		Message: fmt.Sprintf(format, args...)}
}

// noSuch is Stripe's 404 for an id it does not know: "No such customer: 'cus_x'".
func noSuch(kind, param, id string) *Error {
	return &Error{Status: http.StatusNotFound, Type: invalidRequest, Code: "resource_missing", Param: param,
		Message: fmt.Sprintf("No such %s: '%s'", kind, id)}
}

// notImplemented refuses, by name, an endpoint or parameter of Stripe's API
// that the sandbox does not implement: it never pretends.
func notImplemented(what string) *Error {
	return &Error{Status: http.StatusNotImplemented, Type: invalidRequest, Code: "sandbox_not_implemented",
		Message: "The Stripe sandbox does not implement " + what + ". Use Stripe's test mode for it (see the README)."}
}
