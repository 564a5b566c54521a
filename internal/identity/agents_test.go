package identity_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/internal/store/teststore"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// agentsEnv is an organization acme in a fresh store, with its ledger.
type agentsEnv struct {
	backend store.Backend
	ledger  *ledger.Ledger
	org     store.TenantRef
	agents  *identity.Agents
}

func newAgentsEnv(t *testing.T, kind string) *agentsEnv {
	t.Helper()
	b := teststore.Open(t, kind)
	master, err := secrets.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := signing.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.New(ledger.Config{Tenants: b, Platform: b, Keys: kr, Origin: "agentsigna.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	tn := storetest.CreateTenant(t, b, "acme")
	agents, err := identity.NewAgents(l, b)
	if err != nil {
		t.Fatal(err)
	}
	return &agentsEnv{backend: b, ledger: l, org: store.TenantRef{ID: tn.ID, Slug: tn.Slug}, agents: agents}
}

// newKey is a fresh agent key as it is registered.
func newKey(t *testing.T) store.AgentKey {
	t.Helper()
	kid, public, _, err := identity.GenerateAgentKey()
	if err != nil {
		t.Fatal(err)
	}
	return store.AgentKey{KID: kid, PublicJWK: public}
}

// entries returns the kinds and records of the organization's log; each
// entry's subject must be its record's agent.
func (e *agentsEnv) entries(t *testing.T) (kinds []string, records []map[string]any) {
	t.Helper()
	ctx := context.Background()
	lg := e.ledger.TenantLog(e.org.ID, e.org.Slug)
	cp, err := e.ledger.LatestCheckpoint(ctx, lg)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	for i := range cp.Size {
		en, err := e.ledger.Entry(ctx, lg, i)
		if err != nil {
			t.Fatal(err)
		}
		var rec map[string]any
		if err := json.Unmarshal(en.Record, &rec); err != nil {
			t.Fatal(err)
		}
		leaf, err := verify.ParseEntry(en.Entry)
		if err != nil {
			t.Fatal(err)
		}
		if leaf.Subject != rec["agent_id"] {
			t.Errorf("entry %d: subject %q, its record's agent %v", i, leaf.Subject, rec["agent_id"])
		}
		kinds, records = append(kinds, leaf.Kind), append(records, rec)
	}
	return kinds, records
}

// keys returns the agent's keys, by kid, with their status.
func (e *agentsEnv) keys(t *testing.T, agentID string) map[string]store.KeyStatus {
	t.Helper()
	out := map[string]store.KeyStatus{}
	err := e.backend.InTenantReadTx(context.Background(), e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
		keys, err := tx.Agents().Keys(ctx, agentID)
		for _, k := range keys {
			out[k.KID] = k.Status
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func agentInput() store.Agent {
	return store.Agent{Name: "invoice-payer", Sponsor: "alice", RiskTier: store.RiskLow, Status: store.AgentActive}
}

// Each change is stored with the ledger entry that records it; a change
// refused, or one that would change nothing, stores and logs nothing.
func TestAgentChangesAreLogged(t *testing.T) {
	for _, kind := range teststore.Kinds {
		t.Run(kind, func(t *testing.T) {
			e := newAgentsEnv(t, kind)
			ctx := context.Background()
			k1 := newKey(t)
			ag, err := e.agents.Register(ctx, e.org, agentInput(), k1)
			if err != nil {
				t.Fatal(err)
			}
			if store.CheckID(store.PrefixAgent, ag.ID) != nil || ag.Status != store.AgentActive {
				t.Fatalf("registered %+v", ag)
			}
			k2 := newKey(t)
			k2.AgentID = ag.ID
			retired, err := e.agents.RotateKey(ctx, e.org, k2)
			if err != nil || !slices.Equal(retired, []string{k1.KID}) {
				t.Fatalf("rotate: retired %v, %v", retired, err)
			}
			if got := e.keys(t, ag.ID); got[k1.KID] != store.KeyRetired || got[k2.KID] != store.KeyActive || len(got) != 2 {
				t.Fatalf("keys after the rotation: %v", got)
			}
			if err := e.agents.Suspend(ctx, e.org, ag.ID); err != nil {
				t.Fatal(err)
			}
			if err := e.agents.Suspend(ctx, e.org, ag.ID); !errors.Is(err, identity.ErrAgentAlreadySuspended) {
				t.Fatalf("suspended twice: %v", err)
			}
			if err := e.agents.Suspend(ctx, e.org, store.NewID(store.PrefixAgent)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("suspend an unknown agent: %v", err)
			}

			kinds, recs := e.entries(t)
			want := []string{identity.KindAgentRegistered, identity.KindAgentKeyRotated, identity.KindAgentSuspended}
			if !slices.Equal(kinds, want) {
				t.Fatalf("logged %v, want %v", kinds, want)
			}
			if recs[0]["agent_id"] != ag.ID || recs[0]["key_id"] != k1.KID || recs[0]["public_jwk"] == nil || recs[0]["sponsor"] != "alice" {
				t.Errorf("registration record: %v", recs[0])
			}
			if recs[1]["key_id"] != k2.KID || !slices.Equal(toStrings(recs[1]["retired_key_ids"]), []string{k1.KID}) {
				t.Errorf("rotation record: %v", recs[1])
			}
			if recs[2]["agent_id"] != ag.ID {
				t.Errorf("suspension record: %v", recs[2])
			}
		})
	}
}

// A key the registration rules refuse, or one registered under another
// kid, is neither registered nor rotated to: nothing stored, nothing
// logged. Nor is an agent registered other than active.
func TestRefusedRegistrationsAndRotations(t *testing.T) {
	e := newAgentsEnv(t, "sqlite")
	ctx := context.Background()
	k := newKey(t)
	var withPrivate map[string]any
	if err := json.Unmarshal([]byte(k.PublicJWK), &withPrivate); err != nil {
		t.Fatal(err)
	}
	withPrivate["d"] = "AAAA"
	priv, _ := json.Marshal(withPrivate)
	refused := map[string]store.AgentKey{
		"private member": {KID: k.KID, PublicJWK: string(priv)},
		"another kid":    {KID: "not-" + k.KID, PublicJWK: k.PublicJWK},
		"not a JWK":      {KID: "k", PublicJWK: `{"kty":"OKP","crv":"Ed25519","x":"!!","kid":"k"}`},
		"empty":          {KID: k.KID},
	}
	for name, key := range refused {
		if _, err := e.agents.Register(ctx, e.org, agentInput(), key); !errors.Is(err, identity.ErrInvalidAgentKey) {
			t.Errorf("register, %s: %v, want ErrInvalidAgentKey", name, err)
		}
	}
	for _, status := range []store.AgentStatus{store.AgentSuspended, store.AgentRevoked} {
		ag := agentInput()
		ag.Status = status
		if _, err := e.agents.Register(ctx, e.org, ag, newKey(t)); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("registered %s: %v, want ErrInvalid", status, err)
		}
	}
	var count int
	err := e.backend.InTenantReadTx(ctx, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
		list, err := tx.Agents().List(ctx)
		count = len(list)
		return err
	})
	if err != nil || count != 0 {
		t.Fatalf("refused registrations stored %d agents, %v", count, err)
	}
	if kinds, _ := e.entries(t); len(kinds) != 0 {
		t.Fatalf("refused registrations logged %v", kinds)
	}

	first := newKey(t)
	ag, err := e.agents.Register(ctx, e.org, agentInput(), first)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range refused {
		key.AgentID = ag.ID
		if _, err := e.agents.RotateKey(ctx, e.org, key); !errors.Is(err, identity.ErrInvalidAgentKey) {
			t.Errorf("rotate, %s: %v, want ErrInvalidAgentKey", name, err)
		}
	}
	if got := e.keys(t, ag.ID); len(got) != 1 || got[first.KID] != store.KeyActive {
		t.Fatalf("keys after refused rotations: %v", got)
	}
	if kinds, _ := e.entries(t); !slices.Equal(kinds, []string{identity.KindAgentRegistered}) {
		t.Fatalf("refused rotations logged %v", kinds)
	}
}

// A rotation retires exactly the keys its ledger entry names, read before
// its batch: keys added or retired by another process since refuse it,
// and it changes nothing and logs nothing.
func TestRotateKeyRefusesKeysChangedMeanwhile(t *testing.T) {
	for _, kind := range teststore.Kinds {
		t.Run(kind, func(t *testing.T) {
			e := newAgentsEnv(t, kind)
			ctx := context.Background()
			other, err := identity.NewAgents(e.ledger, e.backend)
			if err != nil {
				t.Fatal(err)
			}
			k1 := newKey(t)
			ag, err := e.agents.Register(ctx, e.org, agentInput(), k1)
			if err != nil {
				t.Fatal(err)
			}

			// Read [k1]; another process rotates to k2 before the batch.
			k2, k3 := newKey(t), newKey(t)
			k2.AgentID, k3.AgentID = ag.ID, ag.ID
			identity.SetBeforeChange(e.agents, func() {
				if _, err := other.RotateKey(ctx, e.org, k2); err != nil {
					t.Error(err)
				}
			})
			if _, err := e.agents.RotateKey(ctx, e.org, k3); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("rotation over keys rotated meanwhile: %v, want ErrConflict", err)
			}
			if got := e.keys(t, ag.ID); len(got) != 2 || got[k1.KID] != store.KeyRetired || got[k2.KID] != store.KeyActive {
				t.Fatalf("keys after the refused rotation: %v", got)
			}

			// Read no keys (no such agent yet); the agent is registered
			// with a key before the batch.
			late := agentInput()
			late.ID = store.NewID(store.PrefixAgent)
			k4, k5 := newKey(t), newKey(t)
			k5.AgentID = late.ID
			identity.SetBeforeChange(e.agents, func() {
				if _, err := other.Register(ctx, e.org, late, k4); err != nil {
					t.Error(err)
				}
			})
			if _, err := e.agents.RotateKey(ctx, e.org, k5); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("rotation of an agent whose keys were read before it had any: %v, want ErrConflict", err)
			}
			if got := e.keys(t, late.ID); len(got) != 1 || got[k4.KID] != store.KeyActive {
				t.Fatalf("keys after the refused rotation: %v", got)
			}

			want := []string{identity.KindAgentRegistered, identity.KindAgentKeyRotated, identity.KindAgentRegistered}
			if kinds, _ := e.entries(t); !slices.Equal(kinds, want) {
				t.Fatalf("logged %v, want %v", kinds, want)
			}
		})
	}
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
