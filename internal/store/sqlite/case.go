package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// caseTx stores cases; a case leaves pending once.
type caseTx struct {
	tx       *sql.Tx
	tenantID string
}

func (t *tenantTx) Cases() store.CaseTx { return &caseTx{tx: t.tx, tenantID: t.tenantID} }

func (c *caseTx) Create(ctx context.Context, cs store.Case) (store.Case, error) {
	if cs.ID == "" {
		cs.ID = store.NewID(store.PrefixCase)
	}
	if cs.Status == "" {
		cs.Status = store.CasePending
	}
	cs.CreatedAt = store.StoredTime(cs.CreatedAt)
	cs.UpdatedAt = cs.CreatedAt
	if !cs.ExpiresAt.IsZero() {
		cs.ExpiresAt = store.StoredTime(cs.ExpiresAt)
	}
	if err := store.CheckCase(cs); err != nil {
		return store.Case{}, err
	}
	if err := c.insert(ctx, cs); err != nil {
		return store.Case{}, err
	}
	return cs, nil
}

// insert writes a checked case. One statement checks the decision is the
// agent's escalation and writes the case.
func (c *caseTx) insert(ctx context.Context, cs store.Case) error {
	res, err := c.tx.ExecContext(ctx, `INSERT INTO cases (tenant_id, id, decision_id, agent_id, status, approvals_required, expires_at, created_at, updated_at)
		SELECT d.tenant_id, ?, d.id, d.agent_id, ?, ?, ?, ?, ? FROM decisions d
		WHERE d.tenant_id = ? AND d.id = ? AND d.agent_id = ? AND d.outcome = 'escalate'`,
		cs.ID, string(cs.Status), cs.ApprovalsRequired, formatTime(cs.ExpiresAt), formatTime(cs.CreatedAt), formatTime(cs.UpdatedAt),
		c.tenantID, cs.DecisionID, cs.AgentID)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return missingOr(ctx, c.tx, "decisions", c.tenantID, cs.DecisionID, "decision",
			"a case is only for an escalated decision, of the same agent")
	}
	return nil
}

func (c *caseTx) Get(ctx context.Context, id string) (store.Case, error) {
	if err := store.CheckID(store.PrefixCase, id); err != nil {
		return store.Case{}, err
	}
	cs, err := scanCase(c.tx.QueryRowContext(ctx, `SELECT `+caseColumns+` FROM cases WHERE tenant_id = ? AND id = ?`, c.tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Case{}, fmt.Errorf("%w: case", store.ErrNotFound)
	}
	return cs, err
}

func (c *caseTx) Page(ctx context.Context, afterID string, limit int) ([]store.Case, error) {
	rows, err := c.tx.QueryContext(ctx, `SELECT `+caseColumns+` FROM cases WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?`,
		c.tenantID, afterID, limit)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.Case
	for rows.Next() {
		cs, err := scanCase(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, cs)
	}
	return out, mapErr(rows.Err())
}

const caseColumns = `id, decision_id, agent_id, status, approvals_required, expires_at, created_at, updated_at`

// scanCase reads caseColumns; sql.ErrNoRows as it is.
func scanCase(row scanner) (store.Case, error) {
	var cs store.Case
	var status, expires, created, updated string
	err := row.Scan(&cs.ID, &cs.DecisionID, &cs.AgentID, &status, &cs.ApprovalsRequired, &expires, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Case{}, err
	}
	if err != nil {
		return store.Case{}, mapErr(err)
	}
	cs.Status = store.CaseStatus(status)
	for _, f := range []struct {
		dst *time.Time
		src string
	}{{&cs.ExpiresAt, expires}, {&cs.CreatedAt, created}, {&cs.UpdatedAt, updated}} {
		if *f.dst, err = parseTime(f.src); err != nil {
			return store.Case{}, err
		}
	}
	return cs, nil
}

func (c *caseTx) SetStatus(ctx context.Context, id string, status store.CaseStatus) error {
	if err := store.CheckID(store.PrefixCase, id); err != nil {
		return err
	}
	if err := store.CheckCaseStatus(status); err != nil {
		return err
	}
	if status == store.CasePending {
		return fmt.Errorf("%w: a case only leaves pending", store.ErrInvalid)
	}
	res, err := c.tx.ExecContext(ctx, `UPDATE cases SET status = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND status = 'pending'`,
		string(status), formatTime(store.StoredTime(time.Time{})), c.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return missingOr(ctx, c.tx, "cases", c.tenantID, id, "case", "the case is no longer pending")
	}
	return nil
}
