package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"billingapi/internal/redact"
)

// Config is everything the server reads from its environment, parsed and validated once at start.
type Config struct {
	HTTPAddr           string        // HTTP_ADDR, default ":8000"
	Env                string        // APP_ENV: "development" (default) or "production"
	BaseURL            string        // APP_BASE_URL, default "http://localhost:8000", no trailing slash; https in production
	DatabaseURL        string        // DATABASE_URL: postgres(ql):// URL, "file:..." or a .db/.sqlite/.sqlite3 path; default "data/billing.db"
	RedisURL           string        // REDIS_URL: redis:// or rediss://; "" means embedded in-process Redis (development only)
	RedisKeyPrefix     string        // REDIS_KEY_PREFIX, default "billing:"; lets several deployments (or tests) share one Redis
	Stripe             StripeConfig  // STRIPE_* variables
	JWT                JWTConfig     // JWT_* variables
	PlanLookupKeys     []string      // PLAN_LOOKUP_KEYS, comma-separated Stripe price lookup keys
	PriceCacheTTL      time.Duration // PRICE_CACHE_TTL, default 10m, between 1s and 24h
	RateLimitPerMinute int           // RATE_LIMIT_PER_MINUTE, default 60, 1..100000
	CORSAllowedOrigins []string      // CORS_ALLOWED_ORIGINS, comma-separated scheme://host[:port]; "*" only outside production
	MetricsToken       string        // METRICS_TOKEN, optional bearer token for /metrics, at least 16 characters
	CustomerCreation   string        // STRIPE_CUSTOMER_CREATION: "payment" (default) or "workspace"
	CustomerTestClocks bool          // STRIPE_TEST_CLOCKS: each new Stripe Customer on a test clock of its own (test keys, outside production)
	DBMaxOpenConns     int           // DB_MAX_OPEN_CONNS, default 20, 1..1000
	DBMaxIdleConns     int           // DB_MAX_IDLE_CONNS, default DBMaxOpenConns (fewer makes a busy pool close and reopen connections: a PostgreSQL backend forked per request), 0..1000
	// WEBHOOK_APPLY_DISABLED: this replica verifies, stores and acknowledges webhooks but applies none; the workers of
	// the other replicas (sharing its PostgreSQL) do. For a replica that only takes Stripe's deliveries; refused on SQLite.
	WebhookApplyDisabled bool
}

// StripeConfig holds the Stripe keys and endpoint; its String, GoString, Format and LogValue never reveal the secrets.
type StripeConfig struct {
	SecretKey                 string        // STRIPE_SECRET_KEY: sk_test_, sk_live_, rk_test_ or rk_live_
	PublishableKey            string        // STRIPE_PUBLISHABLE_KEY: pk_test_ or pk_live_
	WebhookSecrets            []string      // STRIPE_WEBHOOK_SECRET, comma-separated for rotation, each whsec_...
	APIBase                   string        // STRIPE_API_BASE, optional http(s) base URL (stripe-mock); "" means real Stripe
	AllowTestKeysInProduction bool          // STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION
	Timeout                   time.Duration // STRIPE_TIMEOUT, default 20s, 1s..2m: one HTTP attempt to Stripe
}

// JWTConfig holds how bearer tokens are verified; its String, GoString, Format and LogValue never reveal the HS256 secret.
type JWTConfig struct {
	HS256Secret   string // JWT_HS256_SECRET, at least 32 bytes
	PublicKeyFile string // JWT_PUBLIC_KEY_FILE, path to an RS256/ES256 public key PEM
	PublicKeyPEM  []byte // contents of PublicKeyFile, read at load time
	Issuer        string // JWT_ISSUER, optional
	Audience      string // JWT_AUDIENCE, optional
}

// DevJWTSecret is the HS256 secret used in development when no JWT config is given; refused in production.
const DevJWTSecret = "dev-only-jwt-secret-do-not-use-in-production-0123456789"

const (
	envDevelopment      = "development"
	envProduction       = "production"
	defaultHTTPAddr     = ":8000"
	defaultBaseURL      = "http://localhost:8000"
	defaultDatabasePath = "data/billing.db"
)

// LoadConfig reads the environment through getenv, applies defaults and returns the validated Config, or a zero Config and one error listing every problem as "VARNAME: problem" joined by "; " (never quoting a secret).
func LoadConfig(getenv func(string) string) (Config, error) {
	l := &loader{getenv: getenv}
	var c Config

	c.Env = l.get("APP_ENV")
	switch c.Env {
	case "":
		c.Env = envDevelopment
	case envDevelopment, envProduction:
	default:
		l.problem("APP_ENV", "must be %q or %q, got %q", envDevelopment, envProduction, c.Env)
	}
	prod := c.Env == envProduction

	c.HTTPAddr = l.httpAddr()
	c.BaseURL = l.baseURL(prod)
	c.DatabaseURL = l.databaseURL(prod)
	c.RedisURL = l.redisURL(prod)
	c.RedisKeyPrefix = l.redisKeyPrefix()
	c.Stripe = l.stripe(prod)
	c.JWT = l.jwt(prod)
	c.PlanLookupKeys = l.planLookupKeys()
	c.PriceCacheTTL = l.duration("PRICE_CACHE_TTL", 10*time.Minute, time.Second, 24*time.Hour)
	c.RateLimitPerMinute = l.integer("RATE_LIMIT_PER_MINUTE", 60, 1, 100000)
	c.CORSAllowedOrigins = l.corsOrigins(prod)

	c.MetricsToken = l.get("METRICS_TOKEN")
	if c.MetricsToken != "" {
		if len(c.MetricsToken) < 16 {
			l.problem("METRICS_TOKEN", "must be at least 16 characters")
		}
		if strings.IndexFunc(c.MetricsToken, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			l.problem("METRICS_TOKEN", "must not contain spaces or control characters")
		}
	}

	c.CustomerCreation = l.get("STRIPE_CUSTOMER_CREATION")
	switch c.CustomerCreation {
	case "":
		c.CustomerCreation = "payment"
	case "payment", "workspace":
	default:
		l.problem("STRIPE_CUSTOMER_CREATION", "must be %q or %q, got %q", "payment", "workspace", c.CustomerCreation)
	}

	switch v := l.get("STRIPE_TEST_CLOCKS"); v {
	case "", "false", "0":
	case "true", "1":
		c.CustomerTestClocks = true
		if c.Production() {
			l.problem("STRIPE_TEST_CLOCKS", "is for development and tests; refused when APP_ENV=production")
		}
		if c.StripeMode() == "live" {
			l.problem("STRIPE_TEST_CLOCKS", "needs test keys: Stripe has test clocks in test mode only")
		}
	default:
		l.problem("STRIPE_TEST_CLOCKS", "must be true or false, got %q", v)
	}

	c.DBMaxOpenConns = l.integer("DB_MAX_OPEN_CONNS", 20, 1, 1000)
	c.DBMaxIdleConns = l.integer("DB_MAX_IDLE_CONNS", c.DBMaxOpenConns, 0, 1000)
	if c.DBMaxIdleConns > c.DBMaxOpenConns {
		if l.get("DB_MAX_IDLE_CONNS") == "" {
			// Only the default is too big: database/sql would cap it anyway, so say so in the Config.
			c.DBMaxIdleConns = c.DBMaxOpenConns
		} else {
			l.problem("DB_MAX_IDLE_CONNS", "must not exceed DB_MAX_OPEN_CONNS (%d)", c.DBMaxOpenConns)
		}
	}

	c.WebhookApplyDisabled = l.boolean("WEBHOOK_APPLY_DISABLED")
	if c.WebhookApplyDisabled && isSQLite(c.DatabaseURL) {
		l.problem("WEBHOOK_APPLY_DISABLED", "needs PostgreSQL: on SQLite no other process would apply the stored events")
	}

	if len(l.problems) > 0 {
		return Config{}, errors.New(strings.Join(l.problems, "; "))
	}
	return c, nil
}

// Production reports whether APP_ENV is "production".
func (c Config) Production() bool { return c.Env == envProduction }

// StripeMode returns "test" or "live" from the secret key's prefix, or "" when there is no recognised secret key.
func (c Config) StripeMode() string { return secretKeyMode(c.Stripe.SecretKey) }

// loader reads variables and collects every problem so the operator sees them all at once.
type loader struct {
	getenv   func(string) string
	problems []string
}

func (l *loader) get(name string) string { return strings.TrimSpace(l.getenv(name)) }

func (l *loader) problem(name, format string, args ...any) {
	l.problems = append(l.problems, name+": "+fmt.Sprintf(format, args...))
}

func (l *loader) integer(name string, def, lo, hi int) int {
	s := l.get(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		l.problem(name, "must be a whole number between %d and %d, got %q", lo, hi, s)
		return def
	}
	if n < lo || n > hi {
		l.problem(name, "must be between %d and %d, got %d", lo, hi, n)
		return def
	}
	return n
}

func (l *loader) duration(name string, def, lo, hi time.Duration) time.Duration {
	s := l.get(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		l.problem(name, "must be a Go duration such as 10m or 1h30m, got %q", s)
		return def
	}
	if d < lo || d > hi {
		l.problem(name, "must be between %s and %s, got %q", shortDuration(lo), shortDuration(hi), s)
		return def
	}
	return d
}

func (l *loader) boolean(name string) bool {
	s := l.get(name)
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		l.problem(name, "must be true or false, got %q", s)
	}
	return b
}

func (l *loader) httpAddr() string {
	s := l.get("HTTP_ADDR")
	if s == "" {
		return defaultHTTPAddr
	}
	if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
		l.problem("HTTP_ADDR", "must be host:port such as :8000 or 127.0.0.1:8000, got %q", s)
	}
	return s
}

func (l *loader) baseURL(prod bool) string {
	const name = "APP_BASE_URL"
	s := l.get(name)
	if s == "" {
		if prod {
			l.problem(name, "required when APP_ENV=production (the public https:// address used for Checkout return URLs)")
		}
		return defaultBaseURL
	}
	if msg := checkHTTPURL(s); msg != "" {
		l.problem(name, "%s", msg)
		return s
	}
	if prod && !strings.HasPrefix(strings.ToLower(s), "https://") {
		l.problem(name, "must be https:// when APP_ENV=production")
	}
	return strings.TrimRight(s, "/")
}

// checkHTTPURL returns why s is not an absolute http(s) URL without credentials, query or fragment, or "".
// The message never quotes s, which might hold credentials.
func checkHTTPURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "not a valid URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an absolute http:// or https:// URL"
	case u.Host == "":
		return "must include a host"
	case u.User != nil:
		return "must not contain user info"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "must not have a query or fragment"
	}
	return ""
}

func (l *loader) databaseURL(prod bool) string {
	const name = "DATABASE_URL"
	s := l.get(name)
	if s == "" {
		if prod {
			l.problem(name, "required when APP_ENV=production (embedded SQLite is for development, use postgres://)")
		}
		return defaultDatabasePath
	}
	// The value may hold a password, so no message below quotes it.
	switch scheme := urlScheme(s); {
	case scheme == "postgres" || scheme == "postgresql":
		if _, err := url.Parse(s); err != nil {
			l.problem(name, "not a valid postgres:// URL")
		}
	case isSQLite(s):
		if prod {
			l.problem(name, "SQLite is refused when APP_ENV=production (use postgres://)")
		}
	case scheme != "":
		l.problem(name, "unsupported scheme %q (use postgres://..., postgresql://..., file:... or a path ending .db, .sqlite or .sqlite3)", scheme)
	default:
		l.problem(name, "must be a postgres:// URL, a file: URI or a path ending .db, .sqlite or .sqlite3")
	}
	return s
}

// urlScheme returns the lower-cased scheme of a "scheme://..." value, or "".
func urlScheme(s string) string {
	scheme, _, ok := strings.Cut(s, "://")
	if !ok || scheme == "" || strings.ContainsAny(scheme, "/\\?#@") {
		return ""
	}
	return strings.ToLower(scheme)
}

// isSQLite reports whether a DATABASE_URL value names an SQLite database.
func isSQLite(s string) bool {
	if strings.HasPrefix(s, "file:") {
		return true
	}
	if urlScheme(s) != "" {
		return false
	}
	lower := strings.ToLower(s)
	return strings.HasSuffix(lower, ".db") || strings.HasSuffix(lower, ".sqlite") || strings.HasSuffix(lower, ".sqlite3")
}

func (l *loader) redisURL(prod bool) string {
	const name = "REDIS_URL"
	s := l.get(name)
	if s == "" {
		if prod {
			l.problem(name, "required when APP_ENV=production (embedded Redis is for development and is not shared between replicas)")
		}
		return ""
	}
	// The value may hold a password, so no message below quotes it.
	u, err := url.Parse(s)
	switch {
	case err != nil:
		l.problem(name, "not a valid URL (use redis://[:password@]host:port[/db] or rediss://...)")
	case u.Scheme != "redis" && u.Scheme != "rediss":
		l.problem(name, "must start with redis:// or rediss://")
	case u.Host == "":
		l.problem(name, "must include a host")
	}
	return s
}

func (l *loader) redisKeyPrefix() string {
	const name = "REDIS_KEY_PREFIX"
	s := l.get(name)
	if s == "" {
		return "billing:"
	}
	if len(s) > 64 || strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ':' || r == '_' || r == '-')
	}) >= 0 {
		l.problem(name, "must be 1 to 64 characters of letters, digits, ':', '_' or '-'")
	}
	return s
}

func (l *loader) stripe(prod bool) StripeConfig {
	sc := StripeConfig{
		SecretKey:                 l.get("STRIPE_SECRET_KEY"),
		PublishableKey:            l.get("STRIPE_PUBLISHABLE_KEY"),
		WebhookSecrets:            splitList(l.get("STRIPE_WEBHOOK_SECRET")),
		APIBase:                   l.get("STRIPE_API_BASE"),
		AllowTestKeysInProduction: l.boolean("STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION"),
		Timeout:                   l.duration("STRIPE_TIMEOUT", 20*time.Second, time.Second, 2*time.Minute),
	}
	skMode := l.secretKey(sc.SecretKey)
	pkMode := l.publishableKey(sc.PublishableKey)

	if skMode != "" && pkMode != "" && skMode != pkMode {
		l.problem("STRIPE_PUBLISHABLE_KEY", "is a %s key but STRIPE_SECRET_KEY is a %s key, and test and live keys must not be mixed", pkMode, skMode)
	}
	for _, k := range []struct{ name, mode string }{{"STRIPE_SECRET_KEY", skMode}, {"STRIPE_PUBLISHABLE_KEY", pkMode}} {
		switch {
		case k.mode == "live" && !prod:
			l.problem(k.name, "live keys are refused unless APP_ENV=production")
		case k.mode == "test" && prod && !sc.AllowTestKeysInProduction:
			l.problem(k.name, "test keys are refused when APP_ENV=production unless STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION=true")
		}
	}

	for i, w := range sc.WebhookSecrets {
		if !strings.HasPrefix(w, "whsec_") || len(w) < 10 {
			l.problem("STRIPE_WEBHOOK_SECRET", "item %d of %d must start with whsec_ and be at least 10 characters", i+1, len(sc.WebhookSecrets))
		}
	}

	if prod {
		if sc.SecretKey == "" {
			l.problem("STRIPE_SECRET_KEY", "required when APP_ENV=production")
		}
		if sc.PublishableKey == "" {
			l.problem("STRIPE_PUBLISHABLE_KEY", "required when APP_ENV=production")
		}
		if len(sc.WebhookSecrets) == 0 {
			l.problem("STRIPE_WEBHOOK_SECRET", "required when APP_ENV=production")
		}
	}

	if sc.APIBase != "" {
		if msg := checkHTTPURL(sc.APIBase); msg != "" {
			l.problem("STRIPE_API_BASE", "%s", msg)
		}
		sc.APIBase = strings.TrimRight(sc.APIBase, "/")
		if prod && !sc.AllowTestKeysInProduction {
			l.problem("STRIPE_API_BASE", "refused when APP_ENV=production unless STRIPE_ALLOW_TEST_KEYS_IN_PRODUCTION=true (it is for stripe-mock)")
		}
		if skMode == "live" {
			// A live key must only ever be sent to Stripe itself.
			l.problem("STRIPE_API_BASE", "refused with a live STRIPE_SECRET_KEY (a live key is only sent to Stripe)")
		}
	}
	return sc
}

// secretKey validates STRIPE_SECRET_KEY and returns its mode ("test", "live") or "" when unset or invalid.
func (l *loader) secretKey(key string) string {
	const name = "STRIPE_SECRET_KEY"
	if key == "" {
		return ""
	}
	mode := secretKeyMode(key)
	switch {
	case strings.HasPrefix(key, "pk_"):
		l.problem(name, "this is a publishable key (pk_...); the secret key starts with sk_ or rk_")
	case strings.HasPrefix(key, "whsec_"):
		l.problem(name, "this is a webhook signing secret (whsec_...), which belongs in STRIPE_WEBHOOK_SECRET (the secret key starts with sk_ or rk_)")
	case mode == "":
		l.problem(name, "must start with sk_test_, sk_live_, rk_test_ or rk_live_")
	case !validKeyBody(key[len("sk_test_"):]):
		l.problem(name, "has a valid prefix but the rest is empty or has characters other than letters, digits and _")
	default:
		return mode
	}
	return ""
}

// publishableKey validates STRIPE_PUBLISHABLE_KEY and returns its mode ("test", "live") or "" when unset or invalid.
func (l *loader) publishableKey(key string) string {
	const name = "STRIPE_PUBLISHABLE_KEY"
	if key == "" {
		return ""
	}
	var mode string
	switch {
	case strings.HasPrefix(key, "pk_test_"):
		mode = "test"
	case strings.HasPrefix(key, "pk_live_"):
		mode = "live"
	}
	switch {
	case strings.HasPrefix(key, "sk_") || strings.HasPrefix(key, "rk_"):
		l.problem(name, "this is a secret key (sk_/rk_...), which must never be published and belongs in STRIPE_SECRET_KEY (the publishable key starts with pk_test_ or pk_live_)")
	case strings.HasPrefix(key, "whsec_"):
		l.problem(name, "this is a webhook signing secret (whsec_...), which belongs in STRIPE_WEBHOOK_SECRET (the publishable key starts with pk_test_ or pk_live_)")
	case mode == "":
		l.problem(name, "must start with pk_test_ or pk_live_")
	case !validKeyBody(key[len("pk_test_"):]):
		l.problem(name, "has a valid prefix but the rest is empty or has characters other than letters, digits and _")
	default:
		return mode
	}
	return ""
}

// secretKeyMode returns "test" or "live" for a secret or restricted key prefix, or "".
func secretKeyMode(key string) string {
	switch {
	case strings.HasPrefix(key, "sk_test_"), strings.HasPrefix(key, "rk_test_"):
		return "test"
	case strings.HasPrefix(key, "sk_live_"), strings.HasPrefix(key, "rk_live_"):
		return "live"
	}
	return ""
}

// validKeyBody reports whether the part of a Stripe key after its prefix is non-empty letters, digits and underscores.
func validKeyBody(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

func (l *loader) jwt(prod bool) JWTConfig {
	jc := JWTConfig{
		HS256Secret:   l.get("JWT_HS256_SECRET"),
		PublicKeyFile: l.get("JWT_PUBLIC_KEY_FILE"),
		Issuer:        l.get("JWT_ISSUER"),
		Audience:      l.get("JWT_AUDIENCE"),
	}
	switch {
	case jc.HS256Secret != "" && jc.PublicKeyFile != "":
		l.problem("JWT_PUBLIC_KEY_FILE", "set either JWT_HS256_SECRET or JWT_PUBLIC_KEY_FILE, not both")
	case jc.HS256Secret == "" && jc.PublicKeyFile == "":
		if prod {
			l.problem("JWT_HS256_SECRET", "required when APP_ENV=production: set JWT_HS256_SECRET or JWT_PUBLIC_KEY_FILE")
		} else {
			jc.HS256Secret = DevJWTSecret
		}
	}
	if jc.HS256Secret != "" {
		if len(jc.HS256Secret) < 32 {
			l.problem("JWT_HS256_SECRET", "must be at least 32 bytes")
		}
		if prod && jc.HS256Secret == DevJWTSecret {
			l.problem("JWT_HS256_SECRET", "the development secret (DevJWTSecret) is refused when APP_ENV=production")
		}
	}
	if prod && jc.PublicKeyFile != "" && jc.Audience == "" {
		// An identity provider's key signs the tokens of all its apps: without
		// an audience, a token issued for another app (an admin there) would
		// be accepted here.
		l.problem("JWT_AUDIENCE", "required when APP_ENV=production with JWT_PUBLIC_KEY_FILE")
	}
	if jc.PublicKeyFile != "" {
		pemBytes, err := os.ReadFile(jc.PublicKeyFile)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			l.problem("JWT_PUBLIC_KEY_FILE", "file %q does not exist", jc.PublicKeyFile)
		case err != nil:
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			l.problem("JWT_PUBLIC_KEY_FILE", "cannot read %q: %v", jc.PublicKeyFile, err)
		default:
			if msg := checkPublicKeyPEM(pemBytes); msg != "" {
				l.problem("JWT_PUBLIC_KEY_FILE", "%q %s", jc.PublicKeyFile, msg)
			} else {
				jc.PublicKeyPEM = pemBytes
			}
		}
	}
	return jc
}

// checkPublicKeyPEM returns why data is not a PEM RSA (RS256) or ECDSA P-256 (ES256) public key, or "".
func checkPublicKeyPEM(data []byte) string {
	block, _ := pem.Decode(data)
	if block == nil {
		return "holds no PEM block (expected -----BEGIN PUBLIC KEY-----)"
	}
	if strings.Contains(block.Type, "PRIVATE KEY") {
		return "holds a private key: give the public key (-----BEGIN PUBLIC KEY-----) and keep the private key with the token issuer"
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return fmt.Sprintf("holds a PEM %q block, not a PUBLIC KEY", block.Type)
	}
	if err != nil {
		return "holds a PEM block that does not parse as a public key"
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "holds an RSA key shorter than 2048 bits"
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "holds an ECDSA key that is not on curve P-256 (ES256)"
		}
	default:
		return "must hold an RSA (RS256) or ECDSA P-256 (ES256) public key"
	}
	return ""
}

func (l *loader) planLookupKeys() []string {
	const name = "PLAN_LOOKUP_KEYS"
	keys := splitList(l.get(name))
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if !validLookupKey(k) {
			l.problem(name, "key %q must be 1 to 200 characters of A-Z, a-z, 0-9, _, . and -", k)
		}
		if seen[k] {
			l.problem(name, "duplicate key %q", k)
		}
		seen[k] = true
	}
	return keys
}

func validLookupKey(k string) bool {
	if len(k) < 1 || len(k) > 200 {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

func (l *loader) corsOrigins(prod bool) []string {
	const name = "CORS_ALLOWED_ORIGINS"
	var origins []string
	seen := map[string]bool{}
	for _, o := range splitList(l.get(name)) {
		if o == "*" {
			if prod {
				l.problem(name, "\"*\" is refused when APP_ENV=production (list the allowed origins)")
			}
		} else {
			norm, msg := normalizeOrigin(o)
			if msg != "" {
				l.problem(name, "%q %s", o, msg)
				continue
			}
			o = norm
		}
		if !seen[o] {
			seen[o] = true
			origins = append(origins, o)
		}
	}
	return origins
}

// normalizeOrigin returns o as a lower-case scheme://host[:port] (a browser Origin), or why it is not one.
func normalizeOrigin(o string) (string, string) {
	const shape = "is not an origin of the form scheme://host[:port]"
	if strings.Contains(o, "*") {
		return "", "has a wildcard (only a lone \"*\" is supported)"
	}
	u, err := url.Parse(o)
	switch {
	case err != nil || u.Scheme == "" || u.Opaque != "" || u.Host == "":
		return "", shape
	case u.User != nil:
		return "", "must not contain user info"
	case u.Path != "" && u.Path != "/":
		return "", "has a path (an origin is scheme://host[:port] only)"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", "has a query or fragment (an origin is scheme://host[:port] only)"
	}
	// Browsers send Origin without a trailing slash and in lower case.
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host), ""
}

// splitList splits a comma-separated value, trimming items and dropping empty ones.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// shortDuration formats d without trailing zero units ("24h", not "24h0m0s").
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// LogValue returns every field as a slog group, with secrets shown as "[redacted]" and URL passwords as "xxxxx".
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("HTTPAddr", c.HTTPAddr),
		slog.String("Env", c.Env),
		slog.String("BaseURL", c.BaseURL),
		slog.String("DatabaseURL", redact.URL(c.DatabaseURL)),
		slog.String("RedisURL", redact.URL(c.RedisURL)),
		slog.String("RedisKeyPrefix", c.RedisKeyPrefix),
		slog.Any("Stripe", c.Stripe),
		slog.Any("JWT", c.JWT),
		slog.Any("PlanLookupKeys", c.PlanLookupKeys),
		slog.String("PriceCacheTTL", c.PriceCacheTTL.String()),
		slog.Int("RateLimitPerMinute", c.RateLimitPerMinute),
		slog.Any("CORSAllowedOrigins", c.CORSAllowedOrigins),
		slog.String("MetricsToken", redact.Secret(c.MetricsToken)),
		slog.String("CustomerCreation", c.CustomerCreation),
		slog.Bool("CustomerTestClocks", c.CustomerTestClocks),
		slog.Int("DBMaxOpenConns", c.DBMaxOpenConns),
		slog.Int("DBMaxIdleConns", c.DBMaxIdleConns),
	)
}

// String returns every field on one line, with secrets shown as "[redacted]" and URL passwords as "xxxxx".
func (c Config) String() string {
	return fmt.Sprintf("Config{HTTPAddr:%q Env:%q BaseURL:%q DatabaseURL:%q RedisURL:%q RedisKeyPrefix:%q Stripe:%s JWT:%s PlanLookupKeys:%q PriceCacheTTL:%s RateLimitPerMinute:%d CORSAllowedOrigins:%q MetricsToken:%q CustomerCreation:%q CustomerTestClocks:%t DBMaxOpenConns:%d DBMaxIdleConns:%d}",
		c.HTTPAddr, c.Env, c.BaseURL, redact.URL(c.DatabaseURL), redact.URL(c.RedisURL), c.RedisKeyPrefix, c.Stripe.String(), c.JWT.String(),
		c.PlanLookupKeys, c.PriceCacheTTL, c.RateLimitPerMinute, c.CORSAllowedOrigins, redact.Secret(c.MetricsToken),
		c.CustomerCreation, c.CustomerTestClocks, c.DBMaxOpenConns, c.DBMaxIdleConns)
}

// GoString returns c as Go syntax for %#v, with secrets replaced by "[redacted]" and URL passwords by "xxxxx".
func (c Config) GoString() string {
	return fmt.Sprintf("main.Config{HTTPAddr:%#v, Env:%#v, BaseURL:%#v, DatabaseURL:%#v, RedisURL:%#v, RedisKeyPrefix:%#v, Stripe:%s, JWT:%s, PlanLookupKeys:%#v, PriceCacheTTL:%d, RateLimitPerMinute:%d, CORSAllowedOrigins:%#v, MetricsToken:%#v, CustomerCreation:%#v, CustomerTestClocks:%t, DBMaxOpenConns:%d, DBMaxIdleConns:%d}",
		c.HTTPAddr, c.Env, c.BaseURL, redact.URL(c.DatabaseURL), redact.URL(c.RedisURL), c.RedisKeyPrefix, c.Stripe.GoString(), c.JWT.GoString(),
		c.PlanLookupKeys, int64(c.PriceCacheTTL), c.RateLimitPerMinute, c.CORSAllowedOrigins, redact.Secret(c.MetricsToken),
		c.CustomerCreation, c.CustomerTestClocks, c.DBMaxOpenConns, c.DBMaxIdleConns)
}

// Format prints c redacted for every verb, so even %d or %x cannot reach a secret field by reflection.
func (c Config) Format(f fmt.State, verb rune) { formatRedacted(f, verb, c) }

// LogValue returns every field as a slog group, with the secret key and webhook secrets shown as "[redacted]".
func (s StripeConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("SecretKey", redact.Secret(s.SecretKey)),
		slog.String("PublishableKey", s.PublishableKey),
		slog.String("WebhookSecrets", redact.List(s.WebhookSecrets)),
		slog.Int("WebhookSecretCount", len(s.WebhookSecrets)),
		slog.String("APIBase", s.APIBase),
		slog.Bool("AllowTestKeysInProduction", s.AllowTestKeysInProduction),
		slog.String("Timeout", s.Timeout.String()),
	)
}

// String returns every field on one line, with the secret key and webhook secrets shown as "[redacted]".
func (s StripeConfig) String() string {
	return fmt.Sprintf("{SecretKey:%q PublishableKey:%q WebhookSecrets:%q(%d) APIBase:%q AllowTestKeysInProduction:%t Timeout:%s}",
		redact.Secret(s.SecretKey), s.PublishableKey, redact.List(s.WebhookSecrets), len(s.WebhookSecrets), s.APIBase, s.AllowTestKeysInProduction, s.Timeout)
}

// GoString returns s as Go syntax for %#v, with the secret key and webhook secrets replaced by "[redacted]".
func (s StripeConfig) GoString() string {
	hidden := make([]string, len(s.WebhookSecrets))
	for i := range hidden {
		hidden[i] = redact.Mark
	}
	return fmt.Sprintf("main.StripeConfig{SecretKey:%#v, PublishableKey:%#v, WebhookSecrets:%#v, APIBase:%#v, AllowTestKeysInProduction:%t, Timeout:%d}",
		redact.Secret(s.SecretKey), s.PublishableKey, hidden, s.APIBase, s.AllowTestKeysInProduction, s.Timeout)
}

// Format prints s redacted for every verb, so even %d or %x cannot reach a secret field by reflection.
func (s StripeConfig) Format(f fmt.State, verb rune) { formatRedacted(f, verb, s) }

// LogValue returns every field as a slog group, with the HS256 secret shown as "[redacted]" and the PEM as its length.
func (j JWTConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("HS256Secret", redact.Secret(j.HS256Secret)),
		slog.String("PublicKeyFile", j.PublicKeyFile),
		slog.Int("PublicKeyPEMBytes", len(j.PublicKeyPEM)),
		slog.String("Issuer", j.Issuer),
		slog.String("Audience", j.Audience),
	)
}

// String returns every field on one line, with the HS256 secret shown as "[redacted]" and the PEM as its length.
func (j JWTConfig) String() string {
	return fmt.Sprintf("{HS256Secret:%q PublicKeyFile:%q PublicKeyPEM:[%d bytes] Issuer:%q Audience:%q}",
		redact.Secret(j.HS256Secret), j.PublicKeyFile, len(j.PublicKeyPEM), j.Issuer, j.Audience)
}

// GoString returns j as Go syntax for %#v, with the HS256 secret replaced by "[redacted]".
func (j JWTConfig) GoString() string {
	return fmt.Sprintf("main.JWTConfig{HS256Secret:%#v, PublicKeyFile:%#v, PublicKeyPEM:[]byte(%#v), Issuer:%#v, Audience:%#v}",
		redact.Secret(j.HS256Secret), j.PublicKeyFile, string(j.PublicKeyPEM), j.Issuer, j.Audience)
}

// Format prints j redacted for every verb, so even %d or %x cannot reach a secret field by reflection.
func (j JWTConfig) Format(f fmt.State, verb rune) { formatRedacted(f, verb, j) }

// formatRedacted prints v's GoString for %#v and its String for every other verb, keeping flags and width.
func formatRedacted(f fmt.State, verb rune, v interface {
	String() string
	GoString() string
}) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, v.GoString())
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), v.String())
}
