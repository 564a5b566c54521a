package store

import (
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
	// BeforeRead, when set, is called once, with the connection in hand,
	// just before the statement whose snapshot the inputs come from: what
	// the caller learned before the call, the read does not predate.
	BeforeRead func()
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
	// PolicySeq is the seq of the organization's newest policy activation
	// (0: none): a process whose engine holds an older one must load the
	// active policy again before it evaluates (another process, or another
	// replica, activated or rolled back).
	PolicySeq uint64
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
