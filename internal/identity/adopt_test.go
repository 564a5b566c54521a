package identity_test

import (
	"context"
	"errors"
	"testing"

	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
)

// Agents.Adopt binds only what is an adoption, as listed: an agent
// already bound, keys of another agent or already bound, a key neither
// introduced nor recorded, a key no agent may register, and rows that
// changed since the listing are refused, and nothing is bound or logged.
// (decision.Adopter never asks for these; a caller that did would bind a
// row to an entry that does not record it.)
func TestAdoptRefusesWhatIsNotAnAdoption(t *testing.T) {
	e := newAgentsEnv(t, "sqlite")
	ctx := context.Background()
	bound, err := e.agents.Register(ctx, e.org, agentInput(), newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	const legacy = "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	key := newKey(t)
	key.AgentID, key.Status = legacy, store.KeyActive
	file := e.backend.(*sqlite.Store).TenantFile(e.org.ID)
	sqlitetest.Plant(t, file,
		`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
		SELECT tenant_id, '`+legacy+`', 'old', 'usr_old', 'low', 'active', created_at, updated_at FROM agents`,
		`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
		SELECT tenant_id, '`+legacy+`', '`+key.KID+`', '`+key.PublicJWK+`', 'active', created_at FROM agent_keys`)
	old := store.Agent{ID: legacy, Name: "old", Sponsor: "usr_old", RiskTier: store.RiskLow, Status: store.AgentActive}
	registered := uint64(0)
	boundKeys := e.storedKeys(t, bound.ID)
	otherKey := newKey(t)
	otherKey.AgentID, otherKey.Status = legacy, store.KeyActive
	misnamed := key
	misnamed.KID = "not-its-kid"
	for _, tc := range []struct {
		name string
		ad   identity.Adoption
		want error
	}{
		{"an agent that names its entry", identity.Adoption{Agent: &bound}, store.ErrConflict},
		{"an agent no store holds", identity.Adoption{Agent: &store.Agent{ID: legacy, Name: "", Sponsor: "x", RiskTier: store.RiskLow, Status: store.AgentActive}}, store.ErrInvalid},
		{"no keys and no agent", identity.Adoption{}, store.ErrInvalid},
		{"keys alone, to a registration", identity.Adoption{Keys: []store.AgentKey{key}, Registered: &registered,
			Introduced: map[string]uint64{key.KID: 0}}, store.ErrInvalid},
		{"a key of another agent", identity.Adoption{Agent: &old, Keys: []store.AgentKey{boundKeys[0]}}, store.ErrInvalid},
		{"keys alone, none introduced", identity.Adoption{Keys: []store.AgentKey{key}}, store.ErrInvalid},
		{"a key under another kid than its JWK's", identity.Adoption{Agent: &old, Keys: []store.AgentKey{misnamed}}, identity.ErrInvalidAgentKey},
		{"the agent listed without its key", identity.Adoption{Agent: &old}, store.ErrConflict},
		{"the agent listed with another key", identity.Adoption{Agent: &old, Keys: []store.AgentKey{otherKey}}, store.ErrNotFound},
		{"the agent listed otherwise", identity.Adoption{Agent: &store.Agent{ID: legacy, Name: "old", Sponsor: "usr_old", RiskTier: store.RiskHigh,
			Status: store.AgentActive}, Keys: []store.AgentKey{key}}, store.ErrConflict},
		{"keys alone of an agent that names no entry", identity.Adoption{Keys: []store.AgentKey{key},
			Introduced: map[string]uint64{key.KID: 0}}, store.ErrConflict},
	} {
		before := e.size(t)
		if _, err := e.agents.Adopt(ctx, e.org, tc.ad); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if after := e.size(t); after != before {
			t.Errorf("%s: logged %d entries", tc.name, after-before)
		}
	}
	var ag store.Agent
	err = e.backend.InTenantReadTx(ctx, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
		ag, err = tx.Agents().Get(ctx, legacy)
		return err
	})
	if err != nil || ag.LedgerIndex != nil || e.storedKeys(t, legacy)[0].LedgerIndex != nil {
		t.Fatalf("after the refusals: %+v, %v; want nothing bound", ag, err)
	}
	// As listed, it is adopted.
	if _, err := e.agents.Adopt(ctx, e.org, identity.Adoption{Agent: &old, Keys: []store.AgentKey{key}}); err != nil {
		t.Fatalf("as listed: %v", err)
	}
}

// size is the organization's log size.
func (e *agentsEnv) size(t *testing.T) uint64 {
	t.Helper()
	cp, err := e.ledger.LatestCheckpoint(context.Background(), e.ledger.TenantLog(e.org.ID, e.org.Slug))
	if err != nil {
		t.Fatal(err)
	}
	return cp.Size
}
