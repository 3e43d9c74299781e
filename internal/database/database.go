// Package database opens the service's SQL store, PostgreSQL or embedded
// SQLite, behind one ent client, so that the server and the tests open it
// the same way.
package database

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"billingapi/ent"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Options sizes the PostgreSQL connection pool; SQLite ignores them.
type Options struct {
	MaxOpenConns int
	MaxIdleConns int
}

// Store is an open database: the ent client and the *sql.DB beneath it
// (for pings and raw statements).
type Store struct {
	Client  *ent.Client
	SQL     *sql.DB
	Dialect string
}

// Close closes the client and its connections.
func (s *Store) Close() error { return s.Client.Close() }

// Open connects to url (postgres:// or postgresql://; anything else is a
// SQLite path, optionally prefixed file:), checks that it answers, and
// brings the schema up to date: versioned migrations on PostgreSQL, ent's
// auto-migration on SQLite.
func Open(ctx context.Context, rawURL string, o Options) (*Store, error) {
	var (
		db  *sql.DB
		drv string
		err error
	)
	if IsPostgres(rawURL) {
		drv = dialect.Postgres
		var cfg *pgx.ConnConfig
		if cfg, err = pgx.ParseConfig(rawURL); err != nil {
			return nil, fmt.Errorf("DATABASE_URL: %s", redact(err, rawURL))
		}
		db = stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(encodeUUIDs))
		if o.MaxOpenConns > 0 {
			db.SetMaxOpenConns(o.MaxOpenConns)
		}
		if o.MaxIdleConns > 0 {
			db.SetMaxIdleConns(o.MaxIdleConns)
		}
		db.SetConnMaxIdleTime(5 * time.Minute)
	} else {
		drv = dialect.SQLite
		if db, err = openSQLite(rawURL); err != nil {
			return nil, err
		}
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("database: not reachable: %s", redact(err, rawURL))
	}
	client := ent.NewClient(ent.Driver(entsql.OpenDB(drv, db)))
	if drv == dialect.Postgres {
		// PostgreSQL takes the versioned migrations, under a lock, so that
		// replicas starting together apply each once.
		if _, err := ApplyMigrations(ctx, db); err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("database: migrate: %s", redact(err, rawURL))
		}
	} else if err := createSchema(ctx, client); err != nil {
		// The embedded SQLite file keeps ent's auto-migration.
		_ = client.Close()
		return nil, fmt.Errorf("database: create schema: %s", redact(err, rawURL))
	}
	return &Store{Client: client, SQL: db, Dialect: drv}, nil
}

// schemaMu serializes ent's auto-migration: it fills in the generated
// package's shared table descriptions as it goes, so two stores opened at
// once in one process (tests, scenarios) would race on them.
var schemaMu sync.Mutex

func createSchema(ctx context.Context, client *ent.Client) error {
	schemaMu.Lock()
	defer schemaMu.Unlock()
	return client.Schema.Create(ctx)
}

// IsPostgres reports whether url names a PostgreSQL database.
func IsPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// openSQLite opens the embedded database file, creating its folder. One
// connection serializes writers, which is all SQLite can do anyway, and
// spares us "database is locked" errors.
func openSQLite(path string) (*sql.DB, error) {
	file := strings.TrimPrefix(path, "file:")
	if i := strings.IndexByte(file, '?'); i >= 0 {
		file = file[:i]
	}
	if file == "" {
		return nil, fmt.Errorf("DATABASE_URL: empty SQLite path")
	}
	if file != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
			return nil, fmt.Errorf("DATABASE_URL: create folder: %w", err)
		}
	}
	// SQLite compares times as text, so every time is written in one zone
	// and one format: UTC, without the monotonic clock reading that
	// time.Time.String (the driver's default) appends to a time.Now value
	// ("... +0000 UTC m=+0.028"). With it, a row's create_time sorted after
	// the same instant read back from a cursor, and pages repeated rows.
	dsn := "file:" + file + "?_pragma=foreign_keys(1)&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate" +
		"&_timezone=UTC&_time_format=string_no_monotonic"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// redact returns err's text with the URL's password masked, since drivers
// sometimes echo their connection string.
func redact(err error, rawURL string) string {
	msg := err.Error()
	if u, perr := url.Parse(rawURL); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}
