package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"billingapi/internal/testenv"
)

// productionEnv is a production configuration on the test's own services:
// test-mode Stripe keys explicitly allowed, as a staging deployment would.
func productionEnv(t *testing.T, stripeBase string) map[string]string {
	t.Helper()
	redisURL, prefix := testenv.Redis(t)
	return map[string]string{
		"APP_ENV":                              "production",
		"APP_BASE_URL":                         "https://billing.example.com",
		"REDIS_URL":                            redisURL,
		"REDIS_KEY_PREFIX":                     prefix,
		"STRIPE_SECRET_KEY":                    testenv.StripeMockKey,
		"STRIPE_PUBLISHABLE_KEY":               "pk_test_123",
		"STRIPE_WEBHOOK_SECRET":                "whsec_test_secret_for_tests",
		"STRIPE_API_BASE":                      stripeBase,
		"STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION": "true",
		"JWT_HS256_SECRET":                     "a-production-secret-that-is-long-enough-0123456789",
		"CORS_ALLOWED_ORIGINS":                 "https://app.example.com",
	}
}

func TestProductionRestrictsIntrospection(t *testing.T) {
	s := startServer(t, testenv.Postgres(t), productionEnv(t, testenv.StripeMock(t)))
	for _, q := range []string{
		`{ __schema { queryType { name } } }`,
		`{ __type(name: "Query") { name } }`,
		`query { ...F } fragment F on Query { __schema { queryType { name } } }`,
		`{ ... on Query { __schema { queryType { name } } } }`,
	} {
		if r := s.gql(t, "", q, nil); r.Code() != "UNAUTHENTICATED" {
			t.Fatalf("anonymous introspection in production (%s): %s", q, r.Raw)
		}
		if r := s.gql(t, s.token(t, "alice", false), q, nil); r.Code() != "FORBIDDEN" {
			t.Fatalf("user introspection in production (%s): %s", q, r.Raw)
		}
		if r := s.gql(t, s.token(t, "root", true), q, nil); r.Code() != "" {
			t.Fatalf("platform admin introspection in production (%s): %s", q, r.Raw)
		}
	}
	if r := s.gql(t, s.token(t, "alice", false), `{ __typename }`, nil); r.Code() != "" {
		t.Fatalf("__typename is not introspection: %s", r.Raw)
	}
}

func TestProductionCORSAndWebsocketOrigins(t *testing.T) {
	s := startServer(t, testenv.Postgres(t), productionEnv(t, testenv.StripeMock(t)))
	preflight := func(origin string) string {
		req, _ := http.NewRequest(http.MethodOptions, s.URL+"/graphql", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.Header.Get("Access-Control-Allow-Origin")
	}
	if got := preflight("https://app.example.com"); got != "https://app.example.com" {
		t.Errorf("allowed origin: Access-Control-Allow-Origin = %q", got)
	}
	for _, o := range []string{"http://localhost:5173", "https://evil.example", "https://app.example.com.evil.example"} {
		if got := preflight(o); got != "" {
			t.Errorf("%s: Access-Control-Allow-Origin = %q in production", o, got)
		}
	}
	for origin, ok := range map[string]bool{"https://app.example.com": true, "http://localhost:3000": false, "https://evil.example": false, "": true} {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, res, err := wsTryDial(t, s, "graphql-transport-ws", h)
		if c != nil {
			c.CloseNow()
		}
		if ok != (err == nil) {
			status := 0
			if res != nil {
				status = res.StatusCode
			}
			t.Errorf("websocket from %q: err = %v (status %d), want allowed = %t", origin, err, status, ok)
		}
	}
}

func TestProductionRefusesDevelopmentShortcuts(t *testing.T) {
	env := func(with map[string]string) func(string) string {
		vars := map[string]string{}
		for k, v := range productionEnv(t, "http://127.0.0.1:12111") {
			vars[k] = v
		}
		vars["DATABASE_URL"] = "postgres://app@db.example.com/billing"
		for k, v := range with {
			vars[k] = v
		}
		return func(k string) string { return vars[k] }
	}
	cases := map[string]map[string]string{
		"StripeMockWithoutTestModeAllowed": {"STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION": "false"},
		"TestKeysWithoutTheFlag":           {"STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION": "", "STRIPE_API_BASE": ""},
		"DevelopmentJWTSecret":             {"JWT_HS256_SECRET": DevJWTSecret},
		"EmbeddedSQLite":                   {"DATABASE_URL": ""},
		"EmbeddedRedis":                    {"REDIS_URL": ""},
		"WildcardCORS":                     {"CORS_ALLOWED_ORIGINS": "*"},
	}
	for name, with := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := LoadConfig(env(with)); err == nil {
				t.Fatal("accepted in production")
			}
		})
	}
	if _, err := LoadConfig(env(nil)); err != nil {
		t.Fatalf("the valid production environment was refused: %v", err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"trigger", "payment_intent.succeeded", "--workspace", "6f1f5f0e-1111-4a4a-9999-0123456789ab"}, env(nil), &out, &out); err == nil {
		t.Fatal("trigger ran in production")
	}
}

func TestProductionPlaygroundIsForPlatformAdmins(t *testing.T) {
	s := startServer(t, testenv.Postgres(t), productionEnv(t, testenv.StripeMock(t)))
	get := func(path, cookie string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: playgroundCookie, Value: cookie})
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	session := func(token string) *http.Response {
		res, err := http.Post(s.URL+"/playground-signin/session", "application/json", strings.NewReader(`{"token":"`+token+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if code, body := get("/", ""); code != 200 || !strings.Contains(body, "platform admins") || strings.Contains(body, "playground.js") {
		t.Fatalf("GET / without a session: %d %.200s", code, body)
	}
	if code, _ := get("/playground/playground.js", ""); code != http.StatusForbidden {
		t.Fatalf("asset without a session: %d", code)
	}
	user, admin := s.token(t, "alice", false), s.token(t, "root", true)
	if res := session(user); res.StatusCode != http.StatusForbidden || len(res.Cookies()) != 0 {
		t.Fatalf("session for a non-admin: %d %v", res.StatusCode, res.Cookies())
	}
	if res := session("not-a-token"); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("session for garbage: %d", res.StatusCode)
	}
	res := session(admin)
	if res.StatusCode != http.StatusNoContent || len(res.Cookies()) != 1 {
		t.Fatalf("session for an admin: %d %v", res.StatusCode, res.Cookies())
	}
	c := res.Cookies()[0]
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie flags: %+v", c)
	}
	if code, body := get("/", c.Value); code != 200 || !strings.Contains(body, "playground.js") {
		t.Fatalf("GET / as an admin: %d", code)
	}
	if code, _ := get("/playground/playground.js", c.Value); code != 200 {
		t.Fatalf("asset as an admin: %d", code)
	}
	if code, body := get("/", user); code != 200 || strings.Contains(body, "playground.js") {
		t.Fatalf("a non-admin token in the cookie opened the playground")
	}
}

// A server on the public development JWT secret warns when it can be
// reached from other machines, and only then.
func TestDevelopmentSecretBeyondLoopbackWarns(t *testing.T) {
	const warning = "the public development secret is in use"
	for _, tc := range []struct {
		addr string
		warn bool
	}{{"127.0.0.1:0", false}, {"0.0.0.0:0", true}} {
		s := startServer(t, testenv.SQLite(t), map[string]string{"HTTP_ADDR": tc.addr})
		if s.Config.JWT.HS256Secret != DevJWTSecret {
			t.Fatal("the test server does not use the development secret")
		}
		if got := strings.Contains(s.logs.String(), warning); got != tc.warn {
			t.Errorf("listening on %s: warned %v, want %v", tc.addr, got, tc.warn)
		}
	}
}
