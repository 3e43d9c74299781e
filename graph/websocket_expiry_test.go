package graph

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"billingapi/auth"
)

// A websocket is authenticated once, at connection_init or from its
// upgrade request; it must end when that token expires, or a token that
// was let expire (a member removed, an admin demoted) would go on running
// operations over it for as long as its client keeps it open.
func TestWebsocketEndsWhenItsTokenExpires(t *testing.T) {
	const lifetime = 700 * time.Millisecond
	newServer := func(t *testing.T, upgradeViewer *auth.Viewer) *httptest.Server {
		srv := NewServer(ServerOptions{
			Resolver: &Resolver{Log: slog.New(slog.DiscardHandler)},
			Log:      slog.New(slog.DiscardHandler),
			Authenticate: func(string) (auth.Viewer, error) {
				return auth.Viewer{UserID: "u1", Expires: time.Now().Add(lifetime)}, nil
			},
		})
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if upgradeViewer != nil { // as the HTTP middleware does with an Authorization header
				v := *upgradeViewer
				v.Expires = time.Now().Add(lifetime)
				r = r.WithContext(auth.NewContext(r.Context(), v))
			}
			srv.ServeHTTP(w, r)
		}))
		t.Cleanup(ts.Close)
		return ts
	}
	for _, tc := range []struct {
		name          string
		upgradeViewer *auth.Viewer
		init          map[string]any
	}{
		{"TokenInConnectionInit", nil, map[string]any{"Authorization": "Bearer x"}},
		{"TokenOnTheUpgradeRequest", &auth.Viewer{UserID: "u1"}, map[string]any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newServer(t, tc.upgradeViewer)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			c := mustDialWS(t, ctx, ts.URL)
			wsWrite(t, ctx, c, map[string]any{"type": "connection_init", "payload": tc.init})
			if m := wsRead(t, ctx, c); m.Type != "connection_ack" {
				t.Fatalf("got %s, want connection_ack", m.Type)
			}
			wsWrite(t, ctx, c, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": `{ __typename }`}})
			if m := wsRead(t, ctx, c); m.Type != "next" || m.ID != "1" {
				t.Fatalf("got %s id=%q %s before the token expired, want the answer", m.Type, m.ID, m.Payload)
			}
			// Nothing more is sent; the next read ends with the socket.
			for {
				_, b, err := c.Read(ctx)
				if err == nil {
					continue // keep-alives, a completion
				}
				if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
					t.Fatal("the socket was still open 10 s after its token expired")
				}
				if since := time.Since(start); since < lifetime {
					t.Fatalf("the socket ended after %v, before its token expired: %v (last %s)", since, err, b)
				}
				return
			}
		})
	}
}

// A viewer not made from a token (Expires zero) keeps its socket open.
func TestWebsocketWithoutExpiryStaysOpen(t *testing.T) {
	srv := NewServer(ServerOptions{
		Resolver:     &Resolver{Log: slog.New(slog.DiscardHandler)},
		Log:          slog.New(slog.DiscardHandler),
		Authenticate: func(string) (auth.Viewer, error) { return auth.Viewer{UserID: "u1"}, nil },
	})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := mustDialWS(t, ctx, ts.URL)
	wsInitAcked(t, ctx, c)
	time.Sleep(time.Second)
	wsWrite(t, ctx, c, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": `{ __typename }`}})
	if m := wsRead(t, ctx, c); m.Type != "next" || m.ID != "1" {
		t.Fatalf("got %s id=%q %s, want the answer", m.Type, m.ID, m.Payload)
	}
}
