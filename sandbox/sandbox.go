// Package sandbox is an offline, stateful Stripe for development and tests:
// an HTTP server that speaks the part of Stripe's API (version 2023-10-16)
// this service uses, keeps its objects, sends signed webhooks, serves the
// hosted Checkout, billing portal and 3D Secure pages, and keeps a clock
// that can be advanced (its own, and Stripe's test clocks).
//
// Every /v1 request is first validated against the OpenAPI spec bundled
// with the pinned stripe-mock release, as Stripe would validate it; only
// then does the sandbox act. An endpoint or parameter it does not
// implement is refused with an error that names it: it never answers with
// a fixture that pretends.
package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stripe/stripe-mock/param"
)

// Options configure a sandbox.
type Options struct {
	// DataDir keeps the state (state.json) across restarts; "" keeps it in
	// memory only.
	DataDir string
	// PublicURL is the base of the hosted pages' URLs (Checkout, portal,
	// 3D Secure), e.g. http://127.0.0.1:12111.
	PublicURL string
	// WebhookURL receives every event, signed with WebhookSecret; "" for
	// none. More endpoints may be registered with POST /v1/webhook_endpoints.
	WebhookURL    string
	WebhookSecret string
	// Chaos delivers every event twice and out of order, so that a
	// receiver's exactly-once and ordering rules are exercised.
	Chaos bool
	// RetryBase is the first delay between failed deliveries, doubled per
	// attempt up to RetryMax (defaults 1s and 1m: Stripe's own schedule
	// spans three days, which a development loop cannot wait for).
	RetryBase, RetryMax time.Duration
	// FailedRenewal is what happens to a subscription whose renewal invoice
	// stays unpaid after the last retry: "cancel" (Stripe's default) or
	// "unpaid".
	FailedRenewal string
	// Now is the wall clock; nil means time.Now. The sandbox's own clock is
	// this plus the offset `advance` adds.
	Now func() time.Time
	// Log receives one line per request and delivery; nil discards.
	Log *slog.Logger
	// HTTPClient delivers webhooks; nil means one with a 10 s timeout.
	HTTPClient *http.Client
}

// Server is one sandbox. Its handler is safe for concurrent use: requests
// are applied one at a time, as one account's writes would be.
type Server struct {
	opts Options
	spec *Spec
	log  *slog.Logger
	mux  *http.ServeMux // the /v1 endpoints the sandbox implements

	mu    sync.Mutex
	st    *state
	dirty bool
	// frozen holds a clock's reading while due work runs at its due time.
	frozen      map[string]int64
	schedulers  []scheduler
	intentHooks []intentHook
	pages       *http.ServeMux // the hosted pages

	wake     chan struct{}
	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
}

// New opens the sandbox, loading its state from DataDir, and starts its
// webhook sender and the ticker that lets its clock's due work happen
// (trials ending, renewals) as real time passes.
func New(opts Options) (*Server, error) {
	sp, err := LoadSpec()
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = time.Minute
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	switch opts.FailedRenewal {
	case "":
		opts.FailedRenewal = "cancel"
	case "cancel", "unpaid":
	default:
		return nil, fmt.Errorf("sandbox: FailedRenewal %q: want cancel or unpaid", opts.FailedRenewal)
	}
	opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	st, err := loadState(opts.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts: opts, spec: sp, log: opts.Log, st: st,
		frozen: map[string]int64{}, pages: http.NewServeMux(),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	s.mux = http.NewServeMux()
	s.routes()
	go s.background()
	return s, nil
}

// SetWebhook points the configured endpoint at url, signed with secret
// (for a receiver that starts after the sandbox, on a port it picks).
func (s *Server) SetWebhook(url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.WebhookURL, s.opts.WebhookSecret = url, secret
}

// Close stops the sender and the ticker and writes the state.
func (s *Server) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.stopped
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.persistLocked()
}

// ServeHTTP serves Stripe's API under /v1, the hosted pages, and the
// sandbox's own controls under /_sandbox.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/"):
		s.serveAPI(w, r)
	case strings.HasPrefix(r.URL.Path, "/_sandbox/"):
		s.serveControl(w, r)
	case r.URL.Path == "/healthz":
		w.Write([]byte("ok\n"))
	default:
		s.servePages(w, r)
	}
}

// handler answers one implemented endpoint: the object to send back (an
// object, or a list), or an *Error.
type handler func(c *call) (any, error)

// handle registers an endpoint, e.g. "POST /v1/customers/{id}".
func (s *Server) handle(pattern string, h handler) {
	s.mux.Handle(pattern, apiEndpoint{h})
}

// apiEndpoint is what the mux holds for an endpoint: routing a request
// through the mux (which also sets its path values) records the handler in
// the match it is given, and runs nothing.
type apiEndpoint struct{ h handler }

func (e apiEndpoint) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if m, ok := w.(*match); ok {
		m.h = e.h
	}
}

// match receives the routed endpoint; anything the mux writes (its own 404
// or 405) is discarded.
type match struct {
	discard
	h handler
}

// call is one API request being applied, under the sandbox's lock.
type call struct {
	s       *Server
	r       *http.Request
	params  map[string]any
	idemKey string
	reqID   string
	events  []string // ids of events this request emitted
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	reqID := "req_" + randomID(14)
	w.Header().Set("Request-Id", reqID)
	w.Header().Set("Stripe-Version", APIVersion)
	if e := checkAuth(r); e != nil {
		writeError(w, e)
		return
	}
	if v := r.Header.Get("Stripe-Version"); v != "" && v != APIVersion {
		writeError(w, badRequest("", "The sandbox speaks API version %s only (the version stripe-go v76 sends); this request asked for %s.", APIVersion, v))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, badRequest("", "Could not read the request body."))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	params, err := param.ParseParams(r)
	if err != nil {
		writeError(w, badRequest("", "Invalid request parameters: %v", err))
		return
	}
	if params == nil {
		params = map[string]any{}
	}

	var m match
	s.mux.ServeHTTP(&m, r)
	if m.h == nil {
		if s.spec.route(r.Method, r.URL.Path) != nil {
			writeError(w, notImplemented(r.Method+" "+r.URL.Path))
		} else {
			writeError(w, &Error{Status: http.StatusNotFound, Type: invalidRequest,
				Message: fmt.Sprintf("Unrecognized request URL (%s: %s).", r.Method, r.URL.Path)})
		}
		return
	}
	if e := s.spec.Validate(r, params); e != nil {
		writeError(w, e)
		return
	}

	key := r.Header.Get("Idempotency-Key")
	fingerprint := r.Method + " " + r.URL.Path + "\n" + canonicalParams(params)

	s.mu.Lock()
	if key != "" && r.Method == http.MethodPost {
		if rec, ok := s.st.Idempotency[key]; ok && s.opts.Now().Unix()-rec.Created <= idempotencyWindow {
			s.mu.Unlock()
			if rec.Fingerprint != fingerprint {
				writeError(w, &Error{Status: http.StatusBadRequest, Type: idempotency,
					Message: fmt.Sprintf("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '%s' if you meant to execute a different request.", key)})
				return
			}
			w.Header().Set("Idempotent-Replayed", "true")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(rec.Status)
			w.Write(rec.Body)
			return
		}
	}
	c := &call{s: s, r: r, params: params, idemKey: key, reqID: reqID}
	var before []byte
	if r.Method != http.MethodGet {
		before = s.snapshot()
	}
	result, herr := c.run(m.h)
	status, out := http.StatusOK, []byte(nil)
	if herr != nil {
		var e *Error
		if !errors.As(herr, &e) {
			s.log.Error("sandbox: handler failed", "path", r.URL.Path, "err", herr)
			e = &Error{Status: http.StatusInternalServerError, Type: "api_error", Message: "The sandbox failed: " + herr.Error()}
		}
		status, out = e.Status, mustJSON(e.body())
		// A refused request changes nothing, as at Stripe, but for a
		// declined confirmation, whose failed attempt stands (Error.Keep).
		if before != nil && !e.Keep {
			s.restore(before)
			c.events = nil
		}
	} else {
		out = mustJSON(s.expand(result, expansions(params)))
	}
	if key != "" && r.Method == http.MethodPost && status < 500 {
		now := s.opts.Now().Unix()
		s.st.Idempotency[key] = idemRecord{Fingerprint: fingerprint, Status: status, Body: out, Created: now}
		// Stripe keeps a key for 24 hours; so does the sandbox, so that
		// state.json does not grow with every key ever sent.
		for k, rec := range s.st.Idempotency {
			if now-rec.Created > idempotencyWindow {
				delete(s.st.Idempotency, k)
			}
		}
		s.dirty = true
	}
	if r.Method != http.MethodGet {
		s.dirty = true
	}
	perr := s.persistLocked()
	s.mu.Unlock()
	if perr != nil {
		s.log.Error("sandbox: write state", "err", perr)
	}
	if len(c.events) > 0 {
		s.kick()
	}
	s.log.Info("sandbox: request", "method", r.Method, "path", r.URL.Path, "status", status, "events", len(c.events))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(out)
}

// run calls the handler, turning a typed nil *Error into no error and a
// panic into a 500, so that a bug answers an error instead of leaving the
// sandbox's lock held.
func (c *call) run(h handler) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.s.log.Error("sandbox: handler panicked", "path", c.r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			result, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	result, err = h(c)
	if e, ok := err.(*Error); ok && e == nil {
		err = nil
	}
	return result, err
}

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// checkAuth accepts any test-mode secret or restricted key, as Bearer or
// Basic auth, the way Stripe's test mode would accept the account's key.
func checkAuth(r *http.Request) *Error {
	key := ""
	if u, _, ok := r.BasicAuth(); ok {
		key = u
	} else if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		key = strings.TrimSpace(v)
	}
	unauthorized := func(msg string) *Error {
		return &Error{Status: http.StatusUnauthorized, Type: invalidRequest, Message: msg}
	}
	switch {
	case key == "":
		return unauthorized("You did not provide an API key. Provide your test secret key (sk_test_...) as a Bearer token.")
	case strings.HasPrefix(key, "sk_live_"), strings.HasPrefix(key, "rk_live_"):
		return unauthorized("The sandbox refuses live keys: it is test mode only.")
	case (strings.HasPrefix(key, "sk_test_") || strings.HasPrefix(key, "rk_test_")) && len(key) > len("sk_test_"):
		return nil
	}
	return unauthorized("Invalid API Key provided: the sandbox accepts any sk_test_ or rk_test_ key.")
}

func writeError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	w.Write(mustJSON(e.body()))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// canonicalParams renders params in a stable order, so that the same
// request with its fields in another order has the same fingerprint.
func canonicalParams(p map[string]any) string {
	b, _ := json.Marshal(p) // encoding/json sorts map keys
	return string(b)
}

// idempotencyWindow is how long (seconds) an idempotency key is kept.
const idempotencyWindow = 24 * 3600

const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomID(n int) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(idAlphabet)))
	for i := range b {
		x, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err)
		}
		b[i] = idAlphabet[x.Int64()]
	}
	return string(b)
}

// newID returns a fresh Stripe-style id with the prefix, e.g. "cus".
func newID(prefix string) string { return prefix + "_" + randomID(24) }

// locked runs fn under the sandbox's lock as one change (a hosted page's
// form, a test's setup), then writes the state and wakes the sender.
func (s *Server) locked(fn func(c *call) error) (err error) {
	s.mu.Lock()
	defer s.kick()
	defer s.mu.Unlock()
	before := s.snapshot()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("sandbox: page panicked", "panic", p, "stack", string(debug.Stack()))
			s.restore(before)
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	c := &call{s: s, params: map[string]any{}}
	if err := fn(c); err != nil {
		return err
	}
	s.dirty = true
	return s.persistLocked()
}

// snapshot returns the state as JSON, to restore if a change fails
// halfway; restore puts it back.
func (s *Server) snapshot() []byte { return mustJSON(s.st) }

func (s *Server) restore(snap []byte) {
	var st state
	if err := json.Unmarshal(snap, &st); err != nil {
		panic(err) // it was marshalled from a state a moment ago
	}
	st.path = s.st.path
	s.st = &st
	s.dirty = false
}

// tickClock does the work the sandbox's own clock has made due; a failure
// or panic leaves the state as it was before.
func (s *Server) tickClock() {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.snapshot()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("sandbox: clock panicked", "panic", p, "stack", string(debug.Stack()))
			s.restore(before)
		}
	}()
	n := len(s.st.Events)
	if err := s.runDue("", s.nowOn("")); err != nil {
		s.log.Error("sandbox: clock", "err", err)
		s.restore(before)
		return
	}
	if len(s.st.Events) != n {
		s.dirty = true
	}
	if err := s.persistLocked(); err != nil {
		s.log.Error("sandbox: write state", "err", err)
	}
}

// kick wakes the webhook sender.
func (s *Server) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// background runs the webhook sender and, every second, the work the
// sandbox's own clock has made due.
func (s *Server) background() {
	defer close(s.stopped)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		s.deliverDue()
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-tick.C:
			s.tickClock()
		}
	}
}

// WaitDelivered blocks until every queued delivery has been answered 2xx
// or ctx ends; tests use it to know all events have reached the API.
func (s *Server) WaitDelivered(ctx context.Context) error {
	for {
		s.mu.Lock()
		n := len(s.st.Deliveries)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox: %d deliveries still pending: %w", n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
