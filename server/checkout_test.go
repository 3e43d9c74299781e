package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"billingapi/auth"
	"billingapi/ent/checkoutsession"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

const createCheckoutMutation = `mutation($in: CreateCheckoutSessionInput!) {
	createCheckoutSession(input: $in) { sessionId checkoutUrl checkoutSession { id mode lookupKey plan quantity status } }
}`

type checkoutPayload struct {
	CreateCheckoutSession struct {
		SessionID, CheckoutURL string
		CheckoutSession        struct {
			ID, Mode, LookupKey, Plan, Status string
			Quantity                          int
		}
	}
}

func checkoutIn(ws string, with map[string]any) map[string]any {
	in := map[string]any{"workspaceId": ws, "lookupKey": "starter_monthly", "mode": "SUBSCRIPTION"}
	for k, v := range with {
		in[k] = v
	}
	return map[string]any{"in": in}
}

func TestCreateCheckoutSession(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), map[string]string{"APP_BASE_URL": "https://app.example.com"})

	t.Run("SubscriptionModeSendsURLsMetadataAndSubscriptionMetadata", func(t *testing.T) {
		var out checkoutPayload
		w.gql(t, w.alice, createCheckoutMutation, checkoutIn(w.wsA, map[string]any{"quantity": 3})).Decode(t, &out)
		got := out.CreateCheckoutSession
		if !strings.HasPrefix(got.SessionID, "cs_") || got.CheckoutURL == "" || got.CheckoutSession.Status != "OPEN" ||
			got.CheckoutSession.Plan != "starter" || got.CheckoutSession.Quantity != 3 || got.CheckoutSession.Mode != "SUBSCRIPTION" {
			t.Fatalf("payload = %+v", got)
		}
		req, _ := w.fake.Last("POST", "/v1/checkout/sessions")
		want := map[string]string{
			"mode":                    "subscription",
			"line_items[0][price]":    "price_starter_monthly",
			"line_items[0][quantity]": "3",
			"success_url":             "https://app.example.com/payment/success?session_id={CHECKOUT_SESSION_ID}",
			"cancel_url":              "https://app.example.com/payment/cancelled",
			"metadata[workspace_id]":  w.wsA, "metadata[user_id]": "alice", "metadata[plan]": "starter",
			"subscription_data[metadata][workspace_id]": w.wsA, "subscription_data[metadata][plan]": "starter",
			"client_reference_id": w.wsA,
		}
		for k, v := range want {
			if req.Form.Get(k) != v {
				t.Errorf("%s sent = %q, want %q", k, req.Form.Get(k), v)
			}
		}
		if !strings.HasPrefix(req.Form.Get("customer"), "cus_") || req.Header.Get("Idempotency-Key") == "" {
			t.Errorf("customer %q, Idempotency-Key %q", req.Form.Get("customer"), req.Header.Get("Idempotency-Key"))
		}
	})
	t.Run("PaymentModeTagsThePaymentIntent", func(t *testing.T) {
		var out checkoutPayload
		w.gql(t, w.alice, createCheckoutMutation, checkoutIn(w.wsA, map[string]any{"lookupKey": "credits_jpy", "mode": "PAYMENT"})).Decode(t, &out)
		req, _ := w.fake.Last("POST", "/v1/checkout/sessions")
		if req.Form.Get("mode") != "payment" || req.Form.Get("payment_intent_data[metadata][workspace_id]") != w.wsA ||
			req.Form.Get("payment_intent_data[metadata][purpose]") != "checkout_credits_jpy" || req.Form.Get("subscription_data[metadata][plan]") != "" {
			t.Errorf("payment-mode params = %v", req.Form)
		}
	})
	t.Run("RetryWithSameKeyReturnsTheSameSession", func(t *testing.T) {
		in := checkoutIn(w.wsA, map[string]any{"idempotencyKey": "checkout-1"})
		var first, second checkoutPayload
		w.gql(t, w.alice, createCheckoutMutation, in).Decode(t, &first)
		before := w.fake.Count("POST", "/v1/checkout/sessions")
		w.gql(t, w.alice, createCheckoutMutation, in).Decode(t, &second)
		if second.CreateCheckoutSession.SessionID != first.CreateCheckoutSession.SessionID || w.fake.Count("POST", "/v1/checkout/sessions") != before {
			t.Fatalf("retry made a new session: %+v vs %+v", second, first)
		}
	})
	t.Run("MembersListSessionsNewestFirst", func(t *testing.T) {
		var out struct {
			Workspace struct {
				CheckoutSessions struct {
					TotalCount int
					Edges      []struct{ Node struct{ LookupKey string } }
				}
			}
		}
		w.gql(t, w.carol, `query($id: ID!) { workspace(id: $id) { checkoutSessions(first: 10) { totalCount edges { node { lookupKey } } } } }`,
			map[string]any{"id": w.wsA}).Decode(t, &out)
		cs := out.Workspace.CheckoutSessions
		if cs.TotalCount != 3 || cs.Edges[0].Node.LookupKey != "starter_monthly" || cs.Edges[1].Node.LookupKey != "credits_jpy" {
			t.Fatalf("sessions = %+v", cs)
		}
	})

	refusals := []struct {
		name, code string
		token      func() string
		in         map[string]any
	}{
		{"MemberIsForbidden", "FORBIDDEN", func() string { return w.carol }, checkoutIn(w.wsA, nil)},
		{"OtherWorkspaceIsNotFound", "NOT_FOUND", func() string { return w.bob }, checkoutIn(w.wsA, nil)},
		{"AnonymousIsUnauthenticated", "UNAUTHENTICATED", func() string { return "" }, checkoutIn(w.wsA, nil)},
		{"UnknownLookupKey", "BAD_USER_INPUT", func() string { return w.alice }, checkoutIn(w.wsA, map[string]any{"lookupKey": "nope"})},
		{"RecurringPriceInPaymentMode", "BAD_USER_INPUT", func() string { return w.alice }, checkoutIn(w.wsA, map[string]any{"mode": "PAYMENT"})},
		{"OneTimePriceInSubscriptionMode", "BAD_USER_INPUT", func() string { return w.alice }, checkoutIn(w.wsA, map[string]any{"lookupKey": "credits_jpy"})},
		{"ZeroQuantity", "BAD_USER_INPUT", func() string { return w.alice }, checkoutIn(w.wsA, map[string]any{"quantity": 0})},
		{"HugeQuantity", "BAD_USER_INPUT", func() string { return w.alice }, checkoutIn(w.wsA, map[string]any{"quantity": 10_001})},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			before := w.fake.Count("POST", "/v1/checkout/sessions")
			r := w.gql(t, tc.token(), createCheckoutMutation, tc.in)
			if r.Code() != tc.code {
				t.Fatalf("code = %q, want %q: %s", r.Code(), tc.code, r.Raw)
			}
			if w.fake.Count("POST", "/v1/checkout/sessions") != before {
				t.Fatal("a refused request created a Stripe session")
			}
		})
	}
}

const syncCheckoutMutation = `mutation($id: String!) { syncCheckoutSession(sessionId: $id) { status paymentIntentId subscriptionId completedAt checkoutUrl } }`

// completedSession is a Stripe checkout.session in JSON, as Stripe answers
// a retrieve.
func completedSession(id, status, paymentStatus, ws, paymentIntent string) string {
	pi := "null"
	if paymentIntent != "" {
		pi = fmt.Sprintf("%q", paymentIntent)
	}
	return fmt.Sprintf(`{"id":%q,"object":"checkout.session","mode":"payment","status":%q,"payment_status":%q,
		"amount_total":5000,"currency":"jpy","payment_intent":%s,"subscription":null,
		"metadata":{"workspace_id":%q,"user_id":"alice","plan":"credits_jpy"}}`, id, status, paymentStatus, pi, ws)
}

func TestSyncCheckoutSession(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	var created checkoutPayload
	w.gql(t, w.alice, createCheckoutMutation, checkoutIn(w.wsA, map[string]any{"lookupKey": "credits_jpy", "mode": "PAYMENT"})).Decode(t, &created)
	id := created.CreateCheckoutSession.SessionID
	path := "/v1/checkout/sessions/" + id

	t.Run("OpenSessionChangesNothing", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "GET", Path: path, Times: 1, Body: completedSession(id, "open", "unpaid", w.wsA, "")})
		r := w.gql(t, w.carol, syncCheckoutMutation, map[string]any{"id": id})
		if r.Code() != "" || !strings.Contains(r.Raw, `"status":"OPEN"`) {
			t.Fatalf("sync of an open session: %s", r.Raw)
		}
	})
	t.Run("OutsiderIsNotFoundAndStripeIsNotAsked", func(t *testing.T) {
		before := w.fake.Count("GET", path)
		for _, sid := range []string{id, "cs_unknown", "not-a-session"} {
			if r := w.gql(t, w.bob, syncCheckoutMutation, map[string]any{"id": sid}); r.Code() != "NOT_FOUND" {
				t.Fatalf("bob syncs %s: %s", sid, r.Raw)
			}
		}
		if w.fake.Count("GET", path) != before {
			t.Fatal("an outsider's sync reached Stripe")
		}
	})
	t.Run("SessionNamingAnotherWorkspaceIsNotApplied", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "GET", Path: path, Times: 1, Body: completedSession(id, "complete", "paid", w.wsB, "pi_forged")})
		if r := w.gql(t, w.alice, syncCheckoutMutation, map[string]any{"id": id}); r.Code() != "INTERNAL" {
			t.Fatalf("a session for another workspace: %s", r.Raw)
		}
		if n := w.paymentCount(t, w.alice, w.wsA); n != 0 {
			t.Fatalf("payments = %d after a mismatched session", n)
		}
	})
	t.Run("CompletedSessionRecordsThePaymentOnce", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "GET", Path: path, Times: 2, Body: completedSession(id, "complete", "paid", w.wsA, "pi_checkout_1")})
		for range 2 {
			var out struct {
				SyncCheckoutSession struct {
					Status, PaymentIntentID string
					CompletedAt             *string
					CheckoutURL             *string
				}
			}
			w.gql(t, w.alice, syncCheckoutMutation, map[string]any{"id": id}).Decode(t, &out)
			got := out.SyncCheckoutSession
			if got.Status != "COMPLETE" || got.PaymentIntentID != "pi_checkout_1" || got.CompletedAt == nil || got.CheckoutURL != nil {
				t.Fatalf("synced session = %+v", got)
			}
		}
		var out struct {
			Workspace struct {
				Payments struct {
					TotalCount int
					Edges      []struct {
						Node struct {
							Amount                    int
							Currency, Status, Purpose string
							StripePaymentIntentID     string
						}
					}
				}
			}
		}
		w.gql(t, w.alice, `query($id: ID!) { workspace(id: $id) { payments { totalCount edges { node { amount currency status purpose stripePaymentIntentId } } } } }`,
			map[string]any{"id": w.wsA}).Decode(t, &out)
		p := out.Workspace.Payments
		if p.TotalCount != 1 || p.Edges[0].Node.Amount != 5000 || p.Edges[0].Node.Currency != "jpy" ||
			p.Edges[0].Node.Status != "SUCCEEDED" || p.Edges[0].Node.StripePaymentIntentID != "pi_checkout_1" {
			t.Fatalf("payments after two syncs = %+v", p)
		}
	})
	// Without an idempotency key, the same request within ten minutes is a
	// double click and gets the same page; once that page is paid, the
	// same request again is a second purchase and gets a page of its own.
	t.Run("SameRequestAfterThePageWasPaidOpensANewOne", func(t *testing.T) {
		before := w.fake.Count("POST", "/v1/checkout/sessions")
		var again checkoutPayload
		w.gql(t, w.alice, createCheckoutMutation, checkoutIn(w.wsA, map[string]any{"lookupKey": "credits_jpy", "mode": "PAYMENT"})).Decode(t, &again)
		got := again.CreateCheckoutSession
		if w.fake.Count("POST", "/v1/checkout/sessions") != before+1 || got.SessionID == id || got.CheckoutSession.Status != "OPEN" {
			t.Fatalf("the same purchase after the first was paid: %+v (%d new sessions); want a new open page",
				got, w.fake.Count("POST", "/v1/checkout/sessions")-before)
		}
		var click checkoutPayload
		w.gql(t, w.alice, createCheckoutMutation, checkoutIn(w.wsA, map[string]any{"lookupKey": "credits_jpy", "mode": "PAYMENT"})).Decode(t, &click)
		if click.CreateCheckoutSession.SessionID != got.SessionID || w.fake.Count("POST", "/v1/checkout/sessions") != before+1 {
			t.Fatalf("a double click on the new page opened another: %+v", click.CreateCheckoutSession)
		}
	})
}

// A workspace has at most one open subscription Checkout: each one paid
// would start a subscription billed beside the others, and a session stays
// payable for a day. Opening another, or subscribing directly, expires the
// open one at Stripe first.
func TestSubscriptionCheckoutsDoNotStackUp(t *testing.T) {
	w := newPaymentsWorld(t, testenv.Postgres(t), nil)
	open := func(token, ws, key string) (checkoutPayload, gqlResponse) {
		t.Helper()
		var out checkoutPayload
		r := w.gql(t, token, createCheckoutMutation, checkoutIn(ws, map[string]any{"idempotencyKey": key}))
		if r.Code() == "" {
			r.Decode(t, &out)
		}
		return out, r
	}
	statuses := func(ws string) map[string]string {
		t.Helper()
		var out struct {
			Workspace struct {
				CheckoutSessions struct {
					Edges []struct{ Node struct{ ID, Status string } }
				}
			}
		}
		w.gql(t, w.alice, `query($id: ID!) { workspace(id: $id) { checkoutSessions(first: 10) { edges { node { id status } } } } }`,
			map[string]any{"id": ws}).Decode(t, &out)
		got := map[string]string{}
		for _, e := range out.Workspace.CheckoutSessions.Edges {
			got[e.Node.ID] = e.Node.Status
		}
		return got
	}
	expires := func(sessionID string) int { return w.fake.Count("POST", "/v1/checkout/sessions/"+sessionID+"/expire") }

	tab1, _ := open(w.alice, w.wsA, "tab-1")
	tab2, _ := open(w.alice, w.wsA, "tab-2")
	id1, id2 := tab1.CreateCheckoutSession.CheckoutSession.ID, tab2.CreateCheckoutSession.CheckoutSession.ID
	if expires(tab1.CreateCheckoutSession.SessionID) != 1 || expires(tab2.CreateCheckoutSession.SessionID) != 0 {
		t.Fatalf("expire calls: tab 1 %d, tab 2 %d; want the first session expired once, the second left open",
			expires(tab1.CreateCheckoutSession.SessionID), expires(tab2.CreateCheckoutSession.SessionID))
	}
	if got := statuses(w.wsA); got[id1] != "EXPIRED" || got[id2] != "OPEN" {
		t.Fatalf("sessions %v; want tab 1 EXPIRED, tab 2 OPEN", got)
	}
	// A retry of the first request is answered with its own session, and
	// ends nothing.
	if again, r := open(w.alice, w.wsA, "tab-1"); r.Code() != "" || again.CreateCheckoutSession.CheckoutSession.ID != id1 ||
		expires(tab2.CreateCheckoutSession.SessionID) != 0 {
		t.Fatalf("retry of tab 1: %s; tab 2 expired %d times", r.Raw, expires(tab2.CreateCheckoutSession.SessionID))
	}
	// Subscribing directly ends the open session too.
	var sub struct {
		CreateSubscription struct{ Subscription struct{ Status string } }
	}
	w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": map[string]any{"workspaceId": w.wsA, "lookupKey": "starter_monthly"}}).Decode(t, &sub)
	if expires(tab2.CreateCheckoutSession.SessionID) != 1 || statuses(w.wsA)[id2] != "EXPIRED" {
		t.Fatalf("after createSubscription: tab 2 expired %d times, sessions %v", expires(tab2.CreateCheckoutSession.SessionID), statuses(w.wsA))
	}

	t.Run("SessionBeingOpenedIsAConflict", func(t *testing.T) {
		wsB := uuid.MustParse(w.wsB)
		sys := auth.NewContext(context.Background(), auth.SystemViewer(wsB))
		row, err := w.DB.CheckoutSession.Create().SetWorkspaceID(wsB).SetRequestKey("in-flight").SetMode(checkoutsession.ModeSubscription).
			SetLookupKey("starter_monthly").SetPriceID("price_starter_monthly").SetPlan("starter").SetQuantity(1).SetCreatedBy("bob").Save(sys)
		if err != nil {
			t.Fatal(err)
		}
		before := w.fake.Count("POST", "/v1/checkout/sessions")
		if _, r := open(w.bob, w.wsB, "tab-b0"); r.Code() != "CONFLICT" || w.fake.Count("POST", "/v1/checkout/sessions") != before {
			t.Fatalf("opening beside one being opened: %s; want CONFLICT and no session", r.Raw)
		}
		if err := w.DB.CheckoutSession.DeleteOne(row).Exec(sys); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SessionPaidMeanwhileRefusesTheNewOne", func(t *testing.T) {
		b1, _ := open(w.bob, w.wsB, "tab-b1")
		sid := b1.CreateCheckoutSession.SessionID
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/checkout/sessions/" + sid + "/expire", Status: 400,
			Body: stripefake.StripeError("invalid_request_error", "", "", "Only Checkout Sessions with a status in [\"open\"] can be expired.")})
		w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/checkout/sessions/" + sid,
			Body: fmt.Sprintf(`{"id":%q,"object":"checkout.session","mode":"subscription","status":"complete","payment_status":"paid",
				"subscription":"sub_paid_meanwhile","payment_intent":null,"metadata":{"workspace_id":%q,"user_id":"bob","plan":"starter"}}`, sid, w.wsB)})
		t.Cleanup(w.fake.ClearRules)
		before := w.fake.Count("POST", "/v1/checkout/sessions")
		if _, r := open(w.bob, w.wsB, "tab-b2"); r.Code() != "BAD_USER_INPUT" || w.fake.Count("POST", "/v1/checkout/sessions") != before {
			t.Fatalf("opening after the first was paid: %s; want BAD_USER_INPUT and no new session", r.Raw)
		}
		var out struct {
			Workspace struct {
				CheckoutSessions struct {
					Edges []struct {
						Node struct{ Status, SubscriptionID string }
					}
				}
			}
		}
		w.gql(t, w.bob, `query($id: ID!) { workspace(id: $id) { checkoutSessions(first: 10) { edges { node { status subscriptionId } } } } }`,
			map[string]any{"id": w.wsB}).Decode(t, &out)
		if e := out.Workspace.CheckoutSessions.Edges; len(e) != 1 || e[0].Node.Status != "COMPLETE" || e[0].Node.SubscriptionID != "sub_paid_meanwhile" {
			t.Fatalf("bob's sessions %+v; want the first, COMPLETE with its subscription", e)
		}
	})
	// Stripe refuses to expire a session it still shows open (a payment
	// under way, say): the other request cannot go ahead beside it, which
	// is a CONFLICT to try again later, not an error of ours.
	t.Run("SessionStripeKeepsOpenIsAConflict", func(t *testing.T) {
		wsC := w.createWorkspace(t, w.bob, "C")
		c1, _ := open(w.bob, wsC, "tab-c1")
		sid := c1.CreateCheckoutSession.SessionID
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/checkout/sessions/" + sid + "/expire", Status: 400,
			Body: stripefake.StripeError("invalid_request_error", "", "", "This Checkout Session cannot be expired while a payment is processing.")})
		w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/checkout/sessions/" + sid,
			Body: fmt.Sprintf(`{"id":%q,"object":"checkout.session","mode":"subscription","status":"open","payment_status":"unpaid",
				"subscription":null,"payment_intent":null,"metadata":{"workspace_id":%q,"user_id":"bob","plan":"starter"}}`, sid, wsC)})
		t.Cleanup(w.fake.ClearRules)
		before := w.fake.Count("POST", "/v1/checkout/sessions")
		if _, r := open(w.bob, wsC, "tab-c2"); r.Code() != "CONFLICT" || w.fake.Count("POST", "/v1/checkout/sessions") != before {
			t.Fatalf("opening beside a session Stripe keeps open: %s; want CONFLICT and no new session", r.Raw)
		}
	})
}

// The open page is expired only for a request that goes ahead: one
// refused for its own input leaves the user's other tab payable. And a
// session Stripe no longer knows (test data deleted, other keys) cannot
// block the workspace from subscribing: it is ended here.
func TestOpenSubscriptionCheckoutIsEndedOnlyForARequestThatGoesAhead(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	t.Cleanup(w.fake.ClearRules)
	var tab checkoutPayload
	w.gql(t, w.alice, createCheckoutMutation, checkoutIn(w.wsA, map[string]any{"idempotencyKey": "tab-x"})).Decode(t, &tab)
	sid := tab.CreateCheckoutSession.SessionID
	expirePath := "/v1/checkout/sessions/" + sid + "/expire"
	status := func() string {
		t.Helper()
		var out struct {
			Workspace struct {
				CheckoutSessions struct {
					Edges []struct{ Node struct{ Status string } }
				}
			}
		}
		w.gql(t, w.alice, `query($id: ID!) { workspace(id: $id) { checkoutSessions(first: 1) { edges { node { status } } } } }`,
			map[string]any{"id": w.wsA}).Decode(t, &out)
		return out.Workspace.CheckoutSessions.Edges[0].Node.Status
	}
	subscribe := func(extra map[string]any) gqlResponse {
		in := map[string]any{"workspaceId": w.wsA, "lookupKey": "starter_monthly"}
		for k, v := range extra {
			in[k] = v
		}
		return w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": in})
	}
	if r := subscribe(map[string]any{"promotionCode": "not a code!"}); r.Code() != "BAD_USER_INPUT" {
		t.Fatalf("a malformed promotion code: %s", r.Raw)
	}
	if n := w.fake.Count("POST", expirePath); n != 0 || status() != "OPEN" {
		t.Fatalf("a refused request expired the open page (%d calls, %s)", n, status())
	}
	w.fake.On(stripefake.Rule{Method: "POST", Path: expirePath, Status: 404,
		Body: strings.Replace(stripefake.StripeError("invalid_request_error", "resource_missing", "", "No such checkout.session: "+sid), `"message"`, `"param":"session","message"`, 1)})
	if r := subscribe(nil); r.Code() != "" {
		t.Fatalf("subscribing beside a session Stripe lost: %s", r.Raw)
	}
	if got := status(); got != "EXPIRED" {
		t.Fatalf("the lost session is %s, want EXPIRED", got)
	}
}

// An idempotency key is bound to every parameter of the Checkout: the same
// key with another plan (which used to open a second session), quantity,
// mode or promotion-code option is refused, opens nothing at Stripe, and
// leaves the first session open.
func TestCheckoutIdempotencyKeyBindsEveryParameter(t *testing.T) {
	d := newSandboxDriver(t)
	// A one-time price, for the same key in PAYMENT mode.
	prod, err := d.sc.Products.New(&stripe.ProductParams{Name: stripe.String("100 credits"), Metadata: map[string]string{"plan": "credits"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.sc.Prices.New(&stripe.PriceParams{Product: stripe.String(prod.ID), UnitAmount: stripe.Int64(1000),
		Currency: stripe.String("usd"), LookupKey: stripe.String("credits_100")}); err != nil {
		t.Fatal(err)
	}
	sessions := func() int { return sandboxCount(t, d.sc.CheckoutSessions.List(&stripe.CheckoutSessionListParams{})) }
	base := map[string]any{"workspaceId": d.ws, "lookupKey": "starter_monthly", "mode": "SUBSCRIPTION", "quantity": 1,
		"allowPromotionCodes": false, "idempotencyKey": "checkout-1"}
	var first struct {
		CreateCheckoutSession struct{ SessionID string }
	}
	if err := d.gql(createCheckoutMutation, map[string]any{"in": base}, &first); err != nil {
		t.Fatal(err)
	}
	d.assertKeyBindsEveryParameter(t, d.token, createCheckoutMutation, "createCheckoutSession.checkoutSession.id", base,
		[]keyCase{
			{"AnotherPlan", map[string]any{"lookupKey": "pro_monthly"}},
			{"AnotherQuantity", map[string]any{"quantity": 2}},
			{"PromotionCodesAllowed", map[string]any{"allowPromotionCodes": true}},
			{"AnotherModeAndPlan", map[string]any{"mode": "PAYMENT", "lookupKey": "credits_100"}},
		},
		[]keyCase{
			{"TheDefaultQuantity", map[string]any{"quantity": nil}},
			{"TheDefaultPromotionCodeOption", map[string]any{"allowPromotionCodes": nil}},
		},
		sessions)
	sess, err := d.sc.CheckoutSessions.Get(first.CreateCheckoutSession.SessionID, nil)
	if err != nil || sess.Status != stripe.CheckoutSessionStatusOpen {
		t.Fatalf("the first session after refused requests: %+v, %v; want it open", sess, err)
	}
}
