package database_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"billingapi/internal/database"
	"billingapi/internal/testenv"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// openPostgres opens a store on a fresh PostgreSQL database for the test,
// with a context that ends with it (or after a minute).
func openPostgres(t *testing.T) (context.Context, *database.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	store, err := database.Open(ctx, testenv.Postgres(t), database.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return ctx, store
}

func TestMigrationsMatchTheEntSchema(t *testing.T) {
	ctx, store := openPostgres(t)
	// What ent would still change after the migrations ran: nothing, or a
	// schema change was made without `make migrate-diff`.
	var pending bytes.Buffer
	if err := store.Client.Schema.WriteTo(ctx, &pending); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(pending.String(), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && line != "BEGIN;" && line != "COMMIT;" {
			t.Fatalf("the ent schema differs from the migrations; run `make migrate-diff NAME=...`:\n%s", pending.String())
		}
	}
}

func TestTwoReplicasStartingTogetherMigrateOnce(t *testing.T) {
	url := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	start := make(chan struct{})
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			store, err := database.Open(ctx, url, database.Options{})
			if err == nil {
				store.Close()
			}
			errs[i] = err
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dir, err := database.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := dir.Files()
	var rows, distinct int
	if err := db.QueryRowContext(ctx, "SELECT count(*), count(DISTINCT version) FROM schema_migrations").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != len(files) || distinct != len(files) {
		t.Fatalf("schema_migrations has %d rows (%d versions), want each of %d migrations once", rows, distinct, len(files))
	}
}

func TestMigrationsAreVerifiedAgainstTheirSum(t *testing.T) {
	if _, err := database.Migrations(); err != nil {
		t.Fatalf("embedded migrations: %v", err)
	}
}

// A DATABASE_URL that cannot be parsed fails Open, naming the variable,
// and the error never carries the password.
func TestOpenRefusesABadURLWithoutItsPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, url := range []string{
		"postgres://billing:s3cret-pw@127.0.0.1:notaport/billing",
		"postgres://billing:s3cret-pw@127.0.0.1:5432/billing?sslmode=sometimes",
		"postgres://billing:s3cret-pw@127.0.0.1:5432/billing?connect_timeout=soon",
	} {
		store, err := database.Open(ctx, url, database.Options{})
		if err == nil {
			store.Close()
			t.Fatalf("Open(%q) succeeded, want an error", url)
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("Open(%q): the error shows the password: %v", url, err)
		}
		if !strings.Contains(err.Error(), "DATABASE_URL") {
			t.Errorf("Open(%q): %v, want it to name DATABASE_URL", url, err)
		}
	}
}

// Two SQLite stores opened at once in one process each get their schema;
// under -race (make test) this fails if their auto-migrations share state
// unguarded.
func TestSQLiteStoresOpenedTogether(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			store, err := database.Open(ctx, dir+"/"+string(rune('a'+i))+".db", database.Options{})
			if err == nil {
				var tables int
				err = store.SQL.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'workspaces'`).Scan(&tables)
				if err == nil && tables != 1 {
					err = fmt.Errorf("no workspaces table")
				}
				store.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: %v", i, err)
		}
	}
}
