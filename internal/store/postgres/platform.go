package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

// platformTx runs as the platform role: tenants table only.
type platformTx struct {
	tx pgx.Tx
	// tenantsChanged: SetTenantStatus ran (successfully or not), so the
	// store's remembered directory entries are forgotten when the
	// transaction ends.
	tenantsChanged bool
}

var platformScope = logScope{prefix: "platform_"}

func (p *platformTx) Log() store.LogTx  { return &logTx{tx: p.tx, logScope: platformScope} }
func (p *platformTx) Keys() store.KeyTx { return &keyTx{tx: p.tx, logScope: platformScope} }

const tenantColumns = `id::text, slug, name, status, created_at`

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
	err := p.tx.QueryRow(ctx, `INSERT INTO tenants (id, slug, name, status) VALUES ($1, $2, $3, $4) RETURNING created_at`,
		t.ID, t.Slug, t.Name, string(t.Status)).Scan(&t.CreatedAt)
	if err != nil {
		return store.Tenant{}, mapErr(err)
	}
	t.CreatedAt = t.CreatedAt.UTC()
	return t, nil
}

func (p *platformTx) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	if err := store.CheckTenantID(id); err != nil {
		return store.Tenant{}, err
	}
	return scanTenant(p.tx.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = $1`, id))
}

func (p *platformTx) GetTenantBySlug(ctx context.Context, slug string) (store.Tenant, error) {
	if err := store.CheckSlug(slug); err != nil {
		return store.Tenant{}, err
	}
	return scanTenant(p.tx.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE slug = $1`, slug))
}

func (p *platformTx) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	rows, err := p.tx.Query(ctx, `SELECT `+tenantColumns+` FROM tenants ORDER BY slug`)
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
	tag, err := p.tx.Exec(ctx, `UPDATE tenants SET status = $1 WHERE id = $2`, string(status), id)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: tenant", store.ErrNotFound)
	}
	return nil
}

func scanTenant(row pgx.Row) (store.Tenant, error) {
	var t store.Tenant
	var status string
	if err := row.Scan(&t.ID, &t.Slug, &t.Name, &status, &t.CreatedAt); err != nil {
		return store.Tenant{}, mapErr(err)
	}
	t.Status = store.TenantStatus(status)
	t.CreatedAt = t.CreatedAt.UTC()
	return t, nil
}
