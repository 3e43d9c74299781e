package main

import (
	"bytes"
	"context"
	"net/http"
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
	const q = `{ __schema { queryType { name } } }`
	if r := s.gql(t, "", q, nil); r.Code() == "" {
		t.Fatalf("anonymous introspection in production: %s", r.Raw)
	}
	if r := s.gql(t, s.token(t, "alice", false), q, nil); r.Code() == "" {
		t.Fatalf("user introspection in production: %s", r.Raw)
	}
	if r := s.gql(t, s.token(t, "root", true), q, nil); r.Code() != "" {
		t.Fatalf("platform admin introspection in production: %s", r.Raw)
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
