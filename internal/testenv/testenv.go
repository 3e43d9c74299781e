// Package testenv gives tests their own slice of the real services: a
// fresh PostgreSQL database, a SQLite file, a Redis key prefix. When a
// service is missing, a test skips on a laptop and fails in CI (CI=true),
// so that CI can never pass by skipping. It also holds the few helpers
// that tests of more than one package share (Finalized).
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for CREATE DATABASE
	"github.com/redis/go-redis/v9"
)

// Unavailable skips the test, or fails it when CI=true, because a service
// it needs is not there.
func Unavailable(tb testing.TB, service string, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s is required in CI but unavailable: %v", service, err)
	}
	tb.Skipf("%s unavailable (set CI=true to fail instead): %v", service, err)
}

// PostgresAdminURL is the server the tests create their databases on;
// TEST_POSTGRES_URL overrides it.
func PostgresAdminURL() string {
	if u := os.Getenv("TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// Postgres returns the URL of a new, empty PostgreSQL database that is
// dropped when the test ends.
func Postgres(tb testing.TB) string {
	tb.Helper()
	admin, err := sql.Open("pgx", PostgresAdminURL())
	if err != nil {
		Unavailable(tb, "PostgreSQL", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		Unavailable(tb, "PostgreSQL", err)
	}
	name := "t_" + randomHex(8)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close()
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop database %s: %v", name, err)
		}
		_ = admin.Close()
	})
	u, err := url.Parse(PostgresAdminURL())
	if err != nil {
		tb.Fatalf("TEST_POSTGRES_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// SQLite returns the path of a new SQLite database file in the test's
// temporary folder.
func SQLite(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), "billing.db")
}

// Database is one SQL backend a test runs against.
type Database struct {
	Name string
	URL  func(testing.TB) string
}

// Databases lists both backends the service supports, so that a test can
// run against each: PostgreSQL (production) and SQLite (`make run`).
func Databases() []Database {
	return []Database{{"Postgres", Postgres}, {"SQLite", SQLite}}
}

// RedisURL is the Redis server the tests use; TEST_REDIS_URL overrides it.
func RedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Redis returns the URL of the real Redis server and a key prefix unique
// to this test; keys under the prefix are deleted when the test ends.
func Redis(tb testing.TB) (redisURL, prefix string) {
	tb.Helper()
	opts, err := redis.ParseURL(RedisURL())
	if err != nil {
		tb.Fatalf("TEST_REDIS_URL: %v", err)
	}
	client := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		Unavailable(tb, "Redis", err)
	}
	prefix = "test:" + randomHex(6) + ":"
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		_ = client.Close()
	})
	return RedisURL(), prefix
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
