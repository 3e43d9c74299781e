package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/http/pprof"
	"net/url"
	"slices"

	"time"

	"billingapi/auth"
	"billingapi/cache"
	"billingapi/graph"
	"billingapi/webhooks"
)

// MaxGraphQLBody is the largest GraphQL request body accepted.
const MaxGraphQLBody = 1 << 20

// QueryTimeout bounds a GraphQL query: with the database hung, a query
// answers an error within it rather than hang.
const QueryTimeout = 4 * time.Second

// routes returns the service's HTTP handler.
func (m *Main) routes() http.Handler {
	gql := graph.NewServer(graph.ServerOptions{
		Resolver:                    &graph.Resolver{Service: m.Billing, Bus: m.Bus, Log: m.Log},
		Log:                         m.Log,
		OpenIntrospection:           !m.Config.Production(),
		OriginPatterns:              m.websocketOrigins(),
		Authenticate:                m.Verifier.ViewerFromHeader,
		DetachRequest:               m.detachRequest,    // observability.go
		OnOperation:                 m.observeOperation, // observability.go
		Near:                        m.Near,
		ObserveResponseCache:        m.Metrics.ResponseCacheLookup,
		ObserveSubscriptionResponse: m.Metrics.BillingEventResponse,
		Limiter:                     m.Limiter,
		QueryTimeout:                QueryTimeout,
		// A mutation may make a few Stripe calls, each with retries.
		MutationTimeout: 3*m.Config.Stripe.Timeout + 10*time.Second,
	})

	mux := http.NewServeMux()
	mux.Handle("/graphql", m.cors(graphqlOnly(m.authenticate(gql))))
	stripeHooks := &webhooks.Handler{DB: m.DB, Secrets: m.Config.Stripe.WebhookSecrets, Log: m.Log, Notify: m.Worker.Wake,
		Received: m.Metrics.WebhookReceived}
	mux.Handle("/webhooks/stripe/", stripeHooks)
	mux.Handle("/webhooks/stripe", stripeHooks)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", m.ready)
	mux.Handle("GET /metrics", m.metricsAccess(m.Metrics.Handler())) // observability.go
	// Profiles (CPU, heap, goroutines, ...) for performance work, under
	// the same rule as the metrics: they show the code's hot paths.
	mux.Handle("GET /debug/pprof/", m.metricsAccess(http.HandlerFunc(pprof.Index)))
	mux.Handle("GET /debug/pprof/profile", m.metricsAccess(http.HandlerFunc(pprof.Profile)))
	mux.Handle("GET /debug/pprof/trace", m.metricsAccess(http.HandlerFunc(pprof.Trace)))
	mux.HandleFunc("GET /{$}", m.playgroundGate(servePlayground))
	mux.HandleFunc("GET /playground/", m.playgroundGate(servePlaygroundAsset))
	mux.HandleFunc("GET /playground-signin/signin.js", servePlaygroundSignin)
	mux.HandleFunc("POST /playground-signin/session", m.playgroundSession)
	return m.logRequests(mux)
}

// ready answers 200 when the database and Redis both answer within two
// seconds, and 503 naming the one that does not.
func (m *Main) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := map[string]string{"database": "ok", "redis": "ok"}
	code := http.StatusOK
	if err := m.store.SQL.PingContext(ctx); err != nil {
		status["database"], code = "unavailable", http.StatusServiceUnavailable
	}
	if err := cache.Ping(ctx, m.Redis); err != nil {
		status["redis"], code = "unavailable", http.StatusServiceUnavailable
	}
	writeJSON(w, code, status)
}

// graphqlOnly enforces GraphQL over HTTP: POST bodies are application/json
// and at most MaxGraphQLBody bytes; GET is for queries and websocket
// upgrades (gqlgen refuses a mutation over GET); other methods are refused.
func graphqlOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		case http.MethodPost:
		default:
			w.Header().Set("Allow", "GET, POST, OPTIONS")
			writeError(w, http.StatusMethodNotAllowed, "BAD_REQUEST", "Use POST, or GET for queries.")
			return
		}
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "BAD_REQUEST", "Content-Type must be application/json.")
			return
		}
		if r.ContentLength > MaxGraphQLBody {
			writeError(w, http.StatusRequestEntityTooLarge, "BAD_REQUEST", "Request body is too large.")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxGraphQLBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, "BAD_REQUEST", "Request body is too large.")
				return
			}
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Could not read the request body.")
			return
		}
		// gqlgen would answer a body that is not one JSON object with an
		// uncoded error that echoes the body; refuse it here instead.
		if trimmed := bytes.TrimSpace(body); len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", "The body must be one JSON object: {\"query\": ..., \"variables\": ...}.")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// badSubjectMessage is the UNAUTHENTICATED message for a token whose sub
// cannot be a user id (auth.ErrBadSubject).
const badSubjectMessage = "Your token's user id (its sub claim) cannot be used: it must be 1 to 255 bytes of text, not only spaces, without the NUL character. Ask your identity provider for a token with another sub."

// authenticate puts the bearer token's viewer in the request context. No
// header means an anonymous request (public fields only); a bad token is
// refused outright with 401 UNAUTHENTICATED, never a partial answer.
func (m *Main) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		if header == "" {
			next.ServeHTTP(w, r)
			return
		}
		v, err := m.Verifier.ViewerFromHeader(header)
		if errors.Is(err, auth.ErrBadSubject) {
			// Properly signed, so saying why tells a forger nothing; and
			// signing in again would only bring the same sub back.
			m.Log.WarnContext(r.Context(), "token refused: its sub cannot be a user id")
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", badSubjectMessage)
			return
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Your session is invalid or has expired. Sign in again.")
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), v)))
	})
}

// cors answers preflight requests and adds CORS headers for allowed
// browser origins. In development any localhost origin is allowed.
func (m *Main) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && m.originAllowed(origin) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Max-Age", "600")
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// originAllowed reports whether a browser origin is in CORS_ALLOWED_ORIGINS
// or, in development, is a localhost origin.
func (m *Main) originAllowed(origin string) bool {
	if slices.Contains(m.Config.CORSAllowedOrigins, origin) {
		return true
	}
	// "*" is accepted by the config in development only.
	if slices.Contains(m.Config.CORSAllowedOrigins, "*") && !m.Config.Production() {
		return true
	}
	if m.Config.Production() {
		return false
	}
	u, err := url.Parse(origin)
	return err == nil && isLoopbackHost(u.Hostname())
}

// websocketOrigins returns CORS_ALLOWED_ORIGINS as coder/websocket host
// patterns, plus any localhost port in development.
func (m *Main) websocketOrigins() []string {
	var patterns []string
	for _, o := range m.Config.CORSAllowedOrigins {
		if o == "*" && !m.Config.Production() {
			return []string{"*"}
		}
		if u, err := url.Parse(o); err == nil && u.Host != "" {
			patterns = append(patterns, u.Host)
		}
	}
	if !m.Config.Production() {
		patterns = append(patterns, "localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", "[::1]", "[::1]:*")
	}
	return patterns
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}

// logRequests logs one line per request: method, path, status, the
// GraphQL code and operation, viewer, duration and request id (see
// observability.go). The request id is the client's X-Request-Id when
// valid, a new one otherwise; it is echoed in the response and carried in
// the context, so every line logged for the request has it.
func (m *Main) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r.Header.Get(RequestIDHeader))
		w.Header().Set(RequestIDHeader, id)
		ctx, info := withRequest(r.Context(), id)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		info.line, info.rec = requestLine{method: r.Method, path: r.URL.Path, start: start}, rec
		next.ServeHTTP(rec, r.WithContext(ctx))
		if line, ok := info.take(); ok { // else a websocket took it (detachRequest)
			m.logRequest(ctx, info, line)
		}
	})
}

// statusRecorder remembers the status code sent (the first one: later
// calls are ignored by net/http too) and the error code writeError sent;
// it passes through Flush and Unwrap so that websocket upgrades (Hijack)
// keep working.
type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	code        string
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// writeError writes a GraphQL-shaped error response.
func writeError(w http.ResponseWriter, status int, code, message string) {
	if rec, ok := w.(*statusRecorder); ok {
		rec.code = code // for the request log
	}
	writeJSON(w, status, map[string]any{
		"errors": []map[string]any{{"message": message, "extensions": map[string]string{"code": code}}},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
