package decision

import (
	"context"

	"github.com/agentsigna/agentsigna/internal/store"
)

// OpenWaits is how many WaitCase calls of the agent hold a place: a test
// that must fill an agent's places waits for them instead of sleeping.
func (s *Service) OpenWaits(orgID, agentID string) int {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	return s.waits[waitKey(orgID, agentID)]
}

// SetBeforeChange runs fn between Rotate's read of the keys and its batch.
func (r *ReceiptKeys) SetBeforeChange(fn func()) { r.beforeChange = fn }

// TierFor and StatusFor are what the policy would see of an agent's tier
// and a counterparty's status, through the service's proofs and caches.
func (s *Service) TierFor(ctx context.Context, org Organization, ag store.Agent) (store.RiskTier, error) {
	return s.agents.tier(ctx, org, ag)
}

func (s *Service) StatusFor(ctx context.Context, org Organization, cp store.Counterparty) (store.CounterpartyStatus, error) {
	return s.counterparties.status(ctx, org, cp)
}
