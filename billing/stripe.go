package billing

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"billingapi/billing/stripemeta"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// The metadata keys the event code reads back from Stripe objects, by the
// short names it uses (stripemeta writes them).
const (
	metaWorkspaceID = stripemeta.KeyWorkspaceID
	metaUserID      = stripemeta.KeyUserID
	metaPurpose     = stripemeta.KeyPurpose
)

// StripeOptions configures the one Stripe client of the service.
type StripeOptions struct {
	SecretKey string
	// APIBase replaces https://api.stripe.com (stripe-mock, a test fake).
	APIBase string
	// HTTPClient carries the requests; nil means one with Timeout. Tests
	// pass one whose transport counts or inspects requests.
	HTTPClient *http.Client
	// Timeout bounds one HTTP attempt; default 20s.
	Timeout time.Duration
	// MaxNetworkRetries is how often stripe-go retries a network error, a
	// 409, a lock timeout or a 503 (with the same idempotency key);
	// default 2. Set it to -1 for none.
	MaxNetworkRetries int64
	// WrapTransport, when set, wraps the HTTP client's transport (nil:
	// http.DefaultTransport), to count Stripe calls for metrics. The
	// client passed in HTTPClient is not modified.
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// DefaultStripeTimeout bounds one Stripe HTTP attempt.
const DefaultStripeTimeout = 20 * time.Second

// NewStripe returns a configured stripe-go client (never the package-level
// globals), or nil when no secret key is set: Stripe features then answer
// PAYMENT_PROVIDER_UNAVAILABLE.
func NewStripe(o StripeOptions, log *slog.Logger) *client.API {
	if o.SecretKey == "" {
		return nil
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultStripeTimeout
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.Timeout}
	}
	if o.WrapTransport != nil {
		wrapped := *o.HTTPClient
		wrapped.Transport = o.WrapTransport(wrapped.Transport)
		o.HTTPClient = &wrapped
	}
	retries := o.MaxNetworkRetries
	switch {
	case retries == 0:
		retries = 2
	case retries < 0:
		retries = 0
	}
	cfg := &stripe.BackendConfig{
		HTTPClient:        o.HTTPClient,
		MaxNetworkRetries: stripe.Int64(retries),
		LeveledLogger:     stripeLogger{log},
		EnableTelemetry:   stripe.Bool(false),
	}
	if o.APIBase != "" {
		cfg.URL = stripe.String(strings.TrimRight(o.APIBase, "/"))
	}
	// App info is process-wide in stripe-go (an unguarded global): set it
	// once, so that two services opened at once (tests, scenarios) do not
	// race on it.
	setAppInfo.Do(func() { stripe.SetAppInfo(&stripe.AppInfo{Name: "billingapi", Version: "0.1.0"}) })
	return client.New(o.SecretKey, stripe.NewBackendsWithConfig(cfg))
}

var setAppInfo sync.Once

// idempotencyKey derives a Stripe idempotency key from what makes a
// request unique: the operation and its distinguishing parts. Equal parts
// give the same key, so a retried request creates nothing new.
func idempotencyKey(op string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return op + "-" + hex.EncodeToString(h.Sum(nil))[:40]
}

// stripeLogger sends stripe-go's own log lines to slog at debug level
// (errors at warn). stripe-go never logs keys.
type stripeLogger struct{ log *slog.Logger }

func (l stripeLogger) Debugf(format string, v ...any) { l.log.Debug(sprintf(format, v...)) }
func (l stripeLogger) Infof(format string, v ...any)  { l.log.Debug(sprintf(format, v...)) }
func (l stripeLogger) Warnf(format string, v ...any)  { l.log.Warn(sprintf(format, v...)) }
func (l stripeLogger) Errorf(format string, v ...any) { l.log.Warn(sprintf(format, v...)) }

func sprintf(format string, v ...any) string { return fmt.Sprintf(format, v...) }
