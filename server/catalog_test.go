package main

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"billingapi/ent/webhookevent"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/alicebob/miniredis/v2"
	"github.com/stripe/stripe-go/v76"
)

// catalogPrices is the Stripe catalog the catalog tests run against.
func catalogPrices() []stripefake.Price {
	return []stripefake.Price{
		{LookupKey: "starter_monthly", UnitAmount: 1500, Currency: "usd", Interval: "month", Active: true,
			ProductID: "prod_starter", ProductName: "Starter", ProductDescription: "For small teams",
			ProductMetadata: map[string]string{"plan": "starter", "feature_set": "projects, reports,,api"}},
		{LookupKey: "pro_yearly", UnitAmount: 120000, Currency: "eur", Interval: "year", Active: true,
			ProductID: "prod_pro", ProductName: "Pro",
			ProductMetadata: map[string]string{"plan": "pro", "feature_set": "projects,reports,api,sso"}},
		{LookupKey: "credits_jpy", UnitAmount: 5000, Currency: "jpy", Active: true,
			ProductID: "prod_credits", ProductName: "Credits"},
	}
}

// startCatalogServer starts a server whose Stripe is a recording fake in
// front of stripe-mock, with the catalog above.
func startCatalogServer(t *testing.T, env map[string]string) (*testServer, *stripefake.Server) {
	t.Helper()
	fake := stripefake.New(t, testenv.StripeMock(t))
	fake.SetPrices(catalogPrices()...)
	vars := map[string]string{"PLAN_LOOKUP_KEYS": "starter_monthly,pro_yearly,retired_plan"}
	for k, v := range env {
		vars[k] = v
	}
	return startServer(t, testenv.SQLite(t), withStripe(fake.URL, vars)), fake
}

const plansQuery = `{ plans { lookupKey priceId unitAmount currency interval intervalCount
	product { id name description plan features } } }`

type planJSON struct {
	LookupKey     string
	PriceID       string
	UnitAmount    int
	Currency      string
	Interval      *string
	IntervalCount *int
	Product       struct {
		ID, Name    string
		Description *string
		Plan        *string
		Features    []string
	}
}

func TestPlans(t *testing.T) {
	s, fake := startCatalogServer(t, nil)

	t.Run("ResolvedFromLookupKeysInOneStripeCall", func(t *testing.T) {
		var out struct{ Plans []planJSON }
		s.gql(t, "", plansQuery, nil).Decode(t, &out)
		if n := fake.Count("GET", "/v1/prices"); n != 1 {
			t.Fatalf("Stripe price lists = %d, want 1", n)
		}
		req, _ := fake.Last("GET", "/v1/prices")
		got := stripefake.ListParam(req.Query, "lookup_keys")
		slices.Sort(got)
		if strings.Join(got, ",") != "pro_yearly,retired_plan,starter_monthly" {
			t.Errorf("lookup_keys sent = %v", got)
		}
		if got := stripefake.ListParam(req.Query, "expand"); len(got) != 1 || got[0] != "data.product" {
			t.Errorf("expand sent = %v, want [data.product]", got)
		}
		if len(out.Plans) != 2 {
			t.Fatalf("plans = %+v, want starter_monthly and pro_yearly (retired_plan has no price)", out.Plans)
		}
		st, pro := out.Plans[0], out.Plans[1]
		if st.LookupKey != "starter_monthly" || st.PriceID != "price_starter_monthly" || st.UnitAmount != 1500 ||
			st.Currency != "usd" || *st.Interval != "MONTH" || *st.IntervalCount != 1 {
			t.Errorf("starter = %+v", st)
		}
		if st.Product.ID != "prod_starter" || st.Product.Name != "Starter" || *st.Product.Plan != "starter" ||
			*st.Product.Description != "For small teams" || strings.Join(st.Product.Features, "|") != "projects|reports|api" {
			t.Errorf("starter product = %+v", st.Product)
		}
		if pro.LookupKey != "pro_yearly" || pro.UnitAmount != 120000 || pro.Currency != "eur" || *pro.Interval != "YEAR" {
			t.Errorf("pro = %+v", pro)
		}
	})
	t.Run("WarmCacheMakesNoStripeCall", func(t *testing.T) {
		before := fake.Count("GET", "/v1/prices")
		for range 5 {
			var out struct{ Plans []planJSON }
			s.gql(t, "", plansQuery, nil).Decode(t, &out)
			if len(out.Plans) != 2 {
				t.Fatalf("plans = %d", len(out.Plans))
			}
		}
		if n := fake.Count("GET", "/v1/prices") - before; n != 0 {
			t.Fatalf("warm cache made %d Stripe calls", n)
		}
	})
	t.Run("PriceByLookupKey", func(t *testing.T) {
		var out struct{ Price planJSON }
		s.gql(t, "", `{ price(lookupKey: "credits_jpy") { lookupKey unitAmount currency interval product { name features } } }`, nil).Decode(t, &out)
		if out.Price.LookupKey != "credits_jpy" || out.Price.UnitAmount != 5000 || out.Price.Currency != "jpy" ||
			out.Price.Interval != nil || out.Price.Product.Name != "Credits" || len(out.Price.Product.Features) != 0 {
			t.Fatalf("price = %+v", out.Price)
		}
	})
	t.Run("UnknownLookupKeyIsNotFoundAndCachedAsUnknown", func(t *testing.T) {
		before := fake.Count("GET", "/v1/prices")
		for range 3 {
			r := s.gql(t, "", `{ price(lookupKey: "no_such_price") { priceId } }`, nil)
			if r.Code() != "NOT_FOUND" {
				t.Fatalf("code = %q: %s", r.Code(), r.Raw)
			}
		}
		if n := fake.Count("GET", "/v1/prices") - before; n != 1 {
			t.Fatalf("unknown key looked up %d times, want 1 (negative cache)", n)
		}
	})
	t.Run("MalformedLookupKeyIsBadInputWithoutStripeCall", func(t *testing.T) {
		before := fake.Count("GET", "/v1/prices")
		for _, k := range []string{"", "has space", strings.Repeat("k", 201), "emoji😀"} {
			r := s.gql(t, "", `query($k: String!) { price(lookupKey: $k) { priceId } }`, map[string]any{"k": k})
			if r.Code() != "BAD_USER_INPUT" {
				t.Errorf("key %q: code = %q", k, r.Code())
			}
		}
		if n := fake.Count("GET", "/v1/prices") - before; n != 0 {
			t.Fatalf("malformed keys made %d Stripe calls", n)
		}
	})
	t.Run("InvalidationByLookupKeyPriceAndProduct", func(t *testing.T) {
		ctx := context.Background()
		for _, inv := range []struct {
			name string
			do   func() error
		}{
			{"LookupKey", func() error { return s.Prices.InvalidateLookupKeys(ctx, "starter_monthly") }},
			{"Price", func() error { return s.Prices.InvalidatePrice(ctx, "price_pro_yearly") }},
			{"Product", func() error { return s.Prices.InvalidateProduct(ctx, "prod_starter") }},
		} {
			s.gql(t, "", plansQuery, nil) // warm
			before := fake.Count("GET", "/v1/prices")
			if err := inv.do(); err != nil {
				t.Fatalf("%s: %v", inv.name, err)
			}
			s.gql(t, "", plansQuery, nil)
			if n := fake.Count("GET", "/v1/prices") - before; n != 1 {
				t.Errorf("after invalidating by %s: %d Stripe calls, want 1", inv.name, n)
			}
			req, _ := fake.Last("GET", "/v1/prices")
			if inv.name != "Price" && len(stripefake.ListParam(req.Query, "lookup_keys")) != 1 {
				t.Errorf("after invalidating by %s the reload asked for %v, want only the invalidated key", inv.name, stripefake.ListParam(req.Query, "lookup_keys"))
			}
		}
	})
}

func TestPlansColdCacheBurstMakesOneStripeCall(t *testing.T) {
	s, fake := startCatalogServer(t, nil)
	// A slow Stripe makes the burst overlap for certain.
	fake.On(stripefake.Rule{Method: "GET", Path: "/v1/prices", Delay: 300 * time.Millisecond, Forward: true})
	const burst = 200
	var wg sync.WaitGroup
	errs := make(chan string, burst)
	for range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := s.gql(t, "", `{ plans { lookupKey } }`, nil)
			if len(r.Errors) > 0 || !strings.Contains(r.Raw, "pro_yearly") {
				errs <- r.Raw
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("a burst request failed: %s", e)
	}
	if n := fake.Count("GET", "/v1/prices"); n != 1 {
		t.Fatalf("%d concurrent cold-cache requests made %d Stripe calls, want 1", burst, n)
	}
}

func TestPriceCacheTTLExpires(t *testing.T) {
	s, fake := startCatalogServer(t, map[string]string{"PRICE_CACHE_TTL": "1s"})
	s.gql(t, "", plansQuery, nil)
	s.gql(t, "", plansQuery, nil)
	if n := fake.Count("GET", "/v1/prices"); n != 1 {
		t.Fatalf("within the TTL: %d Stripe calls, want 1", n)
	}
	time.Sleep(1100 * time.Millisecond)
	s.gql(t, "", plansQuery, nil)
	if n := fake.Count("GET", "/v1/prices"); n != 2 {
		t.Fatalf("after the TTL: %d Stripe calls, want 2", n)
	}
}

func TestPlansAnswerWhenRedisIsDown(t *testing.T) {
	mr := miniredis.RunT(t)
	s, fake := startCatalogServer(t, map[string]string{"REDIS_URL": "redis://" + mr.Addr()})
	var out struct{ Plans []planJSON }
	s.gql(t, "", plansQuery, nil).Decode(t, &out)
	mr.Close() // Redis stops mid-test
	// The near cache notices through its invalidation subscription, and
	// from then on holds nothing: every read goes through to Stripe.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.logs.String(), "near cache: invalidation subscription lost") {
		if time.Now().After(deadline) {
			t.Fatal("the near cache did not notice that Redis stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 3 {
		var out struct{ Plans []planJSON }
		s.gql(t, "", plansQuery, nil).Decode(t, &out)
		if len(out.Plans) != 2 {
			t.Fatalf("plans without Redis = %+v", out.Plans)
		}
	}
	if n := fake.Count("GET", "/v1/prices"); n != 4 {
		t.Errorf("Stripe calls = %d, want 1 warm-up + 3 read-throughs", n)
	}
	if n := strings.Count(s.logs.String(), "price cache: Redis unavailable"); n != 1 {
		t.Errorf("degradation logged %d times, want once:\n%s", n, s.logs.String())
	}
}

func TestStripeConfig(t *testing.T) {
	t.Run("TestModeKeys", func(t *testing.T) {
		s, _ := startCatalogServer(t, nil)
		var out struct {
			StripeConfig struct {
				PublishableKey *string
				Mode           *string
			}
		}
		s.gql(t, "", `{ stripeConfig { publishableKey mode } }`, nil).Decode(t, &out)
		if out.StripeConfig.PublishableKey == nil || *out.StripeConfig.PublishableKey != "pk_test_123" || *out.StripeConfig.Mode != "TEST" {
			t.Fatalf("stripeConfig = %+v", out.StripeConfig)
		}
	})
	t.Run("NoStripeConfigured", func(t *testing.T) {
		s := startServer(t, testenv.SQLite(t), nil)
		r := s.gql(t, "", `{ stripeConfig { publishableKey mode } }`, nil)
		if r.Code() != "" || !strings.Contains(r.Raw, `"publishableKey":null`) || !strings.Contains(r.Raw, `"mode":null`) {
			t.Fatalf("stripeConfig without keys: %s", r.Raw)
		}
		if r := s.gql(t, "", `{ plans { priceId } }`, nil); r.Code() != "" || !strings.Contains(r.Raw, `"plans":[]`) {
			t.Fatalf("plans with no catalog: %s", r.Raw)
		}
		if r := s.gql(t, "", `{ price(lookupKey: "x") { priceId } }`, nil); r.Code() != "PAYMENT_PROVIDER_UNAVAILABLE" {
			t.Fatalf("price without Stripe: %s", r.Raw)
		}
	})
}

const createProductMutation = `mutation($in: CreateProductInput!) { createProduct(input: $in) { id name description plan features } }`
const createPriceMutation = `mutation($in: CreatePriceInput!) { createPrice(input: $in) { lookupKey priceId unitAmount currency interval intervalCount } }`

func TestDynamicPricing(t *testing.T) {
	s, fake := startCatalogServer(t, nil)
	admin, user := s.token(t, "root", true), s.token(t, "alice", false)

	t.Run("AdminCreatesProduct", func(t *testing.T) {
		r := s.gql(t, admin, createProductMutation, map[string]any{"in": map[string]any{
			"name": "Team", "description": "For teams", "plan": "team", "features": []string{"projects", "sso"},
		}})
		if len(r.Errors) > 0 {
			t.Fatalf("createProduct: %s", r.Raw)
		}
		req, ok := fake.Last("POST", "/v1/products")
		if !ok {
			t.Fatal("no product create reached Stripe")
		}
		if req.Form.Get("name") != "Team" || req.Form.Get("description") != "For teams" ||
			req.Form.Get("metadata[plan]") != "team" || req.Form.Get("metadata[feature_set]") != "projects,sso" {
			t.Errorf("product params sent = %v", req.Form)
		}
		if req.Header.Get("Idempotency-Key") == "" {
			t.Error("product create sent without an Idempotency-Key")
		}
	})
	t.Run("RetriedProductCreateReusesIdempotencyKey", func(t *testing.T) {
		in := map[string]any{"in": map[string]any{"name": "Solo", "plan": "solo", "idempotencyKey": "k1"}}
		s.gql(t, admin, createProductMutation, in)
		first, _ := fake.Last("POST", "/v1/products")
		s.gql(t, admin, createProductMutation, in)
		second, _ := fake.Last("POST", "/v1/products")
		if first.Header.Get("Idempotency-Key") != second.Header.Get("Idempotency-Key") {
			t.Error("a retried createProduct sent a different idempotency key")
		}
		in["in"].(map[string]any)["idempotencyKey"] = "k2"
		s.gql(t, admin, createProductMutation, in)
		third, _ := fake.Last("POST", "/v1/products")
		if third.Header.Get("Idempotency-Key") == first.Header.Get("Idempotency-Key") {
			t.Error("a new idempotencyKey did not change Stripe's idempotency key")
		}
	})
	t.Run("AdminCreatesRecurringPriceAndItsCacheEntryIsDropped", func(t *testing.T) {
		s.gql(t, "", `{ price(lookupKey: "starter_monthly") { priceId } }`, nil) // warm
		r := s.gql(t, admin, createPriceMutation, map[string]any{"in": map[string]any{
			"productId": "prod_starter", "unitAmount": 1900, "currency": "USD",
			"recurring": map[string]any{"interval": "MONTH", "intervalCount": 1},
			"lookupKey": "starter_monthly", "transferLookupKey": true,
		}})
		if len(r.Errors) > 0 {
			t.Fatalf("createPrice: %s", r.Raw)
		}
		req, _ := fake.Last("POST", "/v1/prices")
		want := map[string]string{
			"product": "prod_starter", "unit_amount": "1900", "currency": "usd", "lookup_key": "starter_monthly",
			"transfer_lookup_key": "true", "recurring[interval]": "month", "recurring[interval_count]": "1",
		}
		for k, v := range want {
			if req.Form.Get(k) != v {
				t.Errorf("%s sent = %q, want %q", k, req.Form.Get(k), v)
			}
		}
		if req.Header.Get("Idempotency-Key") == "" {
			t.Error("price create sent without an Idempotency-Key")
		}
		before := fake.Count("GET", "/v1/prices")
		s.gql(t, "", `{ price(lookupKey: "starter_monthly") { priceId } }`, nil)
		if fake.Count("GET", "/v1/prices") != before+1 {
			t.Error("the created lookup key was still served from the cache")
		}
	})
	t.Run("OneTimePrice", func(t *testing.T) {
		r := s.gql(t, admin, createPriceMutation, map[string]any{"in": map[string]any{
			"productId": "prod_credits", "unitAmount": 500, "currency": "jpy", "lookupKey": "credits_small",
		}})
		if len(r.Errors) > 0 {
			t.Fatalf("createPrice: %s", r.Raw)
		}
		req, _ := fake.Last("POST", "/v1/prices")
		if req.Form.Get("recurring[interval]") != "" || req.Form.Get("unit_amount") != "500" {
			t.Errorf("one-time price params = %v", req.Form)
		}
	})

	refusals := []struct {
		name, token, query string
		in                 map[string]any
		code               string
	}{
		{"NonAdminCannotCreateProduct", user, createProductMutation, map[string]any{"name": "X", "plan": "x"}, "FORBIDDEN"},
		{"AnonymousCannotCreateProduct", "", createProductMutation, map[string]any{"name": "X", "plan": "x"}, "UNAUTHENTICATED"},
		{"NonAdminCannotCreatePrice", user, createPriceMutation, priceInput(nil), "FORBIDDEN"},
		{"EmptyProductName", admin, createProductMutation, map[string]any{"name": " ", "plan": "x"}, "BAD_USER_INPUT"},
		{"PlanNotSnakeCase", admin, createProductMutation, map[string]any{"name": "X", "plan": "Big Plan"}, "BAD_USER_INPUT"},
		{"FeatureWithComma", admin, createProductMutation, map[string]any{"name": "X", "plan": "x", "features": []string{"a,b"}}, "BAD_USER_INPUT"},
		{"ZeroAmount", admin, createPriceMutation, priceInput(map[string]any{"unitAmount": 0}), "BAD_USER_INPUT"},
		{"NegativeAmount", admin, createPriceMutation, priceInput(map[string]any{"unitAmount": -100}), "BAD_USER_INPUT"},
		{"AboveStripeMaximum", admin, createPriceMutation, priceInput(map[string]any{"unitAmount": 100000000}), "BAD_USER_INPUT"},
		{"UnknownCurrency", admin, createPriceMutation, priceInput(map[string]any{"currency": "xyz"}), "BAD_USER_INPUT"},
		{"LookupKeyWithSpace", admin, createPriceMutation, priceInput(map[string]any{"lookupKey": "a b"}), "BAD_USER_INPUT"},
		{"LookupKeyTooLong", admin, createPriceMutation, priceInput(map[string]any{"lookupKey": strings.Repeat("a", 201)}), "BAD_USER_INPUT"},
		{"NotAProductID", admin, createPriceMutation, priceInput(map[string]any{"productId": "price_123"}), "BAD_USER_INPUT"},
		{"IntervalCountTooLarge", admin, createPriceMutation, priceInput(map[string]any{"recurring": map[string]any{"interval": "MONTH", "intervalCount": 37}}), "BAD_USER_INPUT"},
		{"IntervalCountZero", admin, createPriceMutation, priceInput(map[string]any{"recurring": map[string]any{"interval": "YEAR", "intervalCount": 0}}), "BAD_USER_INPUT"},
		{"FloatAmount", admin, createPriceMutation, priceInput(map[string]any{"unitAmount": 10.5}), "GRAPHQL_VALIDATION_FAILED"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fake.Requests())
			r := s.gql(t, tc.token, tc.query, map[string]any{"in": tc.in})
			if r.Code() != tc.code {
				t.Fatalf("code = %q, want %q: %s", r.Code(), tc.code, r.Raw)
			}
			if n := len(fake.Requests()) - before; n != 0 {
				t.Fatalf("a refused request made %d Stripe calls", n)
			}
		})
	}
}

// priceInput is a valid CreatePriceInput with some fields replaced.
func priceInput(with map[string]any) map[string]any {
	in := map[string]any{"productId": "prod_starter", "unitAmount": 1000, "currency": "usd", "lookupKey": "valid_key"}
	for k, v := range with {
		in[k] = v
	}
	return in
}

func TestStripeOutageOnPlansIsProviderUnavailable(t *testing.T) {
	s, fake := startCatalogServer(t, nil)
	fake.On(stripefake.Rule{Method: "GET", Path: "/v1/prices", Status: http.StatusInternalServerError,
		Body: stripefake.StripeError("api_error", "", "", "SENTINEL internal Stripe text")})
	r := s.gql(t, "", plansQuery, nil)
	if r.Code() != "PAYMENT_PROVIDER_UNAVAILABLE" {
		t.Fatalf("code = %q: %s", r.Code(), r.Raw)
	}
	if strings.Contains(r.Raw, "SENTINEL") {
		t.Fatalf("Stripe's text reached the client: %s", r.Raw)
	}
}

// TestPublicResponseCache: a repeated catalog query is answered from the
// public response cache, so a change in Stripe shows only once Stripe's
// event about it arrives (price.updated), and then at once; queries that
// differ (variables, fields) are answered apart.
func TestPublicResponseCache(t *testing.T) {
	s, fake := startCatalogServer(t, nil)
	amount := func(t *testing.T) int {
		t.Helper()
		var out struct{ Plans []planJSON }
		s.gql(t, "", plansQuery, nil).Decode(t, &out)
		if len(out.Plans) == 0 || out.Plans[0].LookupKey != "starter_monthly" {
			t.Fatalf("plans = %+v", out.Plans)
		}
		return out.Plans[0].UnitAmount
	}
	if got := amount(t); got != 1500 {
		t.Fatalf("first answer: %d", got)
	}
	changed := catalogPrices()
	changed[0].UnitAmount = 1700
	fake.SetPrices(changed...)
	if got := amount(t); got != 1500 {
		t.Fatalf("without an event the cached answer should stand, got %d", got)
	}
	event := stripefake.Event("evt_price_changed", "price.updated",
		`{"id":"price_starter_monthly","object":"price","lookup_key":"starter_monthly"}`, time.Now())
	if status, body := whPost(t, s, "/webhooks/stripe", event, whSign(event)); status != http.StatusOK {
		t.Fatalf("webhook: %d %s", status, body)
	}
	whWaitStatus(t, s, "evt_price_changed", webhookevent.StatusSkipped)
	if got := amount(t); got != 1700 {
		t.Fatalf("after price.updated: %d, want 1700", got)
	}

	const byKey = `query($k: String!) { price(lookupKey: $k) { lookupKey unitAmount } }`
	for _, c := range []struct {
		key    string
		amount int
	}{{"starter_monthly", 1700}, {"pro_yearly", 120000}, {"starter_monthly", 1700}} {
		var out struct {
			Price struct {
				LookupKey  string
				UnitAmount int
			}
		}
		s.gql(t, "", byKey, map[string]any{"k": c.key}).Decode(t, &out)
		if out.Price.LookupKey != c.key || out.Price.UnitAmount != c.amount {
			t.Errorf("price(%s) = %+v, want %d", c.key, out.Price, c.amount)
		}
	}
	// An error is not kept: an unknown key is NOT_FOUND each time.
	for range 2 {
		if code := s.gql(t, "", byKey, map[string]any{"k": "no_such_plan"}).Code(); code != "NOT_FOUND" {
			t.Errorf("unknown lookup key: %s", code)
		}
	}
}

// TestPublicResponseCacheOverWebsocket: a catalog query sent over a
// websocket gets one answer and completes, whether it ran or came from
// the response cache (a transport that asks for responses until there are
// none must not be fed the cached one forever).
func TestPublicResponseCacheOverWebsocket(t *testing.T) {
	s, _ := startCatalogServer(t, nil)
	bc := beDial(t, s, "")
	for _, id := range []string{"cold", "warm"} {
		wsSend(t, bc.c, map[string]any{"id": id, "type": "subscribe",
			"payload": map[string]any{"query": `{ stripeConfig { mode } }`}})
		if m := bc.expect(t, "next", id); !strings.Contains(string(m.Payload), `"mode":"TEST"`) {
			t.Fatalf("%s: %s", id, m.Payload)
		}
		bc.expect(t, "complete", id)
	}
	bc.expectNothing(t, "after two completed queries", 300*time.Millisecond)
}

// A catalog create's idempotency key is bound to every parameter: the same
// key with any other one is refused on idempotencyKey (Stripe's own record
// of the key refuses it: the catalog keeps none of ours), and Stripe
// makes nothing more.
func TestCatalogIdempotencyKeysBindEveryParameter(t *testing.T) {
	d := newSandboxDriver(t)
	var productID string
	t.Run("Product", func(t *testing.T) {
		products := func() int { return sandboxCount(t, d.sc.Products.List(&stripe.ProductListParams{})) }
		base := map[string]any{"name": "Idem Pro", "description": "For idempotent teams", "plan": "idem_pro",
			"features": []string{"projects", "sso"}, "idempotencyKey": "product-1"}
		productID = d.assertKeyBindsEveryParameter(t, d.admin, createProductMutation, "createProduct.id", base,
			[]keyCase{
				{"AnotherName", map[string]any{"name": "Idem Team"}},
				{"AnotherDescription", map[string]any{"description": "For everyone"}},
				{"NoDescription", map[string]any{"description": nil}},
				{"AnotherPlan", map[string]any{"plan": "idem_team"}},
				{"AnotherFeature", map[string]any{"features": []string{"projects", "audit_log"}}},
				{"NoFeatures", map[string]any{"features": nil}},
			},
			[]keyCase{{"TheNameAmidSpaces", map[string]any{"name": "  Idem Pro "}}},
			products)
	})
	t.Run("Price", func(t *testing.T) {
		if productID == "" {
			t.Skip("no product")
		}
		other, err := d.sc.Products.New(&stripe.ProductParams{Name: stripe.String("Other"), Metadata: map[string]string{"plan": "other"}})
		if err != nil {
			t.Fatal(err)
		}
		prices := func() int { return sandboxCount(t, d.sc.Prices.List(&stripe.PriceListParams{})) }
		base := map[string]any{"productId": productID, "unitAmount": 1500, "currency": "usd",
			"recurring": map[string]any{"interval": "MONTH", "intervalCount": 1}, "lookupKey": "idem_pro_monthly",
			"transferLookupKey": false, "idempotencyKey": "price-1"}
		d.assertKeyBindsEveryParameter(t, d.admin, createPriceMutation, "createPrice.priceId", base,
			[]keyCase{
				{"AnotherProduct", map[string]any{"productId": other.ID}},
				{"AnotherAmount", map[string]any{"unitAmount": 1600}},
				{"AnotherCurrency", map[string]any{"currency": "eur"}},
				{"NoRecurrence", map[string]any{"recurring": nil}},
				{"AnotherInterval", map[string]any{"recurring": map[string]any{"interval": "YEAR", "intervalCount": 1}}},
				{"AnotherIntervalCount", map[string]any{"recurring": map[string]any{"interval": "MONTH", "intervalCount": 3}}},
				{"AnotherLookupKey", map[string]any{"lookupKey": "idem_pro_monthly_2"}},
				{"TheLookupKeyTransferred", map[string]any{"transferLookupKey": true}},
			},
			[]keyCase{
				{"TheCurrencyInCapitals", map[string]any{"currency": "USD"}},
				{"TheDefaultIntervalCount", map[string]any{"recurring": map[string]any{"interval": "MONTH"}}},
			},
			prices)
	})
}
