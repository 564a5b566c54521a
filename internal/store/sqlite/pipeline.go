package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/agentsigna/agentsigna/internal/store"
)

// writeRecords inserts the records a Pipeline queued: one multi-row
// INSERT per table, and one upsert row per counter. receiptTx.insert and
// caseTx.insert, which store one at a time, check in SQL that the decision
// they hang on is stored and receiptable; CheckRecord has already tied a
// recorded receipt or case to its own decision and outcome, so that need
// not be checked here, as on PostgreSQL. A receipt's ledger entry is
// (insertReceipts).
// Decisions go first, for the receipts' and cases' foreign keys. The first
// error is the pipeline's; the caller's savepoint undoes whatever went in
// before it.
func writeRecords(ctx context.Context, tx *sql.Tx, tenantID string, records []store.DecisionRecord) error {
	t := tenantID
	if len(records) == 0 {
		return nil
	}
	decisions := make([]store.Decision, len(records))
	var receipts []store.Receipt
	var cases [][]any
	for i, r := range records {
		decisions[i] = r.Decision
		if rc := r.Receipt; rc != nil {
			receipts = append(receipts, *rc)
		}
		if c := r.Case; c != nil {
			cases = append(cases, []any{t, c.ID, c.DecisionID, c.AgentID, string(c.Status), c.ApprovalsRequired,
				formatTime(c.ExpiresAt), formatTime(c.CreatedAt), formatTime(c.UpdatedAt)})
		}
	}
	if err := insertDecisions(ctx, tx, t, decisions); err != nil {
		return err
	}
	if err := insertReceipts(ctx, tx, t, receipts); err != nil {
		return err
	}
	return insertRows(ctx, tx, "cases", "tenant_id, id, decision_id, agent_id, status, approvals_required, expires_at, created_at, updated_at", cases, "")
}

// insertDecisions writes checked decisions and their counters: the
// decisions in multi-row INSERTs, each with its agent's tally
// (store.AgentTally), then one upsert row per counterparty paid
// (store.SumPayments). Insert and Record write one this way, a pipeline
// all of its own.
func insertDecisions(ctx context.Context, tx *sql.Tx, tenantID string, decisions []store.Decision) error {
	tallies, err := nextTallies(ctx, tx, tenantID, decisions)
	if err != nil {
		return err
	}
	rows := make([][]any, len(decisions))
	for i, dec := range decisions {
		reasons, err := json.Marshal(dec.Reasons)
		if err != nil {
			return err
		}
		var counterparty any
		if dec.CounterpartyID != "" {
			counterparty = dec.CounterpartyID
		}
		rows[i] = []any{tenantID, dec.ID, dec.AgentID, dec.Action, dec.ActionType, counterparty,
			dec.Reason, string(dec.Outcome), string(reasons), dec.ApprovalsRequired, dec.BaseRevision, dec.TenantRevision, dec.TenantBundleSHA256,
			nullBytes(dec.IdempotencyKeySHA256), dec.RequestSHA256, int64(dec.LedgerIndex), dec.Response, formatTime(dec.CreatedAt),
			tallies[i].Decisions, tallies[i].Denials, formatTime(tallies[i].At)}
	}
	if err := insertRows(ctx, tx, "decisions", "tenant_id, "+decisionColumns+", agent_seq, agent_denials, agent_tally_at", rows, ""); err != nil {
		return err
	}
	payments := store.SumPayments(decisions)
	rows = make([][]any, len(payments))
	for i, p := range payments {
		rows[i] = []any{tenantID, p.CounterpartyID, p.Payments}
	}
	return insertRows(ctx, tx, "counterparty_payments", "tenant_id, counterparty_id, payments", rows,
		`ON CONFLICT (tenant_id, counterparty_id) DO UPDATE SET payments = payments + excluded.payments`)
}

// nextTallies gives each decision its agent's tally including it, in
// order, from each agent's latest stored tally (one seek per agent; the
// tally time never goes back, see store.AgentTally). The
// transaction holds the write lock: nobody stores a tally in between.
func nextTallies(ctx context.Context, tx *sql.Tx, tenantID string, decisions []store.Decision) ([]store.AgentTally, error) {
	latest := make(map[string]store.AgentTally, 1)
	out := make([]store.AgentTally, len(decisions))
	for i, d := range decisions {
		t, ok := latest[d.AgentID]
		if !ok {
			var at string
			err := tx.QueryRowContext(ctx, `SELECT agent_seq, agent_denials, agent_tally_at FROM decisions
				WHERE tenant_id = ? AND agent_id = ? ORDER BY agent_tally_at DESC, agent_seq DESC LIMIT 1`, tenantID, d.AgentID).Scan(&t.Decisions, &t.Denials, &at)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return nil, mapErr(err)
			default:
				if t.At, err = parseTime(at); err != nil {
					return nil, err
				}
			}
		}
		t = t.Add(d.Outcome, d.CreatedAt)
		latest[d.AgentID], out[i] = t, t
	}
	return out, nil
}

// insertReceipts writes checked receipts, each only if the ledger entry it
// names holds its JWS as record: the JWS is that record, not stored again
// (ReceiptTx.ByDecision reads it back from the entry). A receipt whose
// entry does not hold it fails them all (ErrInvalid).
func insertReceipts(ctx context.Context, tx *sql.Tx, tenantID string, receipts []store.Receipt) error {
	for len(receipts) > 0 {
		// Powers of two, as insertRows: few statement texts to prepare.
		n := chunkRows(len(receipts))
		part := receipts[:n]
		receipts = receipts[n:]
		args := make([]any, 0, 5*n+1)
		for _, rc := range part {
			args = append(args, rc.ID, rc.DecisionID, int64(rc.LedgerIndex), rc.JWS, formatTime(rc.CreatedAt))
		}
		args = append(args, tenantID)
		res, err := tx.ExecContext(ctx, insertReceiptsSQL(n), args...)
		if err != nil {
			return mapErr(err)
		}
		if stored, _ := res.RowsAffected(); stored != int64(n) {
			return fmt.Errorf("%w: %s", store.ErrInvalid, store.ReceiptNotInLedger)
		}
	}
	return nil
}

// insertReceiptsSQL stores n receipts (id, decision_id, ledger_index,
// jws, created_at each, then the tenant id) whose ledger entries, sought
// by key, hold their JWS.
func insertReceiptsSQL(n int) string {
	return `INSERT INTO receipts (tenant_id, id, decision_id, ledger_index, created_at)
		SELECT e.tenant_id, v.column1, v.column2, v.column3, v.column5
		FROM (VALUES ` + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?), ", n), ", ") + `) AS v
		JOIN ledger_entries e ON e.tenant_id = ? AND e.idx = v.column3 AND e.record = CAST(v.column4 AS BLOB)`
}
