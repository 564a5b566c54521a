package identity_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/teststore"
	"github.com/agentsigna/agentsigna/ledger"
)

// storedKeys is the agent's keys as the store holds them.
func (e *agentsEnv) storedKeys(t *testing.T, agentID string) []store.AgentKey {
	t.Helper()
	var keys []store.AgentKey
	err := e.backend.InTenantReadTx(context.Background(), e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		keys, err = tx.Agents().Keys(ctx, agentID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// A key registered or rotated to names the entry that records it, and
// KeyLog trusts it. A key row written behind the service's back — by the
// organization's database role, which may insert into agent_keys — is
// not trusted, whatever entry it names: none, one past the log, another
// agent's, another key's, one of another kind.
func TestKeyLog(t *testing.T) {
	for _, kind := range teststore.Kinds {
		t.Run(kind, func(t *testing.T) {
			e := newAgentsEnv(t, kind)
			ctx := context.Background()
			kl, err := identity.NewKeyLog(e.ledger)
			if err != nil {
				t.Fatal(err)
			}
			payer, err := e.agents.Register(ctx, e.org, agentInput(), newKey(t))
			if err != nil {
				t.Fatal(err)
			}
			other, err := e.agents.Register(ctx, e.org, agentInput(), newKey(t))
			if err != nil {
				t.Fatal(err)
			}
			rotated := newKey(t)
			rotated.AgentID = payer.ID
			if _, err := e.agents.RotateKey(ctx, e.org, rotated); err != nil {
				t.Fatal(err)
			}
			if err := e.agents.Suspend(ctx, e.org, other.ID); err != nil {
				t.Fatal(err)
			}
			keys := e.storedKeys(t, payer.ID)
			if len(keys) != 2 || keys[0].LedgerIndex == nil || *keys[0].LedgerIndex != 0 || keys[1].LedgerIndex == nil || *keys[1].LedgerIndex != 2 {
				t.Fatalf("the payer's keys name entries %+v, want 0 and 2", keys)
			}
			// A context already cancelled reads nothing: what a check gives
			// under it, this KeyLog remembered.
			remembered, cancel := context.WithCancel(ctx)
			cancel()
			for _, k := range keys {
				if err := kl.Check(ctx, e.org, k); err != nil {
					t.Errorf("key %s of entry %d: %v", k.KID, *k.LedgerIndex, err)
				}
				if err := kl.Check(remembered, e.org, k); err != nil {
					t.Errorf("key %s checked again: %v", k.KID, err)
				}
			}
			// The registration as stored, with its JSON spaced otherwise:
			// the same key.
			spaced := keys[0]
			spaced.PublicJWK = strings.ReplaceAll(strings.ReplaceAll(spaced.PublicJWK, ",", ", "), ":", ": ")
			if err := kl.Check(ctx, e.org, spaced); err != nil {
				t.Errorf("the registered key spaced otherwise: %v", err)
			}

			planted := newKey(t)
			planted.AgentID, planted.Status = payer.ID, store.KeyActive
			at := func(k store.AgentKey, index uint64) store.AgentKey { k.LedgerIndex = &index; return k }
			otherKeys := e.storedKeys(t, other.ID)
			for _, tc := range []struct {
				name string
				key  store.AgentKey
			}{
				{"a new key naming the agent's registration", at(planted, 0)},
				{"a new key naming the agent's rotation", at(planted, 2)},
				{"the registered kid with another public key", func() store.AgentKey { k := keys[0]; k.PublicJWK = planted.PublicJWK; return k }()},
				{"the registered key under another kid", func() store.AgentKey { k := at(keys[0], 0); k.KID = planted.KID; return k }()},
				{"a key naming an entry past the log", at(planted, 4)},
				{"a key naming an entry far past the log", at(planted, 1<<62)},
				{"the other agent's key copied to the payer", func() store.AgentKey { k := otherKeys[0]; k.AgentID = payer.ID; return k }()},
				{"a key naming a suspension", at(planted, 3)},
				{"a key naming no entry beside keys that do", store.AgentKey{AgentID: payer.ID, KID: planted.KID, PublicJWK: planted.PublicJWK, Status: store.KeyActive}},
			} {
				if err := kl.Check(ctx, e.org, tc.key); !errors.Is(err, identity.ErrKeyNotLogged) {
					t.Errorf("%s: %v, want ErrKeyNotLogged", tc.name, err)
				}
				// Refused for good: whoever names the agent makes no more
				// proofs.
				if err := kl.Check(remembered, e.org, tc.key); !errors.Is(err, identity.ErrKeyNotLogged) {
					t.Errorf("%s checked again: %v, want ErrKeyNotLogged", tc.name, err)
				}
			}
			// A key naming no entry — stored before keys named their
			// entry, or planted since: nothing tells them apart — verifies
			// nothing, whatever the agent's other keys name.
			for _, k := range []store.AgentKey{
				{AgentID: payer.ID, KID: "old-1", PublicJWK: planted.PublicJWK, Status: store.KeyActive},
				{AgentID: other.ID, KID: otherKeys[0].KID, PublicJWK: otherKeys[0].PublicJWK, Status: store.KeyActive},
			} {
				if err := kl.Check(ctx, e.org, k); !errors.Is(err, identity.ErrKeyNotLogged) {
					t.Errorf("key %s naming no entry: %v, want ErrKeyNotLogged", k.KID, err)
				}
			}

			// Adopted (ledger adopt): trusted as the agent.adopted entry
			// records it — that agent, that key, active.
			adopted, retired := newKey(t), newKey(t)
			record, err := json.Marshal(identity.AgentRecord{Event: "agent_adopted", AgentID: "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", Name: "old-bot",
				Sponsor: "usr_old", RiskTier: store.RiskLow, Status: store.AgentActive, Keys: []identity.AdoptedKey{
					{KeyID: adopted.KID, PublicJWK: json.RawMessage(adopted.PublicJWK), Status: store.KeyActive},
					{KeyID: retired.KID, PublicJWK: json.RawMessage(retired.PublicJWK), Status: store.KeyRetired},
				}})
			if err != nil {
				t.Fatal(err)
			}
			appended, err := e.ledger.Append(ctx, e.ledger.TenantLog(e.org.ID, e.org.Slug),
				ledger.Entry{Kind: identity.KindAgentAdopted, Subject: "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", Record: record})
			if err != nil {
				t.Fatal(err)
			}
			old := func(k store.AgentKey, agentID string) store.AgentKey {
				k.AgentID, k.Status, k.LedgerIndex = agentID, store.KeyActive, &appended.Index
				return k
			}
			if err := kl.Check(ctx, e.org, old(adopted, "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa")); err != nil {
				t.Errorf("an adopted key: %v", err)
			}
			for _, tc := range []struct {
				name string
				key  store.AgentKey
			}{
				{"a key the adoption found retired, active again", old(retired, "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa")},
				{"the adopted key given to another agent", old(adopted, payer.ID)},
				{"a key the adoption does not record", old(planted, "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa")},
				{"the adopted kid with another public key", func() store.AgentKey {
					k := old(adopted, "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa")
					k.PublicJWK = planted.PublicJWK
					return k
				}()},
			} {
				if err := kl.Check(ctx, e.org, tc.key); !errors.Is(err, identity.ErrKeyNotLogged) {
					t.Errorf("%s: %v, want ErrKeyNotLogged", tc.name, err)
				}
			}
		})
	}
}

// A store that cannot be read is an outage, not a key to refuse.
func TestKeyLogOutage(t *testing.T) {
	e := newAgentsEnv(t, "sqlite")
	ctx := context.Background()
	kl, _ := identity.NewKeyLog(e.ledger)
	ag, err := e.agents.Register(ctx, e.org, agentInput(), newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	keys := e.storedKeys(t, ag.ID)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := kl.Check(cancelled, e.org, keys[0]); err == nil || errors.Is(err, identity.ErrKeyNotLogged) || errors.Is(err, ledger.ErrNotProven) {
		t.Fatalf("a cancelled read: %v, want the outage", err)
	}
}
