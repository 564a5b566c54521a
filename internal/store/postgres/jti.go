package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

// jtiTx is the replay memory of agent client assertions.
type jtiTx struct {
	tx       pgx.Tx
	tenantID string
}

func (t *tenantTx) AssertionJTIs() store.JTITx { return &jtiTx{tx: t.tx, tenantID: t.tenantID} }

// Remember inserts the agent's digest, or takes over its row that has
// expired for an assertion that expires later; a row still live is left
// alone and no row changes — a replay. The same assertion never takes
// over its own row, however late its write comes after the caller checked
// its expiry (a write waiting behind a ledger batch): its exp is no later.
// Each agent has its own jtis: another agent's same jti is no replay. A
// concurrent Remember of the same digest waits on the primary key, then sees the
// winner's live row.
func (j *jtiTx) Remember(ctx context.Context, agentID string, jtiSHA256 []byte, exp time.Time) error {
	if err := store.CheckJTI(agentID, jtiSHA256, exp); err != nil {
		return err
	}
	tag, err := j.tx.Exec(ctx, `INSERT INTO assertion_jtis (tenant_id, jti_sha256, agent_id, expires_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (tenant_id, agent_id, jti_sha256) DO UPDATE SET expires_at = excluded.expires_at
		WHERE assertion_jtis.expires_at <= $5 AND assertion_jtis.expires_at < excluded.expires_at`,
		j.tenantID, jtiSHA256, agentID, store.StoredTime(exp), store.StoredTime(time.Time{}))
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: jti already used", store.ErrConflict)
	}
	return nil
}

// Used reads the row Remember would leave alone: the agent's digest, live
// or expiring no earlier than exp.
func (j *jtiTx) Used(ctx context.Context, agentID string, jtiSHA256 []byte, exp time.Time) (bool, error) {
	if err := store.CheckJTI(agentID, jtiSHA256, exp); err != nil {
		return false, err
	}
	var used bool
	err := j.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM assertion_jtis
		WHERE tenant_id = $1 AND agent_id = $2 AND jti_sha256 = $3 AND (expires_at > $4 OR expires_at >= $5))`,
		j.tenantID, agentID, jtiSHA256, store.StoredTime(time.Time{}), store.StoredTime(exp)).Scan(&used)
	return used, mapErr(err)
}

func (j *jtiTx) PruneJTIs(ctx context.Context, before time.Time) (int, error) {
	if before.IsZero() {
		return 0, fmt.Errorf("%w: prune needs a time", store.ErrInvalid)
	}
	tag, err := j.tx.Exec(ctx, `DELETE FROM assertion_jtis WHERE tenant_id = $1 AND expires_at <= $2`,
		j.tenantID, store.StoredTime(before))
	if err != nil {
		return 0, mapErr(err)
	}
	return int(tag.RowsAffected()), nil
}
