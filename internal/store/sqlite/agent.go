package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// agentTx stores agents and their keys in the organization's file.
type agentTx struct {
	platform *sql.DB // the agent directory
	tx       *sql.Tx
	tenantID string
}

func (t *tenantTx) Agents() store.AgentTx {
	return &agentTx{tx: t.tx, tenantID: t.tenantID, platform: t.platform}
}

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
	_, err := a.tx.ExecContext(ctx, `INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at, ledger_index)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, a.tenantID, ag.ID, ag.Name, ag.Sponsor, string(ag.RiskTier), string(ag.Status),
		formatTime(ag.CreatedAt), formatTime(ag.UpdatedAt), ledgerIndexArg(ag.LedgerIndex))
	if err != nil {
		return store.Agent{}, mapErr(err)
	}
	// platform.db is another file: this write is not part of the tenant's
	// transaction. If that rolls back, the directory names an agent that
	// does not exist, which resolves to an organization where it is not
	// found — harmless.
	if _, err := a.platform.ExecContext(ctx, `INSERT INTO agent_directory (agent_id, tenant_id, created_at) VALUES (?, ?, ?)`,
		ag.ID, a.tenantID, formatTime(ag.CreatedAt)); err != nil {
		return store.Agent{}, mapErr(err)
	}
	return ag, nil
}

const agentColumns = `id, name, sponsor, risk_tier, status, created_at, updated_at, ledger_index`

func scanAgent(row scanner) (store.Agent, error) {
	var id, name, sponsor, tier, status, created, updated string
	var idx sql.NullInt64
	if err := row.Scan(&id, &name, &sponsor, &tier, &status, &created, &updated, &idx); err != nil {
		return store.Agent{}, mapErr(err)
	}
	return agentFromColumns(id, name, sponsor, tier, status, created, updated, idx)
}

// agentFromColumns builds an agent from agentColumns' values.
func agentFromColumns(id, name, sponsor, tier, status, created, updated string, idx sql.NullInt64) (store.Agent, error) {
	ag := store.Agent{ID: id, Name: name, Sponsor: sponsor, RiskTier: store.RiskTier(tier), Status: store.AgentStatus(status),
		LedgerIndex: ledgerIndexOf(idx)}
	var err error
	if ag.CreatedAt, err = parseTime(created); err != nil {
		return store.Agent{}, err
	}
	ag.UpdatedAt, err = parseTime(updated)
	return ag, err
}

func (a *agentTx) Get(ctx context.Context, id string) (store.Agent, error) {
	if err := store.CheckID(store.PrefixAgent, id); err != nil {
		return store.Agent{}, err
	}
	ag, err := scanAgent(a.tx.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE tenant_id = ? AND id = ?`, a.tenantID, id))
	if errors.Is(err, store.ErrNotFound) {
		return ag, fmt.Errorf("%w: agent", store.ErrNotFound)
	}
	return ag, err
}

func (a *agentTx) List(ctx context.Context) ([]store.Agent, error) {
	rows, err := a.tx.QueryContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE tenant_id = ? ORDER BY created_at, id`, a.tenantID)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Agent
	for rows.Next() {
		ag, err := scanAgent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, ag)
	}
	return out, mapErr(rows.Err())
}

func (a *agentTx) SetStatus(ctx context.Context, id string, status store.AgentStatus) error {
	if err := store.CheckID(store.PrefixAgent, id); err != nil {
		return err
	}
	if err := store.CheckAgentStatus(status); err != nil {
		return err
	}
	// The condition makes revocation final, and suspension short of
	// reinstatement, atomically; the triggers are the database's own copy
	// of the rules.
	res, err := a.tx.ExecContext(ctx, `UPDATE agents SET status = ?1, updated_at = ?2
		WHERE tenant_id = ?3 AND id = ?4 AND (status <> 'revoked' OR ?1 = 'revoked') AND NOT (status = 'suspended' AND ?1 = 'active')`,
		string(status), formatTime(store.StoredTime(time.Time{})), a.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return missingOr(ctx, a.tx, "agents", a.tenantID, id, "agent", "a revoked agent stays revoked, and a suspended one is not reinstated")
	}
	return nil
}

// riskRank is the SQL rank of a risk tier expression, safest first.
func riskRank(expr string) string {
	return `CASE ` + expr + ` WHEN 'low' THEN 0 WHEN 'medium' THEN 1 WHEN 'high' THEN 2 ELSE 3 END`
}

func (a *agentTx) SetRiskTier(ctx context.Context, id string, tier store.RiskTier) error {
	if err := store.CheckID(store.PrefixAgent, id); err != nil {
		return err
	}
	if err := store.CheckRiskTier(tier); err != nil {
		return err
	}
	// Only up: the condition is the rule, the trigger its copy.
	res, err := a.tx.ExecContext(ctx, `UPDATE agents SET risk_tier = ?1, updated_at = ?2 WHERE tenant_id = ?3 AND id = ?4
		AND `+riskRank("risk_tier")+` <= `+riskRank("?1"),
		string(tier), formatTime(store.StoredTime(time.Time{})), a.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
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
	// Only an agent that names no entry: the condition is the rule, the
	// trigger its copy (an entry, once named, is final).
	res, err := a.tx.ExecContext(ctx, `UPDATE agents SET ledger_index = ? WHERE tenant_id = ? AND id = ? AND ledger_index IS NULL`,
		int64(index), a.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
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
	ag, err := a.Get(ctx, k.AgentID)
	if err != nil {
		return store.AgentKey{}, err
	}
	if ag.Status == store.AgentRevoked {
		return store.AgentKey{}, fmt.Errorf("%w: a revoked agent gets no new key", store.ErrConflict)
	}
	k.CreatedAt, k.RetiredAt = store.StoredTime(time.Time{}), time.Time{}
	_, err = a.tx.ExecContext(ctx, `INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at, ledger_index)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, a.tenantID, k.AgentID, k.KID, k.PublicJWK, string(k.Status), formatTime(k.CreatedAt), ledgerIndexArg(k.LedgerIndex))
	if err != nil {
		return store.AgentKey{}, mapErr(err)
	}
	return k, nil
}

func (a *agentTx) Keys(ctx context.Context, agentID string) ([]store.AgentKey, error) {
	if err := store.CheckID(store.PrefixAgent, agentID); err != nil {
		return nil, err
	}
	rows, err := a.tx.QueryContext(ctx, `SELECT agent_id, kid, public_jwk, status, created_at, retired_at, ledger_index
		FROM agent_keys WHERE tenant_id = ? AND agent_id = ? ORDER BY created_at, kid`, a.tenantID, agentID)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.AgentKey
	for rows.Next() {
		var k store.AgentKey
		var status, created string
		var retired sql.NullString
		var idx sql.NullInt64
		if err := rows.Scan(&k.AgentID, &k.KID, &k.PublicJWK, &status, &created, &retired, &idx); err != nil {
			return nil, mapErr(err)
		}
		k.Status, k.LedgerIndex = store.KeyStatus(status), ledgerIndexOf(idx)
		if k.CreatedAt, err = parseTime(created); err != nil {
			return nil, err
		}
		if retired.Valid {
			if k.RetiredAt, err = parseTime(retired.String); err != nil {
				return nil, err
			}
		}
		out = append(out, k)
	}
	return out, mapErr(rows.Err())
}

func (a *agentTx) RetireKey(ctx context.Context, agentID, kid string, at time.Time) error {
	if err := store.CheckID(store.PrefixAgent, agentID); err != nil {
		return err
	}
	if err := store.CheckKID(kid); err != nil {
		return err
	}
	res, err := a.tx.ExecContext(ctx, `UPDATE agent_keys SET status = 'retired', retired_at = ?
		WHERE tenant_id = ? AND agent_id = ? AND kid = ? AND status = 'active'`,
		formatTime(store.StoredTime(at)), a.tenantID, agentID, kid)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
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
	res, err := a.tx.ExecContext(ctx, `UPDATE agent_keys SET ledger_index = ?
		WHERE tenant_id = ? AND agent_id = ? AND kid = ? AND ledger_index IS NULL`,
		int64(index), a.tenantID, agentID, kid)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	var one int
	err = a.tx.QueryRowContext(ctx, `SELECT 1 FROM agent_keys WHERE tenant_id = ? AND agent_id = ? AND kid = ?`,
		a.tenantID, agentID, kid).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: agent key", store.ErrNotFound)
	case err != nil:
		return mapErr(err)
	}
	return fmt.Errorf("%w: the agent key names an entry already, and keeps it", store.ErrConflict)
}

// missingOr explains an UPDATE that matched no row: ErrNotFound when the
// organization has no row with id in table (a constant), else ErrConflict
// with why (the row's state forbids the change).
func missingOr(ctx context.Context, tx *sql.Tx, table, tenantID, id, what, why string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM `+table+` WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %s", store.ErrNotFound, what)
	case err != nil:
		return mapErr(err)
	}
	return fmt.Errorf("%w: %s", store.ErrConflict, why)
}
