package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

// caseTx stores cases; a case leaves pending once.
type caseTx struct {
	tx       pgx.Tx
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
	// One statement checks the decision is the agent's escalation and
	// writes the case.
	tag, err := c.tx.Exec(ctx, insertCaseSQL, c.tenantID, cs.ID, cs.DecisionID, cs.AgentID, string(cs.Status), cs.ApprovalsRequired, cs.ExpiresAt, cs.CreatedAt, cs.UpdatedAt)
	if err != nil {
		return store.Case{}, mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return store.Case{}, missingOr(ctx, c.tx, "decisions", c.tenantID, cs.DecisionID, "decision",
			"a case is only for an escalated decision, of the same agent")
	}
	return cs, nil
}

// insertCaseSQL writes case $2 if decision $3 is agent $4's escalation.
const insertCaseSQL = `INSERT INTO cases (tenant_id, id, decision_id, agent_id, status, approvals_required, expires_at, created_at, updated_at)
	SELECT d.tenant_id, $2::text, d.id, d.agent_id, $5::text, $6::integer, $7::timestamptz, $8::timestamptz, $9::timestamptz
	FROM decisions d WHERE d.tenant_id = $1 AND d.id = $3 AND d.agent_id = $4 AND d.outcome = 'escalate'`

const caseColumns = `id, decision_id, agent_id, status, approvals_required, expires_at, created_at, updated_at`

// caseByIDSQL reads case $2.
const caseByIDSQL = `SELECT ` + caseColumns + ` FROM cases WHERE tenant_id = $1 AND id = $2`

func (c *caseTx) Get(ctx context.Context, id string) (store.Case, error) {
	if err := store.CheckID(store.PrefixCase, id); err != nil {
		return store.Case{}, err
	}
	cs, err := scanCase(c.tx.QueryRow(ctx, caseByIDSQL, c.tenantID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Case{}, fmt.Errorf("%w: case", store.ErrNotFound)
	}
	return cs, err
}

func (c *caseTx) Page(ctx context.Context, afterID string, limit int) ([]store.Case, error) {
	rows, err := c.tx.Query(ctx, `SELECT `+caseColumns+` FROM cases WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
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

// scanCase reads caseColumns; pgx.ErrNoRows as it is.
func scanCase(row pgx.Row) (store.Case, error) {
	var cs store.Case
	var status string
	err := row.Scan(&cs.ID, &cs.DecisionID, &cs.AgentID, &status, &cs.ApprovalsRequired, &cs.ExpiresAt, &cs.CreatedAt, &cs.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Case{}, err
	}
	if err != nil {
		return store.Case{}, mapErr(err)
	}
	cs.Status = store.CaseStatus(status)
	cs.ExpiresAt, cs.CreatedAt, cs.UpdatedAt = cs.ExpiresAt.UTC(), cs.CreatedAt.UTC(), cs.UpdatedAt.UTC()
	return cs, nil
}

// closeCaseSQL closes case $4 with status $1 if it is pending.
const closeCaseSQL = `UPDATE cases SET status = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 AND status = 'pending'`

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
	// The row lock makes two approvers (or an approver and the expiry)
	// racing on one case close it once: the second sees it closed.
	tag, err := c.tx.Exec(ctx, closeCaseSQL, string(status), store.StoredTime(time.Time{}), c.tenantID, id)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return missingOr(ctx, c.tx, "cases", c.tenantID, id, "case", "the case is no longer pending")
	}
	return nil
}
