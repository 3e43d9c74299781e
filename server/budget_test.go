package main

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/graph"
	"billingapi/graph/generated"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/google/uuid"
)

// inOneWindow waits, when less than need is left of the current minute,
// for the next one, so that what follows is counted in one rate-limit
// window.
func inOneWindow(t *testing.T, need time.Duration) {
	t.Helper()
	now := time.Now()
	if left := now.Truncate(time.Minute).Add(time.Minute).Sub(now); left < need {
		time.Sleep(left + 100*time.Millisecond)
	}
}

// workspaceSpent returns how many calls workspace ws has spent of its
// budget in the current window.
func (s *testServer) workspaceSpent(t *testing.T, ws string) int {
	t.Helper()
	n, err := s.Limiter.Spent(context.Background(), graph.WorkspaceBudget(uuid.MustParse(ws)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// userSpent returns how many calls user has spent of their own budget in
// the current window.
func (s *testServer) userSpent(t *testing.T, user string) int {
	t.Helper()
	n, err := s.Limiter.Spent(context.Background(), graph.UserBudget(user))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// customerOf makes workspace ws's Stripe customer (through a SetupIntent,
// as an owner's first card would) and returns its id.
func (w *paymentsWorld) customerOf(t *testing.T, owner, ws string) string {
	t.Helper()
	if r := w.gql(t, owner, `mutation($w: ID!) { createSetupIntent(workspaceId: $w, idempotencyKey: "first-card") { setupIntentId } }`,
		map[string]any{"w": ws}); r.Code() != "" {
		t.Fatalf("setup intent: %s", r.Raw)
	}
	id := uuid.MustParse(ws)
	row, err := w.DB.Workspace.Get(auth.NewContext(context.Background(), auth.SystemViewer(id)), id)
	if err != nil || row.StripeCustomerID == nil {
		t.Fatalf("customer of %s: %v", ws, err)
	}
	return *row.StripeCustomerID
}

// No member can make the owner RATE_LIMITED: a call refused for the
// caller's role, or for its input, spends nothing of the workspace's
// budget, however many such calls there are. Each caller's own budget
// still runs out.
func TestRefusedCallsSpendNothingOfTheWorkspacesBudget(t *testing.T) {
	const budget = 4
	w := newPaymentsWorld(t, testenv.Postgres(t), map[string]string{"RATE_LIMIT_PER_MINUTE": fmt.Sprint(budget)})
	members := []string{w.carol}
	for _, u := range []string{"erin", "frank"} {
		if r := w.addMember(t, w.alice, w.wsA, u, "MEMBER"); r.Code() != "" {
			t.Fatal(r.Raw)
		}
		members = append(members, w.token(t, u, false))
	}
	for _, u := range []string{"dave", "gina"} {
		if r := w.addMember(t, w.alice, w.wsA, u, "ADMIN"); r.Code() != "" {
			t.Fatal(r.Raw)
		}
	}
	dave := w.token(t, "dave", false)
	// A customer, so that the cards below are asked of Stripe; made by
	// another admin, so that the owner's and dave's budgets stay whole.
	w.customerOf(t, w.token(t, "gina", false), w.wsA)
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/payment_methods/pm_foreign",
		Body: `{"id":"pm_foreign","object":"payment_method","type":"card","customer":"cus_someone_else","card":{"brand":"visa","last4":"1111"}}`})
	w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/promotion_codes", Body: `{"object":"list","has_more":false,"data":[]}`})
	inOneWindow(t, 40*time.Second)
	spentBefore := w.workspaceSpent(t, w.wsA)

	type call struct {
		query string
		vars  map[string]any
	}
	ws := map[string]any{"w": w.wsA}
	ownerOnly := []call{
		{createPaymentMutation, paymentIn(w.wsA, nil)},
		{createCheckoutMutation, checkoutIn(w.wsA, nil)},
		{`mutation($w: ID!) { createSetupIntent(workspaceId: $w, idempotencyKey: "k") { setupIntentId } }`, ws},
		{`mutation($w: ID!) { createBillingPortalSession(workspaceId: $w) }`, ws},
		{`mutation($w: ID!) { cancelSubscription(input: {workspaceId: $w}) { status } }`, ws},
		{`mutation($w: ID!) { detachPaymentMethod(workspaceId: $w, paymentMethodId: "pm_foreign") { id } }`, ws},
	}
	// Each member: refused for their role until their own budget is
	// spent; together many times the workspace's budget.
	forbidden := 0
	for mi, m := range members {
		for i := range budget + 1 {
			c := ownerOnly[i%len(ownerOnly)]
			r := w.gql(t, m, c.query, c.vars)
			want := "FORBIDDEN"
			if i == budget {
				want = "RATE_LIMITED" // the member's own budget
			}
			if r.Code() != want {
				t.Fatalf("member %d's call %d: %s, want %s (the workspace has spent %d)", mi, i, r.Raw, want, w.workspaceSpent(t, w.wsA)-spentBefore)
			}
			if want == "FORBIDDEN" {
				forbidden++
			}
		}
	}
	// An admin's and the owner's bad input: checked here, or by Stripe (a
	// promotion code, whose card it is), NOT_FOUND of the thing named.
	bad := []struct {
		token string
		call
		code string
	}{
		{dave, call{createPaymentMutation, paymentIn(w.wsA, map[string]any{"amount": 0})}, "BAD_USER_INPUT"},
		{dave, call{createPaymentMutation, paymentIn(w.wsA, map[string]any{"currency": "XXX"})}, "BAD_USER_INPUT"},
		{dave, call{createCheckoutMutation, checkoutIn(w.wsA, map[string]any{"lookupKey": "no_such_plan"})}, "BAD_USER_INPUT"},
		{dave, call{`mutation { syncCheckoutSession(sessionId: "cs_unknown") { status } }`, nil}, "NOT_FOUND"},
		{w.alice, call{createSubscriptionMutation, map[string]any{"in": map[string]any{
			"workspaceId": w.wsA, "lookupKey": "starter_monthly", "promotionCode": "NOPE20"}}}, "BAD_USER_INPUT"},
		{w.alice, call{`mutation($w: ID!) { setDefaultPaymentMethod(workspaceId: $w, paymentMethodId: "pm_foreign") { id } }`, ws}, "NOT_FOUND"},
	}
	for i, b := range bad {
		if r := w.gql(t, b.token, b.query, b.vars); r.Code() != b.code {
			t.Fatalf("bad input %d: %s, want %s", i, r.Raw, b.code)
		}
	}
	if w.fake.Count("GET", "/v1/promotion_codes") == 0 || w.fake.Count("GET", "/v1/payment_methods/pm_foreign") == 0 {
		t.Fatal("the promotion code and the card were not asked of Stripe: the test no longer covers input only Stripe judges")
	}
	if n := w.workspaceSpent(t, w.wsA) - spentBefore; n != 0 {
		t.Fatalf("%d FORBIDDEN calls and %d bad inputs spent %d of the workspace's budget, want 0", forbidden, len(bad), n)
	}
	// The owner has 2 calls of their own left, and the workspace's budget
	// is as the refused calls found it.
	for i := range 2 {
		if r := w.gql(t, w.alice, createPaymentMutation, paymentIn(w.wsA, map[string]any{"idempotencyKey": fmt.Sprint("after-", i)})); r.Code() != "" {
			t.Fatalf("the owner's payment %d after %d refused calls: %s", i, forbidden+len(bad), r.Raw)
		}
	}
	if n := w.workspaceSpent(t, w.wsA) - spentBefore; n != 2 {
		t.Fatalf("the owner's two payments spent %d of the workspace's budget, want 2", n)
	}
}

// budgetCase is one @rateLimited mutation on its allowed path.
type budgetCase struct {
	// workspace: the call spends its workspace's budget; otherwise only
	// its caller's, which the directive spends up front.
	workspace bool
	// prepare readies workspace ws for the call (in the state its allowed
	// path needs) and returns the caller's token, the query and its
	// variables.
	prepare func(t *testing.T, ws string) (token, query string, vars map[string]any)
	// stripe, when set, scripts Stripe's answers for a call on ws that is
	// to reach Stripe.
	stripe func(t *testing.T, ws string)
}

// budgetCases are the @rateLimited mutations, each on its allowed path,
// by field name; admin is a platform admin's token.
func budgetCases(w *paymentsWorld, admin string) map[string]budgetCase {
	short := func(ws string) string { return strings.ReplaceAll(ws, "-", "")[:12] }
	subscribed := func(t *testing.T, ws string, cancelAtEnd bool) {
		t.Helper()
		w.customerOf(t, w.alice, ws)
		w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
			ID: "sub_" + short(ws), Status: "active", ItemID: "si_" + short(ws), PriceID: "price_starter_monthly", LookupKey: "starter_monthly",
			Quantity: 1, CancelAtPeriodEnd: cancelAtEnd, Metadata: map[string]string{"workspace_id": ws, "plan": "starter"},
			PeriodStart: time.Now(), PeriodEnd: time.Now().Add(30 * 24 * time.Hour),
		})})
		if r := w.gql(t, w.alice, createSubscriptionMutation, map[string]any{"in": map[string]any{"workspaceId": ws, "lookupKey": "starter_monthly"}}); r.Code() != "" {
			t.Fatalf("subscribe %s: %s", ws, r.Raw)
		}
	}
	subscriptionAnswer := func(cancelAtEnd bool, lookupKey string) func(t *testing.T, ws string) {
		return func(t *testing.T, ws string) {
			w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions/sub_" + short(ws), Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
				ID: "sub_" + short(ws), Status: "active", ItemID: "si_" + short(ws), PriceID: "price_" + lookupKey, LookupKey: lookupKey,
				Quantity: 1, CancelAtPeriodEnd: cancelAtEnd, Metadata: map[string]string{"workspace_id": ws, "plan": strings.Split(lookupKey, "_")[0]},
				PeriodStart: time.Now(), PeriodEnd: time.Now().Add(30 * 24 * time.Hour),
			})})
		}
	}
	cardOf := func(t *testing.T, ws string) {
		cus := w.customerOf(t, w.alice, ws)
		w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/payment_methods/pm_" + short(ws),
			Body: fmt.Sprintf(`{"id":"pm_%s","object":"payment_method","type":"card","customer":%q,"card":{"brand":"visa","last4":"4242"}}`, short(ws), cus)})
	}
	wsVars := func(ws string) map[string]any { return map[string]any{"w": ws} }
	return map[string]budgetCase{
		"createPaymentIntent": {workspace: true, prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			w.customerOf(t, w.alice, ws)
			return w.alice, createPaymentMutation, paymentIn(ws, nil)
		}},
		"createCheckoutSession": {workspace: true, prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			w.customerOf(t, w.alice, ws)
			return w.alice, createCheckoutMutation, checkoutIn(ws, map[string]any{"lookupKey": "credits_jpy", "mode": "PAYMENT"})
		}},
		// A read any member may make (the success page): spending the
		// workspace's budget would let members block its billing.
		"syncCheckoutSession": {prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			var created checkoutPayload
			w.gql(t, w.alice, createCheckoutMutation, checkoutIn(ws, map[string]any{"lookupKey": "credits_jpy", "mode": "PAYMENT"})).Decode(t, &created)
			id := created.CreateCheckoutSession.SessionID
			w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/checkout/sessions/" + id, Body: completedSession(id, "open", "unpaid", ws, "")})
			if r := w.addMember(t, w.alice, ws, "carol", "MEMBER"); r.Code() != "" {
				t.Fatal(r.Raw)
			}
			return w.carol, syncCheckoutMutation, map[string]any{"id": id}
		}},
		"createSubscription": {workspace: true, prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			w.customerOf(t, w.alice, ws)
			return w.alice, createSubscriptionMutation, map[string]any{"in": map[string]any{"workspaceId": ws, "lookupKey": "starter_monthly", "idempotencyKey": "sub-1"}}
		}, stripe: func(t *testing.T, ws string) {
			w.fake.On(stripefake.Rule{Method: "POST", Path: "/v1/subscriptions", Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
				ID: "sub_new_" + short(ws), Status: "active", ItemID: "si_new_" + short(ws), PriceID: "price_starter_monthly", LookupKey: "starter_monthly",
				Quantity: 1, Metadata: map[string]string{"workspace_id": ws, "plan": "starter"},
				PeriodStart: time.Now(), PeriodEnd: time.Now().Add(30 * 24 * time.Hour),
			})})
		}},
		"changeSubscriptionPlan": {workspace: true, prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			subscribed(t, ws, false)
			return w.alice, `mutation($w: ID!) { changeSubscriptionPlan(input: {workspaceId: $w, lookupKey: "pro_yearly"}) { plan } }`, wsVars(ws)
		}, stripe: subscriptionAnswer(false, "pro_yearly")},
		"cancelSubscription": {workspace: true, prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			subscribed(t, ws, false)
			return w.alice, `mutation($w: ID!) { cancelSubscription(input: {workspaceId: $w}) { cancelAtPeriodEnd } }`, wsVars(ws)
		}, stripe: subscriptionAnswer(true, "starter_monthly")},
		"resumeSubscription": {workspace: true, prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			subscribed(t, ws, true)
			return w.alice, `mutation($w: ID!) { resumeSubscription(input: {workspaceId: $w}) { cancelAtPeriodEnd } }`, wsVars(ws)
		}, stripe: subscriptionAnswer(false, "starter_monthly")},
		// A platform admin's: support's refunds spend their own budget,
		// not the workspace's, as before the budget moved to the hook.
		"refundPayment": {prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			pi := "pi_" + short(ws)
			return admin, refundMutation, refundIn(w.paidPaymentIn(t, admin, ws, pi), nil, "refund-1")
		}},
		"createBillingPortalSession": {workspace: true, prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			// No customer yet: the call makes it, and spends once.
			return w.alice, `mutation($w: ID!) { createBillingPortalSession(workspaceId: $w) }`, wsVars(ws)
		}},
		"createSetupIntent": {workspace: true, prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			return w.alice, `mutation($w: ID!) { createSetupIntent(workspaceId: $w, idempotencyKey: "card-2") { setupIntentId } }`, wsVars(ws)
		}},
		"setDefaultPaymentMethod": {workspace: true, prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			cardOf(t, ws)
			return w.alice, `mutation($w: ID!, $pm: String!) { setDefaultPaymentMethod(workspaceId: $w, paymentMethodId: $pm) { id } }`,
				map[string]any{"w": ws, "pm": "pm_" + short(ws)}
		}},
		"detachPaymentMethod": {workspace: true, prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			cardOf(t, ws)
			return w.alice, `mutation($w: ID!, $pm: String!) { detachPaymentMethod(workspaceId: $w, paymentMethodId: $pm) { id } }`,
				map[string]any{"w": ws, "pm": "pm_" + short(ws)}
		}},
		// Deleting a subscribed workspace cancels its subscription at
		// Stripe: the workspace's budget, once.
		"deleteWorkspace": {workspace: true, prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			subscribed(t, ws, false)
			return w.alice, `mutation($w: ID!) { deleteWorkspace(input: {workspaceId: $w}) { deletedAt } }`, wsVars(ws)
		}, stripe: func(t *testing.T, ws string) {
			w.fake.On(stripefake.Rule{Method: "DELETE", Path: "/v1/subscriptions/sub_" + short(ws), Times: 1, Body: stripefake.SubscriptionJSON(stripefake.Subscription{
				ID: "sub_" + short(ws), Status: "canceled", ItemID: "si_" + short(ws), PriceID: "price_starter_monthly", LookupKey: "starter_monthly",
				Quantity: 1, Metadata: map[string]string{"workspace_id": ws, "plan": "starter"},
				PeriodStart: time.Now(), PeriodEnd: time.Now().Add(30 * 24 * time.Hour),
			})})
		}},
		// The catalog's: no workspace's billing.
		"createProduct": {prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			return admin, createProductMutation, map[string]any{"in": map[string]any{"name": "Team", "plan": "team_" + short(ws)}}
		}},
		"createPrice": {prepare: func(t *testing.T, ws string) (string, string, map[string]any) {
			return admin, createPriceMutation, map[string]any{"in": priceInput(map[string]any{"lookupKey": "key_" + short(ws)})}
		}},
	}
}

// paidPaymentIn records a succeeded payment of workspace ws through a
// webhook and returns its id.
func (w *paymentsWorld) paidPaymentIn(t *testing.T, admin, ws, pi string) string {
	t.Helper()
	sendStripeEvent(t, w.testServer, "payment_intent.succeeded", stripefake.PaymentIntentJSON(pi, "succeeded", 2000, "usd",
		map[string]string{"workspace_id": ws, "user_id": "alice", "purpose": "credits_pack"}), time.Now())
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out struct {
			Workspace struct {
				Payments struct {
					Edges []struct {
						Node struct{ ID, Status, StripePaymentIntentID string }
					}
				}
			}
		}
		w.gql(t, admin, `query($id: ID!) { workspace(id: $id) { payments(first: 10) { edges { node { id status stripePaymentIntentId } } } } }`,
			map[string]any{"id": ws}).Decode(t, &out)
		for _, e := range out.Workspace.Payments.Edges {
			if e.Node.StripePaymentIntentID == pi && e.Node.Status == "SUCCEEDED" {
				return e.Node.ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("payment %s of %s never succeeded: %+v", pi, ws, out.Workspace.Payments.Edges)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rateLimitedFields returns the fields that carry @rateLimited in the
// schema the server runs, as "Type.field".
func rateLimitedFields() []string {
	var fields []string
	for _, def := range generated.NewExecutableSchema(generated.Config{}).Schema().Types {
		for _, f := range def.Fields {
			if f.Directives.ForName("rateLimited") != nil {
				fields = append(fields, def.Name+"."+f.Name)
			}
		}
	}
	slices.Sort(fields)
	return fields
}

// stripeCallsBut returns the requests Stripe received, but for price
// lookups: those go through the shared price cache, are the catalog's,
// and spend no workspace's budget.
func stripeCallsBut(fake *stripefake.Server) []stripefake.Request {
	return slices.DeleteFunc(fake.Requests(), func(r stripefake.Request) bool {
		return r.Method == "GET" && strings.HasPrefix(r.Path, "/v1/prices")
	})
}

// Every @rateLimited mutation, read from the schema so that a new one
// cannot be missed, spends on its allowed path one call of its caller's
// budget and exactly one of its workspace's (none, for the four that are
// not a workspace's billing made by its owners and admins); and with its
// workspace's budget spent it is refused RATE_LIMITED before any Stripe
// request, so that none reaches Stripe without spending it.
func TestEveryRateLimitedMutationSpendsItsBudgetBeforeStripe(t *testing.T) {
	w := newPaymentsWorld(t, testenv.Postgres(t), map[string]string{"RATE_LIMIT_PER_MINUTE": "100"})
	admin := w.token(t, "root", true)
	cases := budgetCases(w, admin)
	users := map[string]string{w.alice: "alice", w.carol: "carol", admin: "root"}
	var fields []string
	for _, f := range rateLimitedFields() {
		name, ok := strings.CutPrefix(f, "Mutation.")
		if !ok {
			t.Errorf("%s is rate-limited: only mutations are", f)
			continue
		}
		if _, ok := cases[name]; !ok {
			t.Errorf("%s is rate-limited but has no case here: add one, and have its billing method spend the workspace's budget", name)
		}
		fields = append(fields, name)
	}
	for name := range cases {
		if !slices.Contains(fields, name) {
			t.Errorf("case %s names no rate-limited field", name)
		}
	}
	if len(fields) < 14 {
		t.Fatalf("only %d rate-limited fields read from the schema: %v", len(fields), fields)
	}
	for _, field := range fields {
		c, ok := cases[field]
		if !ok {
			continue
		}
		t.Run(field, func(t *testing.T) {
			for _, exhausted := range []bool{true, false} {
				ws := w.createWorkspace(t, w.alice, field)
				token, query, vars := c.prepare(t, ws)
				if !regexp.MustCompile(`\b` + field + `\(`).MatchString(query) {
					t.Fatalf("the case's query does not call %s: %s", field, query)
				}
				refused := exhausted && c.workspace
				if c.stripe != nil && !refused {
					c.stripe(t, ws)
				}
				inOneWindow(t, 5*time.Second)
				if exhausted {
					for {
						_, allowed, _, err := w.Limiter.Take(context.Background(), graph.WorkspaceBudget(uuid.MustParse(ws)))
						if err != nil {
							t.Fatal(err)
						}
						if !allowed {
							break
						}
					}
				}
				user := users[token]
				wsBefore, userBefore, callsBefore := w.workspaceSpent(t, ws), w.userSpent(t, user), len(stripeCallsBut(w.fake))
				r := w.gql(t, token, query, vars)
				calls := stripeCallsBut(w.fake)[callsBefore:]
				if n := w.userSpent(t, user) - userBefore; n != 1 {
					t.Errorf("the call spent %d of its caller's budget, want 1", n)
				}
				spent := w.workspaceSpent(t, ws) - wsBefore
				switch {
				case refused:
					if r.Code() != "RATE_LIMITED" {
						t.Errorf("with the workspace's budget spent: %s, want RATE_LIMITED", r.Raw)
					} else if ra, _ := r.Errors[0].Extensions["retryAfter"].(float64); ra < 1 || ra > 60 {
						t.Errorf("retryAfter = %v", r.Errors[0].Extensions["retryAfter"])
					}
					for _, req := range calls {
						t.Errorf("refused for the workspace's budget, it still asked Stripe: %s %s", req.Method, req.Path)
					}
				case r.Code() != "":
					t.Fatalf("allowed call (workspace budget spent: %v): %s", exhausted, r.Raw)
				case c.workspace && spent != 1:
					t.Errorf("spent %d of the workspace's budget, want exactly 1", spent)
				case !c.workspace && spent != 0:
					t.Errorf("spent %d of the workspace's budget, want none", spent)
				case len(calls) == 0:
					t.Errorf("the allowed call asked nothing of Stripe: the case does not cover its path to Stripe")
				}
			}
		})
	}
}
