package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// tenantTx is a transaction on one organization's file. Every statement
// still names tenant_id: the file is the isolation, the column is the
// belt to its braces.
type tenantTx struct {
	tx       *sql.Tx
	tenantID string
}

func (t *tenantTx) TenantID() string { return t.tenantID }

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

func (t *tenantTx) AppendLedgerEntries(ctx context.Context, entries []store.LedgerEntry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := store.CheckLedgerEntries(entries); err != nil {
		return err
	}
	size, err := t.LedgerSize(ctx)
	if err != nil {
		return err
	}
	if entries[0].Index != size {
		return fmt.Errorf("%w: ledger is at size %d, batch starts at %d", store.ErrConflict, size, entries[0].Index)
	}
	stmt, err := t.tx.PrepareContext(ctx, `INSERT INTO ledger_entries (tenant_id, idx, entry, leaf_hash, created_at) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return mapErr(err)
	}
	defer stmt.Close()
	now := formatTime(time.Now())
	for _, e := range entries {
		if _, err := stmt.ExecContext(ctx, t.tenantID, int64(e.Index), e.Entry, e.LeafHash, now); err != nil {
			return mapErr(err)
		}
	}
	return nil
}

func (t *tenantTx) LedgerEntries(ctx context.Context, from, to uint64) ([]store.LedgerEntry, error) {
	if to < from {
		return nil, fmt.Errorf("%w: ledger range", store.ErrInvalid)
	}
	to = min(to, math.MaxInt64)
	from = min(from, to)
	rows, err := t.tx.QueryContext(ctx, `SELECT idx, entry, leaf_hash, created_at FROM ledger_entries
		WHERE tenant_id = ? AND idx >= ? AND idx < ? ORDER BY idx`, t.tenantID, int64(from), int64(to))
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.LedgerEntry
	for rows.Next() {
		var e store.LedgerEntry
		var idx int64
		var created string
		if err := rows.Scan(&idx, &e.Entry, &e.LeafHash, &created); err != nil {
			return nil, mapErr(err)
		}
		e.Index = uint64(idx)
		if e.CreatedAt, err = parseTime(created); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, mapErr(rows.Err())
}

func (t *tenantTx) LedgerSize(ctx context.Context) (uint64, error) {
	var n int64
	err := t.tx.QueryRowContext(ctx, `SELECT coalesce(max(idx) + 1, 0) FROM ledger_entries WHERE tenant_id = ?`, t.tenantID).Scan(&n)
	return uint64(n), mapErr(err)
}
