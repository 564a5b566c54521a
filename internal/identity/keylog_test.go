package identity_test

import (
	"context"
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
				if err := kl.Check(ctx, e.org, k, keys); err != nil {
					t.Errorf("key %s of entry %d: %v", k.KID, *k.LedgerIndex, err)
				}
				if err := kl.Check(remembered, e.org, k, keys); err != nil {
					t.Errorf("key %s checked again: %v", k.KID, err)
				}
			}
			// The registration as stored, with its JSON spaced otherwise:
			// the same key.
			spaced := keys[0]
			spaced.PublicJWK = strings.ReplaceAll(strings.ReplaceAll(spaced.PublicJWK, ",", ", "), ":", ": ")
			if err := kl.Check(ctx, e.org, spaced, keys); err != nil {
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
				if err := kl.Check(ctx, e.org, tc.key, append(keys, tc.key)); !errors.Is(err, identity.ErrKeyNotLogged) {
					t.Errorf("%s: %v, want ErrKeyNotLogged", tc.name, err)
				}
				// Refused for good: whoever names the agent makes no more
				// proofs.
				if err := kl.Check(remembered, e.org, tc.key, append(keys, tc.key)); !errors.Is(err, identity.ErrKeyNotLogged) {
					t.Errorf("%s checked again: %v, want ErrKeyNotLogged", tc.name, err)
				}
			}
			// An agent whose keys name no entry (stored before they did)
			// keeps them.
			legacy := []store.AgentKey{{AgentID: payer.ID, KID: "old-1", PublicJWK: planted.PublicJWK, Status: store.KeyRetired},
				{AgentID: payer.ID, KID: "old-2", PublicJWK: planted.PublicJWK, Status: store.KeyActive}}
			if err := kl.Check(ctx, e.org, legacy[1], legacy); err != nil {
				t.Errorf("a key stored before keys named their entry: %v", err)
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
	if err := kl.Check(cancelled, e.org, keys[0], keys); err == nil || errors.Is(err, identity.ErrKeyNotLogged) || errors.Is(err, ledger.ErrNotProven) {
		t.Fatalf("a cancelled read: %v, want the outage", err)
	}
}
