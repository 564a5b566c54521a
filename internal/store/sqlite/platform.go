package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

type platformTx struct {
	tx *sql.Tx
	// tenantsChanged: SetTenantStatus ran (successfully or not), so the
	// store's remembered directory entries are forgotten when the
	// transaction ends.
	tenantsChanged bool
}

var platformScope = logScope{prefix: "platform_"}

func (p *platformTx) Log() store.LogTx  { return &logTx{tx: p.tx, logScope: platformScope} }
func (p *platformTx) Keys() store.KeyTx { return &keyTx{tx: p.tx, logScope: platformScope} }

func (p *platformTx) CreateTenant(ctx context.Context, t store.Tenant) (store.Tenant, error) {
	if t.ID == "" {
		t.ID = store.NewTenantID()
	}
	if t.Status == "" {
		t.Status = store.TenantActive
	}
	if err := store.CheckTenant(t); err != nil {
		return store.Tenant{}, err
	}
	t.CreatedAt = time.Now().UTC()
	_, err := p.tx.ExecContext(ctx, `INSERT INTO tenants (id, slug, name, status, created_at) VALUES (?, ?, ?, ?, ?)`,
		t.ID, t.Slug, t.Name, string(t.Status), formatTime(t.CreatedAt))
	if err != nil {
		return store.Tenant{}, mapErr(err)
	}
	return t, nil
}

const tenantColumns = `id, slug, name, status, created_at`

func (p *platformTx) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	if err := store.CheckTenantID(id); err != nil {
		return store.Tenant{}, err
	}
	return scanTenant(p.tx.QueryRowContext(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = ?`, id))
}

func (p *platformTx) GetTenantBySlug(ctx context.Context, slug string) (store.Tenant, error) {
	if err := store.CheckSlug(slug); err != nil {
		return store.Tenant{}, err
	}
	return scanTenant(p.tx.QueryRowContext(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE slug = ?`, slug))
}

func (p *platformTx) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	rows, err := p.tx.QueryContext(ctx, `SELECT `+tenantColumns+` FROM tenants ORDER BY slug`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Tenant
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, mapErr(rows.Err())
}

func (p *platformTx) SetTenantStatus(ctx context.Context, id string, status store.TenantStatus) error {
	p.tenantsChanged = true
	if err := store.CheckTenantID(id); err != nil {
		return err
	}
	if err := store.CheckTenantStatus(status); err != nil {
		return err
	}
	res, err := p.tx.ExecContext(ctx, `UPDATE tenants SET status = ? WHERE id = ?`, string(status), id)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: tenant", store.ErrNotFound)
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanTenant(row scanner) (store.Tenant, error) {
	var t store.Tenant
	var status, created string
	if err := row.Scan(&t.ID, &t.Slug, &t.Name, &status, &created); err != nil {
		return store.Tenant{}, mapErr(err)
	}
	t.Status = store.TenantStatus(status)
	var err error
	t.CreatedAt, err = parseTime(created)
	return t, err
}
