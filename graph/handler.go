package graph

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"billingapi/auth"
	"billingapi/graph/generated"

	"entgo.io/contrib/entgql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
	"github.com/google/uuid"
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
	// Authenticate turns the Authorization value of a websocket's
	// connection_init payload into a viewer; an error closes the socket.
	Authenticate func(authorization string) (auth.Viewer, error)
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
	cfg.Complexity.Workspace.Members = func(child int, _ *entgql.Cursor[uuid.UUID], first *int, _ *entgql.Cursor[uuid.UUID], last *int) int {
		return pageCost(child, first, last)
	}
	cfg.Complexity.User.Workspaces = func(child int, _ *entgql.Cursor[uuid.UUID], first *int, _ *entgql.Cursor[uuid.UUID], last *int) int {
		return pageCost(child, first, last)
	}

	srv := handler.New(generated.NewExecutableSchema(cfg))
	srv.AddTransport(transport.Websocket{
		Implementation: transport.CoderWebsocketImplementation{
			AcceptOptions: websocket.AcceptOptions{OriginPatterns: o.OriginPatterns},
		},
		InitFunc:              wsInit(o.Authenticate),
		InitTimeout:           WebsocketInitTimeout,
		KeepAlivePingInterval: 15 * time.Second,
	})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})

	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.Use(IntrospectionPolicy{Open: o.OpenIntrospection})
	srv.Use(DepthLimit{Max: MaxDepth})
	srv.Use(extension.FixedComplexityLimit(MaxComplexity))
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](100)})

	srv.SetErrorPresenter(ErrorPresenter(o.Log))
	srv.SetRecoverFunc(Recover(o.Log))
	return srv
}

// wsInit authenticates a websocket from its connection_init payload. A
// token in the payload replaces any viewer from the upgrade request; no
// token keeps it (or leaves the socket anonymous, for public fields).
func wsInit(authenticate func(string) (auth.Viewer, error)) transport.WebsocketInitFunc {
	return func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
		header := p.Authorization()
		if header == "" {
			return ctx, nil, nil
		}
		v, err := authenticate(header)
		if err != nil {
			// 4403 Forbidden is graphql-transport-ws's close code for a
			// refused connection_init.
			ctx = transport.WithWebsocketCloseCode(ctx, 4403)
			ctx = transport.AppendCloseReason(ctx, "Forbidden")
			return ctx, nil, errors.New("invalid or expired token")
		}
		return auth.NewContext(ctx, v), nil, nil
	}
}
