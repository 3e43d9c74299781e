package billing

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"billingapi/ent"
)

// WithTx runs fn in a transaction, committing when fn returns nil and
// rolling back otherwise (also on panic, which it re-raises).
func WithTx(ctx context.Context, db *ent.Client, fn func(tx *ent.Tx) error) (err error) {
	tx, err := db.Tx(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if v := recover(); v != nil {
			_ = tx.Rollback()
			panic(v)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			return errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// isNoRowsFromDoNothing reports the sql.ErrNoRows that ent's upsert with
// DoNothing returns on some dialects when the row already existed.
func isNoRowsFromDoNothing(err error) bool { return errors.Is(err, sql.ErrNoRows) }
