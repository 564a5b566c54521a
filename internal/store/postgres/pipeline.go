package postgres

import (
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

// queueRecords queues checked records as at most four statements: one
// array insert per table (unnest, as AppendLog does for the log) and one
// upsert row per counter (store.SumPayments), where one statement per
// record and counter made a ledger batch of thirteen decisions some fifty
// statements, two of them updates of the same counter row thirteen times
// over. Decisions go first, for the receipts' and cases' foreign keys.
// CheckRecord has tied each receipt or case to its own decision and
// outcome, so that is not checked again (ReceiptTx.Insert and
// CaseTx.Create check it in SQL, for decisions stored earlier); a
// receipt's ledger entry is (insertReceiptsSQL).
func queueRecords(b *pgx.Batch, tenantID string, records []store.DecisionRecord) error {
	decisions := make([]store.Decision, len(records))
	var rIDs, rDecisions, rJWS []string
	var rIndexes []int64
	var rCreated []time.Time
	var cIDs, cDecisions, cAgents, cStatus []string
	var cApprovals []int32
	var cExpires, cCreated, cUpdated []time.Time
	for i, r := range records {
		decisions[i] = r.Decision
		if rc := r.Receipt; rc != nil {
			rIDs, rDecisions, rJWS = append(rIDs, rc.ID), append(rDecisions, rc.DecisionID), append(rJWS, rc.JWS)
			rIndexes, rCreated = append(rIndexes, int64(rc.LedgerIndex)), append(rCreated, rc.CreatedAt)
		}
		if c := r.Case; c != nil {
			cIDs, cDecisions, cAgents, cStatus = append(cIDs, c.ID), append(cDecisions, c.DecisionID), append(cAgents, c.AgentID), append(cStatus, string(c.Status))
			cApprovals = append(cApprovals, int32(c.ApprovalsRequired))
			cExpires, cCreated, cUpdated = append(cExpires, c.ExpiresAt), append(cCreated, c.CreatedAt), append(cUpdated, c.UpdatedAt)
		}
	}
	if err := queueDecisions(b, tenantID, decisions); err != nil {
		return err
	}
	if n := len(rIDs); n > 0 {
		// Each only if the ledger entry it names holds its JWS, which is
		// that record and not stored again (ReceiptTx.ByDecision reads it
		// from the entry).
		b.Queue(insertReceiptsSQL, tenantID, rIDs, rDecisions, rJWS, rIndexes, rCreated, n, store.ReceiptNotInLedger)
	}
	if len(cIDs) > 0 {
		b.Queue(`INSERT INTO cases (tenant_id, id, decision_id, agent_id, status, approvals_required, expires_at, created_at, updated_at)
			SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::integer[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[])`,
			tenantID, cIDs, cDecisions, cAgents, cStatus, cApprovals, cExpires, cCreated, cUpdated)
	}
	return nil
}

// queueDecisions queues checked decisions and their counters: one array
// insert, which gives each decision its agent's tally (store.AgentTally:
// the agent's latest stored tally, one seek, plus running counts and the
// running latest time over the batch; greatest ignores the NULL of an
// agent's first decision), and one upsert row per counterparty paid. Insert and Record send
// one this way, a pipeline all of its own. Ledger batches hold the log's
// lock, so no two store tallies of one agent at once; anything else that
// tried would fail on decisions_by_agent_seq, not count twice.
func queueDecisions(b *pgx.Batch, tenantID string, decisions []store.Decision) error {
	n := len(decisions)
	// One array per decisions column, in decisionColumns' order.
	strs := func() []string { return make([]string, n) }
	ids, agents, actions, types, reasonTexts, outcomes, reasons := strs(), strs(), strs(), strs(), strs(), strs(), strs()
	baseRevs, tenantRevs, bundles, responses := strs(), strs(), strs(), strs()
	counterparties := make([]*string, n) // NULL when none
	approvals := make([]int32, n)
	keys, requests := make([][]byte, n), make([][]byte, n)
	indexes := make([]int64, n)
	created := make([]time.Time, n)
	for i, d := range decisions {
		rs, err := json.Marshal(d.Reasons)
		if err != nil {
			return err
		}
		ids[i], agents[i], actions[i], types[i], reasonTexts[i], outcomes[i], reasons[i] = d.ID, d.AgentID, d.Action, d.ActionType, d.Reason, string(d.Outcome), string(rs)
		baseRevs[i], tenantRevs[i], bundles[i], responses[i] = d.BaseRevision, d.TenantRevision, d.TenantBundleSHA256, d.Response
		if d.CounterpartyID != "" {
			cp := d.CounterpartyID
			counterparties[i] = &cp
		}
		approvals[i] = int32(d.ApprovalsRequired)
		keys[i], requests[i], indexes[i], created[i] = d.IdempotencyKeySHA256, d.RequestSHA256, int64(d.LedgerIndex), d.CreatedAt
	}
	b.Queue(insertDecisionsSQL,
		tenantID, ids, agents, actions, types, counterparties, reasonTexts, outcomes, reasons,
		approvals, baseRevs, tenantRevs, bundles, keys, requests, indexes, responses, created)
	payments := store.SumPayments(decisions)
	if len(payments) > 0 {
		pIDs, pCounts := make([]string, len(payments)), make([]int64, len(payments))
		for i, p := range payments {
			pIDs[i], pCounts[i] = p.CounterpartyID, p.Payments
		}
		b.Queue(`INSERT INTO counterparty_payments (tenant_id, counterparty_id, payments)
			SELECT $1, * FROM unnest($2::text[], $3::bigint[])
			ON CONFLICT (tenant_id, counterparty_id) DO UPDATE SET payments = counterparty_payments.payments + excluded.payments`,
			tenantID, pIDs, pCounts)
	}
	return nil
}

// insertDecisionsSQL stores decisions ($2…$18 arrays, in decisionColumns'
// order) with their agents' tallies.
const insertDecisionsSQL = `INSERT INTO decisions (tenant_id, ` + decisionColumns + `, agent_seq, agent_denials, agent_tally_at)
		SELECT $1, u.id, u.agent_id, u.action, u.action_type, u.counterparty_id, u.reason, u.outcome, u.reasons, u.approvals_required,
			u.base_revision, u.tenant_revision, u.tenant_bundle_sha256, u.idempotency_key_sha256, u.request_sha256, u.ledger_index,
			u.response, u.created_at,
			coalesce(l.seq, 0) + row_number() OVER w,
			coalesce(l.denials, 0) + count(*) FILTER (WHERE u.outcome = 'deny') OVER w,
			greatest(l.tally_at, max(u.created_at) OVER w)
		FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
			$10::integer[], $11::text[], $12::text[], $13::text[], $14::bytea[], $15::bytea[], $16::bigint[], $17::text[], $18::timestamptz[])
			WITH ORDINALITY AS u(id, agent_id, action, action_type, counterparty_id, reason, outcome, reasons, approvals_required,
				base_revision, tenant_revision, tenant_bundle_sha256, idempotency_key_sha256, request_sha256, ledger_index,
				response, created_at, ord)
		LEFT JOIN LATERAL (SELECT d.agent_seq AS seq, d.agent_denials AS denials, d.agent_tally_at AS tally_at FROM decisions d
			WHERE d.tenant_id = $1 AND d.agent_id = u.agent_id ORDER BY d.agent_seq DESC LIMIT 1) AS l ON true
		WINDOW w AS (PARTITION BY u.agent_id ORDER BY u.ord)`

// insertReceiptsSQL stores receipts ($2…$6 arrays), each only if the
// ledger entry it names holds its JWS; the server checks that all $7 went
// in (app_assert), so that a pipeline carrying its own savepoint stops
// before releasing it. The entry is a lateral seek of the primary key:
// joined, a plan made before the table is analyzed hashed every entry of
// the organization's log, each batch.
const insertReceiptsSQL = `WITH stored AS (
		INSERT INTO receipts (tenant_id, id, decision_id, ledger_index, created_at)
		SELECT $1, u.id, u.decision_id, u.ledger_index, u.created_at
		FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::timestamptz[]) AS u(id, decision_id, jws, ledger_index, created_at)
		CROSS JOIN LATERAL (SELECT FROM ledger_entries e
			WHERE e.tenant_id = $1 AND e.idx = u.ledger_index AND e.record = convert_to(u.jws, 'UTF8') LIMIT 1) AS entry
		RETURNING 1)
	SELECT app_assert(count(*) = $7, $8) FROM stored`
