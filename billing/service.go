package billing

import (
	"log/slog"
	"time"

	"billingapi/cache"
	"billingapi/ent"
	"billingapi/ratelimit"

	"entgo.io/ent/dialect"
	"github.com/stripe/stripe-go/v76/client"
)

// Config is what the domain needs to know of the deployment.
type Config struct {
	// PlanLookupKeys is the plan catalog, in display order.
	PlanLookupKeys []string
	// EagerCustomers creates a workspace's Stripe Customer when the
	// workspace is created rather than at its first payment.
	EagerCustomers bool
	// CustomerTestClocks creates each workspace's Stripe Customer on a
	// Stripe test clock of its own (test mode only), so that a script can
	// move one workspace's billing through months while others stand still.
	CustomerTestClocks bool
	// Dialect is the database's: dialect.Postgres or dialect.SQLite (the
	// default when empty). It decides the row locks (PostgreSQL takes
	// SELECT ... FOR UPDATE; SQLite serializes writers instead) and the
	// syntax of the few statements built by hand (finishProcessed).
	Dialect string
	// SeatDebounce is how long after the last member change a per-seat
	// quantity is sent to Stripe; DefaultSeatDebounce when zero.
	SeatDebounce time.Duration
	// BaseURL is APP_BASE_URL: where Checkout and 3D Secure send the
	// customer back to.
	BaseURL string
	// PublishableKey and Mode ("test" or "live") are what clients may know
	// of the Stripe account.
	PublishableKey string
	Mode           string
}

// Deps are the services the domain talks to.
type Deps struct {
	DB *ent.Client
	// Stripe may be nil when no Stripe key is configured: Stripe features
	// then answer PAYMENT_PROVIDER_UNAVAILABLE.
	Stripe *client.API
	Prices *cache.Prices
	Status *cache.Status
	// Bus publishes applied events to subscribers; nil publishes nothing.
	Bus Publisher
	// Access ends a removed member's event subscriptions on every replica
	// (members.go); nil ends none.
	Access AccessRevoker
	// Near is the in-process cache of hot reads (near.go); nil caches
	// nothing in memory.
	Near *cache.Near
	// Limiter bounds the Stripe price lookups that anonymous callers cause
	// for lookup keys outside the plan catalog, all of them together, to
	// its per-minute budget (catalog.go); nil bounds nothing.
	Limiter *ratelimit.Limiter
	Log     *slog.Logger
}

// Service is the billing domain. Build it with New; its methods take the
// viewer from the context and refuse with an *Error.
type Service struct {
	db     *ent.Client
	stripe *client.API
	prices *cache.Prices
	status *cache.Status
	near   *cache.Near
	limit  *ratelimit.Limiter
	bus    Publisher
	access AccessRevoker
	cfg    Config

	wakeWorker func()
	seats      seatSync
	log        *slog.Logger
}

// New returns a Service over its dependencies.
func New(d Deps, cfg Config) *Service {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	s := &Service{db: d.DB, stripe: d.Stripe, prices: d.Prices, status: d.Status, near: d.Near, limit: d.Limiter, bus: d.Bus, access: d.Access, cfg: cfg, log: d.Log}
	if d.Near != nil {
		s.invalidateOnWrite()
	}
	return s
}

// StripeConfig is what a client needs to load Stripe.js.
type StripeConfig struct {
	// PublishableKey is nil when Stripe is not configured.
	PublishableKey *string
	// Mode is "test" or "live"; "" when Stripe is not configured.
	Mode string
}

// StripeConfig returns the publishable key and mode. The secret key is not
// reachable from the Service at all.
func (s *Service) StripeConfig() StripeConfig {
	c := StripeConfig{Mode: s.cfg.Mode}
	if s.cfg.PublishableKey != "" {
		c.PublishableKey = &s.cfg.PublishableKey
	}
	return c
}

// dialect is the database's SQL dialect, for the statements ent cannot
// build (finishProcessed).
func (s *Service) dialect() string {
	if s.cfg.Dialect == "" {
		return dialect.SQLite
	}
	return s.cfg.Dialect
}

// rowLocks reports whether the database takes row locks (SELECT ... FOR
// UPDATE): PostgreSQL does.
func (s *Service) rowLocks() bool { return s.dialect() == dialect.Postgres }
