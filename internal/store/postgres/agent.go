package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

// agentTx stores agents and their keys under row security.
type agentTx struct {
	tx       pgx.Tx
	tenantID string
}

func (t *tenantTx) Agents() store.AgentTx { return &agentTx{tx: t.tx, tenantID: t.tenantID} }

func (a *agentTx) Create(ctx context.Context, ag store.Agent) (store.Agent, error) {
	if ag.ID == "" {
		ag.ID = store.NewID(store.PrefixAgent)
	}
	if ag.Status == "" {
		ag.Status = store.AgentActive
	}
	if err := store.CheckAgent(ag); err != nil {
		return store.Agent{}, err
	}
	if err := store.CheckLedgerIndex(ag.LedgerIndex, "an agent"); err != nil {
		return store.Agent{}, err
	}
	ag.CreatedAt = store.StoredTime(time.Time{})
	ag.UpdatedAt = ag.CreatedAt
	_, err := a.tx.Exec(ctx, `INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at, ledger_index)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, a.tenantID, ag.ID, ag.Name, ag.Sponsor, string(ag.RiskTier), string(ag.Status),
		ag.CreatedAt, ag.UpdatedAt, int64(*ag.LedgerIndex))
	if err != nil {
		return store.Agent{}, mapErr(err)
	}
	// In the same transaction: the directory entry exists iff the agent does.
	if _, err := a.tx.Exec(ctx, `SELECT app_register_agent($1)`, ag.ID); err != nil {
		return store.Agent{}, mapErr(err)
	}
	return ag, nil
}

const agentColumns = `id, name, sponsor, risk_tier, status, created_at, updated_at, ledger_index`

const agentByIDSQL = `SELECT ` + agentColumns + ` FROM agents WHERE tenant_id = $1 AND id = $2`

func scanAgent(row pgx.Row) (store.Agent, error) {
	var id, name, sponsor, tier, status string
	var created, updated time.Time
	var idx *int64
	if err := row.Scan(&id, &name, &sponsor, &tier, &status, &created, &updated, &idx); err != nil {
		return store.Agent{}, mapErr(err)
	}
	return agentFrom(id, name, sponsor, tier, status, created, updated, idx), nil
}

// agentFrom builds an agent from agentColumns' values.
func agentFrom(id, name, sponsor, tier, status string, created, updated time.Time, idx *int64) store.Agent {
	return store.Agent{ID: id, Name: name, Sponsor: sponsor, RiskTier: store.RiskTier(tier), Status: store.AgentStatus(status),
		CreatedAt: created.UTC(), UpdatedAt: updated.UTC(), LedgerIndex: ledgerIndexOf(idx)}
}

func (a *agentTx) Get(ctx context.Context, id string) (store.Agent, error) {
	if err := store.CheckID(store.PrefixAgent, id); err != nil {
		return store.Agent{}, err
	}
	ag, err := scanAgent(a.tx.QueryRow(ctx, agentByIDSQL, a.tenantID, id))
	if errors.Is(err, store.ErrNotFound) {
		return ag, fmt.Errorf("%w: agent", store.ErrNotFound)
	}
	return ag, err
}

func (a *agentTx) List(ctx context.Context) ([]store.Agent, error) {
	rows, err := a.tx.Query(ctx, `SELECT `+agentColumns+` FROM agents WHERE tenant_id = $1 ORDER BY created_at, id`, a.tenantID)
	if err != nil {
		return nil, mapErr(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Agent, error) { return scanAgent(r) })
	return out, mapErr(err)
}

func (a *agentTx) SetStatus(ctx context.Context, id string, status store.AgentStatus) error {
	if err := store.CheckID(store.PrefixAgent, id); err != nil {
		return err
	}
	if err := store.CheckAgentStatus(status); err != nil {
		return err
	}
	// The condition makes revocation final, and suspension short of
	// reinstatement, atomically (the row lock serialises concurrent
	// changes); the triggers are the database's own copy of the rules.
	tag, err := a.tx.Exec(ctx, `UPDATE agents SET status = $1, updated_at = $2
		WHERE tenant_id = $3 AND id = $4 AND (status <> 'revoked' OR $1 = 'revoked') AND NOT (status = 'suspended' AND $1 = 'active')`,
		string(status), store.StoredTime(time.Time{}), a.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return missingOr(ctx, a.tx, "agents", a.tenantID, id, "agent", "a revoked agent stays revoked, and a suspended one is not reinstated")
	}
	return nil
}

func (a *agentTx) SetRiskTier(ctx context.Context, id string, tier store.RiskTier) error {
	if err := store.CheckID(store.PrefixAgent, id); err != nil {
		return err
	}
	if err := store.CheckRiskTier(tier); err != nil {
		return err
	}
	// Only up: the condition is the rule, the trigger its copy.
	tag, err := a.tx.Exec(ctx, `UPDATE agents SET risk_tier = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4
		AND app_risk_rank(risk_tier) <= app_risk_rank($1)`,
		string(tier), store.StoredTime(time.Time{}), a.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return missingOr(ctx, a.tx, "agents", a.tenantID, id, "agent", "an agent's risk tier only rises: nothing logs a lowering")
	}
	return nil
}

func (a *agentTx) Adopt(ctx context.Context, id string, index uint64) error {
	if err := store.CheckID(store.PrefixAgent, id); err != nil {
		return err
	}
	if err := store.CheckLedgerIndex(&index, "an agent"); err != nil {
		return err
	}
	// Only an agent that names no entry: the condition is the rule (a
	// refusal that leaves the transaction usable), the trigger its copy
	// (an entry, once named, is final).
	tag, err := a.tx.Exec(ctx, `UPDATE agents SET ledger_index = $1 WHERE tenant_id = $2 AND id = $3 AND ledger_index IS NULL`,
		int64(index), a.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return missingOr(ctx, a.tx, "agents", a.tenantID, id, "agent", "the agent names an entry already, and keeps it")
	}
	return nil
}

func (a *agentTx) AddKey(ctx context.Context, k store.AgentKey) (store.AgentKey, error) {
	if k.Status == "" {
		k.Status = store.KeyActive
	}
	if k.Status != store.KeyActive {
		return store.AgentKey{}, fmt.Errorf("%w: a key is added active", store.ErrInvalid)
	}
	if err := store.CheckAgentKey(k); err != nil {
		return store.AgentKey{}, err
	}
	// FOR SHARE: a concurrent revocation waits for this key, or this key
	// waits for it and sees the agent revoked.
	var status string
	err := a.tx.QueryRow(ctx, `SELECT status FROM agents WHERE tenant_id = $1 AND id = $2 FOR SHARE`, a.tenantID, k.AgentID).Scan(&status)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return store.AgentKey{}, fmt.Errorf("%w: agent", store.ErrNotFound)
		}
		return store.AgentKey{}, mapErr(err)
	}
	if store.AgentStatus(status) == store.AgentRevoked {
		return store.AgentKey{}, fmt.Errorf("%w: a revoked agent gets no new key", store.ErrConflict)
	}
	k.CreatedAt, k.RetiredAt = store.StoredTime(time.Time{}), time.Time{}
	_, err = a.tx.Exec(ctx, `INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at, ledger_index)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, a.tenantID, k.AgentID, k.KID, k.PublicJWK, string(k.Status), k.CreatedAt, int64(*k.LedgerIndex))
	if err != nil {
		return store.AgentKey{}, mapErr(err)
	}
	return k, nil
}

func (a *agentTx) Keys(ctx context.Context, agentID string) ([]store.AgentKey, error) {
	if err := store.CheckID(store.PrefixAgent, agentID); err != nil {
		return nil, err
	}
	rows, err := a.tx.Query(ctx, `SELECT agent_id, kid, public_jwk, status, created_at, retired_at, ledger_index
		FROM agent_keys WHERE tenant_id = $1 AND agent_id = $2 ORDER BY created_at, kid`, a.tenantID, agentID)
	if err != nil {
		return nil, mapErr(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.AgentKey, error) {
		var k store.AgentKey
		var status string
		var retired *time.Time
		var idx *int64
		if err := r.Scan(&k.AgentID, &k.KID, &k.PublicJWK, &status, &k.CreatedAt, &retired, &idx); err != nil {
			return k, err
		}
		k.LedgerIndex = ledgerIndexOf(idx)
		k.Status, k.CreatedAt = store.KeyStatus(status), k.CreatedAt.UTC()
		if retired != nil {
			k.RetiredAt = retired.UTC()
		}
		return k, nil
	})
	return out, mapErr(err)
}

func (a *agentTx) RetireKey(ctx context.Context, agentID, kid string, at time.Time) error {
	if err := store.CheckID(store.PrefixAgent, agentID); err != nil {
		return err
	}
	if err := store.CheckKID(kid); err != nil {
		return err
	}
	tag, err := a.tx.Exec(ctx, `UPDATE agent_keys SET status = 'retired', retired_at = $1
		WHERE tenant_id = $2 AND agent_id = $3 AND kid = $4 AND status = 'active'`,
		store.StoredTime(at), a.tenantID, agentID, kid)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: active agent key", store.ErrNotFound)
	}
	return nil
}

func (a *agentTx) AdoptKey(ctx context.Context, agentID, kid string, index uint64) error {
	if err := store.CheckID(store.PrefixAgent, agentID); err != nil {
		return err
	}
	if err := store.CheckKID(kid); err != nil {
		return err
	}
	if err := store.CheckLedgerIndex(&index, "a key"); err != nil {
		return err
	}
	// Only a key that names no entry, retired or not: the condition is the
	// rule, the triggers its copy.
	tag, err := a.tx.Exec(ctx, `UPDATE agent_keys SET ledger_index = $1
		WHERE tenant_id = $2 AND agent_id = $3 AND kid = $4 AND ledger_index IS NULL`,
		int64(index), a.tenantID, agentID, kid)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	var one int
	err = a.tx.QueryRow(ctx, `SELECT 1 FROM agent_keys WHERE tenant_id = $1 AND agent_id = $2 AND kid = $3`,
		a.tenantID, agentID, kid).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: agent key", store.ErrNotFound)
	case err != nil:
		return mapErr(err)
	}
	return fmt.Errorf("%w: the agent key names an entry already, and keeps it", store.ErrConflict)
}

// missingOr explains an UPDATE that matched no row: ErrNotFound when the
// organization has no row with id in table (a constant), else ErrConflict
// with why (the row's state forbids the change).
func missingOr(ctx context.Context, tx pgx.Tx, table, tenantID, id, what, why string) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM `+table+` WHERE tenant_id = $1 AND id = $2`, tenantID, id).Scan(&one)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: %s", store.ErrNotFound, what)
	case err != nil:
		return mapErr(err)
	}
	return fmt.Errorf("%w: %s", store.ErrConflict, why)
}
