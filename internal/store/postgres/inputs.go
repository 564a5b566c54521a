package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

// ReadDecisionInputs sends, on a bound connection, the statement that
// confines the rest to the organization, the Idempotency-Key lookup when
// there is a key, and one statement for everything else
// (decisionInputsSQL), as one batch: one round trip, one implicit
// transaction (set_config's local setting lasts until the batch's end).
// Each statement reads committed data as of its start, as in a READ
// COMMITTED transaction; the statements are all SELECTs, run as the tenant
// role under row-level security. Should the setting not hold, they would
// see no rows: the policies fail closed.
func (s *Store) ReadDecisionInputs(ctx context.Context, tenantID string, q store.DecisionInputsQuery) (store.DecisionInputs, error) {
	var in store.DecisionInputs
	if err := store.CheckTenantID(tenantID); err != nil {
		return in, err
	}
	if err := q.Check(); err != nil {
		return in, err
	}
	conn, err := s.tenant.Acquire(ctx)
	if err != nil {
		return store.DecisionInputs{}, mapErr(err)
	}
	defer conn.Release()
	if err := s.bindConn(ctx, conn.Conn()); err != nil {
		return store.DecisionInputs{}, err
	}
	b := &pgx.Batch{}
	b.Queue(setTenantSQL, tenantID)
	if q.IdempotencyKeySHA256 != nil {
		b.Queue(decisionByKeySQL, tenantID, q.AgentID, q.IdempotencyKeySHA256)
	}
	var counterparty *string
	if q.CounterpartyID != "" {
		counterparty = &q.CounterpartyID
	}
	b.Queue(decisionInputsSQL, append(agentStatsArgs(tenantID, q.AgentID, q.Now), counterparty)...)
	if q.BeforeRead != nil {
		// Each statement of the batch reads a snapshot taken when it
		// starts, after this.
		q.BeforeRead()
	}
	br := conn.SendBatch(ctx, b)
	err = readInputs(br, q, &in)
	if cerr := br.Close(); err == nil {
		err = mapErr(cerr)
	}
	if err != nil {
		forgetBinding(conn.Conn(), err)
		return store.DecisionInputs{}, err
	}
	return in, nil
}

// decisionInputsSQL reads, for agent $2 of organization $1: the agent, its
// stats tallies (agentStatsQuery, windows from $3 and $4), counterparty $5
// (NULL: none asked) with its payments count, and the seq of the newest
// policy activation (0: none). A row the organization lacks reads as
// NULLs. Never the sealed bank details. One statement where there were
// four: each cost the server and the driver more than its seek did.
const decisionInputsSQL = `SELECT a.id, a.name, a.sponsor, a.risk_tier, a.status, a.created_at, a.updated_at, a.ledger_index,
	s.decisions, s.denials, s.hour_decisions, s.hour_denials, s.day_decisions,
	c.id, c.name, c.status, c.created_at, c.updated_at, c.ledger_index, coalesce(p.payments, 0),
	coalesce((SELECT max(seq) FROM policy_activations WHERE tenant_id = $1), 0)
	FROM (` + agentStatsQuery + `) AS s (decisions, denials, hour_decisions, hour_denials, day_decisions)
	LEFT JOIN agents a ON a.tenant_id = $1 AND a.id = $2
	LEFT JOIN counterparties c ON c.tenant_id = $1 AND c.id = $5
	LEFT JOIN counterparty_payments p ON p.tenant_id = $1 AND p.counterparty_id = $5`

// readInputs reads the batch's results in the order they were queued.
func readInputs(br pgx.BatchResults, q store.DecisionInputsQuery, in *store.DecisionInputs) error {
	var known bool
	if err := br.QueryRow().Scan(&known); err != nil {
		return mapErr(err)
	}
	if !known {
		return fmt.Errorf("%w: tenant", store.ErrNotFound)
	}
	if q.IdempotencyKeySHA256 != nil {
		var err error
		if in.Previous, err = store.Optional(scanDecision(br.QueryRow())); err != nil {
			return err
		}
	}
	var agent struct {
		id, name, sponsor, tier, status *string
		created, updated                *time.Time
		index                           *int64
	}
	var cp struct {
		id, name, status *string
		created, updated *time.Time
		index            *int64
	}
	var latest, hourAgo, dayAgo store.AgentTally
	var policySeq int64
	err := br.QueryRow().Scan(&agent.id, &agent.name, &agent.sponsor, &agent.tier, &agent.status, &agent.created, &agent.updated, &agent.index,
		&latest.Decisions, &latest.Denials, &hourAgo.Decisions, &hourAgo.Denials, &dayAgo.Decisions,
		&cp.id, &cp.name, &cp.status, &cp.created, &cp.updated, &cp.index, &in.Payments, &policySeq)
	if err != nil {
		return mapErr(err)
	}
	if agent.id != nil {
		a := agentFrom(*agent.id, *agent.name, *agent.sponsor, *agent.tier, *agent.status, *agent.created, *agent.updated, agent.index)
		in.Agent = &a
	}
	in.Stats = store.StatsFromTallies(latest, hourAgo, dayAgo)
	in.PolicySeq = uint64(policySeq)
	if cp.id != nil {
		c := counterpartyFrom(*cp.id, *cp.name, *cp.status, *cp.created, *cp.updated, cp.index)
		in.Counterparty = &c
	}
	return nil
}
