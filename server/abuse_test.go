package main

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"billingapi/ent/webhookevent"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/alicebob/miniredis/v2"
)

func TestGraphQLAbuseIsRefusedFast(t *testing.T) {
	s := startServer(t, testenv.SQLite(t), nil)
	tok := s.token(t, "alice", false)
	aliases := func(n int) string {
		var b strings.Builder
		b.WriteString("{ ")
		for i := range n {
			fmt.Fprintf(&b, "a%d: me { id } ", i)
		}
		b.WriteString("}")
		return b.String()
	}
	cases := []struct {
		name, query, code string
		vars              map[string]any
	}{
		{"ThousandAliases", aliases(1000), "GRAPHQL_VALIDATION_FAILED", nil},
		{"FragmentCycle", `{ me { ...A } } fragment A on User { workspaces { edges { node { members { edges { node { user { ...A } } } } } } } }`, "GRAPHQL_VALIDATION_FAILED", nil},
		{"DepthBomb", `{ me { workspaces { edges { node { members { edges { node { user { workspaces { edges { node { members { edges { node { user { id } } } } } } } } } } } } } } } }`, "GRAPHQL_VALIDATION_FAILED", nil},
		{"HugePage", `{ me { workspaces(first: 1000000) { totalCount } } }`, "COMPLEXITY_LIMIT_EXCEEDED", nil},
		{"PageAboveTheMaximum", `{ me { workspaces(first: 101) { totalCount } } }`, "BAD_USER_INPUT", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := s.gql(t, tok, tc.query, tc.vars)
			if r.Code() != tc.code {
				t.Fatalf("code = %q, want %q: %.300s", r.Code(), tc.code, r.Raw)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("refused after %s", d)
			}
		})
	}
	t.Run("FiftyAliasesAreFine", func(t *testing.T) {
		if r := s.gql(t, tok, aliases(50), nil); r.Code() != "" {
			t.Fatalf("50 aliases refused: %.300s", r.Raw)
		}
	})
	t.Run("HugeVariablesAreTooLarge", func(t *testing.T) {
		body := []byte(`{"query":"query($x: String) { me { id } }","variables":{"x":"` + strings.Repeat("x", 2<<20) + `"}}`)
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if r := s.do(t, req); r.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status = %d", r.Status)
		}
	})
}

func TestProductionHidesFieldSuggestions(t *testing.T) {
	dev := startServer(t, testenv.SQLite(t), nil)
	prod := startServer(t, testenv.Postgres(t), productionEnv(t, testenv.StripeMock(t)))
	const typo = `{ mee { id } }`
	if r := dev.gql(t, "", typo, nil); !strings.Contains(r.Raw, "Did you mean") {
		t.Fatalf("development gives no suggestion: %s", r.Raw)
	}
	if r := prod.gql(t, "", typo, nil); r.Code() != "GRAPHQL_VALIDATION_FAILED" || strings.Contains(r.Raw, "Did you mean") {
		t.Fatalf("production: %s", r.Raw)
	}
}

// Queries that ask Stripe are not rate-limited, so one operation may hold
// only a few of them: aliases of one such field must not fan out into
// hundreds of calls on the Stripe account's shared rate limit. Nor may
// aliased pages of a connection read thousands of rows.
func TestStripeReadsAndPagesAreBoundedPerOperation(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	aliased := func(n int, field string) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "a%d: %s ", i, strings.ReplaceAll(field, "$i", fmt.Sprint(i)))
		}
		return b.String()
	}
	inWorkspace := func(n int, field string) string {
		return fmt.Sprintf(`{ workspace(id: %q) { %s } }`, w.wsA, aliased(n, field))
	}
	cases := []struct {
		name, token, query, code string
	}{
		{"FivePaymentMethodLists", w.alice, inWorkspace(5, "paymentMethods { id }"), "COMPLEXITY_LIMIT_EXCEEDED"},
		{"FiveUpcomingInvoices", w.alice, inWorkspace(5, "upcomingInvoice { amountDue }"), "COMPLEXITY_LIMIT_EXCEEDED"},
		{"FiveBillingPages", w.alice, inWorkspace(5, "billing { access { level } }"), "COMPLEXITY_LIMIT_EXCEEDED"},
		{"FivePlanPreviews", w.alice, fmt.Sprintf("{ %s }", aliased(5, fmt.Sprintf(`previewPlanChange(workspaceId: %q, lookupKey: "pro_monthly") { amountDue }`, w.wsA))), "COMPLEXITY_LIMIT_EXCEEDED"},
		{"TwentyFivePriceLookupsAnonymously", "", fmt.Sprintf("{ %s }", aliased(25, `price(lookupKey: "spray_$i") { priceId }`)), "COMPLEXITY_LIMIT_EXCEEDED"},
		{"FiftyFullPagesOfPayments", w.alice, inWorkspace(50, "payments(first: 100) { edges { node { id } } }"), "COMPLEXITY_LIMIT_EXCEEDED"},
		{"FiftyFullPagesOfInvoices", w.alice, inWorkspace(50, "invoices(first: 100) { edges { node { id } } }"), "COMPLEXITY_LIMIT_EXCEEDED"},
		{"FiftyFullPagesOfCheckoutSessions", w.alice, inWorkspace(50, "checkoutSessions(first: 100) { edges { node { id } } }"), "COMPLEXITY_LIMIT_EXCEEDED"},
		{"FiftyFullPagesOfInvitations", w.alice, inWorkspace(50, "invitations(first: 100) { edges { node { id } } }"), "COMPLEXITY_LIMIT_EXCEEDED"},
		{"TwoPaymentMethodLists", w.alice, inWorkspace(2, "paymentMethods { id }"), ""},
		{"ThreePriceLookups", "", fmt.Sprintf("{ %s }", aliased(3, `price(lookupKey: "starter_monthly") { priceId }`)), ""},
		{"OneFullPageOfPayments", w.alice, inWorkspace(1, "payments(first: 100) { edges { node { id } } }"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(w.fake.Requests())
			r := w.gql(t, tc.token, tc.query, nil)
			if r.Code() != tc.code {
				t.Fatalf("code = %q, want %q: %.300s", r.Code(), tc.code, r.Raw)
			}
			if tc.code != "" {
				if n := len(w.fake.Requests()) - before; n != 0 {
					t.Errorf("a refused operation made %d Stripe calls", n)
				}
			}
		})
	}
}

// Allowed calls spend the caller's and the workspace's budgets: the owner
// is refused after RATE_LIMIT_PER_MINUTE payments, and so is an admin
// whose own budget is whole, once the workspace's is spent.
func TestStripeMutationsAreRateLimited(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), map[string]string{"RATE_LIMIT_PER_MINUTE": "3"})
	dave := w.token(t, "dave", false)
	if r := w.addMember(t, w.alice, w.wsA, "dave", "ADMIN"); r.Code() != "" {
		t.Fatal(r.Raw)
	}
	pay := func(token, key string) gqlResponse {
		ws := w.wsA
		if token == dave { // another spelling of the same workspace spends the same budget
			ws = strings.ToUpper(ws)
		}
		return w.gql(t, token, createPaymentMutation, paymentIn(ws, map[string]any{"idempotencyKey": key}))
	}
	inOneWindow(t, 10*time.Second)
	for i := range 3 {
		if r := pay(w.alice, fmt.Sprint("rl-a-", i)); r.Code() != "" {
			t.Fatalf("alice's call %d: %s", i, r.Raw)
		}
	}
	if n := w.workspaceSpent(t, w.wsA); n != 3 {
		t.Fatalf("3 allowed payments spent %d of the workspace's budget", n)
	}
	r := pay(w.alice, "rl-a-3")
	if r.Code() != "RATE_LIMITED" {
		t.Fatalf("the owner's fourth call: %s", r.Raw)
	}
	if ra, _ := r.Errors[0].Extensions["retryAfter"].(float64); ra < 1 || ra > 60 {
		t.Fatalf("retryAfter = %v", r.Errors[0].Extensions["retryAfter"])
	}
	// Dave's own budget has room, but the workspace's does not; the
	// refusal comes before Stripe is asked.
	created := w.fake.Count("POST", "/v1/payment_intents")
	if r := pay(dave, "rl-d-0"); r.Code() != "RATE_LIMITED" {
		t.Fatalf("an admin's call on the spent workspace: %s", r.Raw)
	}
	if n := w.fake.Count("POST", "/v1/payment_intents") - created; n != 0 {
		t.Fatalf("a call refused for the workspace's budget created %d PaymentIntents", n)
	}
	if n := w.userSpent(t, "dave"); n != 1 {
		t.Fatalf("dave's own budget spent %d, want 1", n)
	}
	// Queries are not limited.
	if r := w.gql(t, w.alice, `{ me { id } }`, nil); r.Code() != "" {
		t.Fatalf("a query after the limit: %s", r.Raw)
	}
}

// An outsider's calls naming a workspace spend only the outsider's own
// budget: were they to spend the workspace's, anyone could block its
// billing with a few refused requests a minute.
func TestOutsidersDoNotSpendAWorkspacesBudget(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), map[string]string{"RATE_LIMIT_PER_MINUTE": "3"})
	if time.Now().Second() > 55 {
		time.Sleep(6 * time.Second) // stay inside one minute window
	}
	var codes []string
	for i := range 5 { // bob is no member of alice's workspace
		r := w.gql(t, w.bob, createPaymentMutation, paymentIn(w.wsA, map[string]any{"idempotencyKey": fmt.Sprint("outsider-", i)}))
		codes = append(codes, r.Code())
	}
	if want := "[NOT_FOUND NOT_FOUND NOT_FOUND RATE_LIMITED RATE_LIMITED]"; fmt.Sprint(codes) != want {
		t.Errorf("the outsider's calls: %v, want %s", codes, want)
	}
	for i := range 3 {
		if r := w.gql(t, w.alice, createPaymentMutation, paymentIn(w.wsA, map[string]any{"idempotencyKey": fmt.Sprint("owner-", i)})); r.Code() != "" {
			t.Fatalf("the owner's call %d after the outsider's: %s", i, r.Raw)
		}
	}
}

func TestRateLimiterFailsClosedWhenRedisIsDown(t *testing.T) {
	mr := miniredis.RunT(t)
	w := newPaymentsWorld(t, testenv.SQLite(t), map[string]string{"REDIS_URL": "redis://" + mr.Addr()})
	mr.Close()
	if r := w.gql(t, w.alice, createPaymentMutation, paymentIn(w.wsA, nil)); r.Code() != "RATE_LIMITED" {
		t.Fatalf("a Stripe mutation without Redis: %s", r.Raw)
	}
	if r := w.gql(t, w.alice, `{ me { id workspaces { totalCount } } }`, nil); r.Code() != "" {
		t.Fatalf("a query without Redis: %s", r.Raw)
	}
	if r := w.gql(t, "", `{ plans { lookupKey } }`, nil); r.Code() != "" {
		t.Fatalf("plans without Redis: %s", r.Raw)
	}
}

// Anonymous price lookups that reach Stripe (keys outside the plan catalog
// that no cache holds) share one budget per minute, so that ever new keys
// cannot spend the Stripe account's rate limit, which every workspace's
// billing shares. A key asked again is answered from the cache, found or
// not, at no cost; the catalog's keys and signed-in callers spend nothing.
func TestAnonymousPriceLookupsShareOneBudget(t *testing.T) {
	s, fake := startCatalogServer(t, map[string]string{"RATE_LIMIT_PER_MINUTE": "3"})
	fake.SetPrices(append(catalogPrices(), stripefake.Price{LookupKey: "legacy_monthly", UnitAmount: 900, Currency: "usd",
		Interval: "month", Active: true, ProductID: "prod_legacy", ProductMetadata: map[string]string{"plan": "legacy"}})...)
	if time.Now().Second() > 55 {
		time.Sleep(6 * time.Second) // stay inside one minute window
	}
	price := func(token, key string) gqlResponse {
		return s.gql(t, token, `query($k: String!) { price(lookupKey: $k) { lookupKey } }`, map[string]any{"k": key})
	}
	stripeCalls := func() int { return fake.Count("GET", "/v1/prices") }
	var codes []string
	for _, key := range []string{"credits_jpy", "guess_1", "guess_2", "guess_3", "guess_4"} {
		codes = append(codes, price("", key).Code())
	}
	if want := "[ NOT_FOUND NOT_FOUND RATE_LIMITED RATE_LIMITED]"; fmt.Sprint(codes) != want {
		t.Fatalf("anonymous lookups of new keys: %v, want %s", codes, want)
	}
	if n := stripeCalls(); n != 3 {
		t.Fatalf("%d Stripe price lists for them, want 3: one per lookup within the budget", n)
	}
	r := price("", "guess_4")
	if ra, _ := r.Errors[0].Extensions["retryAfter"].(float64); r.Code() != "RATE_LIMITED" || ra < 1 || ra > 60 {
		t.Fatalf("a refused lookup: %s", r.Raw)
	}
	// Asked again: from the cache, found or not, without the budget.
	if r := price("", "credits_jpy"); r.Code() != "" {
		t.Fatalf("a cached key after the budget: %s", r.Raw)
	}
	if r := price("", "guess_1"); r.Code() != "NOT_FOUND" {
		t.Fatalf("a key Stripe had not, asked again: %s", r.Raw)
	}
	// The catalog's keys, cold, and a signed-in caller's new key still
	// reach Stripe.
	for _, q := range []struct{ token, key, code string }{
		{"", "starter_monthly", ""}, {"", "retired_plan", "NOT_FOUND"}, {s.token(t, "alice", false), "guess_5", "NOT_FOUND"},
	} {
		if r := price(q.token, q.key); r.Code() != q.code {
			t.Fatalf("%s after the anonymous budget: %s, want %q", q.key, r.Raw, q.code)
		}
	}
	if n := stripeCalls(); n != 6 {
		t.Fatalf("%d Stripe price lists in all, want 6", n)
	}
	// The service's own lookups spend nothing of it: a webhook for a
	// subscription on a plan outside the catalog, whose price no cache
	// holds, is applied with the anonymous budget spent.
	alice := s.token(t, "alice", false)
	ws := s.createWorkspace(t, alice, "legacy")
	event := stripefake.Event("evt_legacy_plan", "customer.subscription.updated", stripefake.SubscriptionJSON(stripefake.Subscription{
		ID: "sub_legacy", Status: "active", PriceID: "price_legacy_monthly", LookupKey: "legacy_monthly",
		Metadata: map[string]string{"workspace_id": ws, "plan": "legacy"},
	}), time.Now())
	if status, body := whPost(t, s, "/webhooks/stripe", event, whSign(event)); status != http.StatusOK {
		t.Fatalf("webhook: %d %s", status, body)
	}
	whWaitStatus(t, s, "evt_legacy_plan", webhookevent.StatusProcessed)
	if n := stripeCalls(); n != 7 {
		t.Fatalf("%d Stripe price lists in all, want 7: the worker's lookup of legacy_monthly", n)
	}
}
