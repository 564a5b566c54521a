package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

// counterpartyTx stores counterparties; bank details arrive sealed.
type counterpartyTx struct {
	tx       pgx.Tx
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
	_, err := c.tx.Exec(ctx, `INSERT INTO counterparties (tenant_id, id, name, status, bank_details_sealed, created_at, updated_at, ledger_index)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, c.tenantID, cp.ID, cp.Name, string(cp.Status), cp.BankDetailsSealed,
		cp.CreatedAt, cp.UpdatedAt, int64(*cp.LedgerIndex))
	if err != nil {
		return store.Counterparty{}, mapErr(err)
	}
	return cp, nil
}

const counterpartyColumns = `id, name, status, created_at, updated_at, ledger_index`

const paymentsCountSQL = `SELECT coalesce((SELECT payments FROM counterparty_payments
	WHERE tenant_id = $1 AND counterparty_id = $2), 0)`

func scanCounterparty(row pgx.Row, withSealed bool) (store.Counterparty, error) {
	var id, name, status string
	var created, updated time.Time
	var idx *int64
	var sealed []byte
	dest := []any{&id, &name, &status, &created, &updated, &idx}
	if withSealed {
		dest = append(dest, &sealed)
	}
	if err := row.Scan(dest...); err != nil {
		return store.Counterparty{}, mapErr(err)
	}
	cp := counterpartyFrom(id, name, status, created, updated, idx)
	cp.BankDetailsSealed = sealed
	return cp, nil
}

// counterpartyFrom builds a counterparty from counterpartyColumns' values.
func counterpartyFrom(id, name, status string, created, updated time.Time, idx *int64) store.Counterparty {
	return store.Counterparty{ID: id, Name: name, Status: store.CounterpartyStatus(status), CreatedAt: created.UTC(), UpdatedAt: updated.UTC(),
		LedgerIndex: ledgerIndexOf(idx)}
}

func (c *counterpartyTx) Get(ctx context.Context, id string) (store.Counterparty, error) {
	if err := store.CheckID(store.PrefixCounterparty, id); err != nil {
		return store.Counterparty{}, err
	}
	cp, err := scanCounterparty(c.tx.QueryRow(ctx, `SELECT `+counterpartyColumns+`, bank_details_sealed
		FROM counterparties WHERE tenant_id = $1 AND id = $2`, c.tenantID, id), true)
	if errors.Is(err, store.ErrNotFound) {
		return cp, fmt.Errorf("%w: counterparty", store.ErrNotFound)
	}
	return cp, err
}

func (c *counterpartyTx) List(ctx context.Context) ([]store.Counterparty, error) {
	rows, err := c.tx.Query(ctx, `SELECT `+counterpartyColumns+` FROM counterparties WHERE tenant_id = $1 ORDER BY created_at, id`, c.tenantID)
	if err != nil {
		return nil, mapErr(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Counterparty, error) { return scanCounterparty(r, false) })
	return out, mapErr(err)
}

func (c *counterpartyTx) SetStatus(ctx context.Context, id string, status store.CounterpartyStatus) error {
	if err := store.CheckID(store.PrefixCounterparty, id); err != nil {
		return err
	}
	if err := store.CheckCounterpartyStatus(status); err != nil {
		return err
	}
	// Verified only as recorded: the condition is the rule (a refusal
	// that leaves the transaction usable), the trigger its copy.
	tag, err := c.tx.Exec(ctx, `UPDATE counterparties SET status = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4
		AND (status = 'verified' OR $1 <> 'verified')`, string(status), store.StoredTime(time.Time{}), c.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
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
	return c.update(ctx, id, `bank_details_sealed = $1`, sealed)
}

func (c *counterpartyTx) Adopt(ctx context.Context, id string, index uint64) error {
	if err := store.CheckID(store.PrefixCounterparty, id); err != nil {
		return err
	}
	if err := store.CheckLedgerIndex(&index, "a counterparty"); err != nil {
		return err
	}
	// Only a counterparty that names no entry: the condition is the rule
	// (a refusal that leaves the transaction usable), the trigger its copy
	// (an entry, once named, is final).
	tag, err := c.tx.Exec(ctx, `UPDATE counterparties SET ledger_index = $1 WHERE tenant_id = $2 AND id = $3 AND ledger_index IS NULL`,
		int64(index), c.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return missingOr(ctx, c.tx, "counterparties", c.tenantID, id, "counterparty", "the counterparty names an entry already, and keeps it")
	}
	return nil
}

// update sets one column (set is a constant "col = $1") and updated_at.
func (c *counterpartyTx) update(ctx context.Context, id, set string, value any) error {
	tag, err := c.tx.Exec(ctx, `UPDATE counterparties SET `+set+`, updated_at = $2 WHERE tenant_id = $3 AND id = $4`,
		value, store.StoredTime(time.Time{}), c.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
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
	err := c.tx.QueryRow(ctx, paymentsCountSQL, c.tenantID, counterpartyID).Scan(&n)
	return n, mapErr(err)
}
