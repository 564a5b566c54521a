package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/migrations"
)

// migrate applies the pending migrations of set, each in its own
// transaction with its bookkeeping row, so a crash leaves the file at a
// whole version. The write lock taken at BEGIN IMMEDIATE serialises two
// processes migrating the same file.
func migrate(ctx context.Context, db *sql.DB, set migrations.Set) error {
	list, err := migrations.List(set)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("sqlite: migrations table: %w", mapErr(err))
	}
	for _, m := range list {
		err := inTx(ctx, db, func(tx *sql.Tx) error {
			var done int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.Version).Scan(&done); err != nil {
				return err
			}
			if done > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, formatTime(time.Now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("sqlite: migration %s/%s: %w", set, m.Name, err)
		}
	}
	var newest int
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return mapErr(err)
	}
	if newest > len(list) {
		return fmt.Errorf("%w: %s is at version %d, newer than this binary (%d)", store.ErrSchema, set, newest, len(list))
	}
	return nil
}
