// Package billing is the domain: workspaces and their members, and (in the
// issues that follow) every Stripe call and every billing state transition.
// It knows nothing of HTTP or GraphQL; its errors carry a Code that the
// doors (graph, webhooks) translate once.
package billing

import (
	"errors"
	"fmt"
	"time"

	"billingapi/ent"
	"billingapi/ent/privacy"
)

// Code classifies an error for clients; the values are the GraphQL
// `extensions.code` strings of the API contract.
type Code string

// Error codes of the API contract.
const (
	CodeUnauthenticated     Code = "UNAUTHENTICATED"
	CodeForbidden           Code = "FORBIDDEN"
	CodeNotFound            Code = "NOT_FOUND"
	CodeBadUserInput        Code = "BAD_USER_INPUT"
	CodeCardDeclined        Code = "CARD_DECLINED"
	CodeRequiresAction      Code = "REQUIRES_ACTION"
	CodeRateLimited         Code = "RATE_LIMITED"
	CodeProviderUnavailable Code = "PAYMENT_PROVIDER_UNAVAILABLE"
	CodeConflict            Code = "CONFLICT"
	CodeInternal            Code = "INTERNAL"
)

// Error is a failure a client may be told about: Message is written for
// the user and never contains driver or Stripe text; Err is the cause, for
// logs only.
type Error struct {
	Code    Code
	Message string
	// Field names the offending input field for BAD_USER_INPUT, if any.
	Field string
	// DeclineCode is Stripe's decline code for CARD_DECLINED.
	DeclineCode string
	// RetryAfter tells a RATE_LIMITED client when to try again.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a code and a user-facing message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// InvalidInput returns a BAD_USER_INPUT error about one input field.
func InvalidInput(field, message string) *Error {
	return &Error{Code: CodeBadUserInput, Message: message, Field: field}
}

// ErrorCode returns the Code of err: the code of an *Error in its chain,
// NOT_FOUND for ent's not-found, FORBIDDEN for a privacy denial, and
// INTERNAL for anything else.
func ErrorCode(err error) Code {
	var be *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &be):
		return be.Code
	case ent.IsNotFound(err):
		return CodeNotFound
	case errors.Is(err, privacy.Deny):
		return CodeForbidden
	default:
		return CodeInternal
	}
}

// notFound is what every lookup outside the viewer's workspaces returns, so
// that a missing id and a foreign id look the same.
func notFound(what string) *Error {
	return Errorf(CodeNotFound, "%s not found", what)
}
