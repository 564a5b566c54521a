package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"slices"

	"github.com/agentsigna/agentsigna/internal/store"
)

// recordQueue holds the decision records made inside one Pipeline,
// checked (store.CheckRecord), to insert together when it ends.
type recordQueue struct {
	tenantID string
	records  []store.DecisionRecord
}

func newRecordQueue(tenantID string) *recordQueue { return &recordQueue{tenantID: tenantID} }

// add queues a checked record, with copies of what it points to: the
// caller's receipt, case and slices are not read after Record returns.
func (q *recordQueue) add(r store.DecisionRecord) error {
	d := &r.Decision
	d.Reasons = slices.Clone(d.Reasons)
	d.IdempotencyKeySHA256 = slices.Clone(d.IdempotencyKeySHA256)
	d.RequestSHA256 = slices.Clone(d.RequestSHA256)
	if r.Receipt != nil {
		rc := *r.Receipt
		r.Receipt = &rc
	}
	if r.Case != nil {
		c := *r.Case
		r.Case = &c
	}
	q.records = append(q.records, r)
	return nil
}

// write inserts the queued records: one multi-row INSERT per table, and one
// upsert row per counter (store.SumCounters), with the same values as
// insert, receiptTx.insert and caseTx.insert store one at a time. Those two
// check in SQL that the decision they hang on is stored and receiptable;
// CheckRecord has already tied a recorded receipt or case to its own
// decision and outcome, so plain rows do here, as on PostgreSQL. Decisions
// go first, for the receipts' and cases' foreign keys. The first error is
// the pipeline's; the caller's savepoint undoes whatever went in before it.
func (q *recordQueue) write(ctx context.Context, tx *sql.Tx) error {
	if len(q.records) == 0 {
		return nil
	}
	t := q.tenantID
	decisions := make([]store.Decision, len(q.records))
	var decRows, receipts, cases [][]any
	for i, r := range q.records {
		dec := r.Decision
		decisions[i] = dec
		reasons, err := json.Marshal(dec.Reasons)
		if err != nil {
			return err
		}
		var counterparty any
		if dec.CounterpartyID != "" {
			counterparty = dec.CounterpartyID
		}
		decRows = append(decRows, []any{t, dec.ID, dec.AgentID, dec.Action, dec.ActionType, counterparty,
			dec.Reason, string(dec.Outcome), string(reasons), dec.ApprovalsRequired, dec.BaseRevision, dec.TenantRevision, dec.TenantBundleSHA256,
			nullBytes(dec.IdempotencyKeySHA256), dec.RequestSHA256, int64(dec.LedgerIndex), dec.Response, formatTime(dec.CreatedAt)})
		if rc := r.Receipt; rc != nil {
			receipts = append(receipts, []any{t, rc.ID, rc.DecisionID, rc.JWS, int64(rc.LedgerIndex), formatTime(rc.CreatedAt)})
		}
		if c := r.Case; c != nil {
			cases = append(cases, []any{t, c.ID, c.DecisionID, c.AgentID, string(c.Status), c.ApprovalsRequired,
				formatTime(c.ExpiresAt), formatTime(c.CreatedAt), formatTime(c.UpdatedAt)})
		}
	}
	if err := insertRows(ctx, tx, "decisions", "tenant_id, "+decisionColumns, decRows, ""); err != nil {
		return err
	}
	activity, payments := store.SumCounters(decisions)
	rows := make([][]any, len(activity))
	for i, a := range activity {
		rows[i] = []any{t, a.AgentID, a.Minute, a.Decisions, a.Denials}
	}
	if err := insertRows(ctx, tx, "agent_activity", "tenant_id, agent_id, minute, decisions, denials", rows,
		`ON CONFLICT (tenant_id, agent_id, minute) DO UPDATE SET decisions = decisions + excluded.decisions, denials = denials + excluded.denials`); err != nil {
		return err
	}
	rows = make([][]any, len(payments))
	for i, p := range payments {
		rows[i] = []any{t, p.CounterpartyID, p.Payments}
	}
	if err := insertRows(ctx, tx, "counterparty_payments", "tenant_id, counterparty_id, payments", rows,
		`ON CONFLICT (tenant_id, counterparty_id) DO UPDATE SET payments = payments + excluded.payments`); err != nil {
		return err
	}
	if err := insertRows(ctx, tx, "receipts", "tenant_id, id, decision_id, jws, ledger_index, created_at", receipts, ""); err != nil {
		return err
	}
	return insertRows(ctx, tx, "cases", "tenant_id, id, decision_id, agent_id, status, approvals_required, expires_at, created_at, updated_at", cases, "")
}
