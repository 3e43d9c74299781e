// Package metrics holds the service's Prometheus metrics: one registry per
// server (never the global default, so several servers in one process do
// not collide), the collectors the rest of the code feeds, and the Stripe
// transport that counts calls. Every label is bounded: operation names and
// Stripe endpoints are clipped and limited to a fixed number of distinct
// values, after which new ones are counted as "other".
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"billingapi/internal/pgtext"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const (
	// MaxLabelLength is the longest label value kept; longer ones are cut.
	MaxLabelLength = 64
	// MaxDistinctValues bounds the distinct values of a free-form label
	// (operation names, Stripe endpoints, event types); later new values
	// are counted as Other.
	MaxDistinctValues = 200
	// Anonymous is the operation label of an unnamed or unknown operation.
	Anonymous = "anonymous"
	// Other is the label of a value past MaxDistinctValues.
	Other = "other"
)

// Webhook attempt outcomes (the outcome label of WebhookAttempts).
const (
	OutcomeProcessed = "processed"
	OutcomeSkipped   = "skipped"
	OutcomeDuplicate = "duplicate"
	OutcomeFailed    = "failed"
)

// Metrics is one server's registry and collectors. Its methods are safe
// for concurrent use; a nil *Metrics ignores every observation.
type Metrics struct {
	Registry *prometheus.Registry

	graphqlOps      *prometheus.CounterVec
	graphqlDuration *prometheus.HistogramVec
	stripeCalls     *prometheus.CounterVec
	stripeDuration  *prometheus.HistogramVec
	priceCache      *prometheus.CounterVec
	responseCache   *prometheus.CounterVec
	eventResponses  *prometheus.CounterVec
	webhookReceived *prometheus.CounterVec
	webhookAttempts *prometheus.CounterVec
	webhookLag      prometheus.Histogram

	operations, endpoints, eventTypes *limiter
}

// New returns a Metrics with its own registry, holding the service's
// collectors and the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		graphqlOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingapi_graphql_operations_total",
			Help: "GraphQL operations by operation name and result code (the first error's extensions.code, or OK).",
		}, []string{"operation", "code"}),
		graphqlDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "billingapi_graphql_operation_duration_seconds",
			Help:    "Time from a GraphQL request's start to its response, for queries and mutations, by operation name.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"operation"}),
		stripeCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingapi_stripe_requests_total",
			Help: "HTTP requests to Stripe (each attempt) by endpoint (method and path, ids as {id}) and outcome (2xx, 4xx, 5xx, error).",
		}, []string{"endpoint", "outcome"}),
		stripeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "billingapi_stripe_request_duration_seconds",
			Help:    "Duration of HTTP requests to Stripe by endpoint.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 20, 60},
		}, []string{"endpoint"}),
		priceCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingapi_price_cache_lookups_total",
			Help: "Price cache lookups by lookup key, by result (hit or miss).",
		}, []string{"result"}),
		responseCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingapi_response_cache_lookups_total",
			Help: "Queries the response cache may answer, by scope (public: the catalog; workspace: a user's entitlement check) and result: hit (answered from the cache) or miss (executed).",
		}, []string{"scope", "result"}),
		eventResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingapi_billing_event_responses_total",
			Help: "Billing events sent to websocket subscribers, by result: rendered (executed for this subscriber) or shared (rendered for another subscriber of the same workspace and subscription).",
		}, []string{"result"}),
		webhookReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingapi_webhook_events_received_total",
			Help: "Verified Stripe webhook deliveries stored (or already stored), by event type.",
		}, []string{"type"}),
		webhookAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billingapi_webhook_event_attempts_total",
			Help: "Attempts of the webhook worker to apply a stored event, by event type and outcome (processed, skipped, duplicate, failed).",
		}, []string{"type", "outcome"}),
		webhookLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "billingapi_webhook_event_lag_seconds",
			Help:    "Time from Stripe creating an event to the worker processing or skipping it.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
		}),
		operations: newLimiter(MaxDistinctValues),
		endpoints:  newLimiter(MaxDistinctValues),
		eventTypes: newLimiter(MaxDistinctValues),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.graphqlOps, m.graphqlDuration,
		m.stripeCalls, m.stripeDuration,
		m.priceCache, m.responseCache, m.eventResponses,
		m.webhookReceived, m.webhookAttempts, m.webhookLag,
	)
	return m
}

// Handler serves the registry in the Prometheus text (or negotiated)
// format. It does no access control.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// ObserveSubscribers registers a gauge read from current at scrape time:
// the billingEvents subscriptions held on this server.
func (m *Metrics) ObserveSubscribers(current func() int) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "billingapi_websocket_subscribers",
		Help: "Current billingEvents subscriptions on this server.",
	}, func() float64 { return float64(current()) }))
}

// ObserveNearCache registers a gauge read from bytes at scrape time: what
// the near cache's entries cost, as counted against its budget.
func (m *Metrics) ObserveNearCache(bytes func() int64) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "billingapi_near_cache_bytes",
		Help: "Estimated memory held by the in-process near cache (its entries' cost against its budget).",
	}, func() float64 { return float64(bytes()) }))
}

// OperationLabel returns the bounded label of an operation name: "" (an
// unnamed or unknown operation) is Anonymous, long names are cut, and new
// names past MaxDistinctValues are Other.
func (m *Metrics) OperationLabel(name string) string {
	if name == "" {
		return Anonymous
	}
	if m == nil {
		return pgtext.Clip(name, MaxLabelLength)
	}
	return m.operations.admit(pgtext.Clip(name, MaxLabelLength))
}

// GraphQLOperation counts one operation (its label from OperationLabel)
// and, when observeLatency, its duration.
func (m *Metrics) GraphQLOperation(operation, code string, d time.Duration, observeLatency bool) {
	if m == nil {
		return
	}
	m.graphqlOps.WithLabelValues(operation, pgtext.Clip(code, MaxLabelLength)).Inc()
	if observeLatency {
		m.graphqlDuration.WithLabelValues(operation).Observe(d.Seconds())
	}
}

// ResponseCacheLookup counts one query of scope that the response cache
// may answer: answered from it (hit) or executed.
func (m *Metrics) ResponseCacheLookup(scope string, hit bool) {
	if m == nil {
		return
	}
	result := "miss"
	if hit {
		result = "hit"
	}
	m.responseCache.WithLabelValues(scope, result).Inc()
}

// BillingEventResponse counts one billing event sent to a subscriber,
// shared (rendered for another subscriber) or rendered.
func (m *Metrics) BillingEventResponse(shared bool) {
	if m == nil {
		return
	}
	result := "rendered"
	if shared {
		result = "shared"
	}
	m.eventResponses.WithLabelValues(result).Inc()
}

// PriceCacheLookups counts price cache hits and misses (per lookup key).
func (m *Metrics) PriceCacheLookups(hits, misses int) {
	if m == nil {
		return
	}
	if hits > 0 {
		m.priceCache.WithLabelValues("hit").Add(float64(hits))
	}
	if misses > 0 {
		m.priceCache.WithLabelValues("miss").Add(float64(misses))
	}
}

// WebhookReceived counts a verified, stored webhook delivery.
func (m *Metrics) WebhookReceived(eventType string) {
	if m == nil {
		return
	}
	m.webhookReceived.WithLabelValues(m.eventTypes.admit(pgtext.Clip(eventType, MaxLabelLength))).Inc()
}

// WebhookAttempt counts one worker attempt with its outcome and, for an
// event processed or skipped now, observes its lag: the time since Stripe
// created it (a negative lag, from clock skew, is observed as 0).
func (m *Metrics) WebhookAttempt(eventType, outcome string, lag time.Duration) {
	if m == nil {
		return
	}
	switch outcome {
	case OutcomeProcessed, OutcomeSkipped, OutcomeDuplicate, OutcomeFailed:
	default:
		outcome = Other
	}
	m.webhookAttempts.WithLabelValues(m.eventTypes.admit(pgtext.Clip(eventType, MaxLabelLength)), outcome).Inc()
	if outcome == OutcomeProcessed || outcome == OutcomeSkipped {
		m.webhookLag.Observe(max(lag, 0).Seconds())
	}
}

// StripeTransport wraps next (nil: http.DefaultTransport) so that every
// request to Stripe is counted by endpoint and outcome and timed.
func (m *Metrics) StripeTransport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	if m == nil {
		return next
	}
	return &stripeTransport{m: m, next: next}
}

type stripeTransport struct {
	m    *Metrics
	next http.RoundTripper
}

func (t *stripeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	endpoint := t.m.endpoints.admit(StripeEndpoint(req.Method, req.URL.Path))
	start := time.Now()
	res, err := t.next.RoundTrip(req)
	t.m.stripeDuration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	outcome := "error"
	if err == nil {
		outcome = strconv.Itoa(res.StatusCode/100) + "xx"
	}
	t.m.stripeCalls.WithLabelValues(endpoint, outcome).Inc()
	return res, err
}

// stripeIDPrefixes are the prefixes of Stripe object ids ("pi" of
// "pi_3Nabc"). No static path segment of Stripe's API starts with one of
// them followed by "_".
var stripeIDPrefixes = map[string]bool{
	"acct": true, "ba": true, "bpc": true, "card": true, "ch": true, "cn": true, "cs": true, "cus": true,
	"dp": true, "du": true, "evt": true, "fee": true, "file": true, "ii": true, "il": true, "in": true,
	"pi": true, "pm": true, "po": true, "plink": true, "price": true, "prod": true, "promo": true, "py": true,
	"re": true, "seti": true, "si": true, "sli": true, "src": true, "sub": true,
	"tok": true, "tr": true, "txi": true, "txn": true, "txr": true, "we": true,
}

// StripeEndpoint returns the metric label of a Stripe request: the method
// and the path with every id replaced by {id}, e.g. "GET
// /v1/subscriptions/{id}". A segment is kept only when it looks like a
// static path word: lower-case letters and "_", not an id prefix, at most
// 40 characters ("v1" and "v2" too).
func StripeEndpoint(method, path string) string {
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPut, http.MethodPatch, http.MethodHead:
	default:
		method = "OTHER"
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i, s := range segs {
		if !staticSegment(s) {
			segs[i] = "{id}"
		}
	}
	return pgtext.Clip(method+" /"+strings.Join(segs, "/"), 2*MaxLabelLength)
}

func staticSegment(s string) bool {
	if s == "v1" || s == "v2" {
		return true
	}
	if s == "" || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	prefix, _, hasUnderscore := strings.Cut(s, "_")
	return !hasUnderscore || !stripeIDPrefixes[prefix]
}

// limiter admits up to max distinct values and answers Other for any new
// value after that, so that a label's cardinality stays bounded whatever
// clients send.
type limiter struct {
	mu   sync.Mutex
	max  int
	seen map[string]struct{}
}

func newLimiter(max int) *limiter { return &limiter{max: max, seen: map[string]struct{}{}} }

func (l *limiter) admit(v string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[v]; ok {
		return v
	}
	if len(l.seen) >= l.max {
		return Other
	}
	l.seen[v] = struct{}{}
	return v
}
