package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

type policyTx struct {
	tx       *sql.Tx
	tenantID string
}

func (t *tenantTx) Policies() store.PolicyTx { return &policyTx{tx: t.tx, tenantID: t.tenantID} }

func (p *policyTx) InsertBundle(ctx context.Context, b store.PolicyBundle) error {
	if err := store.CheckPolicyBundle(b); err != nil {
		return err
	}
	_, err := p.tx.ExecContext(ctx, `INSERT INTO policy_bundles (tenant_id, revision, digest, bundle, manifest, signed, uploaded_by, uploaded_at, ledger_index)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, p.tenantID, b.Revision, b.Digest, b.Bundle, b.Manifest, b.Signed, b.UploadedBy, formatTime(time.Now()), int64(*b.LedgerIndex))
	return mapErr(err)
}

const bundleColumns = `revision, digest, manifest, signed, uploaded_by, uploaded_at, ledger_index`

func scanBundle(row scanner, withBytes bool) (store.PolicyBundle, error) {
	var b store.PolicyBundle
	var at string
	var idx sql.NullInt64
	dest := []any{&b.Revision, &b.Digest, &b.Manifest, &b.Signed, &b.UploadedBy, &at, &idx}
	if withBytes {
		dest = append(dest, &b.Bundle)
	}
	if err := row.Scan(dest...); err != nil {
		return store.PolicyBundle{}, mapErr(err)
	}
	b.LedgerIndex = ledgerIndexOf(idx)
	var err error
	b.UploadedAt, err = parseTime(at)
	return b, err
}

func (p *policyTx) Bundle(ctx context.Context, revision string) (store.PolicyBundle, error) {
	return scanBundle(p.tx.QueryRowContext(ctx, `SELECT `+bundleColumns+`, bundle FROM policy_bundles WHERE tenant_id = ? AND revision = ?`,
		p.tenantID, revision), true)
}

func (p *policyTx) Bundles(ctx context.Context) ([]store.PolicyBundle, error) {
	rows, err := p.tx.QueryContext(ctx, `SELECT `+bundleColumns+` FROM policy_bundles WHERE tenant_id = ? ORDER BY uploaded_at, revision`, p.tenantID)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.PolicyBundle
	for rows.Next() {
		b, err := scanBundle(rows, false)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, mapErr(rows.Err())
}

func (p *policyTx) Activate(ctx context.Context, a store.PolicyActivation) (store.PolicyActivation, error) {
	if a.Revision == "" || a.ActivatedBy == "" {
		return a, fmt.Errorf("%w: activation needs a revision and who activated it", store.ErrInvalid)
	}
	if _, err := p.Bundle(ctx, a.Revision); err != nil {
		return a, err
	}
	if err := store.CheckLedgerIndex(a.LedgerIndex, "an activation"); err != nil {
		return a, err
	}
	var seq int64
	if err := p.tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) + 1 FROM policy_activations WHERE tenant_id = ?`, p.tenantID).Scan(&seq); err != nil {
		return a, mapErr(err)
	}
	// The next, and only the next (the table's trigger holds any writer
	// to it too).
	if a.Seq != 0 && a.Seq != uint64(seq) {
		return a, fmt.Errorf("%w: activation %d is taken or not the next (%d)", store.ErrConflict, a.Seq, seq)
	}
	a.Seq, a.ActivatedAt = uint64(seq), time.Now().UTC()
	_, err := p.tx.ExecContext(ctx, `INSERT INTO policy_activations (tenant_id, seq, revision, rollback, activated_by, approved_by, activated_at, ledger_index)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, p.tenantID, seq, a.Revision, a.Rollback, a.ActivatedBy, a.ApprovedBy, formatTime(a.ActivatedAt), ledgerIndexArg(a.LedgerIndex))
	return a, mapErr(err)
}

// ledgerIndexArg is an activation's ledger index as a column value.
func ledgerIndexArg(i *uint64) sql.NullInt64 {
	if i == nil || *i > math.MaxInt64 {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: int64(*i), Valid: true}
}

// ledgerIndexOf is a ledger_index column's value as a row's ledger index.
// A negative one (the column's CHECK refuses it; a file writer may turn
// checks off) names no entry a log can have, rather than none: nil is a
// row from before rows named their entry.
func ledgerIndexOf(n sql.NullInt64) *uint64 {
	if !n.Valid {
		return nil
	}
	i := uint64(math.MaxUint64)
	if n.Int64 >= 0 {
		i = uint64(n.Int64)
	}
	return &i
}

func (p *policyTx) Activations(ctx context.Context) ([]store.PolicyActivation, error) {
	rows, err := p.tx.QueryContext(ctx, `SELECT seq, revision, rollback, activated_by, approved_by, activated_at, ledger_index
		FROM policy_activations WHERE tenant_id = ? ORDER BY seq`, p.tenantID)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.PolicyActivation
	for rows.Next() {
		var a store.PolicyActivation
		var seq int64
		var at string
		var idx sql.NullInt64
		if err := rows.Scan(&seq, &a.Revision, &a.Rollback, &a.ActivatedBy, &a.ApprovedBy, &at, &idx); err != nil {
			return nil, mapErr(err)
		}
		a.Seq, a.LedgerIndex = uint64(seq), ledgerIndexOf(idx)
		if a.ActivatedAt, err = parseTime(at); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, mapErr(rows.Err())
}

func (p *policyTx) ActiveBundle(ctx context.Context) (store.PolicyActivation, store.PolicyBundle, error) {
	var a store.PolicyActivation
	var seq int64
	var at string
	var idx sql.NullInt64
	err := p.tx.QueryRowContext(ctx, `SELECT seq, revision, rollback, activated_by, approved_by, activated_at, ledger_index
		FROM policy_activations WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1`, p.tenantID).
		Scan(&seq, &a.Revision, &a.Rollback, &a.ActivatedBy, &a.ApprovedBy, &at, &idx)
	if err != nil {
		return a, store.PolicyBundle{}, mapErr(err)
	}
	a.Seq, a.LedgerIndex = uint64(seq), ledgerIndexOf(idx)
	if a.ActivatedAt, err = parseTime(at); err != nil {
		return a, store.PolicyBundle{}, err
	}
	b, err := p.Bundle(ctx, a.Revision)
	if errors.Is(err, store.ErrNotFound) {
		return a, b, fmt.Errorf("sqlite: active revision %q has no bundle", a.Revision)
	}
	return a, b, err
}

func (p *policyTx) AddVerificationKey(ctx context.Context, k store.PolicyVerificationKey) error {
	if err := store.CheckVerificationKey(k); err != nil {
		return err
	}
	_, err := p.tx.ExecContext(ctx, `INSERT INTO policy_verification_keys (tenant_id, kid, public_pem, algorithm, created_at, ledger_index) VALUES (?, ?, ?, ?, ?, ?)`,
		p.tenantID, k.KID, k.PublicPEM, k.Algorithm, formatTime(time.Now()), int64(*k.LedgerIndex))
	return mapErr(err)
}

func (p *policyTx) VerificationKeys(ctx context.Context) ([]store.PolicyVerificationKey, error) {
	rows, err := p.tx.QueryContext(ctx, `SELECT kid, public_pem, algorithm, created_at, ledger_index FROM policy_verification_keys WHERE tenant_id = ? ORDER BY kid`, p.tenantID)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.PolicyVerificationKey
	for rows.Next() {
		var k store.PolicyVerificationKey
		var at string
		var idx sql.NullInt64
		if err := rows.Scan(&k.KID, &k.PublicPEM, &k.Algorithm, &at, &idx); err != nil {
			return nil, mapErr(err)
		}
		k.LedgerIndex = ledgerIndexOf(idx)
		if k.CreatedAt, err = parseTime(at); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, mapErr(rows.Err())
}
