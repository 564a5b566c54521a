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
		applied_at TEXT NOT NULL,
		sha256     TEXT NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("sqlite: migrations table: %w", mapErr(err))
	}
	if err := checkApplied(ctx, db, set); err != nil {
		return err
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
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at, sha256) VALUES (?, ?, ?, ?)`,
				m.Version, m.Name, formatTime(time.Now()), m.SHA256)
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

// checkApplied refuses a file whose applied migrations differ from this
// binary's (migrations.CheckApplied), under the write lock: two processes
// opening one file check, and complete an old table, one at a time. A
// bookkeeping table from before digests were recorded has none to
// compare: with versions applied, that file was built by an earlier
// pre-release schema; empty, it gains the column.
func checkApplied(ctx context.Context, db *sql.DB, set migrations.Set) error {
	return inTx(ctx, db, func(tx *sql.Tx) error {
		var hasDigest int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('schema_migrations') WHERE name = 'sha256'`).Scan(&hasDigest); err != nil {
			return mapErr(err)
		}
		column := "sha256"
		if hasDigest == 0 {
			column = "''"
		}
		rows, err := tx.QueryContext(ctx, `SELECT version, `+column+` FROM schema_migrations`)
		if err != nil {
			return mapErr(err)
		}
		defer rows.Close()
		applied := map[int]string{}
		for rows.Next() {
			var v int
			var sum string
			if err := rows.Scan(&v, &sum); err != nil {
				return mapErr(err)
			}
			applied[v] = sum
		}
		if err := rows.Err(); err != nil {
			return mapErr(err)
		}
		if err := migrations.CheckApplied(set, applied); err != nil {
			return fmt.Errorf("%w: sqlite: %v; start from an empty data directory", store.ErrSchema, err)
		}
		if hasDigest == 0 {
			if _, err := tx.ExecContext(ctx, `ALTER TABLE schema_migrations ADD COLUMN sha256 TEXT NOT NULL DEFAULT ''`); err != nil {
				return mapErr(err)
			}
		}
		return nil
	})
}
