package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"strings"

	"billingapi/billing"
	"billingapi/graph/relay"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Messages shown for errors that carry no message of our own.
var genericMessages = map[billing.Code]string{
	billing.CodeNotFound:  "Not found.",
	billing.CodeForbidden: "You are not allowed to do this.",
	billing.CodeInternal:  "Something went wrong on our side. Please try again.",
}

// ErrorPresenter returns the one place where errors become GraphQL errors:
// billing errors keep their code and user-facing message, a connection
// argument relay refused is BAD_USER_INPUT naming it; gqlgen's own
// parse and validation errors keep theirs; anything else is logged and
// shown as INTERNAL with no internals.
func ErrorPresenter(log *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gqlErr := graphql.DefaultErrorPresenter(ctx, err)
		cause := gqlErr.Unwrap()
		if cause == nil {
			// Made by gqlgen itself (parse, validation, complexity): its
			// text describes the request, not our internals.
			if _, ok := gqlErr.Extensions["code"]; !ok {
				setCode(gqlErr, billing.CodeInternal)
			}
			return gqlErr
		}
		var ae *relay.ArgumentError
		if errors.As(cause, &ae) {
			cause = billing.InvalidInput(ae.Field, ae.Message)
		}
		var be *billing.Error
		if errors.As(cause, &be) {
			gqlErr.Message = be.Message
			setCode(gqlErr, be.Code)
			if be.Field != "" {
				gqlErr.Extensions["field"] = be.Field
			}
			if be.DeclineCode != "" {
				gqlErr.Extensions["declineCode"] = be.DeclineCode
			}
			if be.RetryAfter > 0 {
				gqlErr.Extensions["retryAfter"] = int(math.Ceil(be.RetryAfter.Seconds()))
			}
			if be.Code == billing.CodeInternal && be.Err != nil {
				log.ErrorContext(ctx, "internal error", "path", gqlErr.Path.String(), "err", be.Err)
			}
			return gqlErr
		}
		code := billing.ErrorCode(cause)
		if code == billing.CodeInternal {
			log.ErrorContext(ctx, "internal error", "path", gqlErr.Path.String(), "err", cause)
		}
		gqlErr.Message = genericMessages[code]
		gqlErr.Extensions = nil
		setCode(gqlErr, code)
		return gqlErr
	}
}

func setCode(e *gqlerror.Error, code billing.Code) {
	if e.Extensions == nil {
		e.Extensions = map[string]any{}
	}
	e.Extensions["code"] = string(code)
}

// Recover returns a recover function that logs a resolver panic with its
// stack and answers INTERNAL.
func Recover(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "panic in resolver", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return billing.Errorf(billing.CodeInternal, "%s", genericMessages[billing.CodeInternal])
	}
}

// requiresAction returns the REQUIRES_ACTION error that accompanies a
// payment needing 3D Secure; its extensions name the PaymentIntent and its
// status (the client secret is in the data, beside it).
func requiresAction(ctx context.Context, res *billing.PaymentResult) *gqlerror.Error {
	return &gqlerror.Error{
		Message: "Your bank needs you to confirm this payment.",
		Path:    graphql.GetPath(ctx),
		Extensions: map[string]any{
			"code":            string(billing.CodeRequiresAction),
			"paymentIntentId": res.PaymentIntentID,
			"status":          strings.ToUpper(res.Status),
		},
	}
}

// requiresActionWithSecret is requiresAction for an answer whose data has
// no place for the client secret (a plan change): the extensions carry it.
func requiresActionWithSecret(ctx context.Context, res *billing.PaymentResult) *gqlerror.Error {
	e := requiresAction(ctx, res)
	e.Extensions["clientSecret"] = res.ClientSecret
	return e
}
