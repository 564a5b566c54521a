package decision

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/agentsigna/agentsigna/internal/store"
)

// GetDecision returns one of the agent's own decisions, as it was answered
// (GET /v1/decisions/{id}). Another agent's decision, even of the same
// organization, a malformed id and an unknown one are all store.ErrNotFound:
// an agent cannot tell them apart.
func (s *Service) GetDecision(ctx context.Context, org Organization, agentID, decisionID string) (Response, error) {
	if store.CheckID(store.PrefixDecision, decisionID) != nil {
		return Response{}, fmt.Errorf("%w: decision", store.ErrNotFound)
	}
	var d store.Decision
	err := s.cfg.Tenants.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		d, err = tx.Decisions().Get(ctx, decisionID)
		return err
	})
	if err != nil {
		return Response{}, err
	}
	if d.AgentID != agentID {
		return Response{}, fmt.Errorf("%w: decision", store.ErrNotFound)
	}
	return decodeResponse(d)
}

// decodeResponse reads the response stored with a decision.
func decodeResponse(d store.Decision) (Response, error) {
	var r Response
	if err := json.Unmarshal([]byte(d.Response), &r); err != nil {
		return Response{}, fmt.Errorf("decision: stored response of %s: %w", d.ID, err)
	}
	return r, nil
}
