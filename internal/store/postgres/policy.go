package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

type policyTx struct {
	tx       pgx.Tx
	tenantID string
}

func (t *tenantTx) Policies() store.PolicyTx { return &policyTx{tx: t.tx, tenantID: t.tenantID} }

func (p *policyTx) InsertBundle(ctx context.Context, b store.PolicyBundle) error {
	if err := store.CheckPolicyBundle(b); err != nil {
		return err
	}
	_, err := p.tx.Exec(ctx, `INSERT INTO policy_bundles (tenant_id, revision, digest, bundle, manifest, signed, uploaded_by, ledger_index)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, p.tenantID, b.Revision, b.Digest, b.Bundle, b.Manifest, b.Signed, b.UploadedBy, int64(*b.LedgerIndex))
	return mapErr(err)
}

const bundleColumns = `revision, digest, manifest, signed, uploaded_by, uploaded_at, ledger_index`

func scanBundle(row pgx.Row, withBytes bool) (store.PolicyBundle, error) {
	var b store.PolicyBundle
	var idx *int64
	dest := []any{&b.Revision, &b.Digest, &b.Manifest, &b.Signed, &b.UploadedBy, &b.UploadedAt, &idx}
	if withBytes {
		dest = append(dest, &b.Bundle)
	}
	if err := row.Scan(dest...); err != nil {
		return store.PolicyBundle{}, mapErr(err)
	}
	b.UploadedAt = b.UploadedAt.UTC()
	b.LedgerIndex = ledgerIndexOf(idx)
	return b, nil
}

func (p *policyTx) Bundle(ctx context.Context, revision string) (store.PolicyBundle, error) {
	return scanBundle(p.tx.QueryRow(ctx, `SELECT `+bundleColumns+`, bundle FROM policy_bundles WHERE tenant_id = $1 AND revision = $2`,
		p.tenantID, revision), true)
}

func (p *policyTx) Bundles(ctx context.Context) ([]store.PolicyBundle, error) {
	rows, err := p.tx.Query(ctx, `SELECT `+bundleColumns+` FROM policy_bundles WHERE tenant_id = $1 ORDER BY uploaded_at, revision`, p.tenantID)
	if err != nil {
		return nil, mapErr(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.PolicyBundle, error) { return scanBundle(r, false) })
	return out, mapErr(err)
}

func (p *policyTx) Activate(ctx context.Context, a store.PolicyActivation) (store.PolicyActivation, error) {
	if a.Revision == "" || a.ActivatedBy == "" {
		return a, fmt.Errorf("%w: activation needs a revision and who activated it", store.ErrInvalid)
	}
	var seq int64
	if err := store.CheckLedgerIndex(a.LedgerIndex, "an activation"); err != nil {
		return a, err
	}
	idx := int64(*a.LedgerIndex)
	if a.Seq > math.MaxInt64 {
		return a, fmt.Errorf("%w: activation %d is not the next", store.ErrConflict, a.Seq)
	}
	// A given seq must be the next (the table's trigger refuses any other
	// as unique_violation: ErrConflict); 0 takes the next.
	err := p.tx.QueryRow(ctx, `INSERT INTO policy_activations (tenant_id, seq, revision, rollback, activated_by, approved_by, ledger_index)
		SELECT $1, CASE WHEN $7::bigint > 0 THEN $7::bigint ELSE coalesce(max(seq), 0) + 1 END, $2, $3, $4, $5, $6
		FROM policy_activations WHERE tenant_id = $1
		RETURNING seq, activated_at`, p.tenantID, a.Revision, a.Rollback, a.ActivatedBy, a.ApprovedBy, idx, int64(a.Seq)).Scan(&seq, &a.ActivatedAt)
	if err != nil {
		return a, mapErr(err)
	}
	a.Seq, a.ActivatedAt = uint64(seq), a.ActivatedAt.UTC()
	return a, nil
}

func scanActivation(row pgx.Row) (store.PolicyActivation, error) {
	var a store.PolicyActivation
	var seq int64
	var idx *int64
	if err := row.Scan(&seq, &a.Revision, &a.Rollback, &a.ActivatedBy, &a.ApprovedBy, &a.ActivatedAt, &idx); err != nil {
		return a, mapErr(err)
	}
	a.Seq, a.ActivatedAt, a.LedgerIndex = uint64(seq), a.ActivatedAt.UTC(), ledgerIndexOf(idx)
	return a, nil
}

// ledgerIndexOf is a ledger_index column's value as a row's ledger index.
// A negative one (the column's CHECK refuses it) would name no entry a
// log can have, rather than none: nil is a row from before rows named
// their entry.
func ledgerIndexOf(idx *int64) *uint64 {
	if idx == nil {
		return nil
	}
	i := uint64(math.MaxUint64)
	if *idx >= 0 {
		i = uint64(*idx)
	}
	return &i
}

func (p *policyTx) Activations(ctx context.Context) ([]store.PolicyActivation, error) {
	rows, err := p.tx.Query(ctx, `SELECT seq, revision, rollback, activated_by, approved_by, activated_at, ledger_index
		FROM policy_activations WHERE tenant_id = $1 ORDER BY seq`, p.tenantID)
	if err != nil {
		return nil, mapErr(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.PolicyActivation, error) { return scanActivation(r) })
	return out, mapErr(err)
}

func (p *policyTx) ActiveBundle(ctx context.Context) (store.PolicyActivation, store.PolicyBundle, error) {
	a, err := scanActivation(p.tx.QueryRow(ctx, `SELECT seq, revision, rollback, activated_by, approved_by, activated_at, ledger_index
		FROM policy_activations WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1`, p.tenantID))
	if err != nil {
		return a, store.PolicyBundle{}, err
	}
	b, err := p.Bundle(ctx, a.Revision)
	if errors.Is(err, store.ErrNotFound) {
		return a, b, fmt.Errorf("postgres: active revision %q has no bundle", a.Revision)
	}
	return a, b, err
}

func (p *policyTx) AddVerificationKey(ctx context.Context, k store.PolicyVerificationKey) error {
	if err := store.CheckVerificationKey(k); err != nil {
		return err
	}
	_, err := p.tx.Exec(ctx, `INSERT INTO policy_verification_keys (tenant_id, kid, public_pem, algorithm, ledger_index) VALUES ($1, $2, $3, $4, $5)`,
		p.tenantID, k.KID, k.PublicPEM, k.Algorithm, int64(*k.LedgerIndex))
	return mapErr(err)
}

func (p *policyTx) VerificationKeys(ctx context.Context) ([]store.PolicyVerificationKey, error) {
	rows, err := p.tx.Query(ctx, `SELECT kid, public_pem, algorithm, created_at, ledger_index FROM policy_verification_keys WHERE tenant_id = $1 ORDER BY kid`, p.tenantID)
	if err != nil {
		return nil, mapErr(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.PolicyVerificationKey, error) {
		var k store.PolicyVerificationKey
		var idx *int64
		err := r.Scan(&k.KID, &k.PublicPEM, &k.Algorithm, &k.CreatedAt, &idx)
		k.CreatedAt, k.LedgerIndex = k.CreatedAt.UTC(), ledgerIndexOf(idx)
		return k, err
	})
	return out, mapErr(err)
}
