package metrics

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestStripeTransportCountsByEndpointAndOutcome(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/missing"):
			w.WriteHeader(http.StatusNotFound)
		case strings.Contains(r.URL.Path, "sub_"):
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	m := New()
	client := &http.Client{Transport: m.StripeTransport(nil)}
	for _, p := range []struct{ method, path string }{
		{"POST", "/v1/payment_intents"}, {"POST", "/v1/payment_intents"},
		{"GET", "/v1/subscriptions/sub_123"}, {"GET", "/v1/subscriptions/sub_456"},
		{"GET", "/v1/prices/missing"},
	} {
		req, _ := http.NewRequest(p.method, srv.URL+p.path+"?expand[]=x", nil)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	broken := &http.Client{Transport: m.StripeTransport(roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("connection refused")
	}))}
	if _, err := broken.Get("http://stripe.invalid/v1/customers/cus_1"); err == nil {
		t.Fatal("want the transport's error")
	}

	for _, c := range []struct {
		endpoint, outcome string
		want              float64
	}{
		{"POST /v1/payment_intents", "2xx", 2},
		{"GET /v1/subscriptions/{id}", "5xx", 2},
		{"GET /v1/prices/missing", "4xx", 1},
		{"GET /v1/customers/{id}", "error", 1},
	} {
		if got := testutil.ToFloat64(m.stripeCalls.WithLabelValues(c.endpoint, c.outcome)); got != c.want {
			t.Errorf("stripe requests{%s,%s} = %v, want %v", c.endpoint, c.outcome, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.stripeCalls); n != 4 {
		t.Errorf("%d series, want 4 (ids must not become labels)", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestOperationLabelIsBounded(t *testing.T) {
	m := New()
	if got := m.OperationLabel(""); got != Anonymous {
		t.Errorf("empty name = %q", got)
	}
	long := strings.Repeat("N", 100)
	if got := m.OperationLabel(long); got != long[:MaxLabelLength] {
		t.Errorf("long name = %q", got)
	}
	for i := range MaxDistinctValues + 50 {
		m.OperationLabel(fmt.Sprintf("Op%d", i))
	}
	if got := m.OperationLabel("BrandNew"); got != Other {
		t.Errorf("a new name past the limit = %q, want %q", got, Other)
	}
	if got := m.OperationLabel("Op1"); got != "Op1" {
		t.Errorf("a name admitted before the limit = %q", got)
	}
}

func TestNilMetricsIgnoresObservations(t *testing.T) {
	var m *Metrics
	m.GraphQLOperation("Op", "OK", time.Second, true)
	m.PriceCacheLookups(1, 1)
	m.WebhookReceived("x")
	m.WebhookAttempt("x", OutcomeProcessed, time.Second)
	m.ObserveSubscribers(func() int { return 1 })
	if m.StripeTransport(nil) != http.DefaultTransport {
		t.Error("a nil Metrics wrapped the transport")
	}
}

func TestHandlerServesTheRegistry(t *testing.T) {
	m := New()
	m.ObserveSubscribers(func() int { return 3 })
	m.GraphQLOperation("Me", "OK", 20*time.Millisecond, true)
	m.PriceCacheLookups(2, 1)
	m.ResponseCacheLookup("public", true)
	m.ResponseCacheLookup("public", true)
	m.ResponseCacheLookup("public", false)
	m.ResponseCacheLookup("workspace", true)
	m.BillingEventResponse(true)
	m.BillingEventResponse(true)
	m.BillingEventResponse(false)
	m.WebhookReceived("invoice.paid")
	m.WebhookAttempt("invoice.paid", OutcomeProcessed, 90*time.Second)
	m.WebhookAttempt("invoice.paid", "weird", 0)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`billingapi_websocket_subscribers 3`,
		`billingapi_graphql_operations_total{code="OK",operation="Me"} 1`,
		`billingapi_graphql_operation_duration_seconds_count{operation="Me"} 1`,
		`billingapi_price_cache_lookups_total{result="hit"} 2`,
		`billingapi_billing_event_responses_total{result="shared"} 2`,
		`billingapi_billing_event_responses_total{result="rendered"} 1`,
		`billingapi_price_cache_lookups_total{result="miss"} 1`,
		`billingapi_response_cache_lookups_total{result="hit",scope="public"} 2`,
		`billingapi_response_cache_lookups_total{result="miss",scope="public"} 1`,
		`billingapi_response_cache_lookups_total{result="hit",scope="workspace"} 1`,
		`billingapi_webhook_events_received_total{type="invoice.paid"} 1`,
		`billingapi_webhook_event_attempts_total{outcome="processed",type="invoice.paid"} 1`,
		`billingapi_webhook_event_attempts_total{outcome="other",type="invoice.paid"} 1`,
		`billingapi_webhook_event_lag_seconds_sum 90`,
		`go_goroutines `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Two registries (two servers in one process) do not collide.
	New().ObserveSubscribers(func() int { return 0 })
}
