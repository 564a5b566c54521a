package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/agentsigna/agentsigna/internal/store"
)

// recordQueue holds the rows of the decision records made inside one
// Pipeline, checked (store.CheckRecord) and ready to insert together. The
// counters are summed per key: one upsert row per agent and minute, and
// per counterparty, however many records the pipeline holds.
type recordQueue struct {
	tenantID                   string
	decisions, receipts, cases [][]any
	activity                   map[activityKey]*[2]int // decisions, denials
	activityOrder              []activityKey
	payments                   map[string]int
	paymentsOrder              []string
}

type activityKey struct {
	agentID string
	minute  int64
}

func newRecordQueue(tenantID string) *recordQueue {
	return &recordQueue{tenantID: tenantID, activity: map[activityKey]*[2]int{}, payments: map[string]int{}}
}

// add queues a checked record's rows, the same values as insert,
// receiptTx.insert and caseTx.insert store one at a time. Those two check
// in SQL that the decision they hang on is stored and receiptable;
// CheckRecord has already tied a recorded receipt or case to its own
// decision and outcome, so plain rows do here, as on PostgreSQL.
func (q *recordQueue) add(r store.DecisionRecord) error {
	dec := r.Decision
	reasons, err := json.Marshal(dec.Reasons)
	if err != nil {
		return err
	}
	var counterparty any
	if dec.CounterpartyID != "" {
		counterparty = dec.CounterpartyID
	}
	q.decisions = append(q.decisions, []any{q.tenantID, dec.ID, dec.AgentID, dec.Action, dec.ActionType, counterparty,
		dec.Reason, string(dec.Outcome), string(reasons), dec.ApprovalsRequired, dec.BaseRevision, dec.TenantRevision, dec.TenantBundleSHA256,
		nullBytes(dec.IdempotencyKeySHA256), dec.RequestSHA256, int64(dec.LedgerIndex), dec.Response, formatTime(dec.CreatedAt)})
	k := activityKey{dec.AgentID, store.ActivityMinute(dec.CreatedAt)}
	c, ok := q.activity[k]
	if !ok {
		c = new([2]int)
		q.activity[k] = c
		q.activityOrder = append(q.activityOrder, k)
	}
	c[0]++
	if dec.Outcome == store.OutcomeDeny {
		c[1]++
	}
	if store.IsPayment(dec) {
		if _, ok := q.payments[dec.CounterpartyID]; !ok {
			q.paymentsOrder = append(q.paymentsOrder, dec.CounterpartyID)
		}
		q.payments[dec.CounterpartyID]++
	}
	if rc := r.Receipt; rc != nil {
		q.receipts = append(q.receipts, []any{q.tenantID, rc.ID, rc.DecisionID, rc.JWS, int64(rc.LedgerIndex), formatTime(rc.CreatedAt)})
	}
	if cs := r.Case; cs != nil {
		q.cases = append(q.cases, []any{q.tenantID, cs.ID, cs.DecisionID, cs.AgentID, string(cs.Status), cs.ApprovalsRequired,
			formatTime(cs.ExpiresAt), formatTime(cs.CreatedAt), formatTime(cs.UpdatedAt)})
	}
	return nil
}

// write inserts the queued rows: decisions first, for the receipts' and
// cases' foreign keys. The first error is the pipeline's; the caller's
// savepoint undoes whatever went in before it.
func (q *recordQueue) write(ctx context.Context, tx *sql.Tx) error {
	if len(q.decisions) == 0 {
		return nil
	}
	tenantID := q.tenantID
	if err := insertRows(ctx, tx, "decisions", "tenant_id, "+decisionColumns, q.decisions, ""); err != nil {
		return err
	}
	activity := make([][]any, len(q.activityOrder))
	for i, k := range q.activityOrder {
		c := q.activity[k]
		activity[i] = []any{tenantID, k.agentID, k.minute, c[0], c[1]}
	}
	if err := insertRows(ctx, tx, "agent_activity", "tenant_id, agent_id, minute, decisions, denials", activity,
		`ON CONFLICT (tenant_id, agent_id, minute) DO UPDATE SET decisions = decisions + excluded.decisions, denials = denials + excluded.denials`); err != nil {
		return err
	}
	payments := make([][]any, len(q.paymentsOrder))
	for i, id := range q.paymentsOrder {
		payments[i] = []any{tenantID, id, q.payments[id]}
	}
	if err := insertRows(ctx, tx, "counterparty_payments", "tenant_id, counterparty_id, payments", payments,
		`ON CONFLICT (tenant_id, counterparty_id) DO UPDATE SET payments = payments + excluded.payments`); err != nil {
		return err
	}
	if err := insertRows(ctx, tx, "receipts", "tenant_id, id, decision_id, jws, ledger_index, created_at", q.receipts, ""); err != nil {
		return err
	}
	return insertRows(ctx, tx, "cases", "tenant_id, id, decision_id, agent_id, status, approvals_required, expires_at, created_at, updated_at", q.cases, "")
}
