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
	found := func(err error) (bool, error) {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	if q.IdempotencyKeySHA256 != nil {
		d, err := tx.Decisions().ByIdempotencyKey(ctx, q.AgentID, q.IdempotencyKeySHA256)
		if ok, err := found(err); err != nil {
			return in, err
		} else if ok {
			in.Previous = &d
		}
	}
	a, err := tx.Agents().Get(ctx, q.AgentID)
	if ok, err := found(err); err != nil {
		return in, err
	} else if ok {
		in.Agent = &a
	}
	if in.Stats, err = tx.Decisions().AgentStats(ctx, q.AgentID, q.Now); err != nil {
		return in, err
	}
	if q.CounterpartyID == "" {
		return in, nil
	}
	cp, err := tx.Counterparties().Get(ctx, q.CounterpartyID)
	if ok, err := found(err); err != nil {
		return in, err
	} else if ok {
		cp.BankDetailsSealed = nil
		in.Counterparty = &cp
	}
	in.Payments, err = tx.Counterparties().PaymentsCount(ctx, q.CounterpartyID)
	return in, err
}
