package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"billingapi/graph"
	"billingapi/internal/testenv"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// wsReadTimeout bounds every websocket read so that a hang fails the test.
const wsReadTimeout = 5 * time.Second

// wsMessage is one message of graphql-transport-ws or graphql-ws.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// wsURL turns the server's http:// URL into its ws:// GraphQL endpoint.
func wsURL(s *testServer) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + "/graphql"
}

// wsDial opens a websocket with one subprotocol and optional headers,
// closing it when the test ends.
func wsDial(t *testing.T, s *testServer, subprotocol string, header http.Header) *websocket.Conn {
	t.Helper()
	c, res, err := wsTryDial(t, s, subprotocol, header)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial %s (HTTP %d): %v", wsURL(s), status, err)
	}
	if got := c.Subprotocol(); got != subprotocol {
		t.Fatalf("negotiated subprotocol %q, want %q", got, subprotocol)
	}
	return c
}

// wsTryDial dials and returns whatever happened.
func wsTryDial(t *testing.T, s *testServer, subprotocol string, header http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wsReadTimeout)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: header}
	if subprotocol != "" {
		opts.Subprotocols = []string{subprotocol}
	}
	c, res, err := websocket.Dial(ctx, wsURL(s), opts)
	if err == nil {
		t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, res, err
}

// wsSend writes one message.
func wsSend(t *testing.T, c *websocket.Conn, m any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wsReadTimeout)
	defer cancel()
	if err := wsjson.Write(ctx, c, m); err != nil {
		t.Fatalf("write %v: %v", m, err)
	}
}

// wsNext reads the next message that is not a keep-alive ("ka", "ping",
// "pong"), within wsReadTimeout; the error is the read error (for
// example the close frame).
func wsNext(t *testing.T, c *websocket.Conn) (wsMessage, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wsReadTimeout)
	defer cancel()
	for {
		var m wsMessage
		if err := wsjson.Read(ctx, c, &m); err != nil {
			return wsMessage{}, err
		}
		switch m.Type {
		case "ka", "ping", "pong":
			continue
		}
		return m, nil
	}
}

// wsExpect reads the next message and fails unless it has type typ (and,
// when id is not empty, that id).
func wsExpect(t *testing.T, c *websocket.Conn, typ, id string) wsMessage {
	t.Helper()
	m, err := wsNext(t, c)
	if err != nil {
		t.Fatalf("waiting for %q: %v (close status %d)", typ, err, websocket.CloseStatus(err))
	}
	if m.Type != typ || (id != "" && m.ID != id) {
		t.Fatalf("got message %s id=%q payload=%s, want type %q id %q", m.Type, m.ID, m.Payload, typ, id)
	}
	return m
}

// wsInitPayload is a connection_init payload carrying token, if any.
func wsInitPayload(token string) map[string]any {
	if token == "" {
		return map[string]any{}
	}
	return map[string]any{"Authorization": "Bearer " + token}
}

// wsResult is a GraphQL result as carried by next/data.
type wsResult struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

// wsMeID decodes me.id from a next/data payload, failing on errors.
func wsMeID(t *testing.T, m wsMessage) string {
	t.Helper()
	var r wsResult
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		t.Fatalf("decode %s payload %s: %v", m.Type, m.Payload, err)
	}
	if len(r.Errors) > 0 {
		t.Fatalf("unexpected errors in %s: %s", m.Type, m.Payload)
	}
	var data struct{ Me struct{ ID string } }
	if err := json.Unmarshal(r.Data, &data); err != nil {
		t.Fatalf("decode data %s: %v", r.Data, err)
	}
	return data.Me.ID
}

// wsExpectClosed reads until the connection ends and fails if a
// connection_ack (or any result) arrives first or it stays open past
// wsReadTimeout. It returns the close status (-1 without a close frame).
func wsExpectClosed(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	deadline := time.Now().Add(wsReadTimeout)
	for time.Now().Before(deadline) {
		m, err := wsNext(t, c)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("connection still open after %s", wsReadTimeout)
			}
			return websocket.CloseStatus(err)
		}
		switch m.Type {
		case "connection_error":
			t.Logf("connection_error: %s", m.Payload)
			continue
		default:
			t.Fatalf("got %s (payload %s) on a connection that should have been refused", m.Type, m.Payload)
		}
	}
	t.Fatalf("connection still open after %s", wsReadTimeout)
	return -1
}

func TestWebsocketGraphQLTransportWS(t *testing.T) {
	s := startServer(t, testenv.SQLite(t), nil)
	const proto = "graphql-transport-ws"

	t.Run("TokenInConnectionInit", func(t *testing.T) {
		c := wsDial(t, s, proto, nil)
		wsSend(t, c, map[string]any{"type": "connection_init", "payload": wsInitPayload(s.token(t, "ws-alice", false))})
		wsExpect(t, c, "connection_ack", "")
		wsSend(t, c, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": "{ me { id } }"}})
		if id := wsMeID(t, wsExpect(t, c, "next", "1")); id != "ws-alice" {
			t.Errorf("me.id = %q, want ws-alice", id)
		}
		wsExpect(t, c, "complete", "1")

		// The socket stays usable for a second operation.
		wsSend(t, c, map[string]any{"id": "2", "type": "subscribe", "payload": map[string]any{"query": "{ __typename }"}})
		wsExpect(t, c, "next", "2")
		wsExpect(t, c, "complete", "2")
		_ = c.Close(websocket.StatusNormalClosure, "")
	})

	t.Run("AnonymousMeIsUnauthenticated", func(t *testing.T) {
		c := wsDial(t, s, proto, nil)
		wsSend(t, c, map[string]any{"type": "connection_init", "payload": wsInitPayload("")})
		wsExpect(t, c, "connection_ack", "")
		wsSend(t, c, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": "{ me { id } }"}})
		m, err := wsNext(t, c)
		if err != nil {
			t.Fatalf("waiting for the result: %v", err)
		}
		var errs []gqlError
		switch m.Type {
		case "next":
			var r wsResult
			if err := json.Unmarshal(m.Payload, &r); err != nil {
				t.Fatalf("decode next payload %s: %v", m.Payload, err)
			}
			if d := strings.TrimSpace(string(r.Data)); d != "" && d != "null" {
				t.Errorf("anonymous me returned data %s", d)
			}
			errs = r.Errors
		case "error":
			if err := json.Unmarshal(m.Payload, &errs); err != nil {
				t.Fatalf("decode error payload %s: %v", m.Payload, err)
			}
		default:
			t.Fatalf("got %s (payload %s), want next or error", m.Type, m.Payload)
		}
		if len(errs) == 0 {
			t.Fatalf("no errors in %s: %s", m.Type, m.Payload)
		}
		if code, _ := errs[0].Extensions["code"].(string); code != "UNAUTHENTICATED" {
			t.Errorf("errors[0].extensions.code = %q, want UNAUTHENTICATED: %s", code, m.Payload)
		}
		if m.Type == "next" {
			wsExpect(t, c, "complete", "1")
		}
	})

	t.Run("BadTokenInConnectionInitClosesTheSocket", func(t *testing.T) {
		c := wsDial(t, s, proto, nil)
		wsSend(t, c, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer not-a-jwt"}})
		if status := wsExpectClosed(t, c); status != 4403 {
			t.Errorf("close status = %d, want 4403 (graphql-transport-ws Forbidden)", status)
		}
	})

	t.Run("ExpiredTokenInConnectionInitClosesTheSocket", func(t *testing.T) {
		c := wsDial(t, s, proto, nil)
		wsSend(t, c, map[string]any{"type": "connection_init", "payload": wsInitPayload(expiredToken(t, s, "ws-expired"))})
		wsExpectClosed(t, c)
	})

	t.Run("TokenOnUpgradeRequestIsUsed", func(t *testing.T) {
		// A non-browser client may authenticate the upgrade request itself;
		// a connection_init without a token keeps that viewer.
		c := wsDial(t, s, proto, http.Header{"Authorization": {"Bearer " + s.token(t, "ws-upgrader", false)}})
		wsSend(t, c, map[string]any{"type": "connection_init"})
		wsExpect(t, c, "connection_ack", "")
		wsSend(t, c, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": "{ me { id } }"}})
		if id := wsMeID(t, wsExpect(t, c, "next", "1")); id != "ws-upgrader" {
			t.Errorf("me.id = %q, want ws-upgrader", id)
		}
	})

	t.Run("BadTokenOnUpgradeRequestIsRefused", func(t *testing.T) {
		c, res, err := wsTryDial(t, s, proto, http.Header{"Authorization": {"Bearer not-a-jwt"}})
		if err == nil {
			_ = c.CloseNow()
			t.Fatal("upgrade with a bad token succeeded")
		}
		if res == nil || res.StatusCode != http.StatusUnauthorized {
			t.Errorf("upgrade with a bad token: %v, want HTTP 401", err)
		}
	})

	t.Run("ParseErrorIsAnErrorMessage", func(t *testing.T) {
		c := wsDial(t, s, proto, nil)
		wsSend(t, c, map[string]any{"type": "connection_init"})
		wsExpect(t, c, "connection_ack", "")
		wsSend(t, c, map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": "{ me { "}})
		m := wsExpect(t, c, "error", "1")
		var errs []gqlError
		if err := json.Unmarshal(m.Payload, &errs); err != nil || len(errs) == 0 {
			t.Fatalf("decode error payload %s: %v", m.Payload, err)
		}
		if code, _ := errs[0].Extensions["code"].(string); code != "GRAPHQL_PARSE_FAILED" {
			t.Errorf("code = %q, want GRAPHQL_PARSE_FAILED", code)
		}
	})
}

func TestWebsocketGraphQLWS(t *testing.T) {
	s := startServer(t, testenv.SQLite(t), nil)
	const proto = "graphql-ws"

	t.Run("TokenInConnectionInit", func(t *testing.T) {
		c := wsDial(t, s, proto, nil)
		wsSend(t, c, map[string]any{"type": "connection_init", "payload": wsInitPayload(s.token(t, "ws-legacy", false))})
		wsExpect(t, c, "connection_ack", "")
		wsSend(t, c, map[string]any{"id": "1", "type": "start", "payload": map[string]any{"query": "{ me { id } }"}})
		if id := wsMeID(t, wsExpect(t, c, "data", "1")); id != "ws-legacy" {
			t.Errorf("me.id = %q, want ws-legacy", id)
		}
		wsExpect(t, c, "complete", "1")
	})

	t.Run("BadTokenInConnectionInitClosesTheSocket", func(t *testing.T) {
		c := wsDial(t, s, proto, nil)
		wsSend(t, c, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer not-a-jwt"}})
		wsExpectClosed(t, c)
	})
}

func TestWebsocketOrigin(t *testing.T) {
	s := startServer(t, testenv.SQLite(t), nil)
	const proto = "graphql-transport-ws"

	refused := func(t *testing.T, s *testServer, origin string) {
		t.Helper()
		c, res, err := wsTryDial(t, s, proto, http.Header{"Origin": {origin}})
		if err == nil {
			_ = c.CloseNow()
			t.Fatalf("upgrade from Origin %s succeeded, want it refused", origin)
		}
		if res == nil || res.StatusCode != http.StatusForbidden {
			status := 0
			if res != nil {
				status = res.StatusCode
			}
			t.Errorf("upgrade from Origin %s: HTTP %d (%v), want 403", origin, status, err)
		}
	}
	allowed := func(t *testing.T, s *testServer, header http.Header) {
		t.Helper()
		c := wsDial(t, s, proto, header)
		wsSend(t, c, map[string]any{"type": "connection_init"})
		wsExpect(t, c, "connection_ack", "")
		_ = c.Close(websocket.StatusNormalClosure, "")
	}

	t.Run("ForeignOriginIsRefused", func(t *testing.T) { refused(t, s, "https://evil.example") })
	t.Run("LookalikeLocalhostIsRefused", func(t *testing.T) { refused(t, s, "http://localhost.evil.example") })
	t.Run("RefusalIsLoggedWithTheStatusSent", func(t *testing.T) {
		s := startServer(t, testenv.SQLite(t), nil)
		refused(t, s, "https://evil.example")
		// The request line is logged when the handler returns; allow it a moment.
		deadline := time.Now().Add(2 * time.Second)
		for !strings.Contains(s.logs.String(), "path=/graphql status=") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if logs := s.logs.String(); !strings.Contains(logs, "path=/graphql status=403") {
			t.Errorf("BUG: the client got 403 but the request log says otherwise: statusRecorder.WriteHeader (server/http.go, logRequests) "+
				"records every WriteHeader call, so gqlgen's superfluous WriteHeader(400) after coder/websocket's 403 overwrites it; "+
				"it should keep the first status only. Logs:\n%s", logs)
		}
	})
	t.Run("NoOriginIsAllowed", func(t *testing.T) { allowed(t, s, nil) })
	t.Run("LocalhostIsAllowedInDevelopment", func(t *testing.T) {
		allowed(t, s, http.Header{"Origin": {"http://localhost:3000"}})
	})
	t.Run("ConfiguredOriginIsAllowed", func(t *testing.T) {
		s := startServer(t, testenv.SQLite(t), map[string]string{"CORS_ALLOWED_ORIGINS": "https://app.example.com"})
		allowed(t, s, http.Header{"Origin": {"https://app.example.com"}})
		refused(t, s, "https://other.example.com")
	})
	t.Run("WildcardAllowsAnyOriginInDevelopment", func(t *testing.T) {
		// LoadConfig accepts CORS_ALLOWED_ORIGINS="*" outside production.
		s := startServer(t, testenv.SQLite(t), map[string]string{"CORS_ALLOWED_ORIGINS": "*"})
		c, res, err := wsTryDial(t, s, proto, http.Header{"Origin": {"https://anything.example"}})
		if err != nil {
			status := 0
			if res != nil {
				status = res.StatusCode
			}
			t.Fatalf(`BUG: CORS_ALLOWED_ORIGINS="*" is accepted by LoadConfig in development but Main.websocketOrigins (server/http.go) `+
				`drops it (url.Parse("*").Host is empty), so a websocket from https://anything.example is refused: HTTP %d: %v`, status, err)
		}
		_ = c.CloseNow()
	})
}

func TestWebsocketInitTimeout(t *testing.T) {
	if testing.Short() {
		t.Skipf("waits graph.WebsocketInitTimeout (%s)", graph.WebsocketInitTimeout)
	}
	s := startServer(t, testenv.SQLite(t), nil)
	c := wsDial(t, s, "graphql-transport-ws", nil)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), graph.WebsocketInitTimeout+wsReadTimeout)
	defer cancel()
	var m wsMessage
	err := wsjson.Read(ctx, c, &m)
	elapsed := time.Since(start)
	switch {
	case err == nil:
		t.Fatalf("got %s (payload %s) without sending connection_init", m.Type, m.Payload)
	case errors.Is(err, context.DeadlineExceeded):
		t.Fatalf("socket still open %s after connecting without connection_init", elapsed)
	}
	if elapsed < graph.WebsocketInitTimeout-time.Second {
		t.Errorf("socket closed after %s, before the %s init timeout: %v", elapsed, graph.WebsocketInitTimeout, err)
	}
	t.Logf("closed after %s with status %d: %v", elapsed.Round(time.Millisecond), websocket.CloseStatus(err), err)
}
