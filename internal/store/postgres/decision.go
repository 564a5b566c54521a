package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

// decisionTx stores decisions, written once.
type decisionTx struct {
	tx       pgx.Tx
	tenantID string
	owner    *tenantTx // whose Pipeline, if running, Record queues into
}

func (t *tenantTx) Decisions() store.DecisionTx {
	return &decisionTx{tx: t.tx, tenantID: t.tenantID, owner: t}
}

func (d *decisionTx) Insert(ctx context.Context, dec store.Decision) (store.Decision, error) {
	if dec.ID == "" {
		dec.ID = store.NewID(store.PrefixDecision)
	}
	if dec.Reasons == nil {
		dec.Reasons = []string{}
	}
	dec.CreatedAt = store.StoredTime(dec.CreatedAt)
	if err := store.CheckDecision(dec); err != nil {
		return store.Decision{}, err
	}
	b := &pgx.Batch{}
	if err := queueDecisions(b, d.tenantID, []store.Decision{dec}); err != nil {
		return store.Decision{}, err
	}
	if err := d.tx.SendBatch(ctx, b).Close(); err != nil {
		return store.Decision{}, mapErr(err)
	}
	return dec, nil
}

// Record pipelines the decision, its counters and its receipt or case
// between a SAVEPOINT and its RELEASE: one round trip. CheckRecord has
// tied the receipt or case to the decision and its outcome, so plain
// inserts do (ReceiptTx.Insert and CaseTx.Create check that in SQL, for
// decisions stored earlier). A failing statement aborts the rest, the
// RELEASE included; ROLLBACK TO then undoes what went before.
func (d *decisionTx) Record(ctx context.Context, r store.DecisionRecord) (err error) {
	if err := store.CheckRecord(&r); err != nil {
		return err
	}
	if d.owner != nil && d.owner.pipe != nil {
		// Inside Pipeline: queued, sent with the others; the caller's
		// savepoint undoes them on error.
		d.owner.pipe.Add(r)
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(`SAVEPOINT agentsigna_record`)
	if err := queueRecords(b, d.tenantID, []store.DecisionRecord{r}); err != nil {
		return err
	}
	b.Queue(`RELEASE SAVEPOINT agentsigna_record`)
	if err := d.tx.SendBatch(ctx, b).Close(); err != nil {
		bg := context.WithoutCancel(ctx)
		if _, rerr := d.tx.Exec(bg, `ROLLBACK TO SAVEPOINT agentsigna_record`); rerr != nil {
			return fmt.Errorf("%w: undo a record: %v (after: %v)", store.ErrTxAborted, rerr, err)
		}
		if _, rerr := d.tx.Exec(bg, `RELEASE SAVEPOINT agentsigna_record`); rerr != nil {
			return fmt.Errorf("%w: undo a record: %v (after: %v)", store.ErrTxAborted, rerr, err)
		}
		return mapErr(err)
	}
	return nil
}

const decisionColumns = `id, agent_id, action, action_type, counterparty_id, reason, outcome, reasons, approvals_required,
	base_revision, tenant_revision, tenant_bundle_sha256, idempotency_key_sha256, request_sha256, ledger_index, response, created_at`

const decisionByKeySQL = `SELECT ` + decisionColumns + ` FROM decisions
	WHERE tenant_id = $1 AND agent_id = $2 AND idempotency_key_sha256 = $3`

// scanDecision reads decisionColumns, then into extra what follows them.
func scanDecision(row pgx.Row, extra ...any) (store.Decision, error) {
	var dec store.Decision
	var counterparty *string
	var outcome, reasons string
	var index int64
	err := row.Scan(append([]any{&dec.ID, &dec.AgentID, &dec.Action, &dec.ActionType, &counterparty, &dec.Reason, &outcome, &reasons,
		&dec.ApprovalsRequired, &dec.BaseRevision, &dec.TenantRevision, &dec.TenantBundleSHA256,
		&dec.IdempotencyKeySHA256, &dec.RequestSHA256, &index, &dec.Response, &dec.CreatedAt}, extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Decision{}, fmt.Errorf("%w: decision", store.ErrNotFound)
	}
	if err != nil {
		return store.Decision{}, mapErr(err)
	}
	if counterparty != nil {
		dec.CounterpartyID = *counterparty
	}
	dec.Outcome, dec.LedgerIndex, dec.CreatedAt = store.Outcome(outcome), uint64(index), dec.CreatedAt.UTC()
	if err := json.Unmarshal([]byte(reasons), &dec.Reasons); err != nil {
		return store.Decision{}, fmt.Errorf("postgres: stored decision reasons: %w", err)
	}
	return dec, nil
}

// Page reads the rest of after's agent, then the agents after it: each a
// range of decisions_by_agent_seq (agent_id, tenant_id, agent_seq). A row
// comparison on (agent_id, agent_seq) skips no part of that index, whose
// columns it does not follow, and read each agent's decisions again from
// its first on every page (found by review: 44 ms a page 400,000 in).
func (d *decisionTx) Page(ctx context.Context, after store.Decision, limit int) ([]store.Decision, error) {
	out, err := d.page(ctx, `agent_id = $2 AND agent_seq > $3`, after, limit)
	if err != nil || len(out) == limit {
		return out, err
	}
	rest, err := d.page(ctx, `agent_id > $2 AND $3::bigint IS NOT NULL`, after, limit-len(out))
	return append(out, rest...), err
}

func (d *decisionTx) page(ctx context.Context, where string, after store.Decision, limit int) ([]store.Decision, error) {
	rows, err := d.tx.Query(ctx, `SELECT `+decisionColumns+`, agent_seq, agent_denials, agent_tally_at FROM decisions
		WHERE tenant_id = $1 AND `+where+` ORDER BY agent_id, agent_seq LIMIT $4`,
		d.tenantID, after.AgentID, after.Tally.Decisions, limit)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Decision
	for rows.Next() {
		var tally store.AgentTally
		dec, err := scanDecision(rows, &tally.Decisions, &tally.Denials, &tally.At)
		if err != nil {
			return nil, err
		}
		tally.At = tally.At.UTC()
		dec.Tally = tally
		out = append(out, dec)
	}
	return out, mapErr(rows.Err())
}

func (d *decisionTx) Get(ctx context.Context, id string) (store.Decision, error) {
	if err := store.CheckID(store.PrefixDecision, id); err != nil {
		return store.Decision{}, err
	}
	return scanDecision(d.tx.QueryRow(ctx, `SELECT `+decisionColumns+` FROM decisions WHERE tenant_id = $1 AND id = $2`, d.tenantID, id))
}

func (d *decisionTx) ByIdempotencyKey(ctx context.Context, agentID string, keySHA256 []byte) (store.Decision, error) {
	if err := store.CheckID(store.PrefixAgent, agentID); err != nil {
		return store.Decision{}, err
	}
	if len(keySHA256) != 32 {
		return store.Decision{}, fmt.Errorf("%w: an idempotency key digest is 32 bytes", store.ErrInvalid)
	}
	return scanDecision(d.tx.QueryRow(ctx, decisionByKeySQL, d.tenantID, agentID, keySHA256))
}

func (d *decisionTx) AgentStats(ctx context.Context, agentID string, now time.Time) (store.AgentStats, error) {
	if err := store.CheckID(store.PrefixAgent, agentID); err != nil {
		return store.AgentStats{}, err
	}
	return scanStats(d.tx.QueryRow(ctx, agentStatsQuery, agentStatsArgs(d.tenantID, agentID, now)...))
}

// agentStatsArgs are agentStatsQuery's arguments: the latest tally, and
// the tallies as of each window's start (three seeks: decisions_by_agent_seq,
// decisions_by_agent_time).
func agentStatsArgs(tenantID, agentID string, now time.Time) []any {
	now = store.StoredTime(now)
	return []any{tenantID, agentID, now.Add(-time.Hour), now.Add(-24 * time.Hour)}
}

// scanStats reads agentStatsQuery's row.
func scanStats(row pgx.Row) (store.AgentStats, error) {
	var latest, hourAgo, dayAgo store.AgentTally
	if err := row.Scan(&latest.Decisions, &latest.Denials, &hourAgo.Decisions, &hourAgo.Denials, &dayAgo.Decisions); err != nil {
		return store.AgentStats{}, mapErr(err)
	}
	return store.StatsFromTallies(latest, hourAgo, dayAgo), nil
}

// agentStatsQuery reads an agent's latest tally and its tallies as of two
// moments ($3, $4): the newest decision whose tally time is at or before
// each.
const agentStatsQuery = `SELECT coalesce(l.s, 0), coalesce(l.d, 0), coalesce(h.s, 0), coalesce(h.d, 0), coalesce(y.s, 0)
	FROM (SELECT 1) AS one
	LEFT JOIN LATERAL (SELECT agent_seq AS s, agent_denials AS d FROM decisions
		WHERE tenant_id = $1 AND agent_id = $2 ORDER BY agent_seq DESC LIMIT 1) AS l ON true
	LEFT JOIN LATERAL (SELECT agent_seq AS s, agent_denials AS d FROM decisions
		WHERE tenant_id = $1 AND agent_id = $2 AND agent_tally_at <= $3 ORDER BY agent_tally_at DESC, agent_seq DESC LIMIT 1) AS h ON true
	LEFT JOIN LATERAL (SELECT agent_seq AS s FROM decisions
		WHERE tenant_id = $1 AND agent_id = $2 AND agent_tally_at <= $4 ORDER BY agent_tally_at DESC, agent_seq DESC LIMIT 1) AS y ON true`

// receiptable is the condition on decision d for it to have a receipt: it
// was allowed, or its case was approved.
const receiptable = `(d.outcome = 'allow' OR EXISTS (SELECT 1 FROM cases c
	WHERE c.tenant_id = d.tenant_id AND c.decision_id = d.id AND c.status = 'approved'))`

// receiptTx stores receipts, written once.
type receiptTx struct {
	tx       pgx.Tx
	tenantID string
}

func (t *tenantTx) Receipts() store.ReceiptTx { return &receiptTx{tx: t.tx, tenantID: t.tenantID} }

func (r *receiptTx) Insert(ctx context.Context, rc store.Receipt) (store.Receipt, error) {
	if rc.ID == "" {
		rc.ID = store.NewID(store.PrefixReceipt)
	}
	rc.CreatedAt = store.StoredTime(rc.CreatedAt)
	if err := store.CheckReceipt(rc); err != nil {
		return store.Receipt{}, err
	}
	// One statement checks that the decision may have a receipt and that
	// the ledger entry the receipt names holds its JWS (which is not
	// stored again), and writes it; when it writes nothing, a second says
	// which check failed.
	tag, err := r.tx.Exec(ctx, `INSERT INTO receipts (tenant_id, id, decision_id, ledger_index, created_at)
		SELECT d.tenant_id, $2::text, d.id, $5::bigint, $6::timestamptz FROM decisions d
		WHERE d.tenant_id = $1 AND d.id = $3 AND `+receiptable+`
		AND EXISTS (SELECT 1 FROM ledger_entries e WHERE e.tenant_id = $1 AND e.idx = $5 AND e.record = convert_to($4::text, 'UTF8'))`,
		r.tenantID, rc.ID, rc.DecisionID, rc.JWS, int64(rc.LedgerIndex), rc.CreatedAt)
	if err != nil {
		return store.Receipt{}, mapErr(err)
	}
	if tag.RowsAffected() > 0 {
		return rc, nil
	}
	var ok bool
	err = r.tx.QueryRow(ctx, `SELECT `+receiptable+` FROM decisions d WHERE d.tenant_id = $1 AND d.id = $2`,
		r.tenantID, rc.DecisionID).Scan(&ok)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.Receipt{}, fmt.Errorf("%w: decision", store.ErrNotFound)
	case err != nil:
		return store.Receipt{}, mapErr(err)
	case !ok:
		return store.Receipt{}, fmt.Errorf("%w: a receipt is only for an allowed decision or an approved case", store.ErrConflict)
	}
	return store.Receipt{}, fmt.Errorf("%w: %s", store.ErrInvalid, store.ReceiptNotInLedger)
}

// receiptByDecisionSQL reads decision $2's receipt, its JWS from its
// ledger entry.
const receiptByDecisionSQL = `SELECT r.id, r.decision_id, convert_from(e.record, 'UTF8'), r.ledger_index, r.created_at FROM receipts r
	JOIN ledger_entries e ON e.tenant_id = r.tenant_id AND e.idx = r.ledger_index
	WHERE r.tenant_id = $1 AND r.decision_id = $2`

func (r *receiptTx) Page(ctx context.Context, afterID string, limit int) ([]store.Receipt, error) {
	rows, err := r.tx.Query(ctx, `SELECT id, decision_id, ledger_index, created_at FROM receipts
		WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`, r.tenantID, afterID, limit)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Receipt
	for rows.Next() {
		var rc store.Receipt
		var index int64
		if err := rows.Scan(&rc.ID, &rc.DecisionID, &index, &rc.CreatedAt); err != nil {
			return nil, mapErr(err)
		}
		rc.LedgerIndex, rc.CreatedAt = uint64(index), rc.CreatedAt.UTC()
		out = append(out, rc)
	}
	return out, mapErr(rows.Err())
}

func (r *receiptTx) ByDecision(ctx context.Context, decisionID string) (store.Receipt, error) {
	if err := store.CheckID(store.PrefixDecision, decisionID); err != nil {
		return store.Receipt{}, err
	}
	var rc store.Receipt
	var index int64
	// The JWS is the record of the receipt's ledger entry.
	err := r.tx.QueryRow(ctx, receiptByDecisionSQL, r.tenantID, decisionID).Scan(&rc.ID, &rc.DecisionID, &rc.JWS, &index, &rc.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Receipt{}, fmt.Errorf("%w: receipt", store.ErrNotFound)
	}
	if err != nil {
		return store.Receipt{}, mapErr(err)
	}
	rc.LedgerIndex, rc.CreatedAt = uint64(index), rc.CreatedAt.UTC()
	return rc, nil
}
