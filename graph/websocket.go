package graph

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"billingapi/auth"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
)

// The websocket transport is gqlgen's, arranged so that an idle
// subscriber costs little memory: each costs its socket's buffers and the
// stacks of the goroutines that wait on it, for as long as it stays
// connected, so with thousands connected these dominate the server's
// memory.

// Websocket buffers. net/http hands a hijacked connection over with the
// 4 KiB reader and 4 KiB writer it read the upgrade request with, and
// coder/websocket keeps both for the socket's life: 8 KiB of every idle
// subscriber's heap. A socket needs far less. Clients send a few small
// messages (connection_init, subscribe, pong), and a message larger than
// a buffer still goes through, in more than one read or write (bufio
// passes large reads and writes straight through). The write buffer holds
// a typical event with its frame header whole, so that an event still
// goes out in one write.
const (
	websocketReadBufferSize  = 512
	websocketWriteBufferSize = 1024
)

// smallBufferWebsocket is gqlgen's coder/websocket adapter, with the
// socket's read and write buffers of websocketReadBufferSize and
// websocketWriteBufferSize instead of the ones net/http hijacks with.
type smallBufferWebsocket struct {
	transport.CoderWebsocketImplementation
}

func (s smallBufferWebsocket) Accept(w http.ResponseWriter, r *http.Request, o transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	return s.CoderWebsocketImplementation.Accept(&smallBufferHijacker{ResponseWriter: w}, r, o)
}

// smallBufferHijacker hijacks like the ResponseWriter it wraps, then gives
// the returned reader and writer smaller buffers.
type smallBufferHijacker struct {
	http.ResponseWriter
}

func (h *smallBufferHijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// Hijack swaps the buffers in place: net/http's connection keeps pointers
// to the same bufio.Reader and bufio.Writer for as long as the handler
// runs (for a websocket, the socket's life), so returning new ones would
// leave the 4 KiB arrays reachable. After Hijack net/http no longer uses
// them (nor puts them back in its pools): the connection and its buffers
// are the caller's. A buffer that holds data (bytes a client sent right
// behind the upgrade request) is left as it is.
func (h *smallBufferHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return conn, brw, err
	}
	if brw.Reader.Buffered() == 0 && brw.Reader.Size() > websocketReadBufferSize {
		*brw.Reader = *bufio.NewReaderSize(conn, websocketReadBufferSize)
	}
	if brw.Writer.Buffered() == 0 && brw.Writer.Size() > websocketWriteBufferSize {
		*brw.Writer = *bufio.NewWriterSize(conn, websocketWriteBufferSize)
	}
	return conn, brw, nil
}

// startSubscriptionsOnOwnStack starts a subscription (runs its resolver,
// with billingEvents' membership query, and the rest of what gqlgen does
// before waiting for the first event) on a goroutine that ends once the
// subscription has started. gqlgen's goroutine for the subscription then
// only waits for events and sends them, for as long as the subscription
// lasts, and a goroutine keeps the stack its deepest call grew: started
// there, the query grew it from 4 KiB to 8 or 16 KiB, which garbage
// collection brings back to 8 KiB at best (it halves a stack less than a
// quarter used), while waiting needs 1.5 KiB. A panic reaches the caller
// as it would have.
func startSubscriptionsOnOwnStack(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if oc := graphql.GetOperationContext(ctx); oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
		return next(ctx)
	}
	type started struct {
		handler  graphql.ResponseHandler
		panicked bool
		value    any
	}
	done := make(chan started, 1)
	go func() {
		var s started
		returned := false
		defer func() {
			if !returned {
				s.panicked, s.value = true, recover()
			}
			done <- s
		}()
		s.handler = next(ctx)
		returned = true
	}()
	s := <-done
	if s.panicked {
		panic(s.value)
	}
	return s.handler
}

// wsInit authenticates a websocket from its connection_init payload. A
// token in the payload replaces any viewer from the upgrade request; no
// token keeps it (or leaves the socket anonymous, for public fields).
// The socket ends when its viewer's token expires: it is authenticated
// once, and would otherwise go on running operations, and receiving
// events, as long as its client keeps it open.
func wsInit(authenticate func(string) (auth.Viewer, error)) transport.WebsocketInitFunc {
	return func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
		if header := p.Authorization(); header != "" {
			v, err := authenticate(header)
			if err != nil {
				// 4403 Forbidden is graphql-transport-ws's close code for a
				// refused connection_init.
				ctx = transport.WithWebsocketCloseCode(ctx, 4403)
				ctx = transport.AppendCloseReason(ctx, "Forbidden")
				if errors.Is(err, auth.ErrBadSubject) {
					return ctx, nil, errors.New("the token's sub cannot be a user id")
				}
				return ctx, nil, errors.New("invalid or expired token")
			}
			ctx = auth.NewContext(ctx, v)
		}
		if v, ok := auth.FromContext(ctx); ok && !v.Expires.IsZero() {
			ctx = endAt(ctx, v.Expires)
		}
		return ctx, nil, nil
	}
}

// endAt returns a context cancelled at t, which gqlgen's transport takes
// as the socket's end. Its timer stops when the socket ends first (serve
// cancels the socket's context then), so a long-lived token holds nothing
// after its socket is gone; context.WithDeadline would do the same but
// leave a cancel function with no place to be called.
func endAt(ctx context.Context, t time.Time) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(time.Until(t), cancel)
	context.AfterFunc(ctx, func() { timer.Stop() })
	return ctx
}

// detachedWebsocket serves each websocket on a goroutine of its own and
// lets the request's handler return once the connection is upgraded.
//
// Why: net/http's goroutine for the upgrade request read the request and
// ran every middleware before gqlgen's transport, and its stack grew to
// 16 KiB on the way; with the socket's read loop on it, it kept those
// 16 KiB for the socket's life. A goroutine that starts at the transport
// grows to 8 KiB. With net/http's goroutine gone, so is its request and
// response state.
//
// What it keeps: the socket's context has the request's values (viewer,
// request id) but not its cancellation, which net/http fires when the
// handler returns, hijacked or not; nothing else cancels a hijacked
// request's context, so a socket ends as it did before, when its client
// or gqlgen closes it. detach (optional) is told when a socket outlives
// its handler, and returns what to call when the socket ends: the request
// log writes its line then. A refused upgrade is answered before the
// handler returns, as before. A panic is logged, as net/http would.
type detachedWebsocket struct {
	transport.Websocket
	detach func(ctx context.Context) (ended func())
	log    *slog.Logger
}

func (d detachedWebsocket) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	r = r.WithContext(context.WithoutCancel(r.Context()))
	s := &socketState{upgraded: make(chan struct{}), served: make(chan struct{})}
	go d.serve(&upgradeSignal{ResponseWriter: w, ctx: r.Context(), detach: d.detach, state: s}, r, exec, s)
	select {
	case <-s.upgraded:
	case <-s.served:
	}
}

// serve runs on the socket's goroutine, for the socket's life. Once
// gqlgen's transport has upgraded the connection, nothing refers to u
// (the ResponseWriter) any more, so net/http's response and connection
// state can be collected while the socket lives on.
func (d detachedWebsocket) serve(u *upgradeSignal, r *http.Request, exec graphql.GraphExecutor, s *socketState) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel() // ends what the socket's context started (wsInit's timer)
	r = r.WithContext(ctx)
	defer close(s.served)
	defer func() {
		if s.ended != nil {
			s.ended()
		}
	}()
	defer func() {
		if v := recover(); v != nil {
			d.log.ErrorContext(ctx, "panic serving a websocket", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	d.Websocket.Do(u, r, exec)
}

// socketState is what a detachedWebsocket's handler and socket goroutine
// share.
type socketState struct {
	ended    func() // set before upgraded is closed
	upgraded chan struct{}
	served   chan struct{}
}

// upgradeSignal is the ResponseWriter of a detachedWebsocket: a successful
// Hijack detaches the request and then closes state.upgraded.
type upgradeSignal struct {
	http.ResponseWriter
	ctx    context.Context
	detach func(context.Context) func()
	state  *socketState
}

func (u *upgradeSignal) Unwrap() http.ResponseWriter { return u.ResponseWriter }

func (u *upgradeSignal) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(u.ResponseWriter).Hijack()
	if err != nil {
		return conn, brw, err
	}
	if u.detach != nil {
		u.state.ended = u.detach(u.ctx)
	}
	close(u.state.upgraded)
	return conn, brw, nil
}
