package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/stripe/stripe-go/v76"
)

// paymentsWorld is a server with Stripe behind a recording fake, and three
// users: alice owns workspace A (carol is a member of it), bob owns B.
type paymentsWorld struct {
	*testServer
	fake              *stripefake.Server
	alice, bob, carol string
	wsA, wsB          string
	// sessionA is a checkout session of workspace A, when a test made one.
	sessionA string
	// invitationA is a pending invitation of workspace A (to zoe), when a
	// test made one.
	invitationA string
}

func newPaymentsWorld(t *testing.T, dbURL string, env map[string]string) *paymentsWorld {
	t.Helper()
	fake := stripefake.New(t, testenv.StripeMock(t))
	fake.SetPrices(catalogPrices()...)
	s := startServer(t, dbURL, withStripe(fake.URL, env))
	w := &paymentsWorld{testServer: s, fake: fake,
		alice: s.token(t, "alice", false), bob: s.token(t, "bob", false), carol: s.token(t, "carol", false)}
	w.wsA = s.createWorkspace(t, w.alice, "A")
	w.wsB = s.createWorkspace(t, w.bob, "B")
	if r := s.addMember(t, w.alice, w.wsA, "carol", "MEMBER"); r.Code() != "" {
		t.Fatal(r.Raw)
	}
	return w
}

const createPaymentMutation = `mutation($in: CreatePaymentIntentInput!) {
	createPaymentIntent(input: $in) { payment { id amount currency purpose status createdBy } paymentIntentId status clientSecret }
}`

// paymentIn is a valid CreatePaymentIntentInput for workspace ws with some
// fields replaced.
func paymentIn(ws string, with map[string]any) map[string]any {
	in := map[string]any{"workspaceId": ws, "amount": 1999, "currency": "USD", "purpose": "credits_pack", "idempotencyKey": "order-1"}
	for k, v := range with {
		in[k] = v
	}
	return map[string]any{"in": in}
}

type paymentPayload struct {
	CreatePaymentIntent struct {
		Payment struct {
			ID, Currency, Purpose, Status, CreatedBy string
			Amount                                   int
		}
		PaymentIntentID, Status, ClientSecret string
	}
}

func (w *paymentsWorld) paymentCount(t *testing.T, token, ws string) int {
	t.Helper()
	var out struct {
		Workspace struct{ Payments struct{ TotalCount int } }
	}
	w.gql(t, token, `query($id: ID!) { workspace(id: $id) { payments { totalCount } } }`, map[string]any{"id": ws}).Decode(t, &out)
	return out.Workspace.Payments.TotalCount
}

func TestCreatePaymentIntent(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)

	t.Run("CreatesAndRecordsThePaymentWithMetadataAndIdempotencyKey", func(t *testing.T) {
		var out paymentPayload
		w.gql(t, w.alice, createPaymentMutation, paymentIn(w.wsA, nil)).Decode(t, &out)
		got := out.CreatePaymentIntent
		if !strings.HasPrefix(got.PaymentIntentID, "pi_") || got.ClientSecret == "" || got.Status != "REQUIRES_PAYMENT_METHOD" {
			t.Fatalf("payload = %+v", got)
		}
		if got.Payment.Amount != 1999 || got.Payment.Currency != "usd" || got.Payment.Purpose != "credits_pack" ||
			got.Payment.Status != "REQUIRES_PAYMENT_METHOD" || got.Payment.CreatedBy != "alice" {
			t.Fatalf("payment = %+v", got.Payment)
		}
		req, _ := w.fake.Last("POST", "/v1/payment_intents")
		want := map[string]string{
			"amount": "1999", "currency": "usd", "metadata[workspace_id]": w.wsA, "metadata[user_id]": "alice",
			"metadata[purpose]": "credits_pack", "automatic_payment_methods[enabled]": "true",
		}
		for k, v := range want {
			if req.Form.Get(k) != v {
				t.Errorf("%s sent = %q, want %q", k, req.Form.Get(k), v)
			}
		}
		if !strings.HasPrefix(req.Form.Get("customer"), "cus_") {
			t.Errorf("customer sent = %q", req.Form.Get("customer"))
		}
		if !strings.HasPrefix(req.Header.Get("Idempotency-Key"), "pi-") {
			t.Errorf("Idempotency-Key = %q", req.Header.Get("Idempotency-Key"))
		}
		if n := w.paymentCount(t, w.carol, w.wsA); n != 1 {
			t.Fatalf("a member sees %d payments, want 1", n)
		}
	})
	t.Run("RetryWithSameKeyReturnsSamePaymentAndCreatesNothing", func(t *testing.T) {
		in := paymentIn(w.wsA, map[string]any{"idempotencyKey": "order-retry"})
		var first, second paymentPayload
		w.gql(t, w.alice, createPaymentMutation, in).Decode(t, &first)
		creates := w.fake.Count("POST", "/v1/payment_intents")
		w.gql(t, w.alice, createPaymentMutation, in).Decode(t, &second)
		if second.CreatePaymentIntent.Payment.ID != first.CreatePaymentIntent.Payment.ID ||
			second.CreatePaymentIntent.PaymentIntentID != first.CreatePaymentIntent.PaymentIntentID ||
			second.CreatePaymentIntent.ClientSecret == "" {
			t.Fatalf("retry answered %+v, first %+v", second, first)
		}
		if n := w.fake.Count("POST", "/v1/payment_intents"); n != creates {
			t.Fatalf("the retry created %d more PaymentIntents", n-creates)
		}
		if n := w.paymentCount(t, w.alice, w.wsA); n != 2 {
			t.Fatalf("payments = %d, want 2", n)
		}
	})
	t.Run("SameKeyWithAnotherAmountIsRefused", func(t *testing.T) {
		r := w.gql(t, w.alice, createPaymentMutation, paymentIn(w.wsA, map[string]any{"idempotencyKey": "order-retry", "amount": 5000}))
		if r.Code() != "BAD_USER_INPUT" {
			t.Fatalf("code = %q: %s", r.Code(), r.Raw)
		}
	})

	refusals := []struct {
		name, code string
		token      func() string
		in         map[string]any
	}{
		{"MemberIsForbidden", "FORBIDDEN", func() string { return w.carol }, paymentIn(w.wsA, nil)},
		{"OtherWorkspaceIsNotFound", "NOT_FOUND", func() string { return w.bob }, paymentIn(w.wsA, nil)},
		{"AnonymousIsUnauthenticated", "UNAUTHENTICATED", func() string { return "" }, paymentIn(w.wsA, nil)},
		{"ZeroAmount", "BAD_USER_INPUT", func() string { return w.alice }, paymentIn(w.wsA, map[string]any{"amount": 0})},
		{"NegativeAmount", "BAD_USER_INPUT", func() string { return w.alice }, paymentIn(w.wsA, map[string]any{"amount": -100})},
		{"OneBelowUSDMinimum", "BAD_USER_INPUT", func() string { return w.alice }, paymentIn(w.wsA, map[string]any{"amount": 49})},
		{"AboveStripeMaximum", "BAD_USER_INPUT", func() string { return w.alice }, paymentIn(w.wsA, map[string]any{"amount": 100_000_000})},
		{"Overflows32Bits", "BAD_USER_INPUT", func() string { return w.alice }, paymentIn(w.wsA, map[string]any{"amount": int64(1) << 33})},
		{"OneBelowJPYMinimum", "BAD_USER_INPUT", func() string { return w.alice }, paymentIn(w.wsA, map[string]any{"amount": 49, "currency": "jpy"})},
		{"UnsupportedCurrency", "BAD_USER_INPUT", func() string { return w.alice }, paymentIn(w.wsA, map[string]any{"currency": "xyz"})},
		{"FloatAmount", "GRAPHQL_VALIDATION_FAILED", func() string { return w.alice }, paymentIn(w.wsA, map[string]any{"amount": 19.99})},
		{"PurposeNotSnakeCase", "BAD_USER_INPUT", func() string { return w.alice }, paymentIn(w.wsA, map[string]any{"purpose": "Credit Pack"})},
		{"EmptyIdempotencyKey", "BAD_USER_INPUT", func() string { return w.alice }, paymentIn(w.wsA, map[string]any{"idempotencyKey": ""})},
		{"IdempotencyKeyWithSpace", "BAD_USER_INPUT", func() string { return w.alice }, paymentIn(w.wsA, map[string]any{"idempotencyKey": "a b"})},
		{"BadPaymentMethodID", "BAD_USER_INPUT", func() string { return w.alice }, paymentIn(w.wsA, map[string]any{"paymentMethodId": "card_123"})},
		{"MalformedWorkspaceID", "NOT_FOUND", func() string { return w.alice }, paymentIn("nope", nil)},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			before := len(w.fake.Requests())
			r := w.gql(t, tc.token(), createPaymentMutation, tc.in)
			if r.Code() != tc.code {
				t.Fatalf("code = %q, want %q: %s", r.Code(), tc.code, r.Raw)
			}
			if n := len(w.fake.Requests()) - before; n != 0 {
				t.Fatalf("a refused request made %d Stripe calls", n)
			}
		})
	}

	accepted := []struct {
		name     string
		amount   int
		currency string
	}{
		{"USDMinimum", 50, "usd"},
		{"StripeMaximum", 99_999_999, "usd"},
		{"JPYMinimumIsWholeYen", 50, "jpy"},
		{"KRWIsZeroDecimal", 700, "krw"},
	}
	for i, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			var out paymentPayload
			w.gql(t, w.alice, createPaymentMutation, paymentIn(w.wsA, map[string]any{
				"amount": tc.amount, "currency": tc.currency, "idempotencyKey": fmt.Sprintf("accepted-%d", i),
			})).Decode(t, &out)
			req, _ := w.fake.Last("POST", "/v1/payment_intents")
			if req.Form.Get("amount") != fmt.Sprint(tc.amount) || req.Form.Get("currency") != tc.currency {
				t.Fatalf("sent amount %s %s, want %d %s (never converted)", req.Form.Get("amount"), req.Form.Get("currency"), tc.amount, tc.currency)
			}
		})
	}
}

func TestConcurrentRetriesMakeOnePaymentIntent(t *testing.T) {
	w := newPaymentsWorld(t, testenv.Postgres(t), nil)
	// A slow Stripe keeps the first request in flight while the others arrive.
	w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Delay: 300 * time.Millisecond, Forward: true})
	const n = 10
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out paymentPayload
			w.gql(t, w.alice, createPaymentMutation, paymentIn(w.wsA, map[string]any{"idempotencyKey": "concurrent"})).Decode(t, &out)
			ids[i] = out.CreatePaymentIntent.Payment.ID
		}()
	}
	wg.Wait()
	for i := range ids {
		if ids[i] == "" || ids[i] != ids[0] {
			t.Fatalf("concurrent retries returned different payments: %v", ids)
		}
	}
	if c := w.fake.Count("POST", "/v1/payment_intents"); c != 1 {
		t.Fatalf("PaymentIntents created = %d, want 1", c)
	}
	if c := w.paymentCount(t, w.alice, w.wsA); c != 1 {
		t.Fatalf("Payment rows = %d, want 1", c)
	}
}

// declineCases are Stripe's decline codes with the message we show and the
// decline code the client may see.
var declineCases = []struct{ stripeCode, message, shown string }{
	{"card_declined", "Your card was declined. Please try a different card.", "card_declined"},
	{"insufficient_funds", "Your card has insufficient funds.", "insufficient_funds"},
	{"incorrect_cvc", "Your card's security code is incorrect.", "incorrect_cvc"},
	{"expired_card", "Your card has expired.", "expired_card"},
	{"processing_error", "An error occurred. Please try again.", "processing_error"},
	{"lost_card", "Your card was declined. Please try a different card.", "generic_decline"},
	{"stolen_card", "Your card was declined. Please try a different card.", "generic_decline"},
	{"do_not_honor_some_new_code", "Your card was declined. Please try a different card.", "generic_decline"},
}

// sentinel is put in every scripted Stripe message: it must never reach a client.
const sentinel = "SENTINEL-stripe-raw-text"

func TestStripeErrorsBecomeSafeFriendlyAnswers(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), map[string]string{"STRIPE_TIMEOUT": "1s"})
	key := 0
	call := func(t *testing.T) gqlResponse {
		t.Helper()
		t.Cleanup(w.fake.ClearRules)
		key++
		r := w.gql(t, w.alice, createPaymentMutation, paymentIn(w.wsA, map[string]any{
			"idempotencyKey": fmt.Sprintf("err-%d", key), "paymentMethodId": "pm_card_visa",
		}))
		if strings.Contains(r.Raw, sentinel) {
			t.Fatalf("Stripe's raw text reached the client: %s", r.Raw)
		}
		return r
	}
	expectNoRowLeft := func(t *testing.T, before int) {
		t.Helper()
		if n := w.paymentCount(t, w.alice, w.wsA); n != before {
			t.Fatalf("payments went from %d to %d after a failed call", before, n)
		}
	}

	for _, dc := range declineCases {
		t.Run("Decline_"+dc.stripeCode, func(t *testing.T) {
			before := w.paymentCount(t, w.alice, w.wsA)
			w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Times: 1, Status: http.StatusPaymentRequired,
				Body: stripefake.StripeError("card_error", "card_declined", dc.stripeCode, sentinel)})
			r := call(t)
			if r.Code() != "CARD_DECLINED" || r.Errors[0].Message != dc.message || r.Errors[0].Extensions["declineCode"] != dc.shown {
				t.Fatalf("got %s; want CARD_DECLINED %q declineCode %q", r.Raw, dc.message, dc.shown)
			}
			expectNoRowLeft(t, before)
		})
	}
	t.Run("RateLimitedOnceThenSucceedsWithTheSameIdempotencyKey", func(t *testing.T) {
		w.fake.Reset()
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Times: 1, Status: http.StatusTooManyRequests,
			Body: stripefake.StripeError("invalid_request_error", "rate_limit", "", sentinel)})
		r := call(t)
		if len(r.Errors) > 0 {
			t.Fatalf("expected success after one 429: %s", r.Raw)
		}
		var keys []string
		for _, req := range w.fake.Requests() {
			if req.Method == "POST" && req.Path == "/v1/payment_intents" {
				keys = append(keys, req.Header.Get("Idempotency-Key"))
			}
		}
		if len(keys) != 2 || keys[0] != keys[1] || keys[0] == "" {
			t.Fatalf("attempts' idempotency keys = %q, want two equal keys", keys)
		}
	})
	t.Run("PersistentRateLimitAnswersRateLimited", func(t *testing.T) {
		before := w.paymentCount(t, w.alice, w.wsA)
		w.fake.Reset()
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Times: 10, Status: http.StatusTooManyRequests,
			Body: stripefake.StripeError("invalid_request_error", "rate_limit", "", sentinel)})
		r := call(t)
		if r.Code() != "RATE_LIMITED" {
			t.Fatalf("code = %q: %s", r.Code(), r.Raw)
		}
		if n := w.fake.Count("POST", "/v1/payment_intents"); n != 4 {
			t.Errorf("attempts = %d, want 4 (one plus three bounded retries)", n)
		}
		expectNoRowLeft(t, before)
		w.fake.Reset()
	})
	t.Run("ServerErrorIsProviderUnavailable", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Times: 10, Status: http.StatusInternalServerError,
			Body: stripefake.StripeError("api_error", "", "", sentinel)})
		if r := call(t); r.Code() != "PAYMENT_PROVIDER_UNAVAILABLE" {
			t.Fatalf("code = %q: %s", r.Code(), r.Raw)
		}
		w.fake.Reset()
	})
	t.Run("HangPastTheTimeoutIsProviderUnavailable", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Times: 10, Hang: true})
		start := time.Now()
		r := call(t)
		if r.Code() != "PAYMENT_PROVIDER_UNAVAILABLE" {
			t.Fatalf("code = %q: %s", r.Code(), r.Raw)
		}
		// 1s per attempt, one attempt plus stripe-go's two network retries.
		if d := time.Since(start); d > 8*time.Second {
			t.Fatalf("answered after %s; the timeout is 1s per attempt", d)
		}
		w.fake.Reset()
	})
	t.Run("MalformedBodyIsProviderUnavailable", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Times: 1, Status: 200, Body: "{not json " + sentinel})
		if r := call(t); r.Code() != "PAYMENT_PROVIDER_UNAVAILABLE" {
			t.Fatalf("code = %q: %s", r.Code(), r.Raw)
		}
	})
	t.Run("InvalidRequestIsInternalWithoutStripeText", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Times: 1, Status: 400,
			Body: stripefake.StripeError("invalid_request_error", "parameter_unknown", "", sentinel)})
		r := call(t)
		if r.Code() != "INTERNAL" {
			t.Fatalf("code = %q: %s", r.Code(), r.Raw)
		}
		if !strings.Contains(w.logs.String(), "req_stripefake") {
			t.Error("Stripe's request id was not logged")
		}
	})
	t.Run("AmountTooSmallForTheAccountIsBadInput", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Times: 1, Status: 400,
			Body: stripefake.StripeError("invalid_request_error", "amount_too_small", "", sentinel)})
		if r := call(t); r.Code() != "BAD_USER_INPUT" {
			t.Fatalf("code = %q: %s", r.Code(), r.Raw)
		}
	})
	t.Run("RetryAfterAFailureSucceeds", func(t *testing.T) {
		in := paymentIn(w.wsA, map[string]any{"idempotencyKey": "fails-then-works"})
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Times: 1, Status: 402,
			Body: stripefake.StripeError("card_error", "card_declined", "insufficient_funds", sentinel)})
		if r := w.gql(t, w.alice, createPaymentMutation, in); r.Code() != "CARD_DECLINED" {
			t.Fatalf("first: %s", r.Raw)
		}
		if r := w.gql(t, w.alice, createPaymentMutation, in); len(r.Errors) > 0 {
			t.Fatalf("retry: %s", r.Raw)
		}
	})
	t.Run("ThreeDSecureAnswersRequiresActionWithClientSecret", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_intents", Times: 1, Status: 200,
			Body: `{"id":"pi_3ds","object":"payment_intent","amount":1999,"currency":"usd","status":"requires_action",
				"client_secret":"pi_3ds_secret_abc","next_action":{"type":"use_stripe_sdk"}}`})
		r := call(t)
		if r.Code() != "REQUIRES_ACTION" || r.Errors[0].Extensions["paymentIntentId"] != "pi_3ds" {
			t.Fatalf("want REQUIRES_ACTION with the PaymentIntent id: %s", r.Raw)
		}
		var out paymentPayload
		if err := jsonUnmarshal(r.Data, &out); err != nil {
			t.Fatal(err)
		}
		if out.CreatePaymentIntent.Status != "REQUIRES_ACTION" || out.CreatePaymentIntent.ClientSecret != "pi_3ds_secret_abc" ||
			out.CreatePaymentIntent.Payment.Status != "REQUIRES_ACTION" {
			t.Fatalf("data = %+v", out.CreatePaymentIntent)
		}
	})
}

// An idempotency key is bound to every parameter of the payment: repeated
// with any other one (an added payment method too, which used to answer
// the first payment) it is refused, and Stripe makes nothing more.
func TestPaymentIdempotencyKeyBindsEveryParameter(t *testing.T) {
	d := newSandboxDriver(t)
	intents := func() int { return sandboxCount(t, d.sc.PaymentIntents.List(&stripe.PaymentIntentListParams{})) }
	t.Run("WithoutAPaymentMethod", func(t *testing.T) {
		base := map[string]any{"workspaceId": d.ws, "amount": 1500, "currency": "usd", "purpose": "credits_pack", "idempotencyKey": "order-1"}
		d.assertKeyBindsEveryParameter(t, d.token, createPaymentMutation, "createPaymentIntent.payment.id", base,
			[]keyCase{
				{"AnAddedPaymentMethod", map[string]any{"paymentMethodId": "pm_card_visa"}},
				{"AnotherAmount", map[string]any{"amount": 1600}},
				{"AnotherCurrency", map[string]any{"currency": "eur"}},
				{"AnotherPurpose", map[string]any{"purpose": "donation"}},
			},
			[]keyCase{{"TheCurrencyInCapitals", map[string]any{"currency": "USD"}}},
			intents)
	})
	t.Run("WithAPaymentMethod", func(t *testing.T) {
		base := map[string]any{"workspaceId": d.ws, "amount": 2500, "currency": "usd", "purpose": "credits_pack",
			"idempotencyKey": "order-2", "paymentMethodId": "pm_card_visa"}
		d.assertKeyBindsEveryParameter(t, d.token, createPaymentMutation, "createPaymentIntent.payment.id", base,
			[]keyCase{
				{"AnotherPaymentMethod", map[string]any{"paymentMethodId": "pm_card_mastercard"}},
				{"NoPaymentMethod", map[string]any{"paymentMethodId": nil}},
			},
			nil, intents)
	})
}
