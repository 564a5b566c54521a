package decision

import (
	"context"
	"encoding/json"
	"errors"
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
	var answered Response
	err := s.cfg.Tenants.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		d, err := tx.Decisions().Get(ctx, decisionID)
		if err != nil {
			return err
		}
		if d.AgentID != agentID {
			return fmt.Errorf("%w: decision", store.ErrNotFound)
		}
		answered, err = readResponse(ctx, tx, d)
		return err
	})
	return answered, err
}

// storedResponse is what a decision's row keeps of its response: all of
// it but an allowed action's receipt, which is stored once, as the record
// of its ledger entry, and put back by readResponse. The JWS was over half
// of the row: a decision row now shares its database page with others
// instead of filling one.
func storedResponse(r Response) ([]byte, error) {
	r.Receipt = ""
	return json.Marshal(r)
}

// readResponse is the response decision d was answered with: the stored
// one, and for an allowed action its receipt (ReceiptTx.ByDecision: the
// record of its ledger entry).
func readResponse(ctx context.Context, tx store.TenantTx, d store.Decision) (Response, error) {
	var r Response
	if err := json.Unmarshal([]byte(d.Response), &r); err != nil {
		return Response{}, fmt.Errorf("decision: stored response of %s: %w", d.ID, err)
	}
	if d.Outcome != store.OutcomeAllow {
		return r, nil
	}
	rc, err := tx.Receipts().ByDecision(ctx, d.ID)
	if errors.Is(err, store.ErrNotFound) {
		// Stored with the decision, all or nothing: a broken store, not
		// an unknown decision.
		return Response{}, fmt.Errorf("decision: internal: allowed decision %s has no stored receipt", d.ID)
	}
	if err != nil {
		return Response{}, err
	}
	r.Receipt = rc.JWS
	return r, nil
}
