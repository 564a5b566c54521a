package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// tenantTx is a transaction on one organization's file. Every statement
// still names tenant_id: the file is the isolation, the column is the
// belt to its braces.
type tenantTx struct {
	tx       *sql.Tx
	tenantID string
	platform *sql.DB // for the agent directory, which lives in platform.db
	// pipe queues DecisionTx.Record's rows inside Pipeline.
	pipe *store.RecordQueue
}

func (t *tenantTx) TenantID() string { return t.tenantID }

// Savepoint nests under one fixed name: SQLite resolves a name to the most
// recent savepoint that has it, so nesting works and the statements stay
// cacheable.
//
// Inside a Pipeline, a failing savepoint also drops the records fn queued.
func (t *tenantTx) Savepoint(ctx context.Context, fn func(context.Context) error) (err error) {
	if q := t.pipe; q != nil {
		defer q.DropOnError(len(q.Records()), &err)
	}
	return savepoint(ctx, t.tx, fn)
}

// Pipeline queues the records fn makes and writes them when fn returns,
// with one multi-row INSERT per table instead of six statements per
// record (its savepoint, decision, counters and receipt or case). Nested,
// the outermost one writes.
func (t *tenantTx) Pipeline(ctx context.Context, fn func(context.Context) error) error {
	if t.pipe != nil {
		return fn(ctx)
	}
	t.pipe = &store.RecordQueue{}
	defer func() { t.pipe = nil }()
	if err := fn(ctx); err != nil {
		return err
	}
	return writeRecords(ctx, t.tx, t.tenantID, t.pipe.Records())
}

// savepoint runs fn under a SAVEPOINT of tx (Savepoint, Record).
//
// SQLite rolls a whole transaction back by itself on some errors (a full
// disk, an I/O error, no memory). ROLLBACK TO then fails, and the error is
// ErrTxAborted: the caller must not go on, for a SAVEPOINT issued outside
// a transaction opens a new one, and its RELEASE commits it.
func savepoint(ctx context.Context, tx *sql.Tx, fn func(context.Context) error) (err error) {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT agentsigna_sp`); err != nil {
		return mapErr(err)
	}
	defer func() {
		p := recover()
		bg := context.WithoutCancel(ctx)
		if err != nil || p != nil {
			// Undo fn's writes; the savepoint itself still has to go.
			if _, rerr := tx.ExecContext(bg, `ROLLBACK TO agentsigna_sp`); rerr != nil {
				err = fmt.Errorf("%w: undo a savepoint: %v (after: %v)", store.ErrTxAborted, rerr, err)
			} else if _, rerr := tx.ExecContext(bg, `RELEASE agentsigna_sp`); rerr != nil {
				err = fmt.Errorf("%w: release a savepoint: %v (after: %v)", store.ErrTxAborted, rerr, err)
			}
		} else if _, rerr := tx.ExecContext(bg, `RELEASE agentsigna_sp`); rerr != nil {
			err = fmt.Errorf("%w: release a savepoint: %v", store.ErrTxAborted, rerr)
		}
		if p != nil {
			panic(p)
		}
	}()
	return fn(ctx)
}

func (t *tenantTx) PutSetting(ctx context.Context, key, value string) error {
	if err := store.CheckSetting(key, value); err != nil {
		return err
	}
	_, err := t.tx.ExecContext(ctx, `INSERT INTO tenant_settings (tenant_id, key, value, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		t.tenantID, key, value, formatTime(time.Now()))
	return mapErr(err)
}

func (t *tenantTx) GetSetting(ctx context.Context, key string) (store.Setting, error) {
	var s store.Setting
	var updated string
	err := t.tx.QueryRowContext(ctx, `SELECT key, value, updated_at FROM tenant_settings WHERE tenant_id = ? AND key = ?`,
		t.tenantID, key).Scan(&s.Key, &s.Value, &updated)
	if err != nil {
		return store.Setting{}, mapErr(err)
	}
	s.UpdatedAt, err = parseTime(updated)
	return s, err
}

func (t *tenantTx) ListSettings(ctx context.Context) ([]store.Setting, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT key, value, updated_at FROM tenant_settings WHERE tenant_id = ? ORDER BY key`, t.tenantID)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Setting
	for rows.Next() {
		var s store.Setting
		var updated string
		if err := rows.Scan(&s.Key, &s.Value, &updated); err != nil {
			return nil, mapErr(err)
		}
		if s.UpdatedAt, err = parseTime(updated); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, mapErr(rows.Err())
}

func (t *tenantTx) DeleteSetting(ctx context.Context, key string) error {
	res, err := t.tx.ExecContext(ctx, `DELETE FROM tenant_settings WHERE tenant_id = ? AND key = ?`, t.tenantID, key)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: setting", store.ErrNotFound)
	}
	return nil
}

func (t *tenantTx) Log() store.LogTx {
	return &logTx{tx: t.tx, logScope: logScope{tenantID: t.tenantID}}
}
func (t *tenantTx) Keys() store.KeyTx {
	return &keyTx{tx: t.tx, logScope: logScope{tenantID: t.tenantID}}
}
