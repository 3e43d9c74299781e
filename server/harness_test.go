package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/cache"
	"billingapi/internal/testenv"
)

// testServer is a running Main on a loopback port, with helpers to call it.
type testServer struct {
	*Main
	URL  string
	logs *syncBuffer
}

// syncBuffer collects log output from concurrent requests.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer starts the service on a free loopback port with the given
// environment (plus HTTP_ADDR) and a database URL, and stops it when the
// test ends. Redis is the real server when available, embedded otherwise.
func startServer(t *testing.T, databaseURL string, env map[string]string) *testServer {
	t.Helper()
	vars := map[string]string{"HTTP_ADDR": "127.0.0.1:0", "DATABASE_URL": databaseURL}
	if _, ok := env["REDIS_URL"]; !ok {
		redisURL, prefix := testenv.Redis(t)
		vars["REDIS_URL"] = redisURL
		vars["REDIS_KEY_PREFIX"] = prefix
	}
	// Tests make many Stripe mutations in a minute; the rate limit has
	// tests of its own that set it low.
	vars["RATE_LIMIT_PER_MINUTE"] = "100000"
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := LoadConfig(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncBuffer{}
	collectLogs(logs, cfg) // logscan_test.go scans every server's logs after the run
	m := NewMain(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := m.Open(ctx); err != nil {
		_ = m.Close()
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	return &testServer{Main: m, URL: m.URL(), logs: logs}
}

// token mints a token for sub with the server's development secret.
func (s *testServer) token(t *testing.T, sub string, admin bool) string {
	t.Helper()
	tok, err := auth.NewHS256Signer([]byte(s.Config.JWT.HS256Secret), s.Config.JWT.Issuer, s.Config.JWT.Audience).
		Mint(auth.Claims{Subject: sub, Email: sub + "@example.com", Name: strings.ToUpper(sub), Admin: admin}, time.Hour)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	return tok
}

// gqlError is one entry of a GraphQL response's errors.
type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// gqlResponse is a decoded GraphQL response.
type gqlResponse struct {
	Status int
	Raw    string
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

// Code returns the extensions.code of the first error, or "" without errors.
func (r gqlResponse) Code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// Decode unmarshals data into v, failing the test on errors in the response.
func (r gqlResponse) Decode(t *testing.T, v any) {
	t.Helper()
	if len(r.Errors) > 0 {
		t.Fatalf("unexpected errors: %s", r.Raw)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("decode %s: %v", r.Raw, err)
	}
}

// gql posts a GraphQL operation as token (empty: anonymous).
func (s *testServer) gql(t *testing.T, token, query string, vars map[string]any) gqlResponse {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return s.do(t, req)
}

// do sends req and decodes the GraphQL response.
func (s *testServer) do(t *testing.T, req *http.Request) gqlResponse {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	assertNoSecrets(t, string(raw))
	out := gqlResponse{Status: res.StatusCode, Raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("response is not JSON (%d): %s", res.StatusCode, raw)
		}
	}
	return out
}

// createWorkspace creates a workspace as token and returns its id.
func (s *testServer) createWorkspace(t *testing.T, token, name string) string {
	t.Helper()
	var out struct {
		CreateWorkspace struct{ ID string } `json:"createWorkspace"`
	}
	s.gql(t, token, `mutation($n: String!) { createWorkspace(input: {name: $n}) { id } }`,
		map[string]any{"n": name}).Decode(t, &out)
	return out.CreateWorkspace.ID
}

// addMember makes userID a member of a workspace the way people join: the
// holder of token invites them by user id, and they accept. It returns
// the invitation's response when that was refused, else the acceptance's.
func (s *testServer) addMember(t *testing.T, token, workspaceID, userID, role string) gqlResponse {
	t.Helper()
	inv := s.gql(t, token, `mutation($w: ID!, $u: ID!, $r: Role!) {
		inviteWorkspaceMember(input: {workspaceId: $w, userId: $u, role: $r}) { id }
	}`, map[string]any{"w": workspaceID, "u": userID, "r": role})
	if inv.Code() != "" {
		return inv
	}
	var out struct {
		InviteWorkspaceMember struct{ ID string }
	}
	inv.Decode(t, &out)
	return s.gql(t, s.token(t, userID, false), `mutation($i: ID!) {
		acceptInvitation(input: {invitationId: $i}) { id role user { id } }
	}`, map[string]any{"i": out.InviteWorkspaceMember.ID})
}

// secretMarkers are prefixes of values that must never reach a client:
// Stripe secret and restricted keys and webhook signing secrets.
var secretMarkers = []string{"sk_test_", "sk_live_", "rk_test_", "rk_live_", "whsec_"}

// assertNoSecrets fails the test when a response carries a secret. Every
// response read through testServer.do is scanned.
func assertNoSecrets(t *testing.T, body string) {
	t.Helper()
	for _, m := range secretMarkers {
		if strings.Contains(body, m) {
			t.Errorf("response contains %q: %s", m, body)
		}
	}
	if jwtInResponse.MatchString(body) {
		t.Errorf("response contains a JWT: %s", body)
	}
}

// jwtInResponse matches a JWT: no response of the API ever carries one.
var jwtInResponse = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+`)

// withStripe returns env plus a Stripe test key pointed at apiBase and the
// publishable key and webhook secret that go with it.
func withStripe(apiBase string, env map[string]string) map[string]string {
	out := map[string]string{
		"STRIPE_SECRET_KEY":      testenv.StripeMockKey,
		"STRIPE_PUBLISHABLE_KEY": "pk_test_123",
		"STRIPE_WEBHOOK_SECRET":  "whsec_test_secret_for_tests",
		"STRIPE_API_BASE":        apiBase,
	}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// jsonUnmarshal decodes raw JSON into v.
func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }

// settleNear waits until the server's near cache has handled every
// invalidation published before the call, the echoes of its own included
// (a writer drops its groups at once and drops them again when its own
// message comes back from Redis). Redis delivers a channel's messages in
// order, so once a probe group invalidated now has been dropped, every
// earlier message has been too.
func (s *testServer) settleNear(t *testing.T) {
	t.Helper()
	const probe = "test:settle"
	_, _, ticket := s.Near.Get(probe, "k")
	s.Near.Fill(probe, "k", true, ticket)
	if _, ok, _ := s.Near.Get(probe, "k"); !ok {
		t.Fatal("settleNear: the server's near cache is off")
	}
	other := cache.NewNear(s.Redis, s.Config.RedisKeyPrefix, 0, nil)
	if err := other.Invalidate(context.Background(), probe); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if _, ok, _ := s.Near.Get(probe, "k"); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("settleNear: the probe invalidation did not arrive within 2 s")
		}
	}
}
