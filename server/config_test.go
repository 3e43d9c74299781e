package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Distinctive secret values: if one of them shows up in an error or in printed
// output, something leaked.
const (
	sentinelTestSecretKey     = "sk_test_SENTINELsecret123"
	sentinelLiveSecretKey     = "sk_live_SENTINELlive456"
	sentinelTestRestrictedKey = "rk_test_SENTINELrestricted789"
	sentinelTestPubKey        = "pk_test_SENTINELpub123"
	sentinelLivePubKey        = "pk_live_SENTINELpub456"
	sentinelWebhookSecret1    = "whsec_SENTINELwebhookOne1"
	sentinelWebhookSecret2    = "whsec_SENTINELwebhookTwo2"
	sentinelHS256Secret       = "SENTINELjwt-0123456789abcdef0123456789abcdef"
	sentinelMetricsToken      = "SENTINELmetrics-token-42"
	sentinelDBPassword        = "SENTINELdbPass"
	sentinelRedisPassword     = "SENTINELredisPass"
)

// mapGetenv returns a getenv backed by m.
func mapGetenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// envWith returns a copy of base with the given NAME, value pairs set ("" unsets).
func envWith(base map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(base)+len(kv)/2)
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// validProductionEnv is a complete, valid production environment.
func validProductionEnv() map[string]string {
	return map[string]string{
		"APP_ENV":                "production",
		"APP_BASE_URL":           "https://billing.example.com/",
		"DATABASE_URL":           "postgres://billing:" + sentinelDBPassword + "@db.internal:5432/billing?sslmode=require",
		"REDIS_URL":              "rediss://:" + sentinelRedisPassword + "@cache.internal:6380/0",
		"STRIPE_SECRET_KEY":      sentinelLiveSecretKey,
		"STRIPE_PUBLISHABLE_KEY": sentinelLivePubKey,
		"STRIPE_WEBHOOK_SECRET":  sentinelWebhookSecret1,
		"JWT_HS256_SECRET":       sentinelHS256Secret,
		"JWT_ISSUER":             "https://auth.example.com/",
		"JWT_AUDIENCE":           "billing-api",
		"CORS_ALLOWED_ORIGINS":   "https://app.example.com",
		"METRICS_TOKEN":          sentinelMetricsToken,
		"PLAN_LOOKUP_KEYS":       "basic_monthly,pro_monthly",
	}
}

// devStripeTestEnv is a development environment with test-mode Stripe keys.
func devStripeTestEnv() map[string]string {
	return map[string]string{
		"STRIPE_SECRET_KEY":      sentinelTestSecretKey,
		"STRIPE_PUBLISHABLE_KEY": sentinelTestPubKey,
		"STRIPE_WEBHOOK_SECRET":  sentinelWebhookSecret1,
	}
}

// secretValuesIn returns every secret value env feeds in: keys, webhook secrets, the
// HS256 secret, the metrics token and URL passwords.
func secretValuesIn(env map[string]string) []string {
	var out []string
	for _, name := range []string{"STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "JWT_HS256_SECRET", "METRICS_TOKEN"} {
		if v := strings.TrimSpace(env[name]); v != "" {
			out = append(out, v)
		}
	}
	out = append(out, splitList(env["STRIPE_WEBHOOK_SECRET"])...)
	for _, name := range []string{"DATABASE_URL", "REDIS_URL"} {
		if u, err := url.Parse(env[name]); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok && p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func writeKeyFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func encodePublicKeyPEM(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// TestLoadConfig loads environments, one subtest each: those that are
// refused name every problem (wantErr, substrings of the one error) and
// return a zero Config; those that load hold what check says. In neither
// does a secret fed in show in the error or the printed Config.
func TestLoadConfig(t *testing.T) {
	k := writeConfigKeyFiles(t)

	// vars is an environment of the given NAME, value pairs; production
	// and devStripe change the valid production environment and the
	// development one with test keys.
	vars := func(kv ...string) map[string]string { return envWith(nil, kv...) }
	production := func(kv ...string) map[string]string { return envWith(validProductionEnv(), kv...) }
	devStripe := func(kv ...string) map[string]string { return envWith(devStripeTestEnv(), kv...) }

	refused := []struct {
		name    string
		env     map[string]string
		wantErr []string
	}{
		// The environment and the HTTP side.
		{"UnknownAppEnvRefused", vars("APP_ENV", "staging"), []string{`APP_ENV: must be "development" or "production", got "staging"`}},
		{"HTTPAddrWithoutPortRefused", vars("HTTP_ADDR", "8000"), []string{`HTTP_ADDR: must be host:port such as :8000`}},
		{"BaseURLWithQueryRefused", vars("APP_BASE_URL", "http://localhost:8000/?x=1"), []string{"APP_BASE_URL: must not have a query or fragment"}},
		{"ProductionRequiresBaseURL", production("APP_BASE_URL", ""), []string{"APP_BASE_URL: required when APP_ENV=production"}},
		{"ProductionRequiresHTTPSBaseURL", production("APP_BASE_URL", "http://billing.example.com"), []string{"APP_BASE_URL: must be https:// when APP_ENV=production"}},
		{"CORSOriginWithPathRefused", vars("CORS_ALLOWED_ORIGINS", "https://app.example.com/login"), []string{`CORS_ALLOWED_ORIGINS: "https://app.example.com/login" has a path`}},
		{"CORSOriginWithoutSchemeRefused", vars("CORS_ALLOWED_ORIGINS", "app.example.com"), []string{`CORS_ALLOWED_ORIGINS: "app.example.com" is not an origin of the form scheme://host[:port]`}},
		{"ProductionRefusesWildcardCORSOrigin", production("CORS_ALLOWED_ORIGINS", "https://app.example.com,*"), []string{`CORS_ALLOWED_ORIGINS: "*" is refused when APP_ENV=production`}},
		{"ShortMetricsTokenRefused", vars("METRICS_TOKEN", "SENTINELmt"), []string{"METRICS_TOKEN: must be at least 16 characters"}},
		// Stripe keys: each in its slot, test or live as APP_ENV allows, never mixed.
		{"LiveSecretKeyRefusedInDevelopment", vars("STRIPE_SECRET_KEY", sentinelLiveSecretKey), []string{"STRIPE_SECRET_KEY: live keys are refused unless APP_ENV=production"}},
		{"LivePublishableKeyRefusedInDevelopment", vars("STRIPE_PUBLISHABLE_KEY", sentinelLivePubKey), []string{"STRIPE_PUBLISHABLE_KEY: live keys are refused unless APP_ENV=production"}},
		{"PublishableKeyInSecretSlotNamedAsSuch", vars("STRIPE_SECRET_KEY", sentinelTestPubKey), []string{"STRIPE_SECRET_KEY: this is a publishable key (pk_...); the secret key starts with sk_ or rk_"}},
		{"SecretKeyInPublishableSlotRefused", vars("STRIPE_PUBLISHABLE_KEY", sentinelTestSecretKey), []string{"STRIPE_PUBLISHABLE_KEY: this is a secret key (sk_/rk_...)"}},
		{"RestrictedKeyInPublishableSlotRefused", vars("STRIPE_PUBLISHABLE_KEY", sentinelTestRestrictedKey), []string{"STRIPE_PUBLISHABLE_KEY: this is a secret key"}},
		{"WebhookSecretInSecretKeySlotRefused", vars("STRIPE_SECRET_KEY", sentinelWebhookSecret1), []string{"STRIPE_SECRET_KEY: this is a webhook signing secret"}},
		{"SecretKeyWithUnknownPrefixRefused", vars("STRIPE_SECRET_KEY", "sk_prod_SENTINELunknown1"), []string{"STRIPE_SECRET_KEY: must start with sk_test_, sk_live_, rk_test_ or rk_live_"}},
		{"SecretKeyWithEmptyBodyRefused", vars("STRIPE_SECRET_KEY", "sk_test_"), []string{"STRIPE_SECRET_KEY: has a valid prefix but the rest is empty"}},
		{"TestSecretWithLivePublishableRefusedAsMixed", production("STRIPE_SECRET_KEY", sentinelTestSecretKey, "STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION", "true"), []string{"STRIPE_PUBLISHABLE_KEY: is a live key but STRIPE_SECRET_KEY is a test key, and test and live keys must not be mixed"}},
		{"LiveSecretWithTestPublishableRefusedAsMixed", production("STRIPE_PUBLISHABLE_KEY", sentinelTestPubKey, "STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION", "true"), []string{"STRIPE_PUBLISHABLE_KEY: is a test key but STRIPE_SECRET_KEY is a live key"}},
		{"ProductionRequiresSecretKey", production("STRIPE_SECRET_KEY", ""), []string{"STRIPE_SECRET_KEY: required when APP_ENV=production"}},
		{"ProductionRequiresPublishableKey", production("STRIPE_PUBLISHABLE_KEY", ""), []string{"STRIPE_PUBLISHABLE_KEY: required when APP_ENV=production"}},
		{"ProductionRefusesTestKeysWithoutAllowFlag", production("STRIPE_SECRET_KEY", sentinelTestSecretKey, "STRIPE_PUBLISHABLE_KEY", sentinelTestPubKey),
			[]string{
				"STRIPE_SECRET_KEY: test keys are refused when APP_ENV=production unless STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION=true",
				"STRIPE_PUBLISHABLE_KEY: test keys are refused when APP_ENV=production",
			}},
		{"BadAllowTestKeysFlagRefused", vars("STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION", "yes"), []string{`STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION: must be true or false, got "yes"`}},
		// Stripe's other settings.
		{"ProductionRefusesStripeAPIBaseWithoutAllowFlag", production("STRIPE_API_BASE", "http://stripe-mock:12111"), []string{"STRIPE_API_BASE: refused when APP_ENV=production unless STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION=true"}},
		{"StripeAPIBaseRefusedWithLiveKey", production("STRIPE_API_BASE", "http://stripe-mock:12111", "STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION", "true"), []string{"STRIPE_API_BASE: refused with a live STRIPE_SECRET_KEY"}},
		{"StripeAPIBaseMustBeHTTPURL", vars("STRIPE_API_BASE", "localhost:12111"), []string{"STRIPE_API_BASE: must be an absolute http:// or https:// URL"}},
		{"ProductionRequiresWebhookSecret", production("STRIPE_WEBHOOK_SECRET", " , "), []string{"STRIPE_WEBHOOK_SECRET: required when APP_ENV=production"}},
		{"BadWebhookSecretPrefixRefused", devStripe("STRIPE_WEBHOOK_SECRET", "wh_SENTINELbadprefix1"), []string{"STRIPE_WEBHOOK_SECRET: item 1 of 1 must start with whsec_ and be at least 10 characters"}},
		{"ShortWebhookSecretRefused", devStripe("STRIPE_WEBHOOK_SECRET", sentinelWebhookSecret1+",whsec_SE"), []string{"STRIPE_WEBHOOK_SECRET: item 2 of 2 must start with whsec_"}},
		{"UnknownCustomerCreationRefused", vars("STRIPE_CUSTOMER_CREATION", "signup"), []string{`STRIPE_CUSTOMER_CREATION: must be "payment" or "workspace", got "signup"`}},
		{"UnknownTestClocksRefused", vars("STRIPE_TEST_CLOCKS", "sometimes"), []string{`STRIPE_TEST_CLOCKS: must be true or false, got "sometimes"`}},
		{"TestClocksWithLiveKeyRefused", vars("STRIPE_TEST_CLOCKS", "true", "STRIPE_SECRET_KEY", "sk_live_SENTINELtc"), []string{"STRIPE_TEST_CLOCKS: needs test keys"}},
		{"TestClocksInProductionRefused", vars("APP_ENV", "production", "STRIPE_TEST_CLOCKS", "1"), []string{"STRIPE_TEST_CLOCKS: is for development and tests; refused when APP_ENV=production"}},
		// PostgreSQL and Redis.
		{"ProductionRequiresDatabaseURL", production("DATABASE_URL", ""), []string{"DATABASE_URL: required when APP_ENV=production"}},
		{"ProductionRefusesSQLitePath", production("DATABASE_URL", "/var/lib/billing/billing.sqlite3"), []string{"DATABASE_URL: SQLite is refused when APP_ENV=production"}},
		{"ProductionRefusesSQLiteFileURI", production("DATABASE_URL", "file:///var/lib/billing/billing.db"), []string{"DATABASE_URL: SQLite is refused when APP_ENV=production"}},
		{"MySQLDatabaseURLRefused", vars("DATABASE_URL", "mysql://billing:"+sentinelDBPassword+"@db:3306/billing"), []string{`DATABASE_URL: unsupported scheme "mysql"`}},
		{"HTTPDatabaseURLRefused", vars("DATABASE_URL", "http://billing:"+sentinelDBPassword+"@db/billing"), []string{`DATABASE_URL: unsupported scheme "http"`}},
		{"DatabasePathWithoutSQLiteExtensionRefused", vars("DATABASE_URL", "data/billing"), []string{"DATABASE_URL: must be a postgres:// URL, a file: URI or a path ending .db, .sqlite or .sqlite3"}},
		{"DBMaxOpenConnsZeroRefused", vars("DB_MAX_OPEN_CONNS", "0"), []string{"DB_MAX_OPEN_CONNS: must be between 1 and 1000, got 0"}},
		{"DBMaxIdleConnsAboveOpenRefused", vars("DB_MAX_OPEN_CONNS", "5", "DB_MAX_IDLE_CONNS", "8"), []string{"DB_MAX_IDLE_CONNS: must not exceed DB_MAX_OPEN_CONNS (5)"}},
		{"WebhookApplyDisabledOnSQLiteRefused", vars("WEBHOOK_APPLY_DISABLED", "true"), []string{"WEBHOOK_APPLY_DISABLED: needs PostgreSQL"}},
		{"WebhookApplyDisabledNotABoolRefused", vars("DATABASE_URL", "postgres://u@db/billing", "WEBHOOK_APPLY_DISABLED", "sometimes"), []string{`WEBHOOK_APPLY_DISABLED: must be true or false, got "sometimes"`}},
		{"ProductionRequiresRedisURL", production("REDIS_URL", ""), []string{"REDIS_URL: required when APP_ENV=production"}},
		{"RedisURLWithWrongSchemeRefused", vars("REDIS_URL", "http://:"+sentinelRedisPassword+"@cache:6379"), []string{"REDIS_URL: must start with redis:// or rediss://"}},
		{"RedisURLWithoutSchemeRefused", vars("REDIS_URL", "localhost:6379"), []string{"REDIS_URL: must start with redis:// or rediss://"}},
		{"RedisKeyPrefixWithSpaceRefused", vars("REDIS_KEY_PREFIX", "my prefix"), []string{"REDIS_KEY_PREFIX: must be 1 to 64 characters"}},
		{"RedisKeyPrefixTooLongRefused", vars("REDIS_KEY_PREFIX", strings.Repeat("p", 65)), []string{"REDIS_KEY_PREFIX: must be 1 to 64 characters"}},
		// Plans, the price cache and the rate limit.
		{"PriceCacheTTLNotADurationRefused", vars("PRICE_CACHE_TTL", "abc"), []string{`PRICE_CACHE_TTL: must be a Go duration such as 10m or 1h30m, got "abc"`}},
		{"PriceCacheTTLZeroRefused", vars("PRICE_CACHE_TTL", "0s"), []string{`PRICE_CACHE_TTL: must be between 1s and 24h, got "0s"`}},
		{"PriceCacheTTLOverADayRefused", vars("PRICE_CACHE_TTL", "48h"), []string{`PRICE_CACHE_TTL: must be between 1s and 24h, got "48h"`}},
		{"RateLimitNotANumberRefused", vars("RATE_LIMIT_PER_MINUTE", "ten"), []string{`RATE_LIMIT_PER_MINUTE: must be a whole number between 1 and 100000, got "ten"`}},
		{"RateLimitZeroRefused", vars("RATE_LIMIT_PER_MINUTE", "0"), []string{"RATE_LIMIT_PER_MINUTE: must be between 1 and 100000, got 0"}},
		{"RateLimitTooHighRefused", vars("RATE_LIMIT_PER_MINUTE", "100001"), []string{"RATE_LIMIT_PER_MINUTE: must be between 1 and 100000, got 100001"}},
		{"DuplicateLookupKeyRefused", vars("PLAN_LOOKUP_KEYS", "pro_monthly, basic_monthly ,pro_monthly"), []string{`PLAN_LOOKUP_KEYS: duplicate key "pro_monthly"`}},
		{"LookupKeyWithBadCharactersRefused", vars("PLAN_LOOKUP_KEYS", "pro monthly,basic$"), []string{`PLAN_LOOKUP_KEYS: key "pro monthly" must be 1 to 200 characters`, `PLAN_LOOKUP_KEYS: key "basic$" must be`}},
		{"LookupKeyOver200CharactersRefused", vars("PLAN_LOOKUP_KEYS", strings.Repeat("a", 201)), []string{"PLAN_LOOKUP_KEYS: key \"aaaa"}},
		// Tokens: an HS256 secret or a public key file.
		{"ProductionRequiresJWTConfig", production("JWT_HS256_SECRET", ""), []string{"JWT_HS256_SECRET: required when APP_ENV=production: set JWT_HS256_SECRET or JWT_PUBLIC_KEY_FILE"}},
		{"ProductionRefusesDevJWTSecret", production("JWT_HS256_SECRET", DevJWTSecret), []string{"JWT_HS256_SECRET: the development secret (DevJWTSecret) is refused when APP_ENV=production"}},
		{"ShortHS256SecretRefused", vars("JWT_HS256_SECRET", "SENTINELjwt-short"), []string{"JWT_HS256_SECRET: must be at least 32 bytes"}},
		{"BothJWTSettingsRefused", vars("JWT_HS256_SECRET", sentinelHS256Secret, "JWT_PUBLIC_KEY_FILE", k.ec), []string{"JWT_PUBLIC_KEY_FILE: set either JWT_HS256_SECRET or JWT_PUBLIC_KEY_FILE, not both"}},
		{"JWTPublicKeyFileMissingRefused", vars("JWT_PUBLIC_KEY_FILE", k.missing), []string{fmt.Sprintf("JWT_PUBLIC_KEY_FILE: file %q does not exist", k.missing)}},
		{"JWTPublicKeyFileThatIsADirectoryRefused", vars("JWT_PUBLIC_KEY_FILE", k.dir), []string{fmt.Sprintf("JWT_PUBLIC_KEY_FILE: cannot read %q", k.dir)}},
		{"JWTPublicKeyFileNotPEMRefused", vars("JWT_PUBLIC_KEY_FILE", k.notPEM), []string{"holds no PEM block"}},
		{"JWTPrivateKeyFileRefused", vars("JWT_PUBLIC_KEY_FILE", k.private), []string{"holds a private key: give the public key"}},
		{"JWTP384KeyRefusedForES256", vars("JWT_PUBLIC_KEY_FILE", k.p384), []string{"not on curve P-256"}},
		{"JWTPublicKeyWithoutAudienceRefusedInProduction", production("JWT_HS256_SECRET", "", "JWT_PUBLIC_KEY_FILE", k.ec, "JWT_AUDIENCE", ""), []string{"JWT_AUDIENCE: required when APP_ENV=production with JWT_PUBLIC_KEY_FILE"}},
		// Every problem at once, not the first one.
		{"MultipleErrorsReportedTogether", vars("APP_ENV", "prod", "STRIPE_SECRET_KEY", sentinelTestPubKey,
			"STRIPE_WEBHOOK_SECRET", "SENTINELnotawebhooksecret", "PRICE_CACHE_TTL", "abc", "RATE_LIMIT_PER_MINUTE", "0"),
			[]string{
				`APP_ENV: must be "development" or "production", got "prod"`,
				"; STRIPE_SECRET_KEY: this is a publishable key (pk_...); the secret key starts with sk_ or rk_",
				"; STRIPE_WEBHOOK_SECRET: item 1 of 1 must start with whsec_",
				"; PRICE_CACHE_TTL: must be a Go duration",
				"; RATE_LIMIT_PER_MINUTE: must be between 1 and 100000",
			}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) { assertConfigRefused(t, tc.env, tc.wantErr) })
	}

	loaded := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		{
			name: "EmptyEnvGivesDevelopmentDefaults",
			env:  vars(),
			check: func(t *testing.T, c Config) {
				want := Config{
					HTTPAddr:           ":8000",
					Env:                "development",
					BaseURL:            "http://localhost:8000",
					DatabaseURL:        "data/billing.db",
					RedisKeyPrefix:     "billing:",
					Stripe:             StripeConfig{Timeout: 20 * time.Second},
					JWT:                JWTConfig{HS256Secret: DevJWTSecret},
					PriceCacheTTL:      10 * time.Minute,
					RateLimitPerMinute: 60,
					CustomerCreation:   "payment",
					DBMaxOpenConns:     20,
					DBMaxIdleConns:     20,
				}
				if !reflect.DeepEqual(c, want) {
					t.Errorf("got  %#v\nwant %#v", c, want)
				}
				if c.Production() || c.StripeMode() != "" {
					t.Errorf("Production() = %v, StripeMode() = %q; want false, \"\"", c.Production(), c.StripeMode())
				}
			},
		},
		{
			name: "ValidProductionEnvironment",
			env:  validProductionEnv(),
			check: func(t *testing.T, c Config) {
				if !c.Production() || c.StripeMode() != "live" {
					t.Errorf("Production() = %v, StripeMode() = %q; want true, live", c.Production(), c.StripeMode())
				}
				if c.BaseURL != "https://billing.example.com" {
					t.Errorf("BaseURL = %q, want trailing slash trimmed", c.BaseURL)
				}
				if c.Stripe.SecretKey != sentinelLiveSecretKey || c.Stripe.PublishableKey != sentinelLivePubKey || !slices.Equal(c.Stripe.WebhookSecrets, []string{sentinelWebhookSecret1}) {
					t.Error("Stripe keys not loaded as given")
				}
				if c.JWT.HS256Secret != sentinelHS256Secret || c.JWT.Issuer != "https://auth.example.com/" || c.JWT.Audience != "billing-api" {
					t.Errorf("JWT = %v", c.JWT)
				}
				if !slices.Equal(c.PlanLookupKeys, []string{"basic_monthly", "pro_monthly"}) || c.MetricsToken != sentinelMetricsToken {
					t.Errorf("PlanLookupKeys = %q, MetricsToken set = %v", c.PlanLookupKeys, c.MetricsToken != "")
				}
			},
		},
		{
			name: "DevelopmentOverridesAreParsed",
			env: devStripe(
				"APP_ENV", "development",
				"HTTP_ADDR", "127.0.0.1:9000",
				"APP_BASE_URL", "http://localhost:3000/app/",
				"DATABASE_URL", "file:dev.db?cache=shared",
				"REDIS_URL", "redis://localhost:6379/1",
				"PLAN_LOOKUP_KEYS", " basic_monthly, pro.yearly,,team-1 ,",
				"PRICE_CACHE_TTL", "1s",
				"RATE_LIMIT_PER_MINUTE", "100000",
				"CORS_ALLOWED_ORIGINS", "http://localhost:3000, HTTPS://App.Example.com/ ,http://localhost:3000",
				"STRIPE_API_BASE", "http://localhost:12111/",
				"STRIPE_CUSTOMER_CREATION", "workspace",
				"DB_MAX_OPEN_CONNS", "5",
			),
			check: func(t *testing.T, c Config) {
				if c.HTTPAddr != "127.0.0.1:9000" || c.BaseURL != "http://localhost:3000/app" || c.DatabaseURL != "file:dev.db?cache=shared" || c.RedisURL != "redis://localhost:6379/1" {
					t.Errorf("addresses = %q %q %q %q", c.HTTPAddr, c.BaseURL, c.DatabaseURL, c.RedisURL)
				}
				if !slices.Equal(c.PlanLookupKeys, []string{"basic_monthly", "pro.yearly", "team-1"}) {
					t.Errorf("PlanLookupKeys = %q", c.PlanLookupKeys)
				}
				if c.PriceCacheTTL != time.Second || c.RateLimitPerMinute != 100000 {
					t.Errorf("PriceCacheTTL = %v, RateLimitPerMinute = %d", c.PriceCacheTTL, c.RateLimitPerMinute)
				}
				if !slices.Equal(c.CORSAllowedOrigins, []string{"http://localhost:3000", "https://app.example.com"}) {
					t.Errorf("CORSAllowedOrigins = %q, want normalised and deduplicated", c.CORSAllowedOrigins)
				}
				if c.Stripe.APIBase != "http://localhost:12111" || c.CustomerCreation != "workspace" || c.StripeMode() != "test" {
					t.Errorf("APIBase = %q, CustomerCreation = %q, StripeMode = %q", c.Stripe.APIBase, c.CustomerCreation, c.StripeMode())
				}
				if c.DBMaxOpenConns != 5 || c.DBMaxIdleConns != 5 {
					t.Errorf("DB conns = %d/%d, want 5/5 (default idle capped at open)", c.DBMaxOpenConns, c.DBMaxIdleConns)
				}
			},
		},
		{
			name: "RestrictedTestKeyAcceptedInDevelopment",
			env:  vars("STRIPE_SECRET_KEY", sentinelTestRestrictedKey, "STRIPE_PUBLISHABLE_KEY", sentinelTestPubKey),
			check: func(t *testing.T, c Config) {
				if c.StripeMode() != "test" {
					t.Errorf("StripeMode() = %q, want test", c.StripeMode())
				}
			},
		},
		{
			name: "ProductionAcceptsTestKeysAndStripeMockWithAllowFlag",
			env: production("STRIPE_SECRET_KEY", sentinelTestSecretKey, "STRIPE_PUBLISHABLE_KEY", sentinelTestPubKey,
				"STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION", "1", "STRIPE_API_BASE", "http://stripe-mock:12111"),
			check: func(t *testing.T, c Config) {
				if !c.Stripe.AllowTestKeysInProduction || c.StripeMode() != "test" || c.Stripe.APIBase != "http://stripe-mock:12111" {
					t.Errorf("Stripe = %v, StripeMode = %q", c.Stripe, c.StripeMode())
				}
			},
		},
		{
			name: "DevelopmentAcceptsWildcardCORSOrigin",
			env:  vars("CORS_ALLOWED_ORIGINS", "*"),
			check: func(t *testing.T, c Config) {
				if !slices.Equal(c.CORSAllowedOrigins, []string{"*"}) {
					t.Errorf("CORSAllowedOrigins = %q", c.CORSAllowedOrigins)
				}
			},
		},
		{
			name: "WebhookSecretRotationListOfTwo",
			env:  devStripe("STRIPE_WEBHOOK_SECRET", " "+sentinelWebhookSecret1+",, "+sentinelWebhookSecret2+" ,"),
			check: func(t *testing.T, c Config) {
				if !slices.Equal(c.Stripe.WebhookSecrets, []string{sentinelWebhookSecret1, sentinelWebhookSecret2}) {
					t.Errorf("got %d webhook secrets, want the two given in order", len(c.Stripe.WebhookSecrets))
				}
			},
		},
		{
			name: "PostgresqlSchemeAccepted",
			env:  vars("DATABASE_URL", "postgresql://billing:"+sentinelDBPassword+"@localhost/billing"),
			check: func(t *testing.T, c Config) {
				if !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
					t.Errorf("DatabaseURL not kept")
				}
			},
		},
		{
			name: "JWTES256PublicKeyFileLoaded",
			env:  production("JWT_HS256_SECRET", "", "JWT_PUBLIC_KEY_FILE", k.ec),
			check: func(t *testing.T, c Config) {
				if c.JWT.HS256Secret != "" || c.JWT.PublicKeyFile != k.ec || !bytes.Equal(c.JWT.PublicKeyPEM, k.ecPEM) {
					t.Errorf("JWT = %v, want the PEM read from %s and no HS256 secret", c.JWT, k.ec)
				}
			},
		},
		{
			name: "JWTRS256PKCS1PublicKeyFileLoaded",
			env:  vars("JWT_PUBLIC_KEY_FILE", k.rsa),
			check: func(t *testing.T, c Config) {
				if c.JWT.HS256Secret != "" || len(c.JWT.PublicKeyPEM) == 0 {
					t.Errorf("JWT = %v, want the RSA PEM and no dev secret", c.JWT)
				}
			},
		},
		{
			name: "TestClocksWithTestKeys",
			env:  vars("STRIPE_TEST_CLOCKS", "true", "STRIPE_SECRET_KEY", "sk_test_SENTINELtc"),
			check: func(t *testing.T, c Config) {
				if !c.CustomerTestClocks {
					t.Error("STRIPE_TEST_CLOCKS=true did not set CustomerTestClocks")
				}
			},
		},
		{
			name: "WebhookApplyDisabledOnPostgres",
			env:  vars("DATABASE_URL", "postgres://u@db/billing", "WEBHOOK_APPLY_DISABLED", "true"),
			check: func(t *testing.T, c Config) {
				if !c.WebhookApplyDisabled {
					t.Error("WEBHOOK_APPLY_DISABLED=true not read")
				}
			},
		},
	}
	for _, tc := range loaded {
		t.Run(tc.name, func(t *testing.T) { assertConfigLoads(t, tc.env, tc.check) })
	}
}

// assertConfigRefused checks that LoadConfig refuses env with an error
// holding every one of want, no secret of env, and a zero Config.
func assertConfigRefused(t *testing.T, env map[string]string, want []string) {
	t.Helper()
	cfg, err := LoadConfig(mapGetenv(env))
	if err == nil {
		t.Fatalf("LoadConfig: got no error, want one containing %q", want)
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q\ndoes not contain %q", msg, w)
		}
	}
	for _, s := range secretValuesIn(env) {
		if strings.Contains(msg, s) {
			t.Errorf("error message leaks the secret fed in as %q: %q", s, msg)
		}
	}
	if !reflect.DeepEqual(cfg, Config{}) {
		t.Errorf("LoadConfig returned a partial Config with its error: %v", cfg)
	}
}

// assertConfigLoads checks that LoadConfig accepts env, that the printed
// Config shows no secret of env but the publishable key, and check.
func assertConfigLoads(t *testing.T, env map[string]string, check func(t *testing.T, c Config)) {
	t.Helper()
	cfg, err := LoadConfig(mapGetenv(env))
	if err != nil {
		t.Fatalf("LoadConfig: unexpected error: %v", err)
	}
	for _, s := range secretValuesIn(env) {
		if strings.Contains(cfg.String(), s) && s != cfg.Stripe.PublishableKey {
			t.Errorf("String() leaks a secret fed in as %q", s)
		}
	}
	check(t, cfg)
}

// configKeyFiles are key files for the JWT_PUBLIC_KEY_FILE cases, in dir.
type configKeyFiles struct {
	dir                                     string
	ec, rsa, p384, private, notPEM, missing string
	ecPEM                                   []byte // the contents of ec
}

// writeConfigKeyFiles writes an ES256 (P-256) public key, an RSA one in
// PKCS #1, a P-384 one, a private key and a file that is not PEM, and
// names one that does not exist.
func writeConfigKeyFiles(t *testing.T) configKeyFiles {
	t.Helper()
	dir := t.TempDir()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384Key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := encodePublicKeyPEM(t, &ecKey.PublicKey)
	return configKeyFiles{
		dir:     dir,
		ec:      writeKeyFile(t, dir, "es256.pem", ecPEM),
		ecPEM:   ecPEM,
		rsa:     writeKeyFile(t, dir, "rs256.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)})),
		p384:    writeKeyFile(t, dir, "es384.pem", encodePublicKeyPEM(t, &p384Key.PublicKey)),
		private: writeKeyFile(t, dir, "private.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})),
		notPEM:  writeKeyFile(t, dir, "notpem.txt", []byte("not a key")),
		missing: filepath.Join(dir, "missing.pem"),
	}
}

// fullyPopulatedConfig loads a Config with every secret field set, from a production environment.
func fullyPopulatedConfig(t *testing.T) (Config, []string) {
	t.Helper()
	env := envWith(validProductionEnv(),
		"STRIPE_WEBHOOK_SECRET", sentinelWebhookSecret1+","+sentinelWebhookSecret2,
		"JWT_ISSUER", "https://auth.example.com/",
	)
	cfg, err := LoadConfig(mapGetenv(env))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	secrets := []string{sentinelLiveSecretKey, sentinelWebhookSecret1, sentinelWebhookSecret2, sentinelHS256Secret, sentinelMetricsToken, sentinelDBPassword, sentinelRedisPassword}
	if got := secretValuesIn(env); !slices.Contains(got, sentinelDBPassword) || !slices.Contains(got, sentinelRedisPassword) {
		t.Fatalf("test env lost its URL passwords: %q", got)
	}
	return cfg, secrets
}

func TestConfigPrintingNeverLeaksSecrets(t *testing.T) {
	cfg, secrets := fullyPopulatedConfig(t)
	type wrapper struct{ Cfg Config }

	var jsonLog, textLog bytes.Buffer
	slog.New(slog.NewJSONHandler(&jsonLog, nil)).Info("config loaded", "config", cfg, "stripe", cfg.Stripe, "jwt", cfg.JWT)
	slog.New(slog.NewTextHandler(&textLog, nil)).Info("config loaded", "config", cfg, "stripe", cfg.Stripe, "jwt", cfg.JWT)

	outputs := map[string]string{
		"%v":                  fmt.Sprintf("%v", cfg),
		"%+v":                 fmt.Sprintf("%+v", cfg),
		"%#v":                 fmt.Sprintf("%#v", cfg),
		"%s":                  fmt.Sprintf("%s", cfg),
		"%d":                  fmt.Sprintf("%d", cfg),
		"%+v pointer":         fmt.Sprintf("%+v", &cfg),
		"%+v in struct":       fmt.Sprintf("%+v", wrapper{cfg}),
		"%#v in struct":       fmt.Sprintf("%#v", wrapper{cfg}),
		"%v in slice":         fmt.Sprintf("%v", []Config{cfg}),
		"String()":            cfg.String(),
		"GoString()":          cfg.GoString(),
		"Stripe %v":           fmt.Sprintf("%v", cfg.Stripe),
		"Stripe %+v":          fmt.Sprintf("%+v", cfg.Stripe),
		"Stripe %#v":          fmt.Sprintf("%#v", cfg.Stripe),
		"Stripe %d":           fmt.Sprintf("%d", cfg.Stripe),
		"Stripe String()":     cfg.Stripe.String(),
		"Stripe GoString()":   cfg.Stripe.GoString(),
		"JWT %v":              fmt.Sprintf("%v", cfg.JWT),
		"JWT %+v":             fmt.Sprintf("%+v", cfg.JWT),
		"JWT %#v":             fmt.Sprintf("%#v", cfg.JWT),
		"JWT String()":        cfg.JWT.String(),
		"JWT GoString()":      cfg.JWT.GoString(),
		"slog JSON handler":   jsonLog.String(),
		"slog text handler":   textLog.String(),
		"LogValue().String()": cfg.LogValue().Resolve().String(),
	}
	for name, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s leaks secret %q:\n%s", name, s, out)
			}
		}
	}
	// Redaction must keep what an operator needs to see.
	for _, name := range []string{"%+v", "%#v", "slog JSON handler", "slog text handler"} {
		for _, want := range []string{"[redacted]", "xxxxx", "db.internal", "cache.internal", sentinelLivePubKey, "billing-api"} {
			if !strings.Contains(outputs[name], want) {
				t.Errorf("%s lacks %q:\n%s", name, want, outputs[name])
			}
		}
	}

	var logged struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal(jsonLog.Bytes(), &logged); err != nil {
		t.Fatalf("JSON log does not parse: %v\n%s", err, jsonLog.String())
	}
	stripe, _ := logged.Config["Stripe"].(map[string]any)
	jwt, _ := logged.Config["JWT"].(map[string]any)
	checks := []struct {
		field string
		got   any
		want  any
	}{
		{"DatabaseURL", logged.Config["DatabaseURL"], "postgres://billing:xxxxx@db.internal:5432/billing?sslmode=require"},
		{"RedisURL", logged.Config["RedisURL"], "rediss://:xxxxx@cache.internal:6380/0"},
		{"MetricsToken", logged.Config["MetricsToken"], "[redacted]"},
		{"RateLimitPerMinute", logged.Config["RateLimitPerMinute"], float64(60)},
		{"Stripe.SecretKey", stripe["SecretKey"], "[redacted]"},
		{"Stripe.WebhookSecrets", stripe["WebhookSecrets"], "[redacted]"},
		{"Stripe.WebhookSecretCount", stripe["WebhookSecretCount"], float64(2)},
		{"Stripe.PublishableKey", stripe["PublishableKey"], sentinelLivePubKey},
		{"JWT.HS256Secret", jwt["HS256Secret"], "[redacted]"},
		{"JWT.Issuer", jwt["Issuer"], "https://auth.example.com/"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("JSON log %s = %#v, want %#v", c.field, c.got, c.want)
		}
	}
}

func TestConfigPrintingShowsEmptySecretsAsEmpty(t *testing.T) {
	var c Config
	s := c.String()
	for _, want := range []string{`MetricsToken:""`, `SecretKey:""`, `HS256Secret:""`, `DatabaseURL:""`} {
		if !strings.Contains(s, want) {
			t.Errorf("String() of an empty Config lacks %s: %s", want, s)
		}
	}
	if strings.Contains(s, "[redacted]") {
		t.Errorf("String() of an empty Config shows [redacted] for empty secrets: %s", s)
	}
}

func TestConfigRedactsPasswordInURLQuery(t *testing.T) {
	const pw = "SENTINELqueryPass"
	cfg, err := LoadConfig(mapGetenv(map[string]string{
		"DATABASE_URL": "postgres://db.internal/billing?user=billing&password=" + pw,
		"REDIS_URL":    "redis://default:" + pw + "@cache:6379/0",
	}))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", cfg)
	for name, out := range map[string]string{"String()": cfg.String(), "%#v": fmt.Sprintf("%#v", cfg), "slog": buf.String()} {
		if strings.Contains(out, pw) {
			t.Errorf("%s leaks the URL password: %s", name, out)
		}
		if !strings.Contains(out, "password=xxxxx") || !strings.Contains(out, "default:xxxxx@cache") {
			t.Errorf("%s does not show the redacted passwords: %s", name, out)
		}
	}
}

func TestStripeMode(t *testing.T) {
	tests := []struct {
		key  string
		want string
	}{
		{"", ""},
		{"sk_test_abc123", "test"},
		{"rk_test_abc123", "test"},
		{"sk_live_abc123", "live"},
		{"rk_live_abc123", "live"},
		{"pk_test_abc123", ""},
		{"pk_live_abc123", ""},
		{"whsec_abc12345", ""},
		{"sk_abc123", ""},
	}
	for _, tc := range tests {
		c := Config{Stripe: StripeConfig{SecretKey: tc.key}}
		if got := c.StripeMode(); got != tc.want {
			t.Errorf("StripeMode() with key %q = %q, want %q", tc.key, got, tc.want)
		}
	}
}
