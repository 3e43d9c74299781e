package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"billingapi/internal/metrics"
	"billingapi/internal/stripefake"
	"billingapi/internal/testenv"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// --- scraping /metrics ---

// scrape is one parsed GET /metrics.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics reads s's /metrics (from loopback, without a token) and
// parses it.
func scrapeMetrics(t *testing.T, s *testServer) scrape {
	t.Helper()
	res, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("GET /metrics: %d %s", res.StatusCode, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// matching returns the metrics of family name whose labels include want.
func (sc scrape) matching(name string, want map[string]string) []*dto.Metric {
	fam := sc[name]
	if fam == nil {
		return nil
	}
	var out []*dto.Metric
	for _, m := range fam.Metric {
		ok := true
		for k, v := range want {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

// value sums the counters or gauges (or, for histograms, the sample
// counts) of family name whose labels include want; 0 when there is none.
func (sc scrape) value(name string, want map[string]string) float64 {
	var sum float64
	for _, m := range sc.matching(name, want) {
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// histogramSum sums the sample sums of a histogram family.
func (sc scrape) histogramSum(name string, want map[string]string) float64 {
	var sum float64
	for _, m := range sc.matching(name, want) {
		if m.Histogram != nil {
			sum += m.Histogram.GetSampleSum()
		}
	}
	return sum
}

// labels is shorthand for a label set.
type labels = map[string]string

// waitMetric scrapes until family name with labels has grown by at least
// by from before (the worker runs asynchronously), and returns the scrape.
func waitMetric(t *testing.T, s *testServer, before scrape, name string, l labels, by float64) scrape {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := scrapeMetrics(t, s)
		if got := after.value(name, l) - before.value(name, l); got >= by {
			return after
		} else if time.Now().After(deadline) {
			t.Fatalf("%s%v grew by %v, want at least %v", name, l, got, by)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMetricsGraphQLOperations(t *testing.T) {
	s := startServer(t, testenv.SQLite(t), nil)
	alice := s.token(t, "alice", false)
	ops, lat := "billingapi_graphql_operations_total", "billingapi_graphql_operation_duration_seconds"

	t.Run("NamedQueryCountsAndTimes", func(t *testing.T) {
		before := scrapeMetrics(t, s)
		s.gql(t, alice, `query Me { me { id } }`, nil).Decode(t, &struct{}{})
		after := scrapeMetrics(t, s)
		if d := after.value(ops, labels{"operation": "Me", "code": "OK"}) - before.value(ops, labels{"operation": "Me", "code": "OK"}); d != 1 {
			t.Errorf("operations{Me,OK} grew by %v, want 1", d)
		}
		if d := after.value(lat, labels{"operation": "Me"}) - before.value(lat, labels{"operation": "Me"}); d != 1 {
			t.Errorf("duration{Me} count grew by %v, want 1", d)
		}
		if after.histogramSum(lat, labels{"operation": "Me"}) <= before.histogramSum(lat, labels{"operation": "Me"}) {
			t.Errorf("duration{Me} sum did not grow")
		}
	})
	t.Run("ErrorCodeIsTheFirstErrorsCode", func(t *testing.T) {
		before := scrapeMetrics(t, s)
		if r := s.gql(t, "", `query Me { me { id } }`, nil); r.Code() != "UNAUTHENTICATED" {
			t.Fatalf("anonymous me answered %s", r.Raw)
		}
		after := scrapeMetrics(t, s)
		l := labels{"operation": "Me", "code": "UNAUTHENTICATED"}
		if d := after.value(ops, l) - before.value(ops, l); d != 1 {
			t.Errorf("operations%v grew by %v, want 1", l, d)
		}
	})
	t.Run("UnnamedUnknownAndUnparsedAreAnonymous", func(t *testing.T) {
		before := scrapeMetrics(t, s)
		s.gql(t, "", `{ __typename }`, nil)
		// A name the document does not have, and a document that does not
		// parse: the client's claimed name is never a label.
		body, _ := json.Marshal(map[string]any{"query": `query A { __typename }`, "operationName": "Claimed"})
		s.do(t, gqlRequest(t, s, body))
		body, _ = json.Marshal(map[string]any{"query": `query Broken {`, "operationName": "Broken"})
		s.do(t, gqlRequest(t, s, body))
		after := scrapeMetrics(t, s)
		if d := after.value(ops, labels{"operation": "anonymous"}) - before.value(ops, labels{"operation": "anonymous"}); d != 3 {
			t.Errorf("operations{anonymous} grew by %v, want 3", d)
		}
		for _, name := range []string{"Claimed", "Broken"} {
			if n := len(after.matching(ops, labels{"operation": name})); n != 0 {
				t.Errorf("client-claimed operation name %q became a label", name)
			}
		}
	})
	t.Run("LongNamesAreCut", func(t *testing.T) {
		long := "Q" + strings.Repeat("x", 100)
		s.gql(t, "", `query `+long+` { __typename }`, nil)
		after := scrapeMetrics(t, s)
		if n := len(after.matching(ops, labels{"operation": long[:metrics.MaxLabelLength]})); n != 1 {
			t.Errorf("operation label of a %d-character name: %d series with its first 64 characters, want 1", len(long), n)
		}
	})
}

// gqlRequest is a POST /graphql request with a raw JSON body.
func gqlRequest(t *testing.T, s *testServer, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

func TestMetricsStripeCallsAndPriceCache(t *testing.T) {
	s, fake := startCatalogServer(t, nil)
	calls := "billingapi_stripe_requests_total"
	cache := "billingapi_price_cache_lookups_total"
	prices := labels{"endpoint": "GET /v1/prices", "outcome": "2xx"}

	before := scrapeMetrics(t, s)
	var out struct{ Plans []planJSON }
	s.gql(t, "", plansQuery, nil).Decode(t, &out)
	cold := scrapeMetrics(t, s)
	if want := float64(fake.Count("GET", "/v1/prices")); cold.value(calls, prices)-before.value(calls, prices) != want || want < 1 {
		t.Errorf("stripe requests{GET /v1/prices,2xx} grew by %v, want %v (the fake's count)", cold.value(calls, prices)-before.value(calls, prices), want)
	}
	if n := cold.value("billingapi_stripe_request_duration_seconds", labels{"endpoint": "GET /v1/prices"}); n < 1 {
		t.Errorf("stripe duration{GET /v1/prices} count = %v", n)
	}
	// PLAN_LOOKUP_KEYS has three keys: a cold cache misses them all.
	if d := cold.value(cache, labels{"result": "miss"}) - before.value(cache, labels{"result": "miss"}); d != 3 {
		t.Errorf("price cache misses grew by %v on a cold cache, want 3", d)
	}
	if d := cold.value(cache, labels{"result": "hit"}) - before.value(cache, labels{"result": "hit"}); d != 0 {
		t.Errorf("price cache hits grew by %v on a cold cache, want 0", d)
	}

	// Another selection of the plans: not the cached response, but the
	// warm price cache.
	s.gql(t, "", `{ plans { lookupKey } }`, nil).Decode(t, &out)
	warm := scrapeMetrics(t, s)
	if d := warm.value(cache, labels{"result": "hit"}) - cold.value(cache, labels{"result": "hit"}); d != 3 {
		t.Errorf("price cache hits grew by %v on a warm cache, want 3", d)
	}
	if d := warm.value(cache, labels{"result": "miss"}) - cold.value(cache, labels{"result": "miss"}); d != 0 {
		t.Errorf("price cache misses grew by %v on a warm cache, want 0", d)
	}
	if d := warm.value(calls, nil) - cold.value(calls, nil); d != 0 {
		t.Errorf("a warm cache made %v Stripe requests", d)
	}

	// The first query again: answered from the public response cache,
	// without a price cache lookup.
	const responses = "billingapi_response_cache_lookups_total"
	hits, misses := labels{"scope": "public", "result": "hit"}, labels{"scope": "public", "result": "miss"}
	s.gql(t, "", plansQuery, nil).Decode(t, &out)
	again := scrapeMetrics(t, s)
	if d := again.value(responses, hits) - warm.value(responses, hits); d != 1 {
		t.Errorf("public response cache hits grew by %v on a repeated query, want 1", d)
	}
	if d := again.value(cache, nil) - warm.value(cache, nil); d != 0 {
		t.Errorf("a response cache hit made %v price cache lookups", d)
	}
	if d := warm.value(responses, misses) - before.value(responses, misses); d != 2 {
		t.Errorf("public response cache misses grew by %v over two different queries, want 2", d)
	}
}

func TestStripeEndpointLabel(t *testing.T) {
	for _, c := range []struct{ method, path, want string }{
		{"POST", "/v1/payment_intents", "POST /v1/payment_intents"},
		{"GET", "/v1/subscriptions/sub_1NabcDEF", "GET /v1/subscriptions/{id}"},
		{"GET", "/v1/subscriptions/sub_flaky", "GET /v1/subscriptions/{id}"},
		{"POST", "/v1/payment_intents/pi_123/confirm", "POST /v1/payment_intents/{id}/confirm"},
		{"GET", "/v1/checkout/sessions/cs_test_a1b2", "GET /v1/checkout/sessions/{id}"},
		{"GET", "/v1/prices/search", "GET /v1/prices/search"},
		{"DELETE", "/v1/subscription_items/si_9", "DELETE /v1/subscription_items/{id}"},
		{"POST", "/v1/customers/cus_abc/balance_transactions", "POST /v1/customers/{id}/balance_transactions"},
		{"BREW", "/v1/" + strings.Repeat("a", 50), "OTHER /v1/{id}"},
	} {
		if got := metrics.StripeEndpoint(c.method, c.path); got != c.want {
			t.Errorf("StripeEndpoint(%s, %s) = %q, want %q", c.method, c.path, got, c.want)
		}
	}
}

func TestMetricsWebhookEvents(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	s := w.testServer
	received, attempts, lag := "billingapi_webhook_events_received_total", "billingapi_webhook_event_attempts_total", "billingapi_webhook_event_lag_seconds"

	t.Run("ReceivedAndSkippedWithLag", func(t *testing.T) {
		const typ = "customer.tax_id.created"
		before := scrapeMetrics(t, s)
		created := time.Now().Add(-2 * time.Minute)
		sendStripeEvent(t, s, typ, `{"id":"txi_1","object":"tax_id","customer":"cus_unknown","type":"eu_vat","value":"DE1"}`, created)
		after := waitMetric(t, s, before, attempts, labels{"type": typ, "outcome": "skipped"}, 1)
		if d := after.value(received, labels{"type": typ}) - before.value(received, labels{"type": typ}); d != 1 {
			t.Errorf("received{%s} grew by %v, want 1", typ, d)
		}
		if d := after.value(lag, nil) - before.value(lag, nil); d < 1 {
			t.Errorf("lag count grew by %v, want at least 1", d)
		}
		if d := after.histogramSum(lag, nil) - before.histogramSum(lag, nil); d < 119 {
			t.Errorf("lag sum grew by %.1fs for an event created 2 minutes ago", d)
		}
	})

	t.Run("Processed", func(t *testing.T) {
		const typ = "payment_intent.succeeded"
		before := scrapeMetrics(t, s)
		bePostPaymentSucceeded(t, s, w.wsA, "alice", 1200, time.Now())
		after := waitMetric(t, s, before, attempts, labels{"type": typ, "outcome": "processed"}, 1)
		if d := after.value(received, labels{"type": typ}) - before.value(received, labels{"type": typ}); d != 1 {
			t.Errorf("received{%s} grew by %v, want 1", typ, d)
		}
		if d := after.value(lag, nil) - before.value(lag, nil); d < 1 {
			t.Errorf("lag count grew by %v, want at least 1", d)
		}
	})

	t.Run("Failed", func(t *testing.T) {
		// As in TestFailedEventIsRetriedWithBackoffThenStaysFailed: a
		// second event for a subscription in the same second asks Stripe,
		// which is down, so applying it fails.
		const typ = "customer.subscription.updated"
		at := time.Now().Truncate(time.Second)
		sub := func(status string) string {
			return stripefake.SubscriptionJSON(stripefake.Subscription{ID: "sub_metrics", Status: status, PriceID: "price_x",
				Metadata: map[string]string{"workspace_id": w.wsA, "plan": "team"}})
		}
		before := scrapeMetrics(t, s)
		first := stripefake.Event("evt_metrics_first", typ, sub("active"), at)
		if status, text := whPost(t, s, "/webhooks/stripe", first, whSign(first)); status != http.StatusOK {
			t.Fatalf("first event answered %d %q", status, text)
		}
		mid := waitMetric(t, s, before, attempts, labels{"type": typ, "outcome": "processed"}, 1)
		w.fake.On(stripefake.Rule{Method: "GET", Path: "/v1/subscriptions/sub_metrics", Status: http.StatusServiceUnavailable,
			Body: stripefake.StripeError("api_error", "", "", "down")})
		t.Cleanup(w.fake.ClearRules)
		second := stripefake.Event("evt_metrics_second", typ, sub("past_due"), at)
		if status, text := whPost(t, s, "/webhooks/stripe", second, whSign(second)); status != http.StatusOK {
			t.Fatalf("second event answered %d %q", status, text)
		}
		after := waitMetric(t, s, mid, attempts, labels{"type": typ, "outcome": "failed"}, 1)
		if d := after.value(received, labels{"type": typ}) - before.value(received, labels{"type": typ}); d != 2 {
			t.Errorf("received{%s} grew by %v, want 2", typ, d)
		}
		l := labels{"endpoint": "GET /v1/subscriptions/{id}", "outcome": "5xx"}
		if d := after.value("billingapi_stripe_requests_total", l) - before.value("billingapi_stripe_requests_total", l); d < 1 {
			t.Errorf("stripe requests%v grew by %v, want at least 1", l, d)
		}
	})
}

func TestMetricsWebsocketSubscribers(t *testing.T) {
	w := newPaymentsWorld(t, testenv.SQLite(t), nil)
	s := w.testServer
	const gauge = "billingapi_websocket_subscribers"
	if v := scrapeMetrics(t, s).value(gauge, nil); v != 0 {
		t.Fatalf("subscribers before any subscription = %v", v)
	}
	carol := beDial(t, s, w.carol)
	carol.subscribe(t, "1", w.wsA)
	carol.subscribe(t, "2", w.wsA)
	beWaitSubscribers(t, s, 2, wsReadTimeout)
	if v := scrapeMetrics(t, s).value(gauge, nil); v != 2 {
		t.Errorf("subscribers with two subscriptions open = %v, want 2", v)
	}
	_ = carol.c.Close(websocket.StatusNormalClosure, "bye")
	beWaitSubscribers(t, s, 0, 2*time.Second)
	if v := scrapeMetrics(t, s).value(gauge, nil); v != 0 {
		t.Errorf("subscribers after the socket closed = %v, want 0", v)
	}
}

// getPath GETs path from s with an optional Authorization header.
func getPath(t *testing.T, s *testServer, path, authorization string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

func TestMetricsAccess(t *testing.T) {
	get := func(t *testing.T, s *testServer, authorization string) (int, string) {
		t.Helper()
		return getPath(t, s, "/metrics", authorization)
	}

	t.Run("TokenSet", func(t *testing.T) {
		const token = "metrics-token-for-tests-0123456789"
		s := startServer(t, testenv.SQLite(t), map[string]string{"METRICS_TOKEN": token})
		for _, h := range []string{"", "Bearer wrong-token-0123456789abcdef", "Bearer " + token + "x", "Basic " + token, token} {
			if status, _ := get(t, s, h); status != http.StatusUnauthorized {
				t.Errorf("Authorization %q: %d, want 401", strings.ReplaceAll(h, token, "<token>"), status)
			}
		}
		status, body := get(t, s, "Bearer "+token)
		if status != http.StatusOK {
			t.Fatalf("with the token: %d", status)
		}
		for _, want := range []string{"go_goroutines", "process_", "billingapi_websocket_subscribers"} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		// The profiles follow the same rule.
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1", "/debug/pprof/profile?seconds=1"} {
			if status, _ := getPath(t, s, path, ""); status != http.StatusUnauthorized {
				t.Errorf("%s without the token: %d, want 401", path, status)
			}
		}
		status, body = getPath(t, s, "/debug/pprof/goroutine?debug=1", "Bearer "+token)
		if status != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
			t.Errorf("goroutine profile with the token: %d %.80q", status, body)
		}
		status, body = getPath(t, s, "/debug/pprof/profile?seconds=1", "Bearer "+token)
		if status != http.StatusOK || len(body) == 0 {
			t.Errorf("CPU profile with the token: %d, %d bytes", status, len(body))
		}
	})
	t.Run("TokenUnsetLoopbackAllowed", func(t *testing.T) {
		s := startServer(t, testenv.SQLite(t), nil)
		if status, _ := get(t, s, ""); status != http.StatusOK {
			t.Errorf("loopback without a token: %d, want 200", status)
		}
	})
	t.Run("Middleware", func(t *testing.T) {
		ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
		check := func(t *testing.T, token, remote string, header map[string]string, want int) {
			t.Helper()
			m := &Main{Config: Config{MetricsToken: token}}
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.RemoteAddr = remote
			for k, v := range header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			m.metricsAccess(ok).ServeHTTP(rec, req)
			if rec.Code != want {
				t.Errorf("token set %v, remote %s, headers %v: %d, want %d", token != "", remote, header, rec.Code, want)
			}
		}
		check(t, "", "203.0.113.5:1234", nil, http.StatusForbidden)
		check(t, "", "10.0.0.7:1234", nil, http.StatusForbidden)
		check(t, "", "127.0.0.1:1234", nil, http.StatusOK)
		check(t, "", "127.8.9.10:1234", nil, http.StatusOK)
		check(t, "", "[::1]:1234", nil, http.StatusOK)
		check(t, "", "[::ffff:203.0.113.5]:1234", nil, http.StatusForbidden)
		// Through a proxy on the same host, the client is not loopback.
		check(t, "", "127.0.0.1:1234", map[string]string{"X-Forwarded-For": "203.0.113.5"}, http.StatusForbidden)
		check(t, "", "127.0.0.1:1234", map[string]string{"Forwarded": "for=203.0.113.5"}, http.StatusForbidden)
		const token = "metrics-token-for-tests-0123456789"
		check(t, token, "203.0.113.5:1234", map[string]string{"Authorization": "Bearer " + token}, http.StatusOK)
		check(t, token, "127.0.0.1:1234", nil, http.StatusUnauthorized)
		check(t, token, "127.0.0.1:1234", map[string]string{"Authorization": "bearer " + token}, http.StatusOK)
	})
}

// --- the request log ---

// logLine is one parsed slog text line.
type logLine map[string]string

var logField = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|\S*)`)

func parseLogLine(line string) logLine {
	out := logLine{}
	for _, m := range logField.FindAllStringSubmatch(line, -1) {
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			if err := json.Unmarshal([]byte(v), &v); err != nil {
				v = m[2]
			}
		}
		out[m[1]] = v
	}
	return out
}

// logLinesWith returns the parsed lines of s's log with msg and the
// request id.
func logLinesWith(s *testServer, msg, id string) []logLine {
	var out []logLine
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if l := parseLogLine(line); l["msg"] == msg && l["request_id"] == id {
			out = append(out, l)
		}
	}
	return out
}

// waitRequestLine waits for the one request line of request id and fails
// when there is not exactly one.
func waitRequestLine(t *testing.T, s *testServer, id string) logLine {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for len(logLinesWith(s, "request", id)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	lines := logLinesWith(s, "request", id)
	if len(lines) != 1 {
		t.Fatalf("%d request lines with request_id=%s, want 1:\n%s", len(lines), id, s.logs.String())
	}
	return lines[0]
}

// post sends a GraphQL request with an X-Request-Id (none when empty) and
// returns the response's X-Request-Id.
func postWithRequestID(t *testing.T, s *testServer, token, requestID, query string) (string, gqlResponse) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query})
	req := gqlRequest(t, s, body)
	if requestID != "" {
		req.Header.Set(RequestIDHeader, requestID)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := gqlResponse{Status: res.StatusCode, Raw: string(raw)}
	_ = json.Unmarshal(raw, &out)
	return res.Header.Get(RequestIDHeader), out
}

func TestRequestLog(t *testing.T) {
	s := startServer(t, testenv.SQLite(t), nil)
	alice := s.token(t, "alice", false)
	validID := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

	t.Run("OneLinePerRequestWithEveryField", func(t *testing.T) {
		id, _ := postWithRequestID(t, s, alice, "", `query Me { me { id } }`)
		if !validID.MatchString(id) {
			t.Fatalf("X-Request-Id = %q, want a generated id", id)
		}
		l := waitRequestLine(t, s, id)
		want := logLine{"method": "POST", "path": "/graphql", "status": "200", "code": "OK", "operation": "Me", "viewer": "alice"}
		for k, v := range want {
			if l[k] != v {
				t.Errorf("%s = %q, want %q in %v", k, l[k], v, l)
			}
		}
		if !regexp.MustCompile(`^\d+(\.\d+)?$`).MatchString(l["duration_ms"]) {
			t.Errorf("duration_ms = %q", l["duration_ms"])
		}
		if strings.Contains(s.logs.String(), alice) {
			t.Errorf("the token is in the log")
		}
	})
	t.Run("IncomingValidIDIsReused", func(t *testing.T) {
		const in = "client-Req_0123456789"
		id, _ := postWithRequestID(t, s, "", in, `query Me { me { id } }`)
		if id != in {
			t.Fatalf("X-Request-Id = %q, want the client's %q", id, in)
		}
		l := waitRequestLine(t, s, in)
		if l["code"] != "UNAUTHENTICATED" || l["viewer"] != "anonymous" || l["operation"] != "Me" {
			t.Errorf("line = %v, want code UNAUTHENTICATED, viewer anonymous, operation Me", l)
		}
	})
	t.Run("InvalidIncomingIDIsReplaced", func(t *testing.T) {
		for _, in := range []string{"has space", "semi;colon", "x\u00e9", strings.Repeat("a", 65), "<script>"} {
			id, _ := postWithRequestID(t, s, "", in, `{ __typename }`)
			if id == in || !validID.MatchString(id) {
				t.Errorf("incoming %q: X-Request-Id = %q, want a new valid id", in, id)
				continue
			}
			if l := waitRequestLine(t, s, id); l["operation"] != "anonymous" || l["code"] != "OK" {
				t.Errorf("line = %v", l)
			}
		}
		id, _ := postWithRequestID(t, s, "", strings.Repeat("a", 64), `{ __typename }`)
		if id != strings.Repeat("a", 64) {
			t.Errorf("a 64-character id was not reused")
		}
	})
	t.Run("RefusedBeforeGraphQLHasTheCode", func(t *testing.T) {
		const in = "bad-token-request"
		_, r := postWithRequestID(t, s, "not.a.jwt-but-a-token-value", in, `{ __typename }`)
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("bad token: %d", r.Status)
		}
		l := waitRequestLine(t, s, in)
		if l["status"] != "401" || l["code"] != "UNAUTHENTICATED" || l["viewer"] != "anonymous" {
			t.Errorf("line = %v", l)
		}
		if strings.Contains(s.logs.String(), "not.a.jwt-but-a-token-value") {
			t.Errorf("the bad token is in the log")
		}
	})
	t.Run("OtherLinesOfTheRequestCarryItsID", func(t *testing.T) {
		const in = "webhook-request-1"
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/webhooks/stripe", strings.NewReader(`{}`))
		req.Header.Set(RequestIDHeader, in)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get(RequestIDHeader); got != in {
			t.Errorf("webhook X-Request-Id = %q", got)
		}
		l := waitRequestLine(t, s, in)
		if l["status"] != "400" || l["operation"] != "" || l["code"] != "" {
			t.Errorf("webhook request line = %v (no GraphQL operation or code expected)", l)
		}
		if refused := logLinesWith(s, "webhook refused", in); len(refused) != 1 {
			t.Errorf("the handler's own line does not carry request_id=%s:\n%s", in, s.logs.String())
		}
	})
	t.Run("WebsocketLineHasItsOperation", func(t *testing.T) {
		const in = "websocket-request-1"
		c := wsDial(t, s, "graphql-transport-ws", http.Header{RequestIDHeader: {in}})
		wsSend(t, c, map[string]any{"type": "connection_init", "payload": wsInitPayload(alice)})
		wsExpect(t, c, "connection_ack", "")
		wsSend(t, c, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": `query WsMe { me { id } }`}})
		wsExpect(t, c, "next", "1")
		_ = c.Close(websocket.StatusNormalClosure, "")
		l := waitRequestLine(t, s, in)
		if l["status"] != "101" || l["operation"] != "WsMe" || l["code"] != "OK" || l["viewer"] != "alice" {
			t.Errorf("websocket request line = %v", l)
		}
	})
}

// TestDetachedRequestLineKeepsNoResponseWriter: a websocket's request log
// line is written when the socket ends, long after its handler returned;
// what writes it must not keep the handler's ResponseWriter (net/http's
// response and connection state) for the socket's life.
func TestDetachedRequestLineKeepsNoResponseWriter(t *testing.T) {
	var logs bytes.Buffer
	m := &Main{Log: slog.New(slog.NewJSONHandler(&logs, nil))}
	var ended func()
	h := m.logRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusSwitchingProtocols)
		ended = m.detachRequest(r.Context()) // as graph's detachedWebsocket does on upgrade
	}))
	collected := make(chan struct{})
	func() {
		w := &finalizedWriter{ResponseWriter: httptest.NewRecorder()}
		runtime.SetFinalizer(w, func(*finalizedWriter) { close(collected) })
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/graphql", nil))
	}()
	if logs.Len() != 0 {
		t.Fatalf("a detached request was logged when its handler returned: %s", logs.String())
	}
	if !testenv.Finalized(collected) {
		t.Fatal("the detached request's log line keeps its ResponseWriter")
	}
	ended()
	var line map[string]any
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil || line["msg"] != "request" || line["status"] != float64(101) || line["path"] != "/graphql" {
		t.Errorf("the line written when the socket ended = %s (%v)", logs.String(), err)
	}
}

// finalizedWriter gives a ResponseWriter an identity of its own, for a
// finalizer.
type finalizedWriter struct{ http.ResponseWriter }

func TestRequestIDHandlerJSON(t *testing.T) {
	var buf bytes.Buffer
	log := withRequestIDs(slog.New(slog.NewJSONHandler(&buf, nil)))
	if withRequestIDs(log) != log {
		t.Errorf("wrapping twice made a new logger")
	}
	ctx, _ := withRequest(context.Background(), "req-1")
	log.With("component", "test").InfoContext(ctx, "hello", "k", "v")
	log.Info("no request")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var first, second map[string]any
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &first) != nil || json.Unmarshal([]byte(lines[1]), &second) != nil {
		t.Fatalf("log = %q", buf.String())
	}
	if first["request_id"] != "req-1" || first["component"] != "test" || first["k"] != "v" {
		t.Errorf("line with a request context = %v", first)
	}
	if _, ok := second["request_id"]; ok {
		t.Errorf("line without a request context has a request_id: %v", second)
	}

	// Stripe's request id is logged as stripe_request_id beside ours.
	buf.Reset()
	log.WarnContext(ctx, "stripe error", "status", 500, "stripe_request_id", "req_abc")
	var withCtx map[string]any
	line := strings.TrimSpace(buf.String())
	if json.Unmarshal([]byte(line), &withCtx) != nil || strings.Count(line, `"request_id"`) != 1 ||
		withCtx["request_id"] != "req-1" || withCtx["stripe_request_id"] != "req_abc" {
		t.Errorf("stripe error line with a request context = %s", line)
	}
}
