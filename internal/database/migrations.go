package database

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"

	"ariga.io/atlas/sql/migrate"
)

// migrationFiles are the versioned PostgreSQL migrations, written by
// `make migrate-diff NAME=...` and checked against their atlas.sum.
//
//go:embed migrations/*.sql migrations/atlas.sum
var migrationFiles embed.FS

// migrationLock is the PostgreSQL advisory lock key that serializes
// migrations across replicas starting at once ("billing" in ASCII).
const migrationLock = 0x62696c6c696e67

// Migrations returns the embedded migration directory, verified against
// its atlas.sum: an edited or hand-added file is refused.
func Migrations() (migrate.Dir, error) {
	dir := &migrate.MemDir{}
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		b, err := migrationFiles.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		if err := dir.WriteFile(e.Name(), b); err != nil {
			return nil, err
		}
	}
	if err := migrate.Validate(dir); err != nil {
		return nil, fmt.Errorf("migrations do not match atlas.sum (run make migrate-diff, never edit a migration): %w", err)
	}
	return dir, nil
}

// ApplyMigrations applies the pending versioned migrations to a PostgreSQL
// database, each in its own transaction, recording them in
// schema_migrations. A session advisory lock makes replicas that start
// together take turns: the first applies, the others find nothing to do.
// It returns the versions it applied.
func ApplyMigrations(ctx context.Context, db *sql.DB) ([]string, error) {
	dir, err := Migrations()
	if err != nil {
		return nil, err
	}
	files, err := dir.Files()
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock)

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version text PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("schema_migrations: %w", err)
	}
	var applied []string
	for _, f := range files {
		var done bool
		if err := conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", f.Version()).Scan(&done); err != nil {
			return applied, err
		}
		if done {
			continue
		}
		stmts, err := f.Stmts()
		if err != nil {
			return applied, fmt.Errorf("migration %s: %w", f.Name(), err)
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return applied, err
		}
		for _, stmt := range stmts {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				_ = tx.Rollback()
				return applied, fmt.Errorf("migration %s: %w", f.Name(), err)
			}
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)", f.Version(), f.Desc()); err != nil {
			_ = tx.Rollback()
			return applied, err
		}
		if err := tx.Commit(); err != nil {
			return applied, fmt.Errorf("migration %s: %w", f.Name(), err)
		}
		applied = append(applied, f.Version())
	}
	return applied, nil
}
