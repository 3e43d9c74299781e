package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/cache"
	"billingapi/ent"
	_ "billingapi/ent/runtime" // registers hooks, validators and privacy policies
	"billingapi/eventbus"
	"billingapi/internal/database"
	"billingapi/internal/metrics"
	"billingapi/ratelimit"
	"billingapi/webhooks"

	"entgo.io/ent/dialect"

	"github.com/redis/go-redis/v9"
)

// Main is the running service: its connections and its HTTP server.
// NewMain, then Open; Close releases everything Open acquired.
type Main struct {
	Config Config
	Log    *slog.Logger

	DB         *ent.Client
	store      *database.Store
	Redis      redis.UniversalClient
	closeRedis func() error
	Verifier   *auth.Verifier
	Prices     *cache.Prices
	Bus        *eventbus.Bus
	// Near is the in-process cache of hot reads, invalidated over Redis.
	Near *cache.Near
	// Limiter holds the per-minute budgets shared by every replica: of
	// Stripe mutations per user and workspace, and of the Stripe price
	// lookups anonymous callers cause.
	Limiter *ratelimit.Limiter
	Billing *billing.Service
	Worker  *webhooks.Worker
	// Metrics is this server's own Prometheus registry, served on
	// GET /metrics (observability.go).
	Metrics *metrics.Metrics

	stopWorker context.CancelFunc
	workerDone chan struct{}

	// StripeHTTPClient, when set before Open, carries every Stripe request
	// (tests count and inspect them through it).
	StripeHTTPClient *http.Client

	listener net.Listener
	server   *http.Server
	served   chan error
}

// ReconcileInterval is how often the reconciler asks Stripe for events a
// webhook outage kept from us; the first run is one interval after start.
const ReconcileInterval = 10 * time.Minute

// ShutdownTimeout bounds how long Close waits for in-flight requests.
const ShutdownTimeout = 15 * time.Second

// NewMain returns an unopened Main. Its logger adds request_id to the
// lines logged with a request's context.
func NewMain(cfg Config, log *slog.Logger) *Main {
	return &Main{Config: cfg, Log: withRequestIDs(log), Metrics: metrics.New()}
}

// Open connects to the database and Redis, applies the schema, and starts
// serving HTTP on Config.HTTPAddr (":0" picks a free port; see URL).
func (m *Main) Open(ctx context.Context) error {
	m.Log.Info("starting", "config", m.Config)
	verifier, err := auth.NewVerifier(auth.VerifierConfig{
		HS256Secret:  []byte(m.Config.JWT.HS256Secret),
		PublicKeyPEM: m.Config.JWT.PublicKeyPEM,
		Issuer:       m.Config.JWT.Issuer,
		Audience:     m.Config.JWT.Audience,
	})
	if err != nil {
		return fmt.Errorf("jwt: %w", err)
	}
	m.Verifier = verifier

	m.store, err = database.Open(ctx, m.Config.DatabaseURL, database.Options{
		MaxOpenConns: m.Config.DBMaxOpenConns,
		MaxIdleConns: m.Config.DBMaxIdleConns,
	})
	if err != nil {
		return err
	}
	m.DB = m.store.Client
	if m.Redis, m.closeRedis, err = cache.Open(m.Config.RedisURL); err != nil {
		return err
	}
	if err := cache.Ping(ctx, m.Redis); err != nil {
		return fmt.Errorf("redis: not reachable: %w", err)
	}
	// A near entry must not outlive the price cache's TTL by much.
	m.Near = cache.NewNear(m.Redis, m.Config.RedisKeyPrefix, min(cache.DefaultNearTTL, m.Config.PriceCacheTTL), m.Log)
	m.Near.Start(context.WithoutCancel(ctx))
	m.Metrics.ObserveNearCache(m.Near.Bytes)
	m.Prices = cache.NewPrices(m.Redis, m.Config.RedisKeyPrefix, m.Config.PriceCacheTTL, m.Log)
	m.Prices.Observe = m.Metrics.PriceCacheLookups
	m.Prices.Near = m.Near
	m.Bus = eventbus.New(m.Redis, m.Config.RedisKeyPrefix, m.Near, m.Log)
	m.Metrics.ObserveSubscribers(m.Bus.Subscribers)
	if err := m.Bus.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	m.Limiter = ratelimit.New(m.Redis, m.Config.RedisKeyPrefix, m.Config.RateLimitPerMinute)
	m.Billing = billing.New(billing.Deps{
		DB: m.DB,
		Stripe: billing.NewStripe(billing.StripeOptions{
			SecretKey:     m.Config.Stripe.SecretKey,
			APIBase:       m.Config.Stripe.APIBase,
			HTTPClient:    m.StripeHTTPClient,
			Timeout:       m.Config.Stripe.Timeout,
			WrapTransport: m.Metrics.StripeTransport,
		}, m.Log),
		Prices:  m.Prices,
		Status:  cache.NewStatus(m.Redis, m.Config.RedisKeyPrefix, m.Log),
		Bus:     m.Bus,
		Access:  m.Bus,
		Near:    m.Near,
		Limiter: m.Limiter,
		Log:     m.Log,
	}, billing.Config{
		PlanLookupKeys:     m.Config.PlanLookupKeys,
		EagerCustomers:     m.Config.CustomerCreation == "workspace",
		CustomerTestClocks: m.Config.CustomerTestClocks,
		Dialect:            m.store.Dialect,
		BaseURL:            m.Config.BaseURL,
		PublishableKey:     m.Config.Stripe.PublishableKey,
		Mode:               m.Config.StripeMode(),
	})

	m.Worker = &webhooks.Worker{DB: m.DB, Billing: m.Billing, Log: m.Log, Observe: m.Metrics.WebhookAttempt, RowLocks: m.store.Dialect == dialect.Postgres}
	m.Billing.SetWorkerWake(m.Worker.Wake)
	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	m.stopWorker = stopWorker
	m.workerDone = make(chan struct{})
	reconciler := &webhooks.Reconciler{DB: m.DB, Billing: m.Billing, Log: m.Log, Wake: m.Worker.Wake, Interval: ReconcileInterval}
	go func() {
		defer close(m.workerDone)
		var wg sync.WaitGroup
		if m.Config.Stripe.SecretKey != "" {
			wg.Add(2)
			go func() { defer wg.Done(); reconciler.Run(workerCtx) }()
			// Per-seat quantities whose debounced update a stopped
			// process lost, or whose attempts all failed.
			go func() { defer wg.Done(); m.Billing.RunSeatSweep(workerCtx, billing.SeatSweepInterval) }()
		}
		if m.Config.WebhookApplyDisabled {
			m.Log.Info("webhook worker off (WEBHOOK_APPLY_DISABLED): events are stored for the other replicas to apply")
		} else {
			m.Worker.Run(workerCtx)
		}
		wg.Wait()
	}()

	m.listener, err = net.Listen("tcp", m.Config.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR %s: %w", m.Config.HTTPAddr, err)
	}
	m.server = &http.Server{
		Handler:           m.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.Log.Handler(), slog.LevelWarn),
	}
	m.served = make(chan error, 1)
	go func() { m.served <- m.server.Serve(m.listener) }()
	m.Log.Info("listening", "addr", m.listener.Addr().String())
	if m.Config.JWT.HS256Secret == DevJWTSecret && !loopbackOnly(m.listener.Addr()) {
		// The development secret is public (it is in this source): anyone
		// who can reach the server can sign in as any user or admin.
		m.Log.Warn("JWT: the public development secret is in use and the server is reachable beyond this machine; " +
			"set JWT_HS256_SECRET or JWT_PUBLIC_KEY_FILE (or HTTP_ADDR=127.0.0.1:8000)")
	}
	return nil
}

// loopbackOnly reports whether addr is reachable from this machine alone.
func loopbackOnly(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// URL returns the base URL the server listens on, with a loopback host
// when it listens on all interfaces.
func (m *Main) URL() string {
	if m.listener == nil {
		return ""
	}
	addr := m.listener.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(addr.Port))
}

// Close stops accepting requests, waits up to ShutdownTimeout for those in
// flight, and closes Redis and the database.
func (m *Main) Close() error {
	var errs []error
	if m.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := m.server.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		if err := <-m.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if m.stopWorker != nil {
		m.stopWorker()
		<-m.workerDone
	}
	if m.Bus != nil {
		errs = append(errs, m.Bus.Close())
	}
	m.Near.Close()
	if m.closeRedis != nil {
		errs = append(errs, m.closeRedis())
	}
	if m.store != nil {
		errs = append(errs, m.store.Close())
	}
	return errors.Join(errs...)
}

// newLogger returns a text logger in development and a JSON logger in
// production.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	if cfg.Production() {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}
