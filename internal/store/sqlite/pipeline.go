package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"github.com/agentsigna/agentsigna/internal/store"
)

// writeRecords inserts the records a Pipeline queued: one multi-row
// INSERT per table, and one upsert row per counter. receiptTx.insert and caseTx.insert, which store
// one at a time, check in SQL that the decision they hang on is stored and
// receiptable; CheckRecord has already tied a recorded receipt or case to
// its own decision and outcome, so plain rows do here, as on PostgreSQL.
// Decisions go first, for the receipts' and cases' foreign keys. The first
// error is the pipeline's; the caller's savepoint undoes whatever went in
// before it.
func writeRecords(ctx context.Context, tx *sql.Tx, tenantID string, records []store.DecisionRecord) error {
	t := tenantID
	if len(records) == 0 {
		return nil
	}
	decisions := make([]store.Decision, len(records))
	var receipts, cases [][]any
	for i, r := range records {
		decisions[i] = r.Decision
		if rc := r.Receipt; rc != nil {
			receipts = append(receipts, []any{t, rc.ID, rc.DecisionID, rc.JWS, int64(rc.LedgerIndex), formatTime(rc.CreatedAt)})
		}
		if c := r.Case; c != nil {
			cases = append(cases, []any{t, c.ID, c.DecisionID, c.AgentID, string(c.Status), c.ApprovalsRequired,
				formatTime(c.ExpiresAt), formatTime(c.CreatedAt), formatTime(c.UpdatedAt)})
		}
	}
	if err := insertDecisions(ctx, tx, t, decisions); err != nil {
		return err
	}
	if err := insertRows(ctx, tx, "receipts", "tenant_id, id, decision_id, jws, ledger_index, created_at", receipts, ""); err != nil {
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
