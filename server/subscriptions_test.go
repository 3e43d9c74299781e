package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"billingapi/ent/membership"
	"billingapi/ent/privacy"
	"billingapi/ent/webhookevent"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/stripe/stripe-go/v76"
)

const createSubscriptionMutation = `mutation($in: CreateSubscriptionInput!) {
	createSubscription(input: $in) { clientSecret subscription { id stripeSubscriptionId status plan lookupKey quantity cancelAtPeriodEnd trialEnd } }
}`

const accessQuery = `query($id: ID!) { workspace(id: $id) { access { level warning features } subscription { status plan cancelAtPeriodEnd } } }`

type accessJSON struct {
	Workspace struct {
		Access struct {
			Level    string
			Warning  *string
			Features []string
		}
		Subscription *struct {
			Status, Plan      string
			CancelAtPeriodEnd bool
		}
	}
}

func (w *paymentsWorld) access(t *testing.T, token, ws string) accessJSON {
	t.Helper()
	var out accessJSON
	w.gql(t, token, accessQuery, map[string]any{"id": ws}).Decode(t, &out)
	return out
}

// activeSubscription scripts Stripe's answer to the next subscription call.
func activeSubscription(w *paymentsWorld, method, path, status string, cancelAtEnd bool, lookupKey, priceID string) {
	w.fake.On(stripefake.Rule{Method: method, Path: path, Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
		ID: "sub_test", Status: status, CustomerID: "cus_x", ItemID: "si_test", PriceID: priceID, LookupKey: lookupKey,
		Quantity: 2, CancelAtPeriodEnd: cancelAtEnd,
		Metadata:    map[string]string{"workspace_id": w.wsA, "plan": strings.Split(lookupKey, "_")[0]},
		PeriodStart: time.Now(), PeriodEnd: time.Now().Add(30 * 24 * time.Hour), ClientSecret: "pi_sub_secret_1",
	})})
}

func TestSubscriptionLifecycle(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			w := newPaymentsWorld(t, backend.URL(t), nil)
			t.Cleanup(w.fake.ClearRules)

			t.Run("NoSubscriptionIsTheFreeLevel", func(t *testing.T) {
				a := w.access(t, w.carol, w.wsA)
				if a.Workspace.Access.Level != "FREE" || a.Workspace.Subscription != nil {
					t.Fatalf("access = %+v", a.Workspace)
				}
			})
			t.Run("CreateSendsDefaultIncompleteExpandAndMetadata", func(t *testing.T) {
				activeSubscription(w, "POST", "/v1/subscriptions", "incomplete", false, "starter_monthly", "price_starter_monthly")
				var out struct {
					CreateSubscription struct {
						ClientSecret *string
						Subscription struct {
							StripeSubscriptionID, Status, Plan, LookupKey string
							Quantity                                      int
						}
					}
				}
				w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": map[string]any{
					"workspaceId": w.wsA, "lookupKey": "starter_monthly", "quantity": 2, "idempotencyKey": "sub-1",
				}}).Decode(t, &out)
				got := out.CreateSubscription
				if got.Subscription.StripeSubscriptionID != "sub_test" || got.Subscription.Status != "INCOMPLETE" ||
					got.Subscription.Plan != "starter" || got.Subscription.Quantity != 2 || got.ClientSecret == nil || *got.ClientSecret != "pi_sub_secret_1" {
					t.Fatalf("payload = %+v", got)
				}
				req, _ := w.fake.Last("POST", "/v1/subscriptions")
				want := map[string]string{
					"items[0][price]": "price_starter_monthly", "items[0][quantity]": "2",
					"metadata[workspace_id]": w.wsA, "metadata[plan]": "starter",
					"payment_behavior": "default_incomplete", "payment_settings[save_default_payment_method]": "on_subscription",
				}
				for k, v := range want {
					if req.Form.Get(k) != v {
						t.Errorf("%s sent = %q, want %q", k, req.Form.Get(k), v)
					}
				}
				if exp := stripefake.ListParam(req.Form, "expand"); !containsAll(exp, "latest_invoice.payment_intent") {
					t.Errorf("expand sent = %v", exp)
				}
				if req.Form.Get("trial_period_days") != "" || req.Header.Get("Idempotency-Key") == "" || !strings.HasPrefix(req.Form.Get("customer"), "cus_") {
					t.Errorf("trial %q, key %q, customer %q", req.Form.Get("trial_period_days"), req.Header.Get("Idempotency-Key"), req.Form.Get("customer"))
				}
				// Incomplete grants nothing yet, and the cache shows it at once.
				if a := w.access(t, w.carol, w.wsA); a.Workspace.Access.Level != "NONE" || a.Workspace.Subscription.Status != "INCOMPLETE" {
					t.Fatalf("access after create = %+v", a.Workspace)
				}
			})
			t.Run("SameKeyReturnsTheSameSubscription", func(t *testing.T) {
				before := w.fake.Count("POST", "/v1/subscriptions")
				r := w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": map[string]any{
					"workspaceId": w.wsA, "lookupKey": "starter_monthly", "quantity": 2, "idempotencyKey": "sub-1",
				}})
				if r.Code() != "" || !strings.Contains(r.Raw, "sub_test") || w.fake.Count("POST", "/v1/subscriptions") != before {
					t.Fatalf("retry: %s", r.Raw)
				}
			})
			t.Run("SecondLiveSubscriptionIsRefused", func(t *testing.T) {
				before := len(w.fake.Requests())
				r := w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": map[string]any{
					"workspaceId": w.wsA, "lookupKey": "pro_yearly", "idempotencyKey": "sub-2",
				}})
				if r.Code() != "BAD_USER_INPUT" || !strings.Contains(r.Errors[0].Message, "already has a subscription") {
					t.Fatalf("second subscription: %s", r.Raw)
				}
				if len(w.fake.Requests()) != before {
					t.Fatal("the refusal called Stripe")
				}
			})
			t.Run("ChangePlanSendsItemPriceQuantityAndProration", func(t *testing.T) {
				activeSubscription(w, "POST", "/v1/subscriptions/sub_test", "active", false, "pro_yearly", "price_pro_yearly")
				var out struct {
					ChangeSubscriptionPlan struct{ Status, Plan, LookupKey string }
				}
				w.gql(t, w.alice, `mutation($in: ChangeSubscriptionPlanInput!) { changeSubscriptionPlan(input: $in) { status plan lookupKey } }`,
					map[string]any{"in": map[string]any{"workspaceId": w.wsA, "lookupKey": "pro_yearly", "quantity": 5}}).Decode(t, &out)
				req, _ := w.fake.Last("POST", "/v1/subscriptions/sub_test")
				want := map[string]string{
					"items[0][id]": "si_test", "items[0][price]": "price_pro_yearly", "items[0][quantity]": "5",
					"proration_behavior": "create_prorations", "metadata[plan]": "pro", "metadata[workspace_id]": w.wsA,
				}
				for k, v := range want {
					if req.Form.Get(k) != v {
						t.Errorf("%s sent = %q, want %q", k, req.Form.Get(k), v)
					}
				}
				if req.Header.Get("Idempotency-Key") == "" {
					t.Error("no Idempotency-Key on the plan change")
				}
				if out.ChangeSubscriptionPlan.Status != "ACTIVE" || out.ChangeSubscriptionPlan.Plan != "pro" || out.ChangeSubscriptionPlan.LookupKey != "pro_yearly" {
					t.Fatalf("changed = %+v", out.ChangeSubscriptionPlan)
				}
				a := w.access(t, w.carol, w.wsA)
				if a.Workspace.Access.Level != "FULL" || strings.Join(a.Workspace.Access.Features, ",") != "projects,reports,api,sso" {
					t.Fatalf("access after the change = %+v", a.Workspace.Access)
				}
			})
			t.Run("ChangePlanWhoseInvoiceNeeds3DSAnswersRequiresAction", func(t *testing.T) {
				w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions/sub_test", Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
					ID: "sub_test", Status: "past_due", CustomerID: "cus_x", ItemID: "si_test", PriceID: "price_pro_yearly", LookupKey: "pro_yearly",
					Quantity: 5, Metadata: map[string]string{"workspace_id": w.wsA, "plan": "pro"},
					PeriodStart: time.Now(), PeriodEnd: time.Now().Add(365 * 24 * time.Hour),
					ClientSecret: "pi_sub_test_secret_3ds", PaymentStatus: "requires_action",
				})})
				r := w.gql(t, w.alice, `mutation($in: ChangeSubscriptionPlanInput!) { changeSubscriptionPlan(input: $in) { status lookupKey } }`,
					map[string]any{"in": map[string]any{"workspaceId": w.wsA, "lookupKey": "pro_yearly", "quantity": 5, "prorationBehavior": "ALWAYS_INVOICE"}})
				req, _ := w.fake.Last("POST", "/v1/subscriptions/sub_test")
				if exp := stripefake.ListParam(req.Form, "expand"); !containsAll(exp, "latest_invoice.payment_intent") {
					t.Errorf("expand sent = %v; want latest_invoice.payment_intent", exp)
				}
				if r.Code() != "REQUIRES_ACTION" || r.Errors[0].Extensions["paymentIntentId"] != "pi_sub_test" ||
					r.Errors[0].Extensions["clientSecret"] != "pi_sub_test_secret_3ds" || r.Errors[0].Extensions["status"] != "REQUIRES_ACTION" {
					t.Fatalf("want REQUIRES_ACTION with the invoice's PaymentIntent and client secret: %s", r.Raw)
				}
				if !strings.Contains(r.Raw, `"status":"PAST_DUE"`) || !strings.Contains(r.Raw, `"lookupKey":"pro_yearly"`) {
					t.Fatalf("want the changed subscription beside the error: %s", r.Raw)
				}
			})
			t.Run("ChangePlanWithoutProration", func(t *testing.T) {
				activeSubscription(w, "POST", "/v1/subscriptions/sub_test", "active", false, "starter_monthly", "price_starter_monthly")
				r := w.gql(t, w.alice, `mutation($in: ChangeSubscriptionPlanInput!) { changeSubscriptionPlan(input: $in) { status } }`,
					map[string]any{"in": map[string]any{"workspaceId": w.wsA, "lookupKey": "starter_monthly", "prorationBehavior": "NONE"}})
				req, _ := w.fake.Last("POST", "/v1/subscriptions/sub_test")
				if r.Code() != "" || req.Form.Get("proration_behavior") != "none" {
					t.Fatalf("%s; proration sent %q", r.Raw, req.Form.Get("proration_behavior"))
				}
			})
			t.Run("ResumeWithoutPendingCancelIsRefused", func(t *testing.T) {
				r := w.gql(t, w.alice, `mutation($w: ID!) { resumeSubscription(input: {workspaceId: $w}) { status } }`, map[string]any{"w": w.wsA})
				if r.Code() != "BAD_USER_INPUT" {
					t.Fatalf("resume: %s", r.Raw)
				}
			})
			t.Run("CancelAtPeriodEndThenResume", func(t *testing.T) {
				activeSubscription(w, "POST", "/v1/subscriptions/sub_test", "active", true, "starter_monthly", "price_starter_monthly")
				r := w.gql(t, w.alice, `mutation($w: ID!) { cancelSubscription(input: {workspaceId: $w}) { status cancelAtPeriodEnd } }`, map[string]any{"w": w.wsA})
				req, _ := w.fake.Last("POST", "/v1/subscriptions/sub_test")
				if r.Code() != "" || req.Form.Get("cancel_at_period_end") != "true" || !strings.Contains(r.Raw, `"cancelAtPeriodEnd":true`) {
					t.Fatalf("cancel: %s (sent %v)", r.Raw, req.Form)
				}
				if a := w.access(t, w.carol, w.wsA); a.Workspace.Access.Level != "FULL" || a.Workspace.Access.Warning == nil {
					t.Fatalf("access while ending = %+v", a.Workspace.Access)
				}
				activeSubscription(w, "POST", "/v1/subscriptions/sub_test", "active", false, "starter_monthly", "price_starter_monthly")
				r = w.gql(t, w.alice, `mutation($w: ID!) { resumeSubscription(input: {workspaceId: $w}) { cancelAtPeriodEnd } }`, map[string]any{"w": w.wsA})
				req, _ = w.fake.Last("POST", "/v1/subscriptions/sub_test")
				if r.Code() != "" || req.Form.Get("cancel_at_period_end") != "false" || !strings.Contains(r.Raw, `"cancelAtPeriodEnd":false`) {
					t.Fatalf("resume: %s (sent %v)", r.Raw, req.Form)
				}
			})
			t.Run("MemberOutsiderAndAnonymousAreRefused", func(t *testing.T) {
				before := len(w.fake.Requests())
				ops := map[string]string{
					"create": `mutation($w: ID!) { createSubscription(input: {workspaceId: $w, lookupKey: "pro_yearly"}) { clientSecret } }`,
					"change": `mutation($w: ID!) { changeSubscriptionPlan(input: {workspaceId: $w, lookupKey: "pro_yearly"}) { status } }`,
					"cancel": `mutation($w: ID!) { cancelSubscription(input: {workspaceId: $w}) { status } }`,
					"resume": `mutation($w: ID!) { resumeSubscription(input: {workspaceId: $w}) { status } }`,
				}
				for op, q := range ops {
					for who, want := range map[string]string{w.carol: "FORBIDDEN", w.bob: "NOT_FOUND", "": "UNAUTHENTICATED"} {
						if r := w.gql(t, who, q, map[string]any{"w": w.wsA}); r.Code() != want {
							t.Errorf("%s: code = %q, want %q: %s", op, r.Code(), want, r.Raw)
						}
					}
				}
				if len(w.fake.Requests()) != before {
					t.Fatal("a refused call reached Stripe")
				}
				// Bob's own workspace has no subscription to change.
				if r := w.gql(t, w.bob, ops["cancel"], map[string]any{"w": w.wsB}); r.Code() != "BAD_USER_INPUT" {
					t.Errorf("cancel without a subscription: %s", r.Raw)
				}
				if a := w.access(t, w.bob, w.wsB); a.Workspace.Access.Level != "FREE" {
					t.Errorf("bob's access = %+v", a.Workspace.Access)
				}
			})
			t.Run("CancelNowDeletesAndRevokes", func(t *testing.T) {
				activeSubscription(w, "DELETE", "/v1/subscriptions/sub_test", "canceled", false, "starter_monthly", "price_starter_monthly")
				r := w.gql(t, w.alice, `mutation($w: ID!) { cancelSubscription(input: {workspaceId: $w, atPeriodEnd: false}) { status } }`, map[string]any{"w": w.wsA})
				if r.Code() != "" || w.fake.Count("DELETE", "/v1/subscriptions/sub_test") != 1 || !strings.Contains(r.Raw, "CANCELED") {
					t.Fatalf("cancel now: %s", r.Raw)
				}
				if a := w.access(t, w.carol, w.wsA); a.Workspace.Access.Level != "NONE" || a.Workspace.Subscription.Status != "CANCELED" {
					t.Fatalf("access after cancel = %+v", a.Workspace)
				}
			})
			t.Run("NewSubscriptionAllowedAfterCancel", func(t *testing.T) {
				w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
					ID: "sub_second", Status: "trialing", PriceID: "price_pro_yearly", LookupKey: "pro_yearly",
					Metadata: map[string]string{"workspace_id": w.wsA, "plan": "pro"}, TrialEnd: time.Now().Add(14 * 24 * time.Hour),
				})})
				r := w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": map[string]any{
					"workspaceId": w.wsA, "lookupKey": "pro_yearly", "trialPeriodDays": 14, "idempotencyKey": "sub-3",
				}})
				req, _ := w.fake.Last("POST", "/v1/subscriptions")
				if r.Code() != "" || req.Form.Get("trial_period_days") != "14" || !strings.Contains(r.Raw, "TRIALING") {
					t.Fatalf("trial subscription: %s (trial sent %q)", r.Raw, req.Form.Get("trial_period_days"))
				}
				if a := w.access(t, w.carol, w.wsA); a.Workspace.Access.Level != "FULL" || a.Workspace.Subscription.Plan != "pro" {
					t.Fatalf("access while trialing = %+v", a.Workspace)
				}
			})
		})
	}
}

func TestCreateSubscriptionInputIsValidated(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	cases := map[string]map[string]any{
		"ZeroTrialDays":        {"trialPeriodDays": 0},
		"TrialTooLong":         {"trialPeriodDays": 731},
		"OneTimePrice":         {"lookupKey": "credits_jpy"},
		"UnknownLookupKey":     {"lookupKey": "nope"},
		"ZeroQuantity":         {"quantity": 0},
		"MalformedLookupKey":   {"lookupKey": "a b"},
		"IdempotencyKeySpaces": {"idempotencyKey": "a b"},
	}
	for name, with := range cases {
		t.Run(name, func(t *testing.T) {
			in := map[string]any{"workspaceId": w.wsA, "lookupKey": "starter_monthly"}
			for k, v := range with {
				in[k] = v
			}
			before := w.fake.Count("POST", "/v1/subscriptions")
			if r := w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": in}); r.Code() != "BAD_USER_INPUT" {
				t.Fatalf("code = %q: %s", r.Code(), r.Raw)
			}
			if w.fake.Count("POST", "/v1/subscriptions") != before {
				t.Fatal("refused input reached Stripe")
			}
		})
	}
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// TestEntitlementAnswerIsKeptUntilItsWorkspaceChanges: a user's repeated
// entitlement check is answered from the response cache, for that user
// only, until something it was built from changes: the status (through
// the webhook, the source of truth) or the user's membership.
func TestEntitlementAnswerIsKeptUntilItsWorkspaceChanges(t *testing.T) {
	for _, backend := range testenv.Databases() {
		t.Run(backend.Name, func(t *testing.T) {
			w := newPaymentsWorld(t, backend.URL(t), nil)
			const responses = "billingapi_response_cache_lookups_total"
			hits, misses := labels{"scope": "workspace", "result": "hit"}, labels{"scope": "workspace", "result": "miss"}
			// lookups runs do and returns the workspace-scope hits and
			// misses it made.
			// Every write's invalidation, and its echo, has been handled
			// before do starts (settleNear), so that the counts are do's.
			lookups := func(do func()) (hit, miss float64) {
				t.Helper()
				w.settleNear(t)
				before := scrapeMetrics(t, w.testServer)
				do()
				after := scrapeMetrics(t, w.testServer)
				return after.value(responses, hits) - before.value(responses, hits), after.value(responses, misses) - before.value(responses, misses)
			}
			level := func(token string) string {
				t.Helper()
				return w.access(t, token, w.wsA).Workspace.Access.Level
			}

			if hit, miss := lookups(func() {
				for range 3 {
					if got := level(w.carol); got != "FREE" {
						t.Fatalf("carol's level = %q", got)
					}
				}
			}); hit != 2 || miss != 1 {
				t.Fatalf("three checks: %v hits, %v misses; want 2 and 1", hit, miss)
			}
			if b := scrapeMetrics(t, w.testServer).value("billingapi_near_cache_bytes", labels{}); b <= 0 {
				t.Errorf("billingapi_near_cache_bytes = %v with an answer kept", b)
			}

			// Bob asks the very same query of a workspace he is not in:
			// carol's answer is not his, and his error is never kept.
			if hit, miss := lookups(func() {
				for range 2 {
					if r := w.gql(t, w.bob, accessQuery, map[string]any{"id": w.wsA}); r.Code() != "NOT_FOUND" {
						t.Fatalf("bob: %s", r.Raw)
					}
				}
			}); hit != 0 || miss != 2 {
				t.Fatalf("bob's checks: %v hits, %v misses; want 0 and 2", hit, miss)
			}

			// The webhook makes the workspace pay: the next check shows it.
			event := stripefake.Event("evt_cache_active", "customer.subscription.updated", stripefake.SubscriptionJSON(stripefake.Subscription{
				ID: "sub_cache", Status: "active", PriceID: "price_pro_yearly", LookupKey: "pro_yearly",
				Metadata: map[string]string{"workspace_id": w.wsA, "plan": "pro"},
			}), time.Now())
			if status, body := whPost(t, w.testServer, "/webhooks/stripe", event, whSign(event)); status != http.StatusOK {
				t.Fatalf("webhook: %d %s", status, body)
			}
			whWaitStatus(t, w.testServer, "evt_cache_active", webhookevent.StatusProcessed)
			// The status is refreshed after the event is marked processed:
			// wait for it through a query the response cache never keeps
			// (an inline fragment). It reads the near-cache status entry,
			// which goes with carol's answer when the group is dropped. The
			// deadline is well within the near cache's TTL (5 s since carol's
			// answer was kept), so only the invalidation can explain it.
			uncached := `query($id: ID!) { workspace(id: $id) { ... on Workspace { access { level } } } }`
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				var out accessJSON
				w.gql(t, w.alice, uncached, map[string]any{"id": w.wsA}).Decode(t, &out)
				if out.Workspace.Access.Level == "FULL" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the workspace's level 2 s after the webhook: %q, want FULL", out.Workspace.Access.Level)
				}
			}
			if hit, miss := lookups(func() {
				for range 2 {
					if got := level(w.carol); got != "FULL" {
						t.Fatalf("carol's level after the webhook = %q, want FULL", got)
					}
				}
			}); hit != 1 || miss != 1 {
				t.Fatalf("two checks after the webhook: %v hits, %v misses; want a miss, then a hit", hit, miss)
			}

			// A member added now sees the workspace at once, and the
			// membership's write drops the answers kept for the others.
			dave := w.token(t, "dave", false)
			if hit, miss := lookups(func() {
				for range 2 {
					if r := w.gql(t, dave, accessQuery, map[string]any{"id": w.wsA}); r.Code() != "NOT_FOUND" {
						t.Fatalf("dave before joining: %s", r.Raw)
					}
				}
			}); hit != 0 || miss != 2 {
				t.Fatalf("dave's checks before joining: %v hits, %v misses; want 0 and 2 (an error is never kept)", hit, miss)
			}
			if r := w.addMember(t, w.alice, w.wsA, "dave", "MEMBER"); r.Code() != "" {
				t.Fatal(r.Raw)
			}
			if hit, miss := lookups(func() {
				for _, who := range []string{dave, dave, w.carol} {
					if got := level(who); got != "FULL" {
						t.Fatalf("level after dave joined = %q", got)
					}
				}
			}); hit != 1 || miss != 2 {
				t.Fatalf("dave twice and carol once after dave joined: %v hits, %v misses; want 1 and 2 (carol's answer went with the membership write)", hit, miss)
			}

			// Carol's membership ends: her kept answer goes with it.
			if hit, miss := lookups(func() {
				if got := level(w.carol); got != "FULL" {
					t.Fatalf("carol's level = %q", got)
				}
			}); hit != 1 || miss != 0 {
				t.Fatalf("carol's check before she leaves: %v hits, %v misses; want her kept answer", hit, miss)
			}
			ctx := privacy.DecisionContext(context.Background(), privacy.Allow)
			if hit, miss := lookups(func() {
				if n, err := w.DB.Membership.Delete().Where(membership.UserID("carol")).Exec(ctx); err != nil || n != 1 {
					t.Fatalf("removing carol: %d rows, %v", n, err)
				}
				if r := w.gql(t, w.carol, accessQuery, map[string]any{"id": w.wsA}); r.Code() != "NOT_FOUND" {
					t.Fatalf("carol after leaving: %s", r.Raw)
				}
			}); hit != 0 || miss != 1 {
				t.Fatalf("carol's check after she left: %v hits, %v misses; want a miss", hit, miss)
			}

			// A query that reads more than the workspace's own fields is
			// never looked up.
			if hit, miss := lookups(func() {
				q := `query($id: ID!) { workspace(id: $id) { access { level } payments { totalCount } } }`
				for range 2 {
					if r := w.gql(t, dave, q, map[string]any{"id": w.wsA}); r.Code() != "" {
						t.Fatal(r.Raw)
					}
				}
			}); hit != 0 || miss != 0 {
				t.Fatalf("a query with payments: %v hits, %v misses; want no lookups", hit, miss)
			}
		})
	}
}

// An idempotency key is bound to every parameter of the subscription: the
// same key with another plan, quantity, trial or promotion code is refused
// on idempotencyKey (another plan used to be refused as a second
// subscription, on workspaceId), and Stripe makes nothing more.
func TestSubscriptionIdempotencyKeyBindsEveryParameter(t *testing.T) {
	d := newSandboxDriver(t)
	co, err := d.sc.Coupons.New(&stripe.CouponParams{PercentOff: stripe.Float64(10), Duration: stripe.String("once")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.sc.PromotionCodes.New(&stripe.PromotionCodeParams{Coupon: stripe.String(co.ID), Code: stripe.String("IDEM10")}); err != nil {
		t.Fatal(err)
	}
	subscriptions := func() int {
		return sandboxCount(t, d.sc.Subscriptions.List(&stripe.SubscriptionListParams{Status: stripe.String("all")}))
	}
	t.Run("WithoutAPromotionCode", func(t *testing.T) {
		base := map[string]any{"workspaceId": d.ws, "lookupKey": "starter_monthly", "quantity": 1, "idempotencyKey": "sub-1"}
		d.assertKeyBindsEveryParameter(t, d.token, createSubscriptionMutation, "createSubscription.subscription.id", base,
			[]keyCase{
				{"AnotherPlan", map[string]any{"lookupKey": "pro_monthly"}},
				{"AnotherQuantity", map[string]any{"quantity": 2}},
				{"ATrial", map[string]any{"trialPeriodDays": 14}},
				{"APromotionCode", map[string]any{"promotionCode": "IDEM10"}},
			},
			[]keyCase{{"TheDefaultQuantity", map[string]any{"quantity": nil}}},
			subscriptions)
	})
	// Codes are the same whatever their case and surrounding spaces, as
	// Stripe finds them.
	t.Run("WithAPromotionCode", func(t *testing.T) {
		if err := d.gql(`mutation($w: ID!) { cancelSubscription(input: {workspaceId: $w, atPeriodEnd: false}) { status } }`,
			map[string]any{"w": d.ws}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := d.until("canceled", isStatus("CANCELED", "")); err != nil {
			t.Fatal(err)
		}
		base := map[string]any{"workspaceId": d.ws, "lookupKey": "starter_monthly", "promotionCode": "IDEM10", "idempotencyKey": "sub-2"}
		d.assertKeyBindsEveryParameter(t, d.token, createSubscriptionMutation, "createSubscription.subscription.id", base,
			[]keyCase{{"NoPromotionCode", map[string]any{"promotionCode": nil}}},
			[]keyCase{{"TheCodeInOtherCaseAmidSpaces", map[string]any{"promotionCode": " idem10 "}}},
			subscriptions)
	})
}
