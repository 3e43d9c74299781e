package graph

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/internal/testenv"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/vektah/gqlparser/v2/ast"
)

// fakeHijacker is a ResponseWriter whose Hijack returns a net.Pipe end
// and the bufio.ReadWriter it was given, as net/http returns the reader
// and writer its connection keeps pointers to.
type fakeHijacker struct {
	http.ResponseWriter
	conn net.Conn
	brw  *bufio.ReadWriter
}

func (f *fakeHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) { return f.conn, f.brw, nil }

// unwrapper hides the Hijacker under Unwrap, as the server's
// statusRecorder does.
type unwrapper struct{ http.ResponseWriter }

func (u unwrapper) Unwrap() http.ResponseWriter { return u.ResponseWriter }

func TestSmallBufferHijackerShrinksBuffersInPlace(t *testing.T) {
	server, client := net.Pipe()
	defer server.Close()
	defer client.Close()
	r, w := bufio.NewReaderSize(server, 4096), bufio.NewWriterSize(server, 4096)
	fake := &fakeHijacker{ResponseWriter: httptest.NewRecorder(), conn: server, brw: bufio.NewReadWriter(r, w)}

	conn, brw, err := (&smallBufferHijacker{ResponseWriter: unwrapper{fake}}).Hijack()
	if err != nil {
		t.Fatal(err)
	}
	if conn != server {
		t.Errorf("Hijack returned another connection")
	}
	// The same reader and writer (net/http's connection points to them),
	// with the small buffers: the 4 KiB arrays are no longer reachable.
	if brw.Reader != r || brw.Writer != w {
		t.Fatalf("Hijack returned a new reader or writer; net/http would keep the old ones and their 4 KiB buffers")
	}
	if got := r.Size(); got != websocketReadBufferSize {
		t.Errorf("reader buffer %d bytes, want %d", got, websocketReadBufferSize)
	}
	if got := w.Size(); got != websocketWriteBufferSize {
		t.Errorf("writer buffer %d bytes, want %d", got, websocketWriteBufferSize)
	}

	// Both still work, for data larger than their buffers.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	go func() {
		_, _ = client.Write(big)
		_, _ = io.ReadFull(client, make([]byte, len(big)))
	}()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(brw.Reader, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read through the small reader: %v (equal %v)", err, bytes.Equal(got, big))
	}
	if _, err := brw.Writer.Write(big); err != nil {
		t.Fatalf("write through the small writer: %v", err)
	}
	if err := brw.Writer.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func TestSmallBufferHijackerKeepsBufferedBytes(t *testing.T) {
	// A client may send its first frame right behind the upgrade request:
	// those bytes are in the reader when Hijack returns, and must stay.
	server, client := net.Pipe()
	defer server.Close()
	defer client.Close()
	r := bufio.NewReaderSize(io.MultiReader(strings.NewReader("early bytes"), server), 4096)
	if _, err := r.Peek(len("early bytes")); err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(server, 4096)
	_, _ = w.WriteString("unflushed")
	fake := &fakeHijacker{ResponseWriter: httptest.NewRecorder(), conn: server, brw: bufio.NewReadWriter(r, w)}

	_, brw, err := (&smallBufferHijacker{ResponseWriter: fake}).Hijack()
	if err != nil {
		t.Fatal(err)
	}
	if brw.Reader.Size() != 4096 || brw.Writer.Size() != 4096 {
		t.Errorf("buffers holding data were replaced (reader %d, writer %d bytes)", brw.Reader.Size(), brw.Writer.Size())
	}
	got := make([]byte, len("early bytes"))
	if _, err := io.ReadFull(brw.Reader, got); err != nil || string(got) != "early bytes" {
		t.Errorf("read %q, %v; want the early bytes", got, err)
	}
	if brw.Writer.Buffered() != len("unflushed") {
		t.Errorf("writer holds %d bytes, want the %d unflushed ones", brw.Writer.Buffered(), len("unflushed"))
	}
}

// TestSmallBufferWebsocket runs the adapter behind a real net/http server:
// messages larger than both buffers go through in both directions, and
// the socket's buffers are the small ones.
func TestSmallBufferWebsocket(t *testing.T) {
	sizes := make(chan [2]int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recordingHijacker{ResponseWriter: w}
		ws, err := smallBufferWebsocket{}.Accept(unwrapper{rec}, r, transport.WebsocketAcceptOptions{
			ResponseHeader: http.Header{},
			Subprotocols:   []string{"graphql-transport-ws"},
		})
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer ws.Close()
		ws.(transport.WebsocketReadLimiter).SetReadLimit(1 << 20) // as gqlgen's transport does
		sizes <- [2]int{rec.brw.Reader.Size(), rec.brw.Writer.Size()}
		for {
			_, rd, err := ws.NextReader()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(rd)
			if err := ws.WriteJSON(string(b)); err != nil {
				return
			}
		}
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := mustDialWS(t, ctx, srv.URL)
	c.SetReadLimit(1 << 20)
	if s := <-sizes; s != [2]int{websocketReadBufferSize, websocketWriteBufferSize} {
		t.Errorf("socket buffers %v, want [%d %d]", s, websocketReadBufferSize, websocketWriteBufferSize)
	}
	for _, n := range []int{10, websocketReadBufferSize + 1, websocketWriteBufferSize + 1, 64 << 10} {
		msg := strings.Repeat("x", n)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write %d bytes: %v", n, err)
		}
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read the echo of %d bytes: %v", n, err)
		}
		if want := `"` + msg + `"`; string(b) != want {
			t.Fatalf("echo of %d bytes came back as %d bytes", n, len(b))
		}
	}
}

// recordingHijacker remembers what the ResponseWriter's Hijack returned.
type recordingHijacker struct {
	http.ResponseWriter
	brw *bufio.ReadWriter
}

func (h *recordingHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	h.brw = brw
	return conn, brw, err
}

// goroutineID is the id in runtime.Stack's first line.
func goroutineID() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	return strings.Fields(string(b))[1]
}

func operationCtx(op ast.Operation) context.Context {
	return graphql.WithOperationContext(context.Background(), &graphql.OperationContext{
		Operation: &ast.OperationDefinition{Operation: op},
	})
}

func TestStartSubscriptionsOnOwnStack(t *testing.T) {
	t.Run("SubscriptionStartsOnAnotherGoroutine", func(t *testing.T) {
		caller := goroutineID()
		var ranOn string
		resp := &graphql.Response{}
		h := startSubscriptionsOnOwnStack(operationCtx(ast.Subscription), func(ctx context.Context) graphql.ResponseHandler {
			ranOn = goroutineID()
			return func(context.Context) *graphql.Response { return resp }
		})
		if ranOn == caller {
			t.Errorf("the subscription started on the caller's goroutine %s, whose stack then keeps the growth for the subscription's life", caller)
		}
		if got := h(context.Background()); got != resp {
			t.Errorf("the handler returned is not the operation's")
		}
	})

	for _, op := range []ast.Operation{ast.Query, ast.Mutation} {
		t.Run(string(op)+"RunsInline", func(t *testing.T) {
			caller := goroutineID()
			var ranOn string
			startSubscriptionsOnOwnStack(operationCtx(op), func(ctx context.Context) graphql.ResponseHandler {
				ranOn = goroutineID()
				return graphql.OneShot(&graphql.Response{})
			})
			if ranOn != caller {
				t.Errorf("%s ran on goroutine %s, want the caller's %s", op, ranOn, caller)
			}
		})
	}

	t.Run("PanicReachesTheCaller", func(t *testing.T) {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the resolver's panic value", r)
			}
		}()
		startSubscriptionsOnOwnStack(operationCtx(ast.Subscription), func(ctx context.Context) graphql.ResponseHandler {
			panic("boom")
		})
		t.Error("no panic")
	})
}

// syncBuffer is a log destination for concurrent writers.
type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu <- struct{}{}
	defer func() { <-b.mu }()
	return b.buf.String()
}

// TestNewServerWebsocketSubscriber checks what NewServer wires for an idle
// subscriber: the socket's small buffers, and a subscription started on
// a goroutine of its own. The resolver panics (the Resolver has no
// billing service), and the panic's logged stack shows where it ran.
func TestNewServerWebsocketSubscriber(t *testing.T) {
	logs := newSyncBuffer()
	srv := NewServer(ServerOptions{
		Resolver: &Resolver{Log: slog.New(slog.NewTextHandler(logs, nil))},
		Log:      slog.New(slog.NewTextHandler(logs, nil)),
		Authenticate: func(string) (auth.Viewer, error) {
			return auth.Viewer{UserID: "u1"}, nil
		},
	})
	hijacked := make(chan *bufio.ReadWriter, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recordingHijacker{ResponseWriter: w}
		srv.ServeHTTP(unwrapper{rec}, r)
		if rec.brw != nil {
			hijacked <- rec.brw
		}
	}))
	defer ts.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := mustDialWS(t, ctx, ts.URL)
	// The handler returns once the socket is upgraded (hijacked). Sending
	// only then keeps connection_init out of net/http's reader at the
	// hijack: a reader holding bytes is kept as it is, at 4 KiB.
	var brw *bufio.ReadWriter
	select {
	case brw = <-hijacked:
	case <-time.After(10 * time.Second):
		t.Fatal("the websocket handler did not return")
	}
	wsInitAcked(t, ctx, c)
	wsWrite(t, ctx, c, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query":     `subscription($w: ID!) { billingEvents(workspaceId: $w) { eventId } }`,
		"variables": map[string]any{"w": uuid.NewString()},
	}})
	if m := wsRead(t, ctx, c); (m.Type != "next" && m.Type != "error") || m.ID != "1" || !strings.Contains(string(m.Payload), "INTERNAL") {
		t.Errorf("got %s id=%q %s, want the INTERNAL error of a panicking resolver", m.Type, m.ID, m.Payload)
	}

	log := logs.String()
	if !strings.Contains(log, "panic in resolver") {
		t.Fatalf("no panic logged:\n%s", log)
	}
	if !strings.Contains(log, "startSubscriptionsOnOwnStack") {
		t.Errorf("the subscription's resolver did not run on a goroutine of its own:\n%s", log)
	}

	// The socket's buffers are the small ones (checked once the socket is
	// closed).
	_ = c.Close(websocket.StatusNormalClosure, "")
	if brw.Reader.Size() != websocketReadBufferSize || brw.Writer.Size() != websocketWriteBufferSize {
		t.Errorf("socket buffers %d and %d bytes, want %d and %d", brw.Reader.Size(), brw.Writer.Size(), websocketReadBufferSize, websocketWriteBufferSize)
	}
}

// TestDetachedWebsocket checks that a websocket outlives its request's
// handler: the handler returns once the connection is upgraded, the socket
// goes on working (its context is not cancelled with the request's), and
// the request is told when the socket ends, not before.
func TestDetachedWebsocket(t *testing.T) {
	type detachRecord struct {
		detached chan string // the request id found in the detaching context
		ended    chan struct{}
	}
	newServer := func(t *testing.T, authenticate func(string) (auth.Viewer, error), origins []string) (*httptest.Server, *detachRecord, chan struct{}, *syncBuffer) {
		logs := newSyncBuffer()
		rec := &detachRecord{detached: make(chan string, 1), ended: make(chan struct{})}
		srv := NewServer(ServerOptions{
			Resolver:       &Resolver{Log: slog.New(slog.NewTextHandler(logs, nil))},
			Log:            slog.New(slog.NewTextHandler(logs, nil)),
			Authenticate:   authenticate,
			OriginPatterns: origins,
			DetachRequest: func(ctx context.Context) func() {
				id, _ := ctx.Value(requestIDForTest{}).(string)
				rec.detached <- id
				return func() { close(rec.ended) }
			},
		})
		returned := make(chan struct{}, 1)
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			srv.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDForTest{}, "req-7")))
			returned <- struct{}{}
		}))
		t.Cleanup(ts.Close)
		return ts, rec, returned, logs
	}
	viewer := func(string) (auth.Viewer, error) { return auth.Viewer{UserID: "u1"}, nil }

	t.Run("SocketOutlivesItsHandler", func(t *testing.T) {
		ts, rec, returned, _ := newServer(t, viewer, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := mustDialWS(t, ctx, ts.URL)
		select {
		case <-returned:
		case <-ctx.Done():
			t.Fatal("the handler did not return after the upgrade")
		}
		select {
		case id := <-rec.detached:
			if id != "req-7" {
				t.Errorf("detached with request id %q, want the request's context (req-7)", id)
			}
		default:
			t.Fatal("the handler returned without detaching the request")
		}

		// The socket works after its handler returned.
		wsInitAcked(t, ctx, c)
		wsWrite(t, ctx, c, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": `{ __typename }`}})
		if m := wsRead(t, ctx, c); m.Type != "next" || m.ID != "1" || string(m.Payload) != `{"data":{"__typename":"Query"}}` {
			t.Fatalf("got %s id=%q %s, want the query's answer", m.Type, m.ID, m.Payload)
		}
		select {
		case <-rec.ended:
			t.Fatal("the request was told the socket ended while it is open")
		case <-time.After(100 * time.Millisecond):
		}

		_ = c.Close(websocket.StatusNormalClosure, "")
		select {
		case <-rec.ended:
		case <-ctx.Done():
			t.Fatal("the request was not told that the socket ended")
		}
	})

	t.Run("RefusedUpgradeIsAnsweredByTheHandler", func(t *testing.T) {
		ts, rec, returned, _ := newServer(t, viewer, []string{"app.example.com"})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, res, err := dialWS(ctx, ts.URL, http.Header{"Origin": {"https://evil.example.com"}})
		if err == nil {
			t.Fatal("a websocket from a refused origin was accepted")
		}
		if res == nil || res.StatusCode != http.StatusForbidden {
			t.Fatalf("response %v, want 403", res)
		}
		<-returned
		select {
		case <-rec.detached:
			t.Error("a refused upgrade detached its request")
		default:
		}
	})

	t.Run("PanicIsLoggedAndEndsTheSocket", func(t *testing.T) {
		ts, rec, _, logs := newServer(t, func(string) (auth.Viewer, error) { panic("init boom") }, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := mustDialWS(t, ctx, ts.URL)
		wsWrite(t, ctx, c, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer x"}})
		select {
		case <-rec.ended:
		case <-ctx.Done():
			t.Fatal("the request was not told that the panicking socket ended")
		}
		if log := logs.String(); !strings.Contains(log, "panic serving a websocket") || !strings.Contains(log, "init boom") {
			t.Errorf("the panic was not logged:\n%s", log)
		}
	})
}

type requestIDForTest struct{}

// mustDialWS opens a graphql-transport-ws socket to the test server at
// url, closed when the test ends.
func mustDialWS(t *testing.T, ctx context.Context, url string) *websocket.Conn {
	t.Helper()
	c, _, err := dialWS(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// wsInitAcked sends connection_init with a token and expects
// connection_ack.
func wsInitAcked(t *testing.T, ctx context.Context, c *websocket.Conn) {
	t.Helper()
	wsWrite(t, ctx, c, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer x"}})
	if m := wsRead(t, ctx, c); m.Type != "connection_ack" {
		t.Fatalf("got %s, want connection_ack", m.Type)
	}
}

// dialWS opens a graphql-transport-ws socket to the test server at url.
func dialWS(ctx context.Context, url string, h http.Header) (*websocket.Conn, *http.Response, error) {
	return websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http"), &websocket.DialOptions{
		Subprotocols: []string{"graphql-transport-ws"}, HTTPHeader: h,
	})
}

type wsTestMessage struct {
	Type, ID string
	Payload  json.RawMessage
}

func wsWrite(t *testing.T, ctx context.Context, c *websocket.Conn, m map[string]any) {
	t.Helper()
	b, _ := json.Marshal(m)
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

// wsRead returns the next message that is not a keep-alive.
func wsRead(t *testing.T, ctx context.Context, c *websocket.Conn) wsTestMessage {
	t.Helper()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m wsTestMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m.Type != "ka" && m.Type != "ping" && m.Type != "pong" {
			return m
		}
	}
}

// TestDetachedWebsocketDropsTheResponseWriter checks that an upgraded
// socket keeps nothing of its request's ResponseWriter (net/http's
// response and connection state behind it): a finalizer on the writer
// the handler was given runs while the socket is still open.
func TestDetachedWebsocketDropsTheResponseWriter(t *testing.T) {
	srv := NewServer(ServerOptions{
		Resolver:      &Resolver{},
		Log:           slog.New(slog.NewTextHandler(io.Discard, nil)),
		Authenticate:  func(string) (auth.Viewer, error) { return auth.Viewer{UserID: "u1"}, nil },
		DetachRequest: func(context.Context) func() { return func() {} },
	})
	collected := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tracked := &trackedWriter{ResponseWriter: w}
		runtime.SetFinalizer(tracked, func(*trackedWriter) { close(collected) })
		srv.ServeHTTP(tracked, r)
	}))
	defer ts.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := mustDialWS(t, ctx, ts.URL)
	wsInitAcked(t, ctx, c)
	if !testenv.Finalized(collected) {
		t.Fatal("the socket still holds its request's ResponseWriter")
	}
	// The socket still answers.
	wsWrite(t, ctx, c, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": `{ __typename }`}})
	if m := wsRead(t, ctx, c); m.Type != "next" || m.ID != "1" {
		t.Fatalf("got %s id=%q %s after the writer was collected", m.Type, m.ID, m.Payload)
	}
}

// trackedWriter is a ResponseWriter with an identity of its own, for a
// finalizer; Hijack passes through, as net/http's writer does.
type trackedWriter struct{ http.ResponseWriter }

func (t *trackedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(t.ResponseWriter).Hijack()
}
