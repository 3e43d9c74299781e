// Package stripefake is a recording HTTP server that sits in front of
// stripe-mock, so that tests can count and inspect what our code sent to
// Stripe and script Stripe's answers: errors, delays, hangs, dropped
// connections, and a price catalogue that honours lookup keys.
//
// stripe-mock validates every request against Stripe's OpenAPI spec and
// answers with fixtures of the right shape, but it keeps no state: it
// ignores idempotency keys and list filters such as lookup_keys[]. Point
// the Stripe client at Server.URL; requests no rule answers go on to
// Upstream unchanged.
package stripefake

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"billingapi/internal/stripeevent"
)

// Server records every request and forwards it to Upstream unless a
// scripted answer matches. It is safe for concurrent use.
type Server struct {
	// URL is the fake's base URL, http://127.0.0.1:PORT; give it to the
	// Stripe client as its API base.
	URL string
	// Upstream is the base URL requests are forwarded to (a stripe-mock),
	// or "" for none.
	Upstream string

	srv    *httptest.Server
	client *http.Client
	done   chan struct{} // closed at cleanup: ends Hang and Delay

	mu        sync.Mutex
	requests  []Request
	rules     []*ruleState
	prices    []Price
	pricesSet bool
}

// Request is one request the fake received.
type Request struct {
	Method string
	Path   string
	Query  url.Values  // the query string (GET and DELETE parameters); never nil
	Form   url.Values  // the parsed application/x-www-form-urlencoded body (POST parameters); never nil
	Header http.Header // as received, e.g. Idempotency-Key, Stripe-Version, Authorization
	Body   []byte      // the raw body
	At     time.Time   // arrival time
}

// Rule scripts an answer. Rules are tried in the order they were added; the
// first one that matches and is not used up answers the request.
type Rule struct {
	// Method matches the request method; "" matches any.
	Method string
	// Path matches the request path exactly, e.g. "/v1/customers", or,
	// with PathPrefix, every path starting with it. "" matches any path.
	Path       string
	PathPrefix bool
	// Times is how many requests the rule answers; 0 means all of them.
	Times int

	// Status of the answer; 0 means 200.
	Status int
	// Body of the answer, e.g. StripeError(...).
	Body string
	// Header is added to the answer. Content-Type defaults to
	// application/json and Request-Id to req_stripefake.
	Header http.Header
	// Delay waits this long before answering (or before Hang or Reset).
	Delay time.Duration
	// Hang never answers: the handler waits until the request's context
	// ends (the client gives up) or the fake is closed.
	Hang bool
	// Reset hijacks the connection and closes it with a TCP reset instead
	// of answering.
	Reset bool
	// Forward sends the request on to the upstream after Delay instead of
	// answering it: a slow but otherwise real Stripe.
	Forward bool
}

type ruleState struct {
	Rule
	used int
}

// Price is one price of the catalogue SetPrices installs.
type Price struct {
	ID         string // "" = "price_" + LookupKey
	LookupKey  string
	Currency   string // "" = "usd"
	UnitAmount int64
	// Interval is day, week, month or year; "" means a one_time price.
	Interval      string
	IntervalCount int64 // 0 = 1 for a recurring price
	// ProductID "" = "prod_" + the ID without its "price_" prefix.
	ProductID          string
	ProductName        string
	ProductDescription string
	ProductMetadata    map[string]string
	// Active is the price's active flag and, when expanded, its product's.
	Active bool
}

const (
	requestID     = "req_stripefake"
	requestLogURL = "https://dashboard.stripe.com/test/logs/" + requestID
	pricesPath    = "/v1/prices"
)

// New starts a fake in front of upstream, the base URL of a stripe-mock
// (see testenv.StripeMock), and closes it when the test ends. With upstream
// "" requests that no rule answers get a 404 with a Stripe-shaped error.
func New(tb testing.TB, upstream string) *Server {
	tb.Helper()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 512
	transport.MaxIdleConnsPerHost = 512
	s := &Server{
		Upstream: strings.TrimRight(upstream, "/"),
		client:   &http.Client{Transport: transport},
		done:     make(chan struct{}),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	tb.Cleanup(func() {
		close(s.done)
		s.srv.Close()
		transport.CloseIdleConnections()
	})
	return s
}

// Requests returns a copy of every request received since New or the last
// Reset, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = r.clone()
	}
	return out
}

// Count is how many requests had this method and exactly this path, e.g.
// ("POST", "/v1/customers").
func (s *Server) Count(method, path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

// Last returns the latest request with this method and exactly this path.
func (s *Server) Last(method, path string) (Request, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.requests) - 1; i >= 0; i-- {
		if r := s.requests[i]; r.Method == method && r.Path == path {
			return r.clone(), true
		}
	}
	return Request{}, false
}

// Reset forgets the recorded requests. Rules and prices stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// ClearRules drops every scripted answer: requests are forwarded again.
func (s *Server) ClearRules() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = nil
}

// On adds a rule after the existing ones.
func (s *Server) On(r Rule) {
	r.Header = r.Header.Clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = append(s.rules, &ruleState{Rule: r})
}

// SetPrices replaces the catalogue GET /v1/prices answers from: after it,
// the fake answers that request with the registered prices whose lookup_key
// is among the request's lookup_keys[] (all of them when it has none),
// filtered by active when given, in the order given here, expanding
// data.product when asked. The request still goes to Upstream first, so that
// stripe-mock validates it and supplies the objects' shape. SetPrices with
// no prices makes the catalogue empty.
func (s *Server) SetPrices(prices ...Price) {
	cp := make([]Price, len(prices))
	for i, p := range prices {
		p.ProductMetadata = cloneStrings(p.ProductMetadata)
		cp[i] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prices = cp
	s.pricesSet = true
}

// StripeError returns a JSON body in Stripe's documented error shape,
// {"error":{"type","code","decline_code","message","request_log_url"}},
// omitting the empty fields; for example
// StripeError("card_error", "card_declined", "insufficient_funds", "Your card has insufficient funds.").
func StripeError(typ, code, declineCode, message string) string {
	type stripeError struct {
		Type          string `json:"type,omitempty"`
		Code          string `json:"code,omitempty"`
		DeclineCode   string `json:"decline_code,omitempty"`
		Message       string `json:"message,omitempty"`
		RequestLogURL string `json:"request_log_url,omitempty"`
	}
	b, err := json.Marshal(struct {
		Error stripeError `json:"error"`
	}{stripeError{typ, code, declineCode, message, requestLogURL}})
	if err != nil {
		panic(err) // strings always marshal
	}
	return string(b)
}

func (r Request) clone() Request {
	r.Query = cloneValues(r.Query)
	r.Form = cloneValues(r.Form)
	r.Header = r.Header.Clone()
	r.Body = bytes.Clone(r.Body)
	return r
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func cloneStrings(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		panic(http.ErrAbortHandler) // the client went away mid-body
	}
	req := Request{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.Query(),
		Form:   parseForm(r.Header.Get("Content-Type"), body),
		Header: r.Header.Clone(),
		Body:   body,
		At:     time.Now(),
	}

	s.mu.Lock()
	s.requests = append(s.requests, req)
	rule, matched := s.matchLocked(r.Method, r.URL.Path)
	prices, catalogue := s.prices, s.pricesSet
	s.mu.Unlock()

	switch {
	case matched && rule.Forward:
		if !s.wait(r, rule.Delay) {
			panic(http.ErrAbortHandler)
		}
		if catalogue && r.Method == http.MethodGet && r.URL.Path == pricesPath {
			s.servePrices(w, r, prices)
		} else {
			s.forward(w, r, body)
		}
	case matched:
		s.answer(w, r, rule)
	case catalogue && r.Method == http.MethodGet && r.URL.Path == pricesPath:
		s.servePrices(w, r, prices)
	default:
		s.forward(w, r, body)
	}
}

func parseForm(contentType string, body []byte) url.Values {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/x-www-form-urlencoded" || len(body) == 0 {
		return url.Values{}
	}
	form, err := url.ParseQuery(string(body))
	if err != nil && form == nil {
		return url.Values{}
	}
	return form
}

// matchLocked finds the first rule matching, and uses it once.
func (s *Server) matchLocked(method, path string) (Rule, bool) {
	for _, rs := range s.rules {
		if rs.Times > 0 && rs.used >= rs.Times {
			continue
		}
		if rs.Method != "" && rs.Method != method {
			continue
		}
		if rs.Path != "" && !(rs.Path == path || rs.PathPrefix && strings.HasPrefix(path, rs.Path)) {
			continue
		}
		rs.used++
		return rs.Rule, true
	}
	return Rule{}, false
}

// wait sleeps for d and reports false when the client or the fake went
// away first.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.done:
		return false
	}
}

func (s *Server) answer(w http.ResponseWriter, r *http.Request, rule Rule) {
	if !s.wait(r, rule.Delay) {
		panic(http.ErrAbortHandler)
	}
	if rule.Hang {
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		panic(http.ErrAbortHandler) // no answer: drop the connection
	}
	if rule.Reset {
		resetConnection(w)
		return
	}
	h := w.Header()
	for k, vs := range rule.Header {
		h[k] = append([]string(nil), vs...)
	}
	if h.Get("Content-Type") == "" && rule.Body != "" {
		h.Set("Content-Type", "application/json")
	}
	if h.Get("Request-Id") == "" {
		h.Set("Request-Id", requestID)
	}
	status := rule.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, rule.Body)
}

// resetConnection closes the request's connection with a TCP RST, so the
// client sees "connection reset by peer" rather than an answer.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func writeStripeError(w http.ResponseWriter, status int, typ, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", requestID)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, StripeError(typ, code, "", message))
}

// forward sends the request to Upstream as it came and copies the answer
// back.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	if s.Upstream == "" {
		writeStripeError(w, http.StatusNotFound, "invalid_request_error", "resource_missing",
			fmt.Sprintf("Unrecognized request URL (%s: %s): stripefake has no upstream and no rule matched.", r.Method, r.URL.Path))
		return
	}
	resp, respBody, err := s.roundTrip(r.Context(), r.Method, r.URL.Path, r.URL.RawQuery, r.Header, body)
	if err != nil {
		s.upstreamFailed(w, r, err)
		return
	}
	copyResponse(w, resp.Header, resp.StatusCode, respBody)
}

func (s *Server) upstreamFailed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		panic(http.ErrAbortHandler) // the client gave up; nobody to answer
	}
	writeStripeError(w, http.StatusBadGateway, "api_error", "",
		fmt.Sprintf("stripefake: upstream %s: %v", s.Upstream, err))
}

// hopHeaders are not forwarded in either direction (RFC 9110 section 7.6.1),
// nor are Content-Length, which is recomputed, and Accept-Encoding, so that
// the transport decompresses what it asks for.
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
	"Content-Length":      true,
	"Accept-Encoding":     true,
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		if !hopHeaders[http.CanonicalHeaderKey(k)] {
			dst[k] = append([]string(nil), vs...)
		}
	}
}

func copyResponse(w http.ResponseWriter, header http.Header, status int, body []byte) {
	copyHeader(w.Header(), header)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Server) roundTrip(ctx context.Context, method, path, rawQuery string, header http.Header, body []byte) (*http.Response, []byte, error) {
	u := s.Upstream + path
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	var rd io.Reader = http.NoBody
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	copyHeader(req.Header, header)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, respBody, nil
}

// servePrices answers GET /v1/prices from the catalogue.
func (s *Server) servePrices(w http.ResponseWriter, r *http.Request, prices []Price) {
	q := r.URL.Query()
	lookupKeys := ListParam(q, "lookup_keys")
	expandProduct := false
	for _, e := range ListParam(q, "expand") {
		if e == "data.product" {
			expandProduct = true
		}
	}

	list := map[string]any{}
	var itemTemplate []byte
	respHeader := http.Header{}
	if s.Upstream != "" {
		resp, body, err := s.roundTrip(r.Context(), r.Method, r.URL.Path, r.URL.RawQuery, r.Header, nil)
		if err != nil {
			s.upstreamFailed(w, r, err)
			return
		}
		if resp.StatusCode != http.StatusOK {
			copyResponse(w, resp.Header, resp.StatusCode, body) // e.g. stripe-mock's validation error
			return
		}
		var raw struct {
			Data []json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &raw); err != nil {
			s.upstreamFailed(w, r, fmt.Errorf("GET %s: %w", pricesPath, err))
			return
		}
		if err := unmarshal(body, &list); err != nil {
			s.upstreamFailed(w, r, fmt.Errorf("GET %s: %w", pricesPath, err))
			return
		}
		if len(raw.Data) > 0 {
			itemTemplate = raw.Data[0]
		}
		respHeader = resp.Header
	}
	if itemTemplate == nil {
		itemTemplate = sampleJSON("price")
	}

	wanted := map[string]bool{}
	for _, k := range lookupKeys {
		wanted[k] = true
	}
	active, filterActive := boolParam(q, "active")
	products := map[string][]byte{} // product templates fetched for this request
	data := []any{}
	for _, p := range prices {
		p = p.withDefaults()
		if len(wanted) > 0 && !wanted[p.LookupKey] || filterActive && p.Active != active {
			continue
		}
		var product any = p.ProductID
		if expandProduct {
			tmpl, ok := products[p.ProductID]
			if !ok {
				var err error
				if tmpl, err = s.productTemplate(r, p.ProductID); err != nil {
					s.upstreamFailed(w, r, err)
					return
				}
				products[p.ProductID] = tmpl
			}
			obj, err := p.patchProduct(tmpl)
			if err != nil {
				s.upstreamFailed(w, r, err)
				return
			}
			product = obj
		}
		obj, err := p.patchPrice(itemTemplate, product)
		if err != nil {
			s.upstreamFailed(w, r, err)
			return
		}
		data = append(data, obj)
	}

	list["object"] = "list"
	if _, ok := list["url"]; !ok {
		list["url"] = pricesPath
	}
	list["has_more"] = false
	list["data"] = data
	body, err := json.Marshal(list)
	if err != nil {
		s.upstreamFailed(w, r, err)
		return
	}
	h := respHeader.Clone()
	h.Set("Content-Type", "application/json")
	if h.Get("Request-Id") == "" {
		h.Set("Request-Id", requestID)
	}
	copyResponse(w, h, http.StatusOK, body)
}

// productTemplate fetches GET /v1/products/<id> from Upstream, with the
// original request's credentials, as the shape of an expanded product.
func (s *Server) productTemplate(r *http.Request, id string) ([]byte, error) {
	if s.Upstream == "" {
		return sampleJSON("product"), nil
	}
	h := http.Header{}
	for _, k := range []string{"Authorization", "Stripe-Version", "Stripe-Account", "User-Agent"} {
		if v := r.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	path := "/v1/products/" + url.PathEscape(id)
	resp, body, err := s.roundTrip(r.Context(), http.MethodGet, path, "", h, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s (to expand data.product): %s: %s", path, resp.Status, body)
	}
	return body, nil
}

// listParam returns the values of an array parameter, however it was
// encoded: name[]=a (curl, most clients), name[0]=a (stripe-go) or name=a.
// Empty values are dropped.
// ListParam returns the values of a list parameter in the order the
// client sent them, whatever its encoding: name, name[] or name[N] (what
// stripe-go sends).
func ListParam(q url.Values, name string) []string {
	type item struct {
		index int
		value string
	}
	var items []item
	for k, vs := range q {
		if k != name && k != name+"[]" && !isIndexed(k, name) {
			continue
		}
		index := -1
		if rest, ok := strings.CutPrefix(k, name+"["); ok {
			if n, err := strconv.Atoi(strings.TrimSuffix(rest, "]")); err == nil {
				index = n
			}
		}
		for _, v := range vs {
			if v != "" {
				items = append(items, item{index, v})
			}
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].index < items[j].index })
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.value
	}
	return out
}

func isIndexed(key, name string) bool {
	rest, ok := strings.CutPrefix(key, name+"[")
	if !ok {
		return false
	}
	idx, ok := strings.CutSuffix(rest, "]")
	if !ok || idx == "" {
		return false
	}
	_, err := strconv.ParseUint(idx, 10, 32)
	return err == nil
}

func boolParam(q url.Values, name string) (value, present bool) {
	switch q.Get(name) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

func unmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // keep large integers in fixtures exact
	return d.Decode(v)
}

func (p Price) withDefaults() Price {
	if p.ID == "" {
		p.ID = "price_" + p.LookupKey
	}
	if p.Currency == "" {
		p.Currency = "usd"
	}
	if p.Interval != "" && p.IntervalCount == 0 {
		p.IntervalCount = 1
	}
	if p.ProductID == "" {
		p.ProductID = "prod_" + strings.TrimPrefix(p.ID, "price_")
	}
	return p
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// patchPrice makes a copy of the template describing p. Besides the fields
// Price has, it makes the price a plain per-unit one: stripe-mock's fixture
// comes with a transform_quantity and a custom_unit_amount that would
// change what a customer pays.
func (p Price) patchPrice(template []byte, product any) (map[string]any, error) {
	obj := map[string]any{}
	if err := unmarshal(template, &obj); err != nil {
		return nil, fmt.Errorf("price template: %w", err)
	}
	obj["object"] = "price"
	obj["id"] = p.ID
	obj["lookup_key"] = nullable(p.LookupKey)
	obj["currency"] = strings.ToLower(p.Currency)
	obj["unit_amount"] = p.UnitAmount
	obj["unit_amount_decimal"] = strconv.FormatInt(p.UnitAmount, 10)
	obj["active"] = p.Active
	obj["product"] = product
	obj["billing_scheme"] = "per_unit"
	obj["tiers_mode"] = nil
	obj["transform_quantity"] = nil
	obj["custom_unit_amount"] = nil
	if p.Interval == "" {
		obj["type"] = "one_time"
		obj["recurring"] = nil
		return obj, nil
	}
	obj["type"] = "recurring"
	recurring, ok := obj["recurring"].(map[string]any)
	if !ok {
		recurring = map[string]any{"aggregate_usage": nil, "meter": nil, "trial_period_days": nil}
	}
	recurring["interval"] = p.Interval
	recurring["interval_count"] = p.IntervalCount
	recurring["usage_type"] = "licensed"
	obj["recurring"] = recurring
	return obj, nil
}

func (p Price) patchProduct(template []byte) (map[string]any, error) {
	obj := map[string]any{}
	if err := unmarshal(template, &obj); err != nil {
		return nil, fmt.Errorf("product template: %w", err)
	}
	metadata := map[string]string{}
	for k, v := range p.ProductMetadata {
		metadata[k] = v
	}
	obj["object"] = "product"
	obj["id"] = p.ProductID
	obj["name"] = p.ProductName
	obj["description"] = nullable(p.ProductDescription)
	obj["metadata"] = metadata
	obj["active"] = p.Active
	return obj, nil
}

// sampleJSON is stripeevent's sample object of the given type, the shape
// used when there is no upstream to take one from.
func sampleJSON(object string) []byte {
	b, err := json.Marshal(stripeevent.Sample(object))
	if err != nil {
		panic(err)
	}
	return b
}
