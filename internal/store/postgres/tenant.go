package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

// tenantTx runs as the tenant role, on a bound connection (binding.go),
// with app.tenant_id set for this transaction. Row security alone confines
// it; statements still name tenant_id so that indexes are used and intent
// is visible.
type tenantTx struct {
	tx       pgx.Tx
	tenantID string
	// pipe queues DecisionTx.Record's records inside Pipeline.
	pipe *store.RecordQueue
}

// Pipeline queues the records fn makes and sends them when fn returns: a
// few array statements in one round trip (queueRecords). Nested, the
// outermost one sends.
func (t *tenantTx) Pipeline(ctx context.Context, fn func(context.Context) error) error {
	if t.pipe != nil {
		return fn(ctx)
	}
	t.pipe = &store.RecordQueue{}
	defer func() { t.pipe = nil }()
	if err := fn(ctx); err != nil {
		return err
	}
	records := t.pipe.Records()
	if len(records) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if err := queueRecords(b, t.tenantID, records); err != nil {
		return err
	}
	return mapErr(t.tx.SendBatch(ctx, b).Close())
}

func (t *tenantTx) TenantID() string { return t.tenantID }

// Savepoint uses pgx's nested transaction, a SAVEPOINT: the statements of
// fn run on the same transaction (t.tx is the outer one, and row security
// and app.tenant_id, set for the whole transaction, hold inside it).
// Inside a Pipeline, a failing savepoint also drops the records fn queued.
func (t *tenantTx) Savepoint(ctx context.Context, fn func(context.Context) error) (err error) {
	if q := t.pipe; q != nil {
		defer q.DropOnError(len(q.Records()), &err)
	}
	sp, err := t.tx.Begin(ctx)
	if err != nil {
		return mapErr(err)
	}
	defer func() {
		p := recover()
		if err != nil || p != nil {
			if rerr := sp.Rollback(context.WithoutCancel(ctx)); rerr != nil {
				err = fmt.Errorf("%w: undo a savepoint: %v (after: %v)", store.ErrTxAborted, rerr, err)
			}
		}
		if p != nil {
			panic(p)
		}
	}()
	if err := fn(ctx); err != nil {
		return err
	}
	return mapErr(sp.Commit(ctx))
}

func (t *tenantTx) PutSetting(ctx context.Context, key, value string) error {
	if err := store.CheckSetting(key, value); err != nil {
		return err
	}
	_, err := t.tx.Exec(ctx, `INSERT INTO tenant_settings (tenant_id, key, value, updated_at) VALUES ($1, $2, $3, now())
		ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		t.tenantID, key, value)
	return mapErr(err)
}

func (t *tenantTx) GetSetting(ctx context.Context, key string) (store.Setting, error) {
	var s store.Setting
	err := t.tx.QueryRow(ctx, `SELECT key, value, updated_at FROM tenant_settings WHERE tenant_id = $1 AND key = $2`,
		t.tenantID, key).Scan(&s.Key, &s.Value, &s.UpdatedAt)
	if err != nil {
		return store.Setting{}, mapErr(err)
	}
	s.UpdatedAt = s.UpdatedAt.UTC()
	return s, nil
}

func (t *tenantTx) ListSettings(ctx context.Context) ([]store.Setting, error) {
	rows, err := t.tx.Query(ctx, `SELECT key, value, updated_at FROM tenant_settings WHERE tenant_id = $1 ORDER BY key`, t.tenantID)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Setting
	for rows.Next() {
		var s store.Setting
		if err := rows.Scan(&s.Key, &s.Value, &s.UpdatedAt); err != nil {
			return nil, mapErr(err)
		}
		s.UpdatedAt = s.UpdatedAt.UTC()
		out = append(out, s)
	}
	return out, mapErr(rows.Err())
}

func (t *tenantTx) DeleteSetting(ctx context.Context, key string) error {
	tag, err := t.tx.Exec(ctx, `DELETE FROM tenant_settings WHERE tenant_id = $1 AND key = $2`, t.tenantID, key)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
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
