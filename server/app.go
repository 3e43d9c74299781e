package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"billingapi/auth"
	"billingapi/billing"
	"billingapi/cache"
	"billingapi/ent"
	_ "billingapi/ent/runtime" // registers hooks, validators and privacy policies

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Main is the running service: its connections and its HTTP server.
// NewMain, then Open; Close releases everything Open acquired.
type Main struct {
	Config Config
	Log    *slog.Logger

	DB         *ent.Client
	sqlDB      *sql.DB
	Redis      redis.UniversalClient
	closeRedis func() error
	Verifier   *auth.Verifier
	Billing    *billing.Service

	listener net.Listener
	server   *http.Server
	served   chan error
}

// ShutdownTimeout bounds how long Close waits for in-flight requests.
const ShutdownTimeout = 15 * time.Second

// NewMain returns an unopened Main.
func NewMain(cfg Config, log *slog.Logger) *Main {
	return &Main{Config: cfg, Log: log}
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

	if m.DB, m.sqlDB, err = openDB(ctx, m.Config); err != nil {
		return err
	}
	if m.Redis, m.closeRedis, err = cache.Open(m.Config.RedisURL); err != nil {
		return err
	}
	if err := cache.Ping(ctx, m.Redis); err != nil {
		return fmt.Errorf("redis: not reachable: %w", err)
	}
	m.Billing = billing.New(m.DB, m.Log)

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
	return nil
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
	if m.closeRedis != nil {
		errs = append(errs, m.closeRedis())
	}
	if m.DB != nil {
		errs = append(errs, m.DB.Close())
	}
	return errors.Join(errs...)
}

// openDB opens PostgreSQL or SQLite from the config and creates or
// updates the schema.
func openDB(ctx context.Context, cfg Config) (*ent.Client, *sql.DB, error) {
	var (
		db  *sql.DB
		drv string
		err error
	)
	if isPostgresURL(cfg.DatabaseURL) {
		drv = dialect.Postgres
		db, err = sql.Open("pgx", cfg.DatabaseURL)
		if err != nil {
			return nil, nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
		db.SetMaxOpenConns(cfg.DBMaxOpenConns)
		db.SetMaxIdleConns(cfg.DBMaxIdleConns)
		db.SetConnMaxIdleTime(5 * time.Minute)
	} else {
		drv = dialect.SQLite
		db, err = openSQLite(cfg.DatabaseURL)
		if err != nil {
			return nil, nil, err
		}
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("database: not reachable: %s", redactDSNError(err, cfg.DatabaseURL))
	}
	client := ent.NewClient(ent.Driver(entsql.OpenDB(drv, db)))
	if err := client.Schema.Create(ctx); err != nil {
		_ = client.Close()
		return nil, nil, fmt.Errorf("database: create schema: %w", err)
	}
	return client, db, nil
}

func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// openSQLite opens the embedded database file, creating its folder. One
// connection serializes writers, which is what SQLite can do anyway, and
// spares us "database is locked" errors.
func openSQLite(path string) (*sql.DB, error) {
	file := strings.TrimPrefix(path, "file:")
	if i := strings.IndexByte(file, '?'); i >= 0 {
		file = file[:i]
	}
	if file != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
			return nil, fmt.Errorf("DATABASE_URL: create folder: %w", err)
		}
	}
	dsn := "file:" + file + "?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// redactDSNError removes the DSN's password from a driver error.
func redactDSNError(err error, dsn string) string {
	msg := err.Error()
	if u, perr := url.Parse(dsn); perr == nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// newLogger returns a text logger in development and a JSON logger in
// production.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	if cfg.Production() {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}
