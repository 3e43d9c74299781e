package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"billingapi/billing"
	"billingapi/ent"
	"billingapi/graph/relay"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

func TestErrorPresenter(t *testing.T) {
	const secret = "pq: password authentication failed for user billing SENTINEL"
	cases := []struct {
		name        string
		err         error
		code        string
		message     string
		mustNotShow string
		logged      bool
	}{
		{"BillingErrorKeepsCodeAndMessage", billing.InvalidInput("amount", "Amount is too small."), "BAD_USER_INPUT", "Amount is too small.", "", false},
		{"DeclineCarriesTheDeclineCode", &billing.Error{Code: billing.CodeCardDeclined, Message: "Your card has insufficient funds.", DeclineCode: "insufficient_funds", Err: errors.New(secret)}, "CARD_DECLINED", "Your card has insufficient funds.", "SENTINEL", false},
		{"InternalBillingErrorIsLoggedNotShown", &billing.Error{Code: billing.CodeInternal, Message: "Something went wrong on our side. Please try again.", Err: errors.New(secret)}, "INTERNAL", "Something went wrong on our side. Please try again.", "SENTINEL", true},
		{"RelayArgumentErrorIsBadUserInput", fmt.Errorf("page: %w", &relay.ArgumentError{Field: "cursor", Message: "The cursor is not one this API returned."}), "BAD_USER_INPUT", "The cursor is not one this API returned.", "", false},
		{"NotFoundFromEnt", &ent.NotFoundError{}, "NOT_FOUND", "Not found.", "", false},
		{"RawDriverErrorBecomesInternal", fmt.Errorf("query: %w", errors.New(secret)), "INTERNAL", "Something went wrong on our side. Please try again.", "SENTINEL", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			present := ErrorPresenter(slog.New(slog.NewTextHandler(&logs, nil)))
			got := present(context.Background(), tc.err)
			if got.Extensions["code"] != tc.code || got.Message != tc.message {
				t.Fatalf("presented %q %v, want %q %q", got.Message, got.Extensions, tc.message, tc.code)
			}
			if tc.mustNotShow != "" && strings.Contains(fmt.Sprint(got.Message, got.Extensions), tc.mustNotShow) {
				t.Fatalf("internals shown to the client: %+v", got)
			}
			if tc.logged != strings.Contains(logs.String(), "SENTINEL") {
				t.Fatalf("logged = %t, want %t: %s", !tc.logged, tc.logged, logs.String())
			}
		})
	}
	t.Run("RelayArgumentErrorNamesItsField", func(t *testing.T) {
		got := ErrorPresenter(slog.New(slog.DiscardHandler))(context.Background(), &relay.ArgumentError{Field: "last", Message: "Pass first or last, not both."})
		if got.Extensions["code"] != "BAD_USER_INPUT" || got.Extensions["field"] != "last" {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("GqlgenValidationErrorKeepsItsCode", func(t *testing.T) {
		e := &gqlerror.Error{Message: "Cannot query field", Extensions: map[string]any{"code": "GRAPHQL_VALIDATION_FAILED"}}
		got := ErrorPresenter(slog.New(slog.DiscardHandler))(context.Background(), e)
		if got.Extensions["code"] != "GRAPHQL_VALIDATION_FAILED" || got.Message != "Cannot query field" {
			t.Fatalf("got %+v", got)
		}
	})
}

func TestRecoverHidesThePanic(t *testing.T) {
	var logs bytes.Buffer
	err := Recover(slog.New(slog.NewTextHandler(&logs, nil)))(context.Background(), "nil map write SENTINEL")
	got := ErrorPresenter(slog.New(slog.DiscardHandler))(graphql.WithResponseContext(context.Background(), graphql.DefaultErrorPresenter, nil), err)
	if got.Extensions["code"] != "INTERNAL" || strings.Contains(got.Message, "SENTINEL") {
		t.Fatalf("panic presented as %+v", got)
	}
	if !strings.Contains(logs.String(), "SENTINEL") || !strings.Contains(logs.String(), "stack") {
		t.Fatalf("panic not logged with its stack: %s", logs.String())
	}
}
