package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// counterpartyTx stores counterparties; bank details arrive sealed.
type counterpartyTx struct {
	tx       *sql.Tx
	tenantID string
}

func (t *tenantTx) Counterparties() store.CounterpartyTx {
	return &counterpartyTx{tx: t.tx, tenantID: t.tenantID}
}

func (c *counterpartyTx) Create(ctx context.Context, cp store.Counterparty) (store.Counterparty, error) {
	if cp.ID == "" {
		cp.ID = store.NewID(store.PrefixCounterparty)
	}
	if cp.Status == "" {
		cp.Status = store.CounterpartyNew
	}
	if err := store.CheckCounterparty(cp); err != nil {
		return store.Counterparty{}, err
	}
	if err := store.CheckLedgerIndex(cp.LedgerIndex, "a counterparty"); err != nil {
		return store.Counterparty{}, err
	}
	cp.CreatedAt = store.StoredTime(time.Time{})
	cp.UpdatedAt = cp.CreatedAt
	_, err := c.tx.ExecContext(ctx, `INSERT INTO counterparties (tenant_id, id, name, status, bank_details_sealed, created_at, updated_at, ledger_index)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, c.tenantID, cp.ID, cp.Name, string(cp.Status), nullBytes(cp.BankDetailsSealed),
		formatTime(cp.CreatedAt), formatTime(cp.UpdatedAt), ledgerIndexArg(cp.LedgerIndex))
	if err != nil {
		return store.Counterparty{}, mapErr(err)
	}
	return cp, nil
}

func scanCounterparty(row scanner, withSealed bool) (store.Counterparty, error) {
	var id, name, status, created, updated string
	var idx sql.NullInt64
	var sealed []byte
	dest := []any{&id, &name, &status, &created, &updated, &idx}
	if withSealed {
		dest = append(dest, &sealed)
	}
	if err := row.Scan(dest...); err != nil {
		return store.Counterparty{}, mapErr(err)
	}
	cp, err := counterpartyFromColumns(id, name, status, created, updated, idx)
	if err != nil {
		return store.Counterparty{}, err
	}
	cp.BankDetailsSealed = sealed
	return cp, nil
}

// counterpartyFromColumns builds a counterparty, without its sealed bank
// details, from counterpartyColumns' values.
func counterpartyFromColumns(id, name, status, created, updated string, idx sql.NullInt64) (store.Counterparty, error) {
	cp := store.Counterparty{ID: id, Name: name, Status: store.CounterpartyStatus(status), LedgerIndex: ledgerIndexOf(idx)}
	var err error
	if cp.CreatedAt, err = parseTime(created); err != nil {
		return store.Counterparty{}, err
	}
	cp.UpdatedAt, err = parseTime(updated)
	return cp, err
}

const counterpartyColumns = `id, name, status, created_at, updated_at, ledger_index`

func (c *counterpartyTx) Get(ctx context.Context, id string) (store.Counterparty, error) {
	if err := store.CheckID(store.PrefixCounterparty, id); err != nil {
		return store.Counterparty{}, err
	}
	cp, err := scanCounterparty(c.tx.QueryRowContext(ctx, `SELECT `+counterpartyColumns+`, bank_details_sealed
		FROM counterparties WHERE tenant_id = ? AND id = ?`, c.tenantID, id), true)
	if errors.Is(err, store.ErrNotFound) {
		return cp, fmt.Errorf("%w: counterparty", store.ErrNotFound)
	}
	return cp, err
}

func (c *counterpartyTx) List(ctx context.Context) ([]store.Counterparty, error) {
	rows, err := c.tx.QueryContext(ctx, `SELECT `+counterpartyColumns+` FROM counterparties WHERE tenant_id = ? ORDER BY created_at, id`, c.tenantID)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Counterparty
	for rows.Next() {
		cp, err := scanCounterparty(rows, false)
		if err != nil {
			return nil, err
		}
		out = append(out, cp)
	}
	return out, mapErr(rows.Err())
}

func (c *counterpartyTx) SetStatus(ctx context.Context, id string, status store.CounterpartyStatus) error {
	if err := store.CheckID(store.PrefixCounterparty, id); err != nil {
		return err
	}
	if err := store.CheckCounterpartyStatus(status); err != nil {
		return err
	}
	// Verified only as recorded: the condition is the rule, the trigger
	// its copy.
	res, err := c.tx.ExecContext(ctx, `UPDATE counterparties SET status = ?1, updated_at = ?2 WHERE tenant_id = ?3 AND id = ?4
		AND (status = 'verified' OR ?1 <> 'verified')`, string(status), formatTime(store.StoredTime(time.Time{})), c.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return missingOr(ctx, c.tx, "counterparties", c.tenantID, id, "counterparty", "a counterparty is verified only as it was recorded")
	}
	return nil
}

func (c *counterpartyTx) SetBankDetails(ctx context.Context, id string, sealed []byte) error {
	if err := store.CheckID(store.PrefixCounterparty, id); err != nil {
		return err
	}
	if err := store.CheckSealedBankDetails(sealed, false); err != nil {
		return err
	}
	return c.update(ctx, id, `bank_details_sealed = ?`, sealed)
}

func (c *counterpartyTx) Adopt(ctx context.Context, id string, index uint64) error {
	if err := store.CheckID(store.PrefixCounterparty, id); err != nil {
		return err
	}
	if err := store.CheckLedgerIndex(&index, "a counterparty"); err != nil {
		return err
	}
	// Only a counterparty that names no entry: the condition is the rule,
	// the trigger its copy (an entry, once named, is final).
	res, err := c.tx.ExecContext(ctx, `UPDATE counterparties SET ledger_index = ? WHERE tenant_id = ? AND id = ? AND ledger_index IS NULL`,
		int64(index), c.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return missingOr(ctx, c.tx, "counterparties", c.tenantID, id, "counterparty", "the counterparty names an entry already, and keeps it")
	}
	return nil
}

// update sets one column (set is a constant "col = ?") and updated_at.
func (c *counterpartyTx) update(ctx context.Context, id, set string, value any) error {
	res, err := c.tx.ExecContext(ctx, `UPDATE counterparties SET `+set+`, updated_at = ? WHERE tenant_id = ? AND id = ?`,
		value, formatTime(store.StoredTime(time.Time{})), c.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: counterparty", store.ErrNotFound)
	}
	return nil
}

func (c *counterpartyTx) PaymentsCount(ctx context.Context, counterpartyID string) (int, error) {
	if err := store.CheckID(store.PrefixCounterparty, counterpartyID); err != nil {
		return 0, err
	}
	var n int
	// Kept by decisionTx.Insert (store.IsPayment); no row means none.
	err := c.tx.QueryRowContext(ctx, `SELECT coalesce((SELECT payments FROM counterparty_payments
		WHERE tenant_id = ? AND counterparty_id = ?), 0)`, c.tenantID, counterpartyID).Scan(&n)
	return n, mapErr(err)
}

// nullBytes binds nil as SQL NULL rather than an empty blob.
func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}
