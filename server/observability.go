package main

// Observability: request ids and the per-request log line's fields, the
// slog handler that adds request_id to every line logged with a request's
// context, the GraphQL operation hook (metrics and log fields), and the
// access rule of GET /metrics.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"billingapi/auth"
	"billingapi/graph"
	"billingapi/internal/metrics"
	"billingapi/internal/pgtext"

	"github.com/google/uuid"
)

// RequestIDHeader carries a request's id, in and out.
const RequestIDHeader = "X-Request-Id"

// maxRequestID is the longest incoming request id reused.
const maxRequestID = 64

// requestID returns the incoming id when it is 1..64 characters of
// [A-Za-z0-9-_], and a new random one otherwise.
func requestID(incoming string) string {
	if validRequestID(incoming) {
		return incoming
	}
	return uuid.NewString()
}

func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

type requestIDKey struct{}

// RequestIDFrom returns the request id in ctx, or "".
func RequestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// requestInfo collects what the request log line reports beyond the HTTP
// status: the viewer, the GraphQL operation and its result code. Inner
// handlers fill it in; for a websocket, the first operation is kept.
type requestInfo struct {
	mu        sync.Mutex
	viewer    string
	operation string
	code      string
	// line holds the line's fields from net/http, and rec the request's
	// status recorder until take copies its status out.
	line requestLine
	rec  *statusRecorder
}

// requestLine is what the request log line reports from net/http.
type requestLine struct {
	method, path string
	status       int
	refused      string // the code writeError sent, if any
	start        time.Time
}

type requestInfoKey struct{}

func requestInfoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

func (i *requestInfo) setViewer(v string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.viewer == "" || i.viewer == "anonymous" {
		i.viewer = v
	}
}

// setOperation records an operation's name and code, unless one was
// recorded already (a websocket carries several).
func (i *requestInfo) setOperation(name, code string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.code == "" {
		i.operation, i.code = name, code
	}
}

// take returns the request's line once: when its handler returns or, for
// a websocket, when the socket takes the request over (detachRequest),
// whichever comes first. It lets go of the status recorder, so that a
// line written when a socket ends keeps nothing of net/http's request or
// response.
func (i *requestInfo) take() (requestLine, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.rec == nil {
		return requestLine{}, false
	}
	l := i.line
	l.status, l.refused = i.rec.status, i.rec.code
	i.rec = nil
	return l, true
}

// detachRequest is graph.ServerOptions.DetachRequest: a websocket has
// taken over the request in ctx, whose handler returns while the socket
// lives on, so the request's log line is written when the socket ends
// (with the socket's first operation and its whole duration) rather than
// when the handler returns.
func (m *Main) detachRequest(ctx context.Context) (ended func()) {
	info := requestInfoFrom(ctx)
	if info == nil {
		return func() {}
	}
	line, ok := info.take()
	if !ok {
		return func() {}
	}
	return func() { m.logRequest(ctx, info, line) }
}

// logRequest writes the request log line.
func (m *Main) logRequest(ctx context.Context, info *requestInfo, line requestLine) {
	m.Log.LogAttrs(ctx, slog.LevelInfo, "request", requestLogAttrs(line, info, time.Since(line.start))...)
}

func (i *requestInfo) get() (viewer, operation, code string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.viewer, i.operation, i.code
}

// viewerLabel is how a viewer appears in the log: the user id, the
// service name, or "anonymous". Never a token.
func viewerLabel(ctx context.Context) string {
	v, ok := auth.FromContext(ctx)
	switch {
	case !ok:
		return "anonymous"
	case v.UserID != "":
		return pgtext.Clip(v.UserID, 128)
	case v.Service != "":
		return "service:" + v.Service
	}
	return "system"
}

// withRequest returns ctx carrying the request id and a fresh requestInfo.
func withRequest(ctx context.Context, id string) (context.Context, *requestInfo) {
	info := &requestInfo{}
	ctx = context.WithValue(ctx, requestIDKey{}, id)
	return context.WithValue(ctx, requestInfoKey{}, info), info
}

// requestLogAttrs are the fields of the request log line (request_id is
// added by requestIDHandler). "path=... status=..." stay adjacent.
func requestLogAttrs(line requestLine, info *requestInfo, d time.Duration) []slog.Attr {
	viewer, operation, code := info.get()
	if viewer == "" {
		viewer = "anonymous"
	}
	attrs := []slog.Attr{
		slog.String("method", line.method),
		slog.String("path", pgtext.Clip(line.path, 256)),
		slog.Int("status", line.status),
	}
	if code == "" {
		code = line.refused // refused before GraphQL ran (writeError)
	}
	if code != "" {
		attrs = append(attrs, slog.String("code", code))
	}
	if line.path == "/graphql" {
		if operation == "" {
			operation = metrics.Anonymous
		}
		attrs = append(attrs, slog.String("operation", operation))
	}
	return append(attrs,
		slog.String("viewer", viewer),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
	)
}

// requestIDHandler adds request_id to every record logged with a context
// that carries one, so that all the lines of a request can be found.
// (Stripe's own request id is logged as stripe_request_id.)
type requestIDHandler struct{ slog.Handler }

// withRequestIDs wraps a logger so that its lines carry request_id.
func withRequestIDs(log *slog.Logger) *slog.Logger {
	if log == nil {
		log = slog.Default()
	}
	if _, ok := log.Handler().(requestIDHandler); ok {
		return log
	}
	return slog.New(requestIDHandler{log.Handler()})
}

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestIDFrom(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// observeOperation is graph.ServerOptions.OnOperation: it counts the
// operation and gives the request log its name, code and viewer.
func (m *Main) observeOperation(ctx context.Context, op graph.OperationResult) {
	m.Metrics.GraphQLOperation(m.Metrics.OperationLabel(op.Name), op.Code, op.Duration, op.Type != "subscription")
	if info := requestInfoFrom(ctx); info != nil {
		name := pgtext.Clip(op.Name, metrics.MaxLabelLength)
		if name == "" {
			name = metrics.Anonymous
		}
		info.setViewer(viewerLabel(ctx))
		info.setOperation(name, pgtext.Clip(op.Code, metrics.MaxLabelLength))
	}
}

// metricsAccess guards GET /metrics: with METRICS_TOKEN set, the request
// needs "Authorization: Bearer <token>" (401 otherwise); without it, only
// a loopback client that did not come through a proxy may read (403
// otherwise).
func (m *Main) metricsAccess(next http.Handler) http.Handler {
	token := m.Config.MetricsToken
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			got := sha256.Sum256([]byte(strings.TrimSpace(cred)))
			// Comparing digests keeps the comparison constant-time and
			// does not reveal the token's length.
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !strings.EqualFold(scheme, "Bearer") {
				w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if !loopbackClient(r) {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackClient reports whether the request's remote address is loopback
// (127.0.0.0/8 or ::1) and carries no forwarding header: a request relayed
// by a proxy on the same host would otherwise look local.
func loopbackClient(r *http.Request) bool {
	if r.Header.Get("X-Forwarded-For") != "" || r.Header.Get("Forwarded") != "" || r.Header.Get("X-Real-Ip") != "" {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
