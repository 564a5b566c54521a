package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// decisionTx stores decisions, written once.
type decisionTx struct {
	tx       *sql.Tx
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
	if err := d.insert(ctx, dec); err != nil {
		return store.Decision{}, err
	}
	return dec, nil
}

// insert writes a checked decision and its counters.
func (d *decisionTx) insert(ctx context.Context, dec store.Decision) error {
	return insertDecisions(ctx, d.tx, d.tenantID, []store.Decision{dec})
}

// Record writes the checked parts in a savepoint, with the same statements
// (and the same SQL guards) as Insert, ReceiptTx.Insert and CaseTx.Create.
func (d *decisionTx) Record(ctx context.Context, r store.DecisionRecord) error {
	if err := store.CheckRecord(&r); err != nil {
		return err
	}
	if d.owner != nil && d.owner.pipe != nil {
		// Inside Pipeline: queued, written with the others; the caller's
		// savepoint undoes them on error.
		d.owner.pipe.Add(r)
		return nil
	}
	return savepoint(ctx, d.tx, func(ctx context.Context) error {
		// CheckRecord has checked every part: no second validation here.
		if err := d.insert(ctx, r.Decision); err != nil {
			return err
		}
		if r.Receipt != nil {
			if err := (&receiptTx{tx: d.tx, tenantID: d.tenantID}).insert(ctx, *r.Receipt); err != nil {
				return err
			}
		}
		if r.Case != nil {
			return (&caseTx{tx: d.tx, tenantID: d.tenantID}).insert(ctx, *r.Case)
		}
		return nil
	})
}

const decisionColumns = `id, agent_id, action, action_type, counterparty_id, reason, outcome, reasons, approvals_required,
	base_revision, tenant_revision, tenant_bundle_sha256, idempotency_key_sha256, request_sha256, ledger_index, response, created_at`

// scanDecision reads decisionColumns, then into extra what follows them.
func scanDecision(row scanner, extra ...any) (store.Decision, error) {
	var dec store.Decision
	var counterparty sql.NullString
	var outcome, reasons, created string
	var index int64
	err := row.Scan(append([]any{&dec.ID, &dec.AgentID, &dec.Action, &dec.ActionType, &counterparty, &dec.Reason, &outcome, &reasons,
		&dec.ApprovalsRequired, &dec.BaseRevision, &dec.TenantRevision, &dec.TenantBundleSHA256,
		&dec.IdempotencyKeySHA256, &dec.RequestSHA256, &index, &dec.Response, &created}, extra...)...)
	if err != nil {
		if errors.Is(mapErr(err), store.ErrNotFound) {
			return store.Decision{}, fmt.Errorf("%w: decision", store.ErrNotFound)
		}
		return store.Decision{}, mapErr(err)
	}
	dec.CounterpartyID, dec.Outcome, dec.LedgerIndex = counterparty.String, store.Outcome(outcome), uint64(index)
	if err := json.Unmarshal([]byte(reasons), &dec.Reasons); err != nil {
		return store.Decision{}, fmt.Errorf("sqlite: stored decision reasons: %w", err)
	}
	dec.CreatedAt, err = parseTime(created)
	return dec, err
}

func (d *decisionTx) Page(ctx context.Context, after store.Decision, limit int) ([]store.Decision, error) {
	rows, err := d.tx.QueryContext(ctx, `SELECT `+decisionColumns+`, agent_seq, agent_denials, agent_tally_at FROM decisions
		WHERE tenant_id = ? AND (agent_id, agent_seq) > (?, ?) ORDER BY agent_id, agent_seq LIMIT ?`,
		d.tenantID, after.AgentID, after.Tally.Decisions, limit)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Decision
	for rows.Next() {
		var at string
		var tally store.AgentTally
		dec, err := scanDecision(rows, &tally.Decisions, &tally.Denials, &at)
		if err != nil {
			return nil, err
		}
		if tally.At, err = parseTime(at); err != nil {
			return nil, err
		}
		dec.Tally = tally
		out = append(out, dec)
	}
	return out, mapErr(rows.Err())
}

func (d *decisionTx) Get(ctx context.Context, id string) (store.Decision, error) {
	if err := store.CheckID(store.PrefixDecision, id); err != nil {
		return store.Decision{}, err
	}
	return scanDecision(d.tx.QueryRowContext(ctx, `SELECT `+decisionColumns+` FROM decisions WHERE tenant_id = ? AND id = ?`, d.tenantID, id))
}

func (d *decisionTx) ByIdempotencyKey(ctx context.Context, agentID string, keySHA256 []byte) (store.Decision, error) {
	if err := store.CheckID(store.PrefixAgent, agentID); err != nil {
		return store.Decision{}, err
	}
	if len(keySHA256) != 32 {
		return store.Decision{}, fmt.Errorf("%w: an idempotency key digest is 32 bytes", store.ErrInvalid)
	}
	return scanDecision(d.tx.QueryRowContext(ctx, `SELECT `+decisionColumns+` FROM decisions
		WHERE tenant_id = ? AND agent_id = ? AND idempotency_key_sha256 = ?`, d.tenantID, agentID, keySHA256))
}

func (d *decisionTx) AgentStats(ctx context.Context, agentID string, now time.Time) (store.AgentStats, error) {
	if err := store.CheckID(store.PrefixAgent, agentID); err != nil {
		return store.AgentStats{}, err
	}
	now = store.StoredTime(now)
	// The latest tally, and the tallies as of each window's start.
	var latest, hourAgo, dayAgo store.AgentTally
	hourStart, dayStart := windowStarts(now)
	err := d.tx.QueryRowContext(ctx, agentStatsQuery, d.tenantID, agentID, hourStart, dayStart).
		Scan(&latest.Decisions, &latest.Denials, &hourAgo.Decisions, &hourAgo.Denials, &dayAgo.Decisions)
	if err != nil {
		return store.AgentStats{}, mapErr(err)
	}
	return store.StatsFromTallies(latest, hourAgo, dayAgo), nil
}

// agentStatsQuery reads an agent's latest tally and its tallies as of two
// moments (?3, ?4): each the newest decision whose tally time is at or
// before it, a seek of the covering decisions_by_agent_time (tally times
// never go back, so the newest of all is the latest tally). Scalar
// subqueries: joined subqueries were each materialized in a temporary
// b-tree.
const agentStatsQuery = `SELECT ` + agentTallyColumns

// windowStarts are the starts of the stats' windows ending at now, as
// agentTallyColumns' ?3 and ?4 take them.
func windowStarts(now time.Time) (hourAgo, dayAgo string) {
	return formatTime(now.Add(-time.Hour)), formatTime(now.Add(-24 * time.Hour))
}

// agentTallyColumns are agentStatsQuery's columns, parameters ?1 to ?4.
const agentTallyColumns = `
	coalesce((SELECT agent_seq FROM decisions WHERE tenant_id = ?1 AND agent_id = ?2
		ORDER BY agent_tally_at DESC, agent_seq DESC LIMIT 1), 0),
	coalesce((SELECT agent_denials FROM decisions WHERE tenant_id = ?1 AND agent_id = ?2
		ORDER BY agent_tally_at DESC, agent_seq DESC LIMIT 1), 0),
	coalesce((SELECT agent_seq FROM decisions WHERE tenant_id = ?1 AND agent_id = ?2 AND agent_tally_at <= ?3
		ORDER BY agent_tally_at DESC, agent_seq DESC LIMIT 1), 0),
	coalesce((SELECT agent_denials FROM decisions WHERE tenant_id = ?1 AND agent_id = ?2 AND agent_tally_at <= ?3
		ORDER BY agent_tally_at DESC, agent_seq DESC LIMIT 1), 0),
	coalesce((SELECT agent_seq FROM decisions WHERE tenant_id = ?1 AND agent_id = ?2 AND agent_tally_at <= ?4
		ORDER BY agent_tally_at DESC, agent_seq DESC LIMIT 1), 0)`

// receiptable is the condition on decision d for it to have a receipt: it
// was allowed, or its case was approved.
const receiptable = `(d.outcome = 'allow' OR EXISTS (SELECT 1 FROM cases c
	WHERE c.tenant_id = d.tenant_id AND c.decision_id = d.id AND c.status = 'approved'))`

// receiptTx stores receipts, written once.
type receiptTx struct {
	tx       *sql.Tx
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
	if err := r.insert(ctx, rc); err != nil {
		return store.Receipt{}, err
	}
	return rc, nil
}

// insert writes a checked receipt. One statement checks that the decision
// may have a receipt and that the ledger entry the receipt names holds its
// JWS (which is not stored again), and writes it; when it writes nothing,
// a second says which check failed.
func (r *receiptTx) insert(ctx context.Context, rc store.Receipt) error {
	res, err := r.tx.ExecContext(ctx, `INSERT INTO receipts (tenant_id, id, decision_id, ledger_index, created_at)
		SELECT d.tenant_id, ?, d.id, ?, ? FROM decisions d WHERE d.tenant_id = ? AND d.id = ? AND `+receiptable+`
		AND EXISTS (SELECT 1 FROM ledger_entries e WHERE e.tenant_id = d.tenant_id AND e.idx = ? AND e.record = CAST(? AS BLOB))`,
		rc.ID, int64(rc.LedgerIndex), formatTime(rc.CreatedAt), r.tenantID, rc.DecisionID, int64(rc.LedgerIndex), rc.JWS)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	var ok bool
	err = r.tx.QueryRowContext(ctx, `SELECT `+receiptable+` FROM decisions d WHERE d.tenant_id = ? AND d.id = ?`,
		r.tenantID, rc.DecisionID).Scan(&ok)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: decision", store.ErrNotFound)
	case err != nil:
		return mapErr(err)
	case !ok:
		return fmt.Errorf("%w: a receipt is only for an allowed decision or an approved case", store.ErrConflict)
	}
	return fmt.Errorf("%w: %s", store.ErrInvalid, store.ReceiptNotInLedger)
}

func (r *receiptTx) Page(ctx context.Context, afterID string, limit int) ([]store.Receipt, error) {
	rows, err := r.tx.QueryContext(ctx, `SELECT id, decision_id, ledger_index, created_at FROM receipts
		WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?`, r.tenantID, afterID, limit)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Receipt
	for rows.Next() {
		var rc store.Receipt
		var index int64
		var created string
		if err := rows.Scan(&rc.ID, &rc.DecisionID, &index, &created); err != nil {
			return nil, mapErr(err)
		}
		rc.LedgerIndex = uint64(index)
		if rc.CreatedAt, err = parseTime(created); err != nil {
			return nil, err
		}
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
	var created string
	// The JWS is the record of the receipt's ledger entry.
	err := r.tx.QueryRowContext(ctx, `SELECT r.id, r.decision_id, e.record, r.ledger_index, r.created_at FROM receipts r
		JOIN ledger_entries e ON e.tenant_id = r.tenant_id AND e.idx = r.ledger_index
		WHERE r.tenant_id = ? AND r.decision_id = ?`, r.tenantID, decisionID).Scan(&rc.ID, &rc.DecisionID, &rc.JWS, &index, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Receipt{}, fmt.Errorf("%w: receipt", store.ErrNotFound)
	}
	if err != nil {
		return store.Receipt{}, mapErr(err)
	}
	rc.LedgerIndex = uint64(index)
	rc.CreatedAt, err = parseTime(created)
	return rc, err
}

// ReadDecisionInputs reads q with one statement (decisionInputsQuery) in
// a read transaction, and a second only to load the decision an
// Idempotency-Key names, when there is one. Each statement costs the
// driver more than SQLite's seeks do: five statements were twice the
// time of their work.
func (s *Store) ReadDecisionInputs(ctx context.Context, tenantID string, q store.DecisionInputsQuery) (store.DecisionInputs, error) {
	var in store.DecisionInputs
	if err := q.Check(); err != nil {
		return in, err
	}
	err := s.InTenantReadTx(ctx, tenantID, func(ctx context.Context, tt store.TenantTx) error {
		var err error
		in, err = readDecisionInputs(ctx, tt.(*tenantTx), q)
		return err
	})
	if err != nil {
		return store.DecisionInputs{}, err
	}
	return in, nil
}

func readDecisionInputs(ctx context.Context, tt *tenantTx, q store.DecisionInputsQuery) (store.DecisionInputs, error) {
	var in store.DecisionInputs
	now := store.StoredTime(q.Now)
	var previous, counterparty sql.NullString
	var agent [7]sql.NullString
	var agentIndex sql.NullInt64
	var cp [4]sql.NullString // name, status, created_at, updated_at
	var cpIndex sql.NullInt64
	var latest, hourAgo, dayAgo store.AgentTally
	var policySeq int64
	hourStart, dayStart := windowStarts(now)
	if q.BeforeRead != nil {
		// The read transaction (deferred) takes its snapshot at this
		// statement: nothing before it in the transaction read.
		q.BeforeRead()
	}
	err := tt.tx.QueryRowContext(ctx, decisionInputsQuery, tt.tenantID, q.AgentID, hourStart, dayStart,
		nullBytes(q.IdempotencyKeySHA256), sql.NullString{String: q.CounterpartyID, Valid: q.CounterpartyID != ""},
	).Scan(&previous,
		&agent[0], &agent[1], &agent[2], &agent[3], &agent[4], &agent[5], &agent[6], &agentIndex,
		&latest.Decisions, &latest.Denials, &hourAgo.Decisions, &hourAgo.Denials, &dayAgo.Decisions,
		&counterparty, &cp[0], &cp[1], &cp[2], &cp[3], &cpIndex, &in.Payments, &policySeq)
	if err != nil {
		return in, mapErr(err)
	}
	if previous.Valid {
		d, err := tt.Decisions().Get(ctx, previous.String)
		if err != nil {
			return in, err
		}
		in.Previous = &d
	}
	if agent[0].Valid {
		a, err := agentFromColumns(agent[0].String, agent[1].String, agent[2].String, agent[3].String,
			agent[4].String, agent[5].String, agent[6].String, agentIndex)
		if err != nil {
			return in, err
		}
		in.Agent = &a
	}
	in.Stats = store.StatsFromTallies(latest, hourAgo, dayAgo)
	in.PolicySeq = uint64(policySeq)
	if counterparty.Valid {
		c, err := counterpartyFromColumns(counterparty.String, cp[0].String, cp[1].String, cp[2].String, cp[3].String, cpIndex)
		if err != nil {
			return in, err
		}
		in.Counterparty = &c
	}
	return in, nil
}

// decisionInputsQuery reads, for agent ?2 of organization ?1: the id of
// its decision under Idempotency-Key digest ?5 (NULL: none asked), the
// agent, its stats tallies (agentStatsQuery's columns, windows from ?3 and
// ?4), counterparty ?6 (NULL: none asked) with its payments count, and
// the seq of the newest policy activation (0: none). A row the
// organization lacks reads as NULLs. Never the sealed bank details.
const decisionInputsQuery = `SELECT
	(SELECT id FROM decisions WHERE tenant_id = ?1 AND agent_id = ?2 AND idempotency_key_sha256 = ?5),
	a.id, a.name, a.sponsor, a.risk_tier, a.status, a.created_at, a.updated_at, a.ledger_index,
	` + agentTallyColumns + `,
	c.id, c.name, c.status, c.created_at, c.updated_at, c.ledger_index,
	coalesce((SELECT payments FROM counterparty_payments WHERE tenant_id = ?1 AND counterparty_id = ?6), 0),
	coalesce((SELECT max(seq) FROM policy_activations WHERE tenant_id = ?1), 0)
FROM (SELECT 1)
LEFT JOIN agents a ON a.tenant_id = ?1 AND a.id = ?2
LEFT JOIN counterparties c ON c.tenant_id = ?1 AND c.id = ?6`
