package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v76"
)

func TestBillingPortalSession(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), map[string]string{"APP_BASE_URL": "https://app.example.com"})
	const q = `mutation($w: ID!, $r: String) { createBillingPortalSession(workspaceId: $w, returnUrl: $r) }`
	t.Run("OwnerGetsThePortalURL", func(t *testing.T) {
		var out struct{ CreateBillingPortalSession string }
		w.gql(t, w.alice, q, map[string]any{"w": w.wsA, "r": "https://app.example.com/settings/billing"}).Decode(t, &out)
		if !strings.HasPrefix(out.CreateBillingPortalSession, "https://") {
			t.Fatalf("portal URL = %q", out.CreateBillingPortalSession)
		}
		req, _ := w.fake.Last("POST", "/v1/billing_portal/sessions")
		if !strings.HasPrefix(req.Form.Get("customer"), "cus_") || req.Form.Get("return_url") != "https://app.example.com/settings/billing" ||
			req.Header.Get("Idempotency-Key") == "" {
			t.Fatalf("portal params = %v", req.Form)
		}
	})
	t.Run("DefaultReturnURL", func(t *testing.T) {
		w.gql(t, w.alice, q, map[string]any{"w": w.wsA})
		req, _ := w.fake.Last("POST", "/v1/billing_portal/sessions")
		if req.Form.Get("return_url") != "https://app.example.com/billing" {
			t.Fatalf("return_url = %q", req.Form.Get("return_url"))
		}
	})
	for name, tc := range map[string]struct {
		token, ret, code string
	}{
		"ForeignReturnURL":    {"alice", "https://evil.example/phish", "BAD_USER_INPUT"},
		"LookalikeReturnURL":  {"alice", "https://app.example.com.evil.example/", "BAD_USER_INPUT"},
		"PlainHTTPReturnURL":  {"alice", "http://app.example.com/billing", "BAD_USER_INPUT"},
		"UserInfoInReturnURL": {"alice", "https://user@app.example.com/", "BAD_USER_INPUT"},
		"MemberIsForbidden":   {"carol", "", "FORBIDDEN"},
		"OutsiderIsNotFound":  {"bob", "", "NOT_FOUND"},
		"AnonymousIsRefused":  {"", "", "UNAUTHENTICATED"},
	} {
		t.Run(name, func(t *testing.T) {
			tokens := map[string]string{"alice": w.alice, "carol": w.carol, "bob": w.bob, "": ""}
			vars := map[string]any{"w": w.wsA}
			if tc.ret != "" {
				vars["r"] = tc.ret
			}
			before := w.fake.Count("POST", "/v1/billing_portal/sessions")
			if r := w.gql(t, tokens[tc.token], q, vars); r.Code() != tc.code {
				t.Fatalf("code = %q, want %q: %s", r.Code(), tc.code, r.Raw)
			}
			if w.fake.Count("POST", "/v1/billing_portal/sessions") != before {
				t.Fatal("a refused request reached Stripe")
			}
		})
	}
}

func TestCreateSetupIntent(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	const q = `mutation($w: ID!, $k: String!) { createSetupIntent(workspaceId: $w, idempotencyKey: $k) { setupIntentId clientSecret } }`
	var out struct {
		CreateSetupIntent struct{ SetupIntentID, ClientSecret string }
	}
	w.gql(t, w.alice, q, map[string]any{"w": w.wsA, "k": "card-1"}).Decode(t, &out)
	if !strings.HasPrefix(out.CreateSetupIntent.SetupIntentID, "seti_") || out.CreateSetupIntent.ClientSecret == "" {
		t.Fatalf("setup intent = %+v", out.CreateSetupIntent)
	}
	req, _ := w.fake.Last("POST", "/v1/setup_intents")
	if !strings.HasPrefix(req.Form.Get("customer"), "cus_") || req.Form.Get("usage") != "off_session" ||
		req.Form.Get("metadata[workspace_id]") != w.wsA || req.Form.Get("metadata[purpose]") != "save_payment_method" ||
		req.Header.Get("Idempotency-Key") == "" {
		t.Fatalf("setup intent params = %v", req.Form)
	}
	for token, code := range map[string]string{w.carol: "FORBIDDEN", w.bob: "NOT_FOUND", "": "UNAUTHENTICATED"} {
		if r := w.gql(t, token, q, map[string]any{"w": w.wsA, "k": "x"}); r.Code() != code {
			t.Errorf("code = %q, want %q: %s", r.Code(), code, r.Raw)
		}
	}
	if r := w.gql(t, w.alice, q, map[string]any{"w": w.wsA, "k": "has space"}); r.Code() != "BAD_USER_INPUT" {
		t.Errorf("bad idempotency key: %s", r.Raw)
	}
}

func TestPaymentMethods(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	t.Cleanup(w.fake.ClearRules)
	const list = `query($w: ID!) { workspace(id: $w) { paymentMethods { id brand last4 expMonth expYear isDefault } } }`
	t.Run("NoCustomerNoCards", func(t *testing.T) {
		r := w.gql(t, w.carol, list, map[string]any{"w": w.wsA})
		if r.Code() != "" || !strings.Contains(r.Raw, `"paymentMethods":[]`) {
			t.Fatalf("before any customer: %s", r.Raw)
		}
	})
	// A customer with two saved cards, one of them the default.
	w.gql(t, w.alice, `mutation($w: ID!) { createSetupIntent(workspaceId: $w, idempotencyKey: "c") { setupIntentId } }`, map[string]any{"w": w.wsA})
	wsID := uuid.MustParse(w.wsA)
	ws, err := w.DB.Workspace.Get(auth.NewContext(context.Background(), auth.SystemViewer(wsID)), wsID)
	if err != nil || ws.StripeCustomerID == nil {
		t.Fatalf("customer: %v", err)
	}
	cus := *ws.StripeCustomerID
	card := func(id, brand, last4 string) string {
		return fmt.Sprintf(`{"id":%q,"object":"payment_method","type":"card","customer":%q,"card":{"brand":%q,"last4":%q,"exp_month":12,"exp_year":2030}}`, id, cus, brand, last4)
	}
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/customers/" + cus,
		Body: fmt.Sprintf(`{"id":%q,"object":"customer","invoice_settings":{"default_payment_method":"pm_default"}}`, cus)})
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/payment_methods",
		Body: `{"object":"list","has_more":false,"data":[` + card("pm_other", "mastercard", "4444") + `,` + card("pm_default", "visa", "4242") + `]}`})
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/payment_methods/pm_other", Body: card("pm_other", "mastercard", "4444")})
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/payment_methods/pm_foreign",
		Body: `{"id":"pm_foreign","object":"payment_method","type":"card","customer":"cus_someone_else","card":{"brand":"visa","last4":"1111"}}`})

	t.Run("MembersSeeDisplayFieldsDefaultFirst", func(t *testing.T) {
		var out struct {
			Workspace struct {
				PaymentMethods []struct {
					ID, Brand, Last4  string
					ExpMonth, ExpYear int
					IsDefault         bool
				}
			}
		}
		w.gql(t, w.carol, list, map[string]any{"w": w.wsA}).Decode(t, &out)
		pms := out.Workspace.PaymentMethods
		if len(pms) != 2 || pms[0].ID != "pm_default" || !pms[0].IsDefault || pms[0].Last4 != "4242" || pms[1].IsDefault || pms[1].ExpYear != 2030 {
			t.Fatalf("payment methods = %+v", pms)
		}
		req, _ := w.fake.Last("GET", "/v1/payment_methods")
		if req.Query.Get("customer") != cus || req.Query.Get("type") != "card" {
			t.Fatalf("listed with %v", req.Query)
		}
	})
	t.Run("SetDefaultUpdatesTheCustomer", func(t *testing.T) {
		r := w.gql(t, w.alice, `mutation($w: ID!) { setDefaultPaymentMethod(workspaceId: $w, paymentMethodId: "pm_other") { id } }`, map[string]any{"w": w.wsA})
		if r.Code() != "" {
			t.Fatal(r.Raw)
		}
		req, _ := w.fake.Last("POST", "/v1/customers/"+cus)
		if req.Form.Get("invoice_settings[default_payment_method]") != "pm_other" {
			t.Fatalf("customer update = %v", req.Form)
		}
	})
	// A subscription keeps a card of its own (saved on it when its first
	// invoice was paid), which Stripe charges before the customer's
	// default: the new default must reach it too, or invoices keep
	// charging the old card.
	t.Run("SetDefaultAlsoMovesTheSubscriptionsCard", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
			ID: "sub_cards", Status: "active", PriceID: "price_starter_monthly", LookupKey: "starter_monthly",
			Metadata: map[string]string{"workspace_id": w.wsA, "plan": "starter"},
		})})
		if r := w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": map[string]any{"workspaceId": w.wsA, "lookupKey": "starter_monthly"}}); r.Code() != "" {
			t.Fatal(r.Raw)
		}
		r := w.gql(t, w.alice, `mutation($w: ID!) { setDefaultPaymentMethod(workspaceId: $w, paymentMethodId: "pm_other") { id } }`, map[string]any{"w": w.wsA})
		if r.Code() != "" {
			t.Fatal(r.Raw)
		}
		req, ok := w.fake.Last("POST", "/v1/subscriptions/sub_cards")
		if !ok || req.Form.Get("default_payment_method") != "pm_other" {
			t.Fatalf("subscription update = %v (sent %v); want its card moved to pm_other", req.Form, ok)
		}
	})
	t.Run("DetachRemovesTheCard", func(t *testing.T) {
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/payment_methods/pm_other/detach", Times: 1, Body: `{"id":"pm_other","object":"payment_method","customer":null}`})
		r := w.gql(t, w.alice, `mutation($w: ID!) { detachPaymentMethod(workspaceId: $w, paymentMethodId: "pm_other") { id } }`, map[string]any{"w": w.wsA})
		if r.Code() != "" || w.fake.Count("POST", "/v1/payment_methods/pm_other/detach") != 1 {
			t.Fatalf("detach: %s", r.Raw)
		}
	})
	t.Run("AnotherCustomersCardIsNotFound", func(t *testing.T) {
		for _, m := range []string{"setDefaultPaymentMethod", "detachPaymentMethod"} {
			q := `mutation($w: ID!) { ` + m + `(workspaceId: $w, paymentMethodId: "pm_foreign") { id } }`
			if r := w.gql(t, w.alice, q, map[string]any{"w": w.wsA}); r.Code() != "NOT_FOUND" {
				t.Errorf("%s of a foreign card: %s", m, r.Raw)
			}
		}
		if w.fake.Count("POST", "/v1/payment_methods/pm_foreign/detach") != 0 {
			t.Fatal("a foreign card was detached")
		}
	})
	t.Run("RoleChecks", func(t *testing.T) {
		q := `mutation($w: ID!) { detachPaymentMethod(workspaceId: $w, paymentMethodId: "pm_default") { id } }`
		for token, code := range map[string]string{w.carol: "FORBIDDEN", w.bob: "NOT_FOUND", "": "UNAUTHENTICATED"} {
			if r := w.gql(t, token, q, map[string]any{"w": w.wsA}); r.Code() != code {
				t.Errorf("code = %q, want %q", r.Code(), code)
			}
		}
		if r := w.gql(t, w.bob, list, map[string]any{"w": w.wsA}); r.Code() != "NOT_FOUND" {
			t.Errorf("outsider lists A's cards: %s", r.Raw)
		}
	})
	t.Run("CardWebhooksReachSubscribers", func(t *testing.T) {
		c := beDial(t, w.testServer, w.carol)
		c.subscribe(t, "1", w.wsA)
		beWaitSubscribers(t, w.testServer, 1, 3*time.Second)
		sendStripeEvent(t, w.testServer, "payment_method.attached", card("pm_new", "visa", "0005"), time.Now())
		if ev := c.nextEvent(t, "1"); ev.Type != "payment_method.attached" {
			t.Fatalf("event = %+v", ev)
		}
	})
}

func TestUpcomingInvoiceAndPlanChangePreview(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	t.Cleanup(w.fake.ClearRules)
	const upcoming = `query($w: ID!) { workspace(id: $w) { upcomingInvoice { amountDue currency nextPaymentAttempt prorationAmount } } }`
	if r := w.gql(t, w.carol, upcoming, map[string]any{"w": w.wsA}); r.Code() != "" || !strings.Contains(r.Raw, `"upcomingInvoice":null`) {
		t.Fatalf("without a subscription: %s", r.Raw)
	}
	activeSubscription(w, "POST", "/v1/subscriptions", "active", false, "starter_monthly", "price_starter_monthly")
	if r := w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": map[string]any{"workspaceId": w.wsA, "lookupKey": "starter_monthly"}}); r.Code() != "" {
		t.Fatal(r.Raw)
	}
	next := time.Now().Add(20 * 24 * time.Hour).Unix()
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/invoices/upcoming", Body: fmt.Sprintf(`{"object":"invoice","amount_due":4200,"currency":"usd",
		"next_payment_attempt":%d,"lines":{"object":"list","data":[{"id":"il_1","amount":-1500,"proration":true},{"id":"il_2","amount":12000,"proration":true},{"id":"il_3","amount":1500,"proration":false}]}}`, next)})

	var out struct {
		Workspace struct {
			UpcomingInvoice struct {
				AmountDue, ProrationAmount int
				Currency                   string
				NextPaymentAttempt         *string
			}
		}
	}
	w.gql(t, w.carol, upcoming, map[string]any{"w": w.wsA}).Decode(t, &out)
	u := out.Workspace.UpcomingInvoice
	if u.AmountDue != 4200 || u.Currency != "usd" || u.NextPaymentAttempt == nil || u.ProrationAmount != 10500 {
		t.Fatalf("upcoming = %+v", u)
	}
	req, _ := w.fake.Last("GET", "/v1/invoices/upcoming")
	if req.Query.Get("subscription") != "sub_test" || !strings.HasPrefix(req.Query.Get("customer"), "cus_") {
		t.Fatalf("upcoming asked with %v", req.Query)
	}

	const preview = `query($w: ID!) { previewPlanChange(workspaceId: $w, lookupKey: "pro_yearly", quantity: 3) { amountDue prorationAmount } }`
	if r := w.gql(t, w.alice, preview, map[string]any{"w": w.wsA}); r.Code() != "" || !strings.Contains(r.Raw, `"prorationAmount":10500`) {
		t.Fatalf("preview: %s", r.Raw)
	}
	req, _ = w.fake.Last("GET", "/v1/invoices/upcoming")
	if req.Query.Get("subscription_items[0][id]") != "si_test" || req.Query.Get("subscription_items[0][price]") != "price_pro_yearly" ||
		req.Query.Get("subscription_items[0][quantity]") != "3" || req.Query.Get("subscription_proration_behavior") != "create_prorations" {
		t.Fatalf("preview asked with %v", req.Query)
	}
	if w.fake.Count("POST", "/v1/subscriptions/sub_test") != 0 {
		t.Fatal("a preview changed the subscription")
	}
	for token, code := range map[string]string{w.carol: "FORBIDDEN", w.bob: "NOT_FOUND", "": "UNAUTHENTICATED"} {
		if r := w.gql(t, token, preview, map[string]any{"w": w.wsA}); r.Code() != code {
			t.Errorf("preview as %q: code = %q, want %q", token, r.Code(), code)
		}
	}
	if r := w.gql(t, w.bob, upcoming, map[string]any{"w": w.wsA}); r.Code() != "NOT_FOUND" {
		t.Errorf("outsider reads A's upcoming invoice: %s", r.Raw)
	}

	// Stripe embeds only an invoice's first lines: with more of them (many
	// prorations after seat changes), the prorations are summed over all.
	w.fake.ClearRules()
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/invoices/upcoming", Body: `{"object":"invoice","amount_due":900,"currency":"usd",
		"lines":{"object":"list","has_more":true,"data":[{"id":"il_1","amount":100,"proration":true}]}}`})
	var page []string
	for i := range 12 {
		page = append(page, fmt.Sprintf(`{"id":"il_p%d","object":"line_item","amount":100,"proration":true}`, i))
	}
	page = append(page, `{"id":"il_plan","object":"line_item","amount":2900,"proration":false}`)
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/invoices/upcoming/lines",
		Body: `{"object":"list","url":"/v1/invoices/upcoming/lines","has_more":false,"data":[` + strings.Join(page, ",") + `]}`})
	for _, q := range []string{upcoming, preview} {
		if r := w.gql(t, w.alice, q, map[string]any{"w": w.wsA}); r.Code() != "" || !strings.Contains(r.Raw, `"prorationAmount":1200`) {
			t.Errorf("an invoice of 13 lines: %s; want the 12 prorations summed", r.Raw)
		}
	}
	req, _ = w.fake.Last("GET", "/v1/invoices/upcoming/lines")
	inv, _ := w.fake.Last("GET", "/v1/invoices/upcoming")
	if req.Query.Get("subscription_items[0][price]") != "price_pro_yearly" || req.Query.Get("subscription_proration_behavior") != "create_prorations" ||
		req.Query.Get("subscription_proration_date") == "" || req.Query.Get("subscription_proration_date") != inv.Query.Get("subscription_proration_date") {
		t.Errorf("the preview's lines asked with %v, its invoice with %v; want the same change as of the same instant", req.Query, inv.Query)
	}
}

func TestWorkspaceBillingInOneField(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	t.Cleanup(w.fake.ClearRules)
	const q = `query($w: ID!) { workspace(id: $w) { billing { plan status access { level warning } trialEnd cancelAtPeriodEnd
		defaultPaymentMethod { last4 } nextInvoiceAt nextInvoiceAmount currency actionsNeeded } } }`
	t.Run("NoSubscription", func(t *testing.T) {
		r := w.gql(t, w.carol, q, map[string]any{"w": w.wsA})
		if r.Code() != "" || !strings.Contains(r.Raw, `"level":"FREE"`) || !strings.Contains(r.Raw, `"actionsNeeded":[]`) || !strings.Contains(r.Raw, `"plan":null`) {
			t.Fatalf("free workspace: %s", r.Raw)
		}
	})
	// A past-due subscription, a default card expiring this month, and the
	// next invoice in ten days.
	w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
		ID: "sub_bill", Status: "past_due", PriceID: "price_starter_monthly", LookupKey: "starter_monthly", CancelAtPeriodEnd: true,
		Metadata: map[string]string{"workspace_id": w.wsA, "plan": "starter"},
	})})
	if r := w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": map[string]any{"workspaceId": w.wsA, "lookupKey": "starter_monthly"}}); r.Code() != "" {
		t.Fatal(r.Raw)
	}
	now := time.Now()
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/payment_methods", Body: fmt.Sprintf(`{"object":"list","data":[{"id":"pm_1","object":"payment_method","type":"card","card":{"brand":"visa","last4":"4242","exp_month":%d,"exp_year":%d}}]}`, int(now.Month()), now.Year())})
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/customers/", PathPrefix: true, Body: `{"id":"cus_x","object":"customer","invoice_settings":{"default_payment_method":"pm_1"}}`})
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/invoices/upcoming", Body: fmt.Sprintf(`{"object":"invoice","amount_due":1500,"currency":"usd","next_payment_attempt":%d}`, now.Add(240*time.Hour).Unix())})
	var out struct {
		Workspace struct {
			Billing struct {
				Plan, Status, Currency string
				Access                 struct{ Level string }
				CancelAtPeriodEnd      bool
				DefaultPaymentMethod   *struct{ Last4 string }
				NextInvoiceAt          *string
				NextInvoiceAmount      int
				ActionsNeeded          []string
			}
		}
	}
	w.gql(t, w.carol, q, map[string]any{"w": w.wsA}).Decode(t, &out)
	b := out.Workspace.Billing
	if b.Plan != "starter" || b.Status != "PAST_DUE" || b.Access.Level != "LIMITED" || !b.CancelAtPeriodEnd ||
		b.DefaultPaymentMethod == nil || b.DefaultPaymentMethod.Last4 != "4242" || b.NextInvoiceAt == nil ||
		b.NextInvoiceAmount != 1500 || b.Currency != "usd" || strings.Join(b.ActionsNeeded, ",") != "UPDATE_PAYMENT_METHOD" {
		t.Fatalf("billing = %+v", b)
	}
	if r := w.gql(t, w.bob, q, map[string]any{"w": w.wsA}); r.Code() != "NOT_FOUND" {
		t.Fatalf("outsider reads A's billing: %s", r.Raw)
	}
}

// What the billing page reads from Stripe may be missing without taking
// the page down: a subscription set to cancel has no next invoice (Stripe
// answers invoice_upcoming_none), and while Stripe is down the status and
// access, from our own records, are still answered, with the error beside
// them instead of a card or an invoice that looks like none.
func TestBillingPageWithoutWhatStripeCannotAnswer(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	t.Cleanup(w.fake.ClearRules)
	w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
		ID: "sub_ending", Status: "active", PriceID: "price_starter_monthly", LookupKey: "starter_monthly", CancelAtPeriodEnd: true,
		Metadata: map[string]string{"workspace_id": w.wsA, "plan": "starter"},
	})})
	if r := w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": map[string]any{"workspaceId": w.wsA, "lookupKey": "starter_monthly"}}); r.Code() != "" {
		t.Fatal(r.Raw)
	}
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/invoices/upcoming", Status: 404,
		Body: stripefake.StripeError("invalid_request_error", "invoice_upcoming_none", "", "No upcoming invoices for customer: cus_x")})
	const page = `query($w: ID!) { workspace(id: $w) { id upcomingInvoice { amountDue } billing { access { level } defaultPaymentMethod { last4 } nextInvoiceAmount } } }`
	r := w.gql(t, w.carol, page, map[string]any{"w": w.wsA})
	if r.Code() != "" || !strings.Contains(r.Raw, `"upcomingInvoice":null`) || !strings.Contains(r.Raw, `"level":"FULL"`) {
		t.Fatalf("a subscription ending at the period's end: %s; want no upcoming invoice, and the page", r.Raw)
	}
	preview := w.gql(t, w.alice, `query($w: ID!) { previewPlanChange(workspaceId: $w, lookupKey: "pro_monthly") { amountDue } }`, map[string]any{"w": w.wsA})
	if preview.Code() != "BAD_USER_INPUT" {
		t.Fatalf("previewing a change of a subscription that ends: %s; want BAD_USER_INPUT", preview.Raw)
	}

	w.fake.ClearRules()
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/", PathPrefix: true, Status: 503,
		Body: stripefake.StripeError("api_error", "", "", "Stripe is down.")})
	r = w.gql(t, w.carol, `query($w: ID!) { workspace(id: $w) { id billing { access { level } defaultPaymentMethod { last4 } } } }`, map[string]any{"w": w.wsA})
	var out struct {
		Workspace *struct {
			ID      string
			Billing *struct {
				Access               struct{ Level string }
				DefaultPaymentMethod *struct{ Last4 string }
			}
		}
	}
	if err := json.Unmarshal(r.Data, &out); err != nil {
		t.Fatal(err)
	}
	if out.Workspace == nil || out.Workspace.Billing == nil || out.Workspace.Billing.Access.Level != "FULL" || out.Workspace.Billing.DefaultPaymentMethod != nil {
		t.Fatalf("while Stripe is down: %s; want the workspace and its access, without a card", r.Raw)
	}
	if r.Code() != "PAYMENT_PROVIDER_UNAVAILABLE" {
		t.Fatalf("while Stripe is down: %s; want the error beside the page", r.Raw)
	}
}

// A SetupIntent's idempotency key has nothing to bind beyond its scope (the
// workspace and the user): the same key answers the same SetupIntent, and
// Stripe makes nothing more; another key makes another.
func TestSetupIntentIdempotencyKeyAnswersTheFirst(t *testing.T) {
	d := newSandboxDriver(t)
	const q = `mutation($w: ID!, $k: String!) { createSetupIntent(workspaceId: $w, idempotencyKey: $k) { setupIntentId } }`
	create := func(key string) string {
		t.Helper()
		var out struct {
			CreateSetupIntent struct{ SetupIntentID string }
		}
		if err := d.gql(q, map[string]any{"w": d.ws, "k": key}, &out); err != nil {
			t.Fatal(err)
		}
		return out.CreateSetupIntent.SetupIntentID
	}
	intents := func() int { return sandboxCount(t, d.sc.SetupIntents.List(&stripe.SetupIntentListParams{})) }
	first := create("card-1")
	before := intents()
	if again := create("card-1"); again != first {
		t.Fatalf("the same key answered %s, then %s", first, again)
	}
	if n := intents(); n != before {
		t.Fatalf("the same key made %d more SetupIntents", n-before)
	}
	if other := create("card-2"); other == first {
		t.Fatal("another key answered the first SetupIntent")
	}
}
