package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DecisionInputsQuery names what the decision service reads about a
// request before it evaluates it (TenantStore.ReadDecisionInputs).
type DecisionInputsQuery struct {
	AgentID string
	// IdempotencyKeySHA256, when set, asks for the agent's decision made
	// under that key.
	IdempotencyKeySHA256 []byte
	// CounterpartyID, when set, asks for that counterparty and its
	// payments count.
	CounterpartyID string
	// Now is the time the agent's stats are counted to.
	Now time.Time
}

// Check refuses malformed ids and a key digest of the wrong size.
func (q DecisionInputsQuery) Check() error {
	if err := CheckID(PrefixAgent, q.AgentID); err != nil {
		return err
	}
	if q.IdempotencyKeySHA256 != nil && len(q.IdempotencyKeySHA256) != 32 {
		return fmt.Errorf("%w: an idempotency key digest is 32 bytes", ErrInvalid)
	}
	if q.CounterpartyID != "" {
		return CheckID(PrefixCounterparty, q.CounterpartyID)
	}
	return nil
}

// DecisionInputs is what ReadDecisionInputs found. A nil pointer is a row
// the organization does not have (or was not asked for).
type DecisionInputs struct {
	// Previous is the agent's decision under the query's idempotency key.
	Previous *Decision
	Agent    *Agent
	// Stats are the agent's (zero for an unknown agent).
	Stats AgentStats
	// Counterparty comes without its sealed bank details, which no
	// decision reads.
	Counterparty *Counterparty
	Payments     int
}

// ReadDecisionInputsTx reads q in tx, one statement at a time: the
// embedded store's ReadDecisionInputs, and the reference for the others.
func ReadDecisionInputsTx(ctx context.Context, tx TenantTx, q DecisionInputsQuery) (DecisionInputs, error) {
	var in DecisionInputs
	if err := q.Check(); err != nil {
		return in, err
	}
	var err error
	if q.IdempotencyKeySHA256 != nil {
		if in.Previous, err = Optional(tx.Decisions().ByIdempotencyKey(ctx, q.AgentID, q.IdempotencyKeySHA256)); err != nil {
			return in, err
		}
	}
	if in.Agent, err = Optional(tx.Agents().Get(ctx, q.AgentID)); err != nil {
		return in, err
	}
	if in.Stats, err = tx.Decisions().AgentStats(ctx, q.AgentID, q.Now); err != nil {
		return in, err
	}
	if q.CounterpartyID == "" {
		return in, nil
	}
	if in.Counterparty, err = Optional(tx.Counterparties().Get(ctx, q.CounterpartyID)); err != nil {
		return in, err
	}
	if in.Counterparty != nil {
		in.Counterparty.BankDetailsSealed = nil
	}
	in.Payments, err = tx.Counterparties().PaymentsCount(ctx, q.CounterpartyID)
	return in, err
}

// Optional turns a lookup's ErrNotFound into a nil row: for reads where a
// missing row is an answer, not a failure.
func Optional[T any](v T, err error) (*T, error) {
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &v, nil
}
