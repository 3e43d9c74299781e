package stripefake_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"
)

// newClient is a stripe-go client that talks to url and never retries, so
// that every call is exactly one request.
func newClient(url string) *client.API {
	return client.New(testenv.StripeMockKey, stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(url),
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	}))
}

// setup starts a fake in front of the shared stripe-mock.
func setup(t *testing.T) (*stripefake.Server, *client.API) {
	t.Helper()
	fake := stripefake.New(t, testenv.StripeMock(t))
	return fake, newClient(fake.URL)
}

func stripeErr(t *testing.T, err error) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want a *stripe.Error", err, err)
	}
	return se
}

func TestForwardsAndRecordsCustomerCreate(t *testing.T) {
	fake, sc := setup(t)

	params := &stripe.CustomerParams{Email: stripe.String("ada@example.com"), Name: stripe.String("Ada Lovelace")}
	params.AddMetadata("tenant", "t1")
	params.SetIdempotencyKey("idem-123")
	c, err := sc.Customers.New(params)
	if err != nil {
		t.Fatalf("create customer: %v", err)
	}
	// stripe-mock answered: a generated ID, and scalar params reflected.
	if !strings.HasPrefix(c.ID, "cus_") || c.Email != "ada@example.com" {
		t.Errorf("customer = {ID:%q Email:%q}, want a cus_ ID and the email sent", c.ID, c.Email)
	}

	if n := fake.Count(http.MethodPost, "/v1/customers"); n != 1 {
		t.Fatalf("Count(POST /v1/customers) = %d, want 1", n)
	}
	req, ok := fake.Last(http.MethodPost, "/v1/customers")
	if !ok {
		t.Fatal("Last(POST /v1/customers) found nothing")
	}
	for field, want := range map[string]string{
		"email":            "ada@example.com",
		"name":             "Ada Lovelace",
		"metadata[tenant]": "t1",
	} {
		if got := req.Form.Get(field); got != want {
			t.Errorf("Form[%q] = %q, want %q", field, got, want)
		}
	}
	for header, want := range map[string]string{
		"Idempotency-Key": "idem-123",
		"Authorization":   "Bearer " + testenv.StripeMockKey,
		"Stripe-Version":  stripe.APIVersion,
		"Content-Type":    "application/x-www-form-urlencoded",
	} {
		if got := req.Header.Get(header); got != want {
			t.Errorf("Header[%q] = %q, want %q", header, got, want)
		}
	}
	if !strings.Contains(string(req.Body), "email=ada%40example.com") {
		t.Errorf("Body = %q, want the raw form", req.Body)
	}
	if req.At.IsZero() || time.Since(req.At) > time.Minute {
		t.Errorf("At = %v, want the arrival time", req.At)
	}
}

func TestCountLastReset(t *testing.T) {
	fake, sc := setup(t)

	for _, email := range []string{"one@example.com", "two@example.com"} {
		if _, err := sc.Customers.New(&stripe.CustomerParams{Email: stripe.String(email)}); err != nil {
			t.Fatalf("create customer: %v", err)
		}
	}
	if _, err := sc.Customers.Get("cus_lookup", nil); err != nil {
		t.Fatalf("get customer: %v", err)
	}

	if n := fake.Count(http.MethodPost, "/v1/customers"); n != 2 {
		t.Errorf("Count(POST /v1/customers) = %d, want 2", n)
	}
	if n := fake.Count(http.MethodGet, "/v1/customers/cus_lookup"); n != 1 {
		t.Errorf("Count(GET /v1/customers/cus_lookup) = %d, want 1", n)
	}
	if n := fake.Count(http.MethodGet, "/v1/customers"); n != 0 {
		t.Errorf("Count(GET /v1/customers) = %d, want 0: paths match exactly", n)
	}
	last, ok := fake.Last(http.MethodPost, "/v1/customers")
	if !ok || last.Form.Get("email") != "two@example.com" {
		t.Errorf("Last(POST /v1/customers) = %q, %v; want the second create", last.Form.Get("email"), ok)
	}

	reqs := fake.Requests()
	var got []string
	for _, r := range reqs {
		got = append(got, r.Method+" "+r.Path)
	}
	want := []string{"POST /v1/customers", "POST /v1/customers", "GET /v1/customers/cus_lookup"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Requests() = %v, want %v", got, want)
	}
	// Requests returns a copy.
	reqs[0].Form.Set("email", "changed")
	reqs[0].Header.Set("Idempotency-Key", "changed")
	if r := fake.Requests()[0]; r.Form.Get("email") != "one@example.com" || r.Header.Get("Idempotency-Key") == "changed" {
		t.Errorf("changing Requests()' result changed the record: %v %v", r.Form, r.Header)
	}

	fake.Reset()
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("after Reset, %d requests", n)
	}
	if n := fake.Count(http.MethodPost, "/v1/customers"); n != 0 {
		t.Errorf("after Reset, Count = %d", n)
	}
	if _, ok := fake.Last(http.MethodPost, "/v1/customers"); ok {
		t.Error("after Reset, Last found a request")
	}
	if _, err := sc.Customers.New(&stripe.CustomerParams{}); err != nil {
		t.Fatalf("create customer: %v", err)
	}
	if n := fake.Count(http.MethodPost, "/v1/customers"); n != 1 {
		t.Errorf("after Reset and one create, Count = %d, want 1", n)
	}
}

func TestRuleCardDeclined(t *testing.T) {
	fake, sc := setup(t)
	fake.On(stripefake.Rule{
		Method: http.MethodPost, Path: "/v1/payment_intents", Status: http.StatusPaymentRequired,
		Body: stripefake.StripeError("card_error", "card_declined", "insufficient_funds", "SENTINEL"),
	})

	_, err := sc.PaymentIntents.New(&stripe.PaymentIntentParams{
		Amount: stripe.Int64(2000), Currency: stripe.String("usd"),
		PaymentMethod: stripe.String("pm_card_visa"), Confirm: stripe.Bool(true),
	})
	se := stripeErr(t, err)
	if se.Code != stripe.ErrorCodeCardDeclined || se.DeclineCode != stripe.DeclineCodeInsufficientFunds {
		t.Errorf("Code, DeclineCode = %q, %q; want card_declined, insufficient_funds", se.Code, se.DeclineCode)
	}
	if se.Type != stripe.ErrorTypeCard || se.Msg != "SENTINEL" || se.HTTPStatusCode != http.StatusPaymentRequired {
		t.Errorf("Type, Msg, HTTPStatusCode = %q, %q, %d", se.Type, se.Msg, se.HTTPStatusCode)
	}
	if se.RequestID == "" || se.RequestLogURL == "" {
		t.Errorf("RequestID, RequestLogURL = %q, %q; want both set", se.RequestID, se.RequestLogURL)
	}
	if n := fake.Count(http.MethodPost, "/v1/payment_intents"); n != 1 {
		t.Errorf("Count = %d, want the scripted request recorded once", n)
	}
}

func TestRuleTimesOnce(t *testing.T) {
	fake, sc := setup(t)
	fake.On(stripefake.Rule{
		Method: http.MethodPost, Path: "/v1/customers", Times: 1, Status: http.StatusTooManyRequests,
		Body: stripefake.StripeError("invalid_request_error", "rate_limit", "", "Too many requests"),
	})

	_, err := sc.Customers.New(&stripe.CustomerParams{})
	if se := stripeErr(t, err); se.HTTPStatusCode != http.StatusTooManyRequests || se.Code != stripe.ErrorCodeRateLimit {
		t.Errorf("first create: status %d code %q, want 429 rate_limit", se.HTTPStatusCode, se.Code)
	}
	for i := 0; i < 2; i++ {
		c, err := sc.Customers.New(&stripe.CustomerParams{})
		if err != nil {
			t.Fatalf("create %d after the rule was used up: %v", i+2, err)
		}
		if !strings.HasPrefix(c.ID, "cus_") {
			t.Errorf("create %d: ID %q, want stripe-mock's answer", i+2, c.ID)
		}
	}
	if n := fake.Count(http.MethodPost, "/v1/customers"); n != 3 {
		t.Errorf("Count = %d, want 3", n)
	}
}

func TestRuleFirstMatchWinsAndPrefix(t *testing.T) {
	fake, sc := setup(t)
	fake.On(stripefake.Rule{
		Method: http.MethodGet, Path: "/v1/customers/cus_gone", Status: http.StatusNotFound,
		Body: stripefake.StripeError("invalid_request_error", "resource_missing", "", "No such customer: 'cus_gone'"),
	})
	fake.On(stripefake.Rule{
		Method: http.MethodGet, Path: "/v1/customers/", PathPrefix: true, Delay: 200 * time.Millisecond,
		Body: `{"id":"cus_scripted","object":"customer","email":"scripted@example.com"}`,
	})

	_, err := sc.Customers.Get("cus_gone", nil)
	if se := stripeErr(t, err); se.Code != stripe.ErrorCodeResourceMissing {
		t.Errorf("get cus_gone: code %q, want resource_missing", se.Code)
	}

	start := time.Now()
	c, err := sc.Customers.Get("cus_other", nil)
	if err != nil {
		t.Fatalf("get cus_other: %v", err)
	}
	if c.Email != "scripted@example.com" {
		t.Errorf("get cus_other: email %q, want the prefix rule's body", c.Email)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("get cus_other took %v, want the rule's 200ms delay", d)
	}

	// Another method on the same path goes upstream.
	if _, err := sc.Customers.Update("cus_other", &stripe.CustomerParams{Name: stripe.String("x")}); err != nil {
		t.Errorf("update goes to stripe-mock: %v", err)
	}
}

func TestRuleHangRespectsClientTimeout(t *testing.T) {
	fake, _ := setup(t)
	fake.On(stripefake.Rule{Method: http.MethodGet, Path: "/v1/customers", Hang: true})

	req, err := http.NewRequest(http.MethodGet, fake.URL+"/v1/customers", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testenv.StripeMockKey)
	hc := &http.Client{Timeout: 300 * time.Millisecond}
	start := time.Now()
	resp, err := hc.Do(req)
	elapsed := time.Since(start)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("hanging request answered %s", resp.Status)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("err = %v, want a client timeout", err)
	}
	if elapsed < 300*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("gave up after %v, want about the client's 300ms", elapsed)
	}
	if n := fake.Count(http.MethodGet, "/v1/customers"); n != 1 {
		t.Errorf("Count = %d, want the hanging request recorded", n)
	}
}

func TestRuleResetDropsConnection(t *testing.T) {
	fake, sc := setup(t)
	fake.On(stripefake.Rule{Method: http.MethodPost, Path: "/v1/customers", Reset: true, Times: 1})

	_, err := sc.Customers.New(&stripe.CustomerParams{})
	if err == nil {
		t.Fatal("create succeeded through a reset connection")
	}
	var se *stripe.Error
	if errors.As(err, &se) {
		t.Errorf("err = %v, want a transport error, not a Stripe answer", err)
	}
	if _, err := sc.Customers.New(&stripe.CustomerParams{}); err != nil {
		t.Errorf("create after the one reset: %v", err)
	}
	if n := fake.Count(http.MethodPost, "/v1/customers"); n != 2 {
		t.Errorf("Count = %d, want 2", n)
	}
}

func TestNoUpstream(t *testing.T) {
	fake := stripefake.New(t, "")
	sc := newClient(fake.URL)

	_, err := sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("x@example.com")})
	se := stripeErr(t, err)
	if se.HTTPStatusCode != http.StatusNotFound || se.Type != stripe.ErrorTypeInvalidRequest || se.Code != stripe.ErrorCodeResourceMissing {
		t.Errorf("unmatched request: status %d type %q code %q, want 404 invalid_request_error resource_missing",
			se.HTTPStatusCode, se.Type, se.Code)
	}
	if req, ok := fake.Last(http.MethodPost, "/v1/customers"); !ok || req.Form.Get("email") != "x@example.com" {
		t.Errorf("unmatched request not recorded: %v %v", req.Form, ok)
	}

	fake.On(stripefake.Rule{Path: "/v1/customers", Body: `{"id":"cus_1","object":"customer"}`})
	c, err := sc.Customers.New(&stripe.CustomerParams{})
	if err != nil || c.ID != "cus_1" {
		t.Errorf("scripted create = %v, %v; want cus_1", c, err)
	}
}

func TestStripeErrorShape(t *testing.T) {
	var got struct {
		Error map[string]string `json:"error"`
	}
	if err := json.Unmarshal([]byte(stripefake.StripeError("card_error", "card_declined", "", "Declined")), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"type": "card_error", "code": "card_declined", "message": "Declined"}
	for k, v := range want {
		if got.Error[k] != v {
			t.Errorf("error.%s = %q, want %q", k, got.Error[k], v)
		}
	}
	if _, ok := got.Error["decline_code"]; ok {
		t.Error("empty decline_code not omitted")
	}
	if !strings.HasPrefix(got.Error["request_log_url"], "https://") {
		t.Errorf("request_log_url = %q", got.Error["request_log_url"])
	}
}

var catalogue = []stripefake.Price{
	{
		ID: "price_a", LookupKey: "a", Currency: "usd", UnitAmount: 1500, Interval: "month", IntervalCount: 1,
		ProductID: "prod_a", ProductName: "Alpha plan", ProductDescription: "The first plan",
		ProductMetadata: map[string]string{"tier": "alpha", "seats": "5"}, Active: true,
	},
	{
		ID: "price_b", LookupKey: "b", Currency: "eur", UnitAmount: 9900, Interval: "year", IntervalCount: 1,
		ProductID: "prod_b", ProductName: "Beta plan", ProductMetadata: map[string]string{"tier": "beta"}, Active: true,
	},
	{
		ID: "price_c", LookupKey: "c", Currency: "usd", UnitAmount: 500, // one_time
		ProductID: "prod_c", ProductName: "Setup fee", Active: false,
	},
}

func listPrices(t *testing.T, sc *client.API, params *stripe.PriceListParams) map[string]*stripe.Price {
	t.Helper()
	it := sc.Prices.List(params)
	got := map[string]*stripe.Price{}
	for it.Next() {
		p := it.Price()
		if _, dup := got[p.LookupKey]; dup {
			t.Errorf("lookup key %q listed twice", p.LookupKey)
		}
		got[p.LookupKey] = p
	}
	if err := it.Err(); err != nil {
		t.Fatalf("list prices: %v", err)
	}
	return got
}

func TestPricesByLookupKeyWithExpandedProduct(t *testing.T) {
	fake, sc := setup(t)
	fake.SetPrices(catalogue...)

	params := &stripe.PriceListParams{LookupKeys: stripe.StringSlice([]string{"a", "b", "zzz"})}
	params.AddExpand("data.product")
	got := listPrices(t, sc, params)

	if len(got) != 2 || got["a"] == nil || got["b"] == nil {
		t.Fatalf("listed %v, want exactly a and b", keys(got))
	}
	for _, tc := range []struct {
		key, id, currency, interval, product, name string
		amount                                     int64
		metadata                                   map[string]string
	}{
		{"a", "price_a", "usd", "month", "prod_a", "Alpha plan", 1500, map[string]string{"tier": "alpha", "seats": "5"}},
		{"b", "price_b", "eur", "year", "prod_b", "Beta plan", 9900, map[string]string{"tier": "beta"}},
	} {
		p := got[tc.key]
		if p.ID != tc.id || string(p.Currency) != tc.currency || p.UnitAmount != tc.amount || p.UnitAmountDecimal != float64(tc.amount) {
			t.Errorf("%s: id %q currency %q amount %d/%v", tc.key, p.ID, p.Currency, p.UnitAmount, p.UnitAmountDecimal)
		}
		if !p.Active || p.Type != stripe.PriceTypeRecurring || p.BillingScheme != stripe.PriceBillingSchemePerUnit || p.TransformQuantity != nil {
			t.Errorf("%s: active %v type %q scheme %q transform %v", tc.key, p.Active, p.Type, p.BillingScheme, p.TransformQuantity)
		}
		if p.Recurring == nil || string(p.Recurring.Interval) != tc.interval || p.Recurring.IntervalCount != 1 ||
			p.Recurring.UsageType != stripe.PriceRecurringUsageTypeLicensed {
			t.Errorf("%s: recurring %+v, want every 1 %s, licensed", tc.key, p.Recurring, tc.interval)
		}
		if p.Product == nil || p.Product.ID != tc.product || p.Product.Name != tc.name || fmt.Sprint(p.Product.Metadata) != fmt.Sprint(tc.metadata) {
			t.Errorf("%s: product %+v, want %s %q %v", tc.key, p.Product, tc.product, tc.name, tc.metadata)
		}
	}
	if d := got["a"].Product.Description; d != "The first plan" {
		t.Errorf("a: product description %q", d)
	}

	if n := fake.Count(http.MethodGet, "/v1/prices"); n != 1 {
		t.Errorf("Count(GET /v1/prices) = %d, want 1", n)
	}
	req, _ := fake.Last(http.MethodGet, "/v1/prices")
	if req.Query.Get("lookup_keys[2]") != "zzz" || req.Query.Get("expand[0]") != "data.product" {
		t.Errorf("recorded query %v, want stripe-go's indexed lookup_keys and expand", req.Query)
	}
}

func TestPricesWithoutLookupKeysListsAll(t *testing.T) {
	fake, sc := setup(t)
	fake.SetPrices(catalogue...)

	got := listPrices(t, sc, &stripe.PriceListParams{})
	if len(got) != 3 {
		t.Fatalf("listed %v, want a, b and c", keys(got))
	}
	c := got["c"]
	if c.Type != stripe.PriceTypeOneTime || c.Recurring != nil || c.Active || c.UnitAmount != 500 {
		t.Errorf("c: type %q recurring %v active %v amount %d", c.Type, c.Recurring, c.Active, c.UnitAmount)
	}
	// Not expanded: the product is just its ID.
	if c.Product == nil || c.Product.ID != "prod_c" || c.Product.Name != "" {
		t.Errorf("c: product %+v, want the bare ID prod_c", c.Product)
	}

	got = listPrices(t, sc, &stripe.PriceListParams{Active: stripe.Bool(true)})
	if len(got) != 2 || got["c"] != nil {
		t.Errorf("active=true listed %v, want a and b", keys(got))
	}
}

func TestPricesCatalogueStillValidatedUpstream(t *testing.T) {
	fake, _ := setup(t)
	fake.SetPrices(catalogue...)

	req, err := http.NewRequest(http.MethodGet, fake.URL+"/v1/prices?no_such_param=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testenv.StripeMockKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "invalid_request_error") {
		t.Errorf("unknown parameter: %s %s, want stripe-mock's 400", resp.Status, body)
	}
}

func TestPricesWithoutCatalogueAreForwarded(t *testing.T) {
	_, sc := setup(t)

	// stripe-mock ignores lookup_keys: it answers its fixture whatever the key.
	got := listPrices(t, sc, &stripe.PriceListParams{LookupKeys: stripe.StringSlice([]string{"zzz"})})
	if len(got) == 0 || got["zzz"] != nil {
		t.Errorf("listed %v, want stripe-mock's own fixture", keys(got))
	}
}

func TestPricesWithoutUpstream(t *testing.T) {
	fake := stripefake.New(t, "")
	sc := newClient(fake.URL)
	fake.SetPrices(catalogue...)

	params := &stripe.PriceListParams{LookupKeys: stripe.StringSlice([]string{"b", "c"})}
	params.AddExpand("data.product")
	got := listPrices(t, sc, params)
	if len(got) != 2 || got["b"].Product.Name != "Beta plan" || got["c"].Recurring != nil || got["b"].Recurring.Interval != "year" {
		t.Errorf("listed %v, want b and c from the built-in shape", keys(got))
	}
}

func TestConcurrentCustomerCreates(t *testing.T) {
	fake, sc := setup(t)

	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := sc.Customers.New(&stripe.CustomerParams{Email: stripe.String(fmt.Sprintf("c%d@example.com", i))})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("create customer: %v", err)
		}
	}

	if got := fake.Count(http.MethodPost, "/v1/customers"); got != n {
		t.Errorf("Count = %d, want %d", got, n)
	}
	emails := map[string]bool{}
	keys := map[string]bool{}
	for _, r := range fake.Requests() {
		emails[r.Form.Get("email")] = true
		keys[r.Header.Get("Idempotency-Key")] = true
	}
	if len(emails) != n || len(keys) != n {
		t.Errorf("%d distinct emails and %d distinct idempotency keys recorded, want %d", len(emails), len(keys), n)
	}
}

func keys(m map[string]*stripe.Price) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
