package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

// ReadDecisionInputs sends every statement of q, after the one that
// confines them to the organization, as one batch: one round trip, one
// implicit transaction (set_config's local setting lasts until the
// batch's end), where InTenantReadTx took one per statement plus BEGIN and
// COMMIT — seven per decision. Each statement reads committed data as of
// its start, as in a READ COMMITTED transaction; the statements are all
// SELECTs, run as the tenant role under row-level security. Should the
// setting not hold, they would see no rows: the policies fail closed.
func (s *Store) ReadDecisionInputs(ctx context.Context, tenantID string, q store.DecisionInputsQuery) (store.DecisionInputs, error) {
	var in store.DecisionInputs
	if err := store.CheckTenantID(tenantID); err != nil {
		return in, err
	}
	if err := q.Check(); err != nil {
		return in, err
	}
	b := &pgx.Batch{}
	b.Queue(setTenantSQL, tenantID)
	if q.IdempotencyKeySHA256 != nil {
		b.Queue(decisionByKeySQL, tenantID, q.AgentID, q.IdempotencyKeySHA256)
	}
	b.Queue(agentByIDSQL, tenantID, q.AgentID)
	b.Queue(agentStatsQuery, agentStatsArgs(tenantID, q.AgentID, q.Now)...)
	if q.CounterpartyID != "" {
		b.Queue(`SELECT `+counterpartyColumns+` FROM counterparties WHERE tenant_id = $1 AND id = $2`, tenantID, q.CounterpartyID)
		b.Queue(paymentsCountSQL, tenantID, q.CounterpartyID)
	}
	br := s.tenant.SendBatch(ctx, b)
	err := readInputs(br, q, &in)
	if cerr := br.Close(); err == nil {
		err = mapErr(cerr)
	}
	if err != nil {
		return store.DecisionInputs{}, err
	}
	return in, nil
}

// readInputs reads the batch's results in the order they were queued.
func readInputs(br pgx.BatchResults, q store.DecisionInputsQuery, in *store.DecisionInputs) error {
	var known bool
	if err := br.QueryRow().Scan(&known); err != nil {
		return mapErr(err)
	}
	if !known {
		return fmt.Errorf("%w: tenant", store.ErrNotFound)
	}
	var err error
	if q.IdempotencyKeySHA256 != nil {
		if in.Previous, err = store.Optional(scanDecision(br.QueryRow())); err != nil {
			return err
		}
	}
	if in.Agent, err = store.Optional(scanAgent(br.QueryRow())); err != nil {
		return err
	}
	if in.Stats, err = scanStats(br.QueryRow()); err != nil {
		return err
	}
	if q.CounterpartyID == "" {
		return nil
	}
	if in.Counterparty, err = store.Optional(scanCounterparty(br.QueryRow(), false)); err != nil {
		return err
	}
	return mapErr(br.QueryRow().Scan(&in.Payments))
}
