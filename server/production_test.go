package main

import (
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
