package graph

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"

	"billingapi/auth"
	"billingapi/cache"
	"billingapi/graph/generated"
	"billingapi/graph/model"
	"billingapi/graph/relay"
	"billingapi/ratelimit"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2/ast"
)

// ServerOptions configures the GraphQL executor and its transports.
type ServerOptions struct {
	Resolver *Resolver
	Log      *slog.Logger
	// OpenIntrospection lets anyone introspect (development); otherwise
	// only platform admins may.
	OpenIntrospection bool
	// OriginPatterns are the browser origins (host[:port] patterns, as in
	// coder/websocket) allowed to open a websocket. A request without an
	// Origin header (a non-browser client) is always allowed.
	OriginPatterns []string
	// QueryTimeout bounds a query (and MutationTimeout a mutation), so
	// that a hung database answers an error instead of holding the
	// request; zero means no bound. Subscriptions are not bounded.
	QueryTimeout, MutationTimeout time.Duration
	// Limiter counts the Stripe mutations of @rateLimited fields, per
	// caller and per workspace (RateLimited); nil means no limit.
	Limiter *ratelimit.Limiter
	// Authenticate turns the Authorization value of a websocket's
	// connection_init payload into a viewer; an error closes the socket.
	Authenticate func(authorization string) (auth.Viewer, error)
	// Near is the in-process cache that ResponseCache keeps answers in;
	// nil keeps none.
	Near *cache.Near
	// ObserveResponseCache, when set, is told whether each query that
	// ResponseCache may answer was answered from it, and of which scope
	// (metrics).
	ObserveResponseCache func(scope string, hit bool)
	// ObserveSubscriptionResponse, when set, is told for each billing
	// event sent to a subscriber whether its response was shared with
	// another subscriber or rendered (SharedEventResponses).
	ObserveSubscriptionResponse func(shared bool)
	// DetachRequest, when set, is told when a websocket's request ends
	// while the socket lives on (its handler returns once the connection
	// is upgraded), and returns what to call when the socket ends.
	DetachRequest func(ctx context.Context) (ended func())
	// OnOperation, when set, is told about each operation once, at its
	// first response (metrics and the request log).
	OnOperation func(ctx context.Context, op OperationResult)
}

// WebsocketInitTimeout is how long a websocket may wait before sending
// connection_init.
const WebsocketInitTimeout = 10 * time.Second

// NewServer returns the GraphQL handler: POST (JSON), GET (queries only)
// and websocket (graphql-transport-ws and graphql-ws) transports, with the
// depth, complexity and introspection limits and the error presenter.
func NewServer(o ServerOptions) *handler.Server {
	cfg := generated.Config{Resolvers: o.Resolver}
	cfg.Directives.Authenticated = Authenticated
	cfg.Directives.PlatformAdmin = PlatformAdmin
	cfg.Directives.RateLimited = RateLimited(o.Limiter, o.Log)
	connection := func(child int, _ *relay.Cursor, first *int, _ *relay.Cursor, last *int) int {
		return pageCost(child, first, last)
	}
	cfg.Complexity.Workspace.Members = connection
	cfg.Complexity.Workspace.Invitations = connection
	cfg.Complexity.Workspace.Payments = connection
	cfg.Complexity.Workspace.Invoices = connection
	cfg.Complexity.Workspace.CheckoutSessions = connection
	cfg.Complexity.User.Workspaces = connection
	cfg.Complexity.Query.WebhookEvents = func(child int, _ *model.WebhookEventStatus, _ *string, after *relay.Cursor, first *int, before *relay.Cursor, last *int) int {
		return connection(child, after, first, before, last)
	}
	cfg.Complexity.Workspace.PaymentMethods = stripeCost(StripeReadCost)
	cfg.Complexity.Workspace.UpcomingInvoice = stripeCost(StripeReadCost)
	cfg.Complexity.Workspace.Billing = stripeCost(StripeReadCost)
	cfg.Complexity.Query.PreviewPlanChange = func(child int, _, _ string, _ *int) int { return StripeReadCost + child }
	cfg.Complexity.Query.Price = func(child int, _ string) int { return PriceLookupCost + child }

	srv := handler.New(generated.NewExecutableSchema(cfg))
	srv.AddTransport(detachedWebsocket{Websocket: transport.Websocket{
		Implementation: smallBufferWebsocket{transport.CoderWebsocketImplementation{
			AcceptOptions: websocket.AcceptOptions{OriginPatterns: o.OriginPatterns},
		}},
		InitFunc:              wsInit(o.Authenticate),
		InitTimeout:           WebsocketInitTimeout,
		KeepAlivePingInterval: 15 * time.Second,
	}, detach: o.DetachRequest, log: cmp.Or(o.Log, slog.Default())})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})

	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.Use(IntrospectionPolicy{Open: o.OpenIntrospection})
	srv.Use(DepthLimit{Max: MaxDepth, MaxFields: MaxFields})
	// Suggestions ("Did you mean ...?") describe the schema; outside
	// development they are as private as introspection.
	srv.SetDisableSuggestion(!o.OpenIntrospection)
	srv.Use(extension.FixedComplexityLimit(MaxComplexity))
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](100)})
	if o.OnOperation != nil {
		srv.Use(operationObserver{o.OnOperation})
	}
	// After the observer, so that a cached answer is still an operation
	// in the metrics and the request log.
	srv.Use(ResponseCache{Near: o.Near, Observe: o.ObserveResponseCache})

	srv.Use(EndedSubscriptions{})
	srv.AroundOperations(operationDeadline(o.QueryTimeout, o.MutationTimeout))
	srv.AroundOperations(startSubscriptionsOnOwnStack)
	// Innermost, so that its feed reaches the resolver (which runs on
	// startSubscriptionsOnOwnStack's goroutine) and every response it
	// returns, shared or not, still passes the observer.
	srv.Use(SharedEventResponses{Log: o.Log, Observe: o.ObserveSubscriptionResponse})
	// Every field, before its directives: text the database cannot store
	// is the client's BAD_USER_INPUT, and spends no budget.
	srv.AroundFields(refuseUnstorableText)
	srv.SetErrorPresenter(ErrorPresenter(o.Log))
	srv.SetRecoverFunc(Recover(o.Log))
	return srv
}

// --- operation observer (metrics and request log) ---

// OperationResult is what ServerOptions.OnOperation is told about one
// operation.
type OperationResult struct {
	// Name is the operation's name; "" when it has none or none was found
	// (a parse error, an unknown operationName): the client's claimed name
	// is never used unless the document has that operation.
	Name string
	// Type is "query", "mutation" or "subscription"; "" when unknown.
	Type string
	// Code is the first error's extensions.code, or "OK".
	Code string
	// Duration runs from the request's start to the first response. For
	// a subscription the first response waits for an event, so it is not
	// a latency.
	Duration time.Duration
}

// operationObserver reports each operation once: executed operations at
// their first response (InterceptOperation, which also sees errors that
// end a subscription before it starts), and requests refused before
// execution (parse, validation, complexity) through InterceptResponse.
type operationObserver struct {
	report func(context.Context, OperationResult)
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
	graphql.ResponseInterceptor
} = operationObserver{}

type observedKey struct{}

func (operationObserver) ExtensionName() string                   { return "OperationObserver" }
func (operationObserver) Validate(graphql.ExecutableSchema) error { return nil }

func (o operationObserver) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	ctx = context.WithValue(ctx, observedKey{}, true)
	start := graphql.GetStartTime(ctx)
	if start.IsZero() {
		start = time.Now()
	}
	handler := next(ctx)
	var once sync.Once
	return func(ctx context.Context) *graphql.Response {
		resp := handler(ctx)
		once.Do(func() { o.report(ctx, observed(ctx, resp, start)) })
		return resp
	}
}

func (o operationObserver) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if ctx.Value(observedKey{}) == nil {
		// Not an executed operation: refused before execution.
		start := graphql.GetStartTime(ctx)
		if start.IsZero() {
			start = time.Now()
		}
		o.report(ctx, observed(ctx, resp, start))
	}
	return resp
}

func observed(ctx context.Context, resp *graphql.Response, start time.Time) OperationResult {
	r := OperationResult{Code: "OK", Duration: time.Since(start)}
	if graphql.HasOperationContext(ctx) {
		if op := graphql.GetOperationContext(ctx).Operation; op != nil {
			r.Name, r.Type = op.Name, string(op.Operation)
		}
	}
	if resp != nil && len(resp.Errors) > 0 {
		r.Code = "UNKNOWN"
		if c, ok := resp.Errors[0].Extensions["code"].(string); ok && c != "" {
			r.Code = c
		}
	}
	return r
}

// operationDeadline gives queries and mutations a deadline; the operation's
// resolvers (and the database and Stripe calls below them) see it.
func operationDeadline(query, mutation time.Duration) graphql.OperationMiddleware {
	return func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		oc := graphql.GetOperationContext(ctx)
		d := query
		if oc.Operation != nil && oc.Operation.Operation == ast.Mutation {
			d = mutation
		}
		if oc.Operation == nil || oc.Operation.Operation == ast.Subscription || d <= 0 {
			return next(ctx)
		}
		ctx, cancel := context.WithTimeout(ctx, d)
		handler := next(ctx)
		done := false
		return func(rctx context.Context) *graphql.Response {
			if done {
				return nil
			}
			resp := handler(rctx)
			done = true
			cancel()
			return resp
		}
	}
}
