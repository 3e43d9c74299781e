package testenv

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartPostgresStopStart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs, stops and starts a PostgreSQL cluster")
	}
	pg := StartPostgres(t)
	db, err := sql.Open("pgx", pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatalf("write: %v", err)
	}

	pg.Stop()
	pg.Stop() // a second stop does nothing
	started := time.Now()
	err = db.PingContext(ctx)
	if err == nil {
		t.Fatal("ping succeeded with the cluster stopped")
	}
	if d := time.Since(started); d > 5*time.Second {
		t.Fatalf("ping of a stopped cluster took %s", d)
	}
	t.Logf("stopped: %v", err)

	pg.Start()
	var v int
	if err := db.QueryRowContext(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 42 {
		t.Fatalf("after restart: v = %d, err = %v; want the row written before the stop", v, err)
	}
}

func TestStartPostgresFreezeThaw(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs, freezes and thaws a PostgreSQL cluster")
	}
	pg := StartPostgres(t)
	db, err := sql.Open("pgx", pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// One open connection, and room for a new one.
	db.SetMaxIdleConns(1)
	db.SetMaxOpenConns(2)
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	pg.Freeze()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err = db.ExecContext(ctx, "SELECT 1") // on the open connection
	cancel()
	if err == nil {
		t.Fatal("a frozen cluster answered on an open connection")
	}
	conn, err := sql.Open("pgx", pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	err = conn.PingContext(ctx) // a new connection
	cancel()
	if err == nil {
		t.Fatal("a frozen cluster accepted a new connection")
	}
	pg.Thaw()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("after thaw: %v", err)
	}
}

func TestStartRedisKillStart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs, kills and starts a redis-server")
	}
	r := StartRedis(t)
	opts, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	client := redis.NewClient(opts)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	r.Kill()
	r.Kill() // a second kill does nothing
	if err := client.Ping(ctx).Err(); err == nil {
		t.Fatal("ping succeeded with redis-server killed")
	}

	r.Start()
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if n, err := client.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after a kill the server holds k (exists = %d, err = %v); want it empty (no persistence)", n, err)
	}
}
