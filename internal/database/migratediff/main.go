// Command migratediff writes the next versioned migration: the SQL that
// brings a PostgreSQL database from the migrations already in
// internal/database/migrations to the current ent schema. It replays the
// existing migrations on a throwaway database (created and dropped on the
// server of -dev-url) and diffs. `make migrate-diff NAME=add_things` runs
// it.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"path/filepath"
	"regexp"

	"billingapi/ent/migrate"

	atlas "ariga.io/atlas/sql/migrate"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql/schema"
	"github.com/jackc/pgx/v5/stdlib"
)

func init() {
	// ent's diff opens the dev database by the driver name "postgres".
	sql.Register("postgres", stdlib.GetDefaultDriver())
}

func main() {
	name := flag.String("name", "", "migration name, snake_case (required)")
	devURL := flag.String("dev-url", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "a PostgreSQL server to create a throwaway database on")
	dir := flag.String("dir", "internal/database/migrations", "the migrations folder")
	flag.Parse()
	if !regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`).MatchString(*name) {
		log.Fatal("migratediff: -name must be snake_case, e.g. -name add_invoices")
	}
	if err := run(context.Background(), *name, *devURL, *dir); err != nil {
		log.Fatalf("migratediff: %v", err)
	}
}

func run(ctx context.Context, name, devURL, dirPath string) error {
	admin, err := sql.Open("pgx", devURL)
	if err != nil {
		return err
	}
	defer admin.Close()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	scratch := "migratediff_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+scratch); err != nil {
		return fmt.Errorf("create scratch database: %w", err)
	}
	defer admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+scratch+" WITH (FORCE)")

	u, err := url.Parse(devURL)
	if err != nil {
		return err
	}
	u.Path = "/" + scratch
	if err := os.MkdirAll(dirPath, 0o755); err != nil {
		return err
	}
	dir, err := atlas.NewLocalDir(filepath.Clean(dirPath))
	if err != nil {
		return err
	}
	return migrate.NamedDiff(ctx, u.String(), name,
		schema.WithDir(dir),
		schema.WithMigrationMode(schema.ModeReplay),
		schema.WithDialect(dialect.Postgres),
		schema.WithFormatter(atlas.DefaultFormatter),
	)
}
