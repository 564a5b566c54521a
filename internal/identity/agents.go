package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// Ledger entry kinds of agent changes. Each entry is appended by the batch
// whose transaction makes the change, so that the log holds every change
// made: the public keys an agent signs with, who sponsors it, when it
// stopped being trusted.
const (
	KindAgentRegistered = "agent.registered"
	KindAgentKeyRotated = "agent.key_rotated"
	KindAgentSuspended  = "agent.suspended"
)

// AgentRecord is the record of an agent entry. Each kind carries its own
// members: agent.registered the agent and its first key, agent.key_rotated
// the key introduced and the keys retired (an empty list when none),
// agent.suspended the agent only.
type AgentRecord struct {
	Event         string          `json:"event"` // agent_registered, agent_key_rotated or agent_suspended
	AgentID       string          `json:"agent_id"`
	Name          string          `json:"name,omitzero"`
	Sponsor       string          `json:"sponsor,omitzero"`
	RiskTier      store.RiskTier  `json:"risk_tier,omitzero"`
	KeyID         string          `json:"key_id,omitzero"`
	PublicJWK     json.RawMessage `json:"public_jwk,omitzero"`
	RetiredKeyIDs []string        `json:"retired_key_ids,omitzero"`
}

// ErrAgentAlreadySuspended: a suspension that would change nothing. It is
// not logged.
var ErrAgentAlreadySuspended = errors.New("identity: the agent is already suspended")

// Agents registers an organization's agents and changes them. Each change
// and the ledger entry that records it commit in one transaction or not at
// all (ledger.AppendAllAndChange); a change that fails, or finds nothing to
// change, logs nothing. Keys are checked as ParseAgentJWK checks them
// before anything is stored.
type Agents struct {
	ledger  *ledger.Ledger
	tenants store.TenantStore
	// beforeChange, when set, runs between RotateKey's read of the keys
	// and its batch (tests).
	beforeChange func()
}

// NewAgents returns the agent changes of tenants' organizations, logged in
// l (whose organization logs are kept in tenants).
func NewAgents(l *ledger.Ledger, tenants store.TenantStore) (*Agents, error) {
	if l == nil || tenants == nil {
		return nil, errors.New("identity: NewAgents needs a ledger and a tenant store")
	}
	return &Agents{ledger: l, tenants: tenants}, nil
}

// Register stores ag, active, with its first key, and logs both. ag.ID is
// generated when empty; the stored agent is returned. An agent is
// registered active (an empty Status means so): its suspension or
// revocation is a change of its own, logged as such.
func (a *Agents) Register(ctx context.Context, org store.TenantRef, ag store.Agent, key store.AgentKey) (store.Agent, error) {
	if ag.ID == "" {
		ag.ID = store.NewID(store.PrefixAgent)
	}
	switch ag.Status {
	case "":
		ag.Status = store.AgentActive
	case store.AgentActive:
	default:
		return store.Agent{}, fmt.Errorf("%w: an agent is registered active; suspend it afterwards", store.ErrInvalid)
	}
	key.AgentID = ag.ID
	if err := checkRegistrable(key); err != nil {
		return store.Agent{}, err
	}
	record := AgentRecord{Event: "agent_registered", AgentID: ag.ID, Name: ag.Name, Sponsor: ag.Sponsor,
		RiskTier: ag.RiskTier, KeyID: key.KID, PublicJWK: json.RawMessage(key.PublicJWK)}
	var stored store.Agent
	err := a.change(ctx, org, KindAgentRegistered, ag.ID, record, func(ctx context.Context, tx store.TenantTx, index uint64) error {
		var err error
		ag.LedgerIndex = &index
		if stored, err = tx.Agents().Create(ctx, ag); err != nil {
			return err
		}
		key.LedgerIndex = &index
		_, err = tx.Agents().AddKey(ctx, key)
		return err
	})
	if err != nil {
		return store.Agent{}, err
	}
	return stored, nil
}

// Suspend suspends an agent and logs it: its requests are denied and its
// reads refused from then on. ErrAgentAlreadySuspended when it already
// is; the store refuses a revoked agent.
func (a *Agents) Suspend(ctx context.Context, org store.TenantRef, agentID string) error {
	record := AgentRecord{Event: "agent_suspended", AgentID: agentID}
	return a.change(ctx, org, KindAgentSuspended, agentID, record, func(ctx context.Context, tx store.TenantTx, _ uint64) error {
		ag, err := tx.Agents().Get(ctx, agentID)
		if err != nil {
			return err
		}
		if ag.Status == store.AgentSuspended {
			return ErrAgentAlreadySuspended
		}
		return tx.Agents().SetStatus(ctx, agentID, store.AgentSuspended)
	})
}

// RotateKey adds key (key.AgentID's new key), retires the agent's other
// active keys, and logs it with the ids of the keys it retired, which it
// returns. The entry names the keys read before the batch; should they
// have changed meanwhile, the rotation is refused (store.ErrConflict) and
// changes nothing.
func (a *Agents) RotateKey(ctx context.Context, org store.TenantRef, key store.AgentKey) ([]string, error) {
	if err := checkRegistrable(key); err != nil {
		return nil, err
	}
	retiredAt := time.Now()
	var retiring []string
	err := a.tenants.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		keys, err := tx.Agents().Keys(ctx, key.AgentID)
		for _, k := range keys {
			if k.Status == store.KeyActive {
				retiring = append(retiring, k.KID)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if a.beforeChange != nil {
		a.beforeChange()
	}
	record := AgentRecord{Event: "agent_key_rotated", AgentID: key.AgentID, KeyID: key.KID,
		PublicJWK: json.RawMessage(key.PublicJWK), RetiredKeyIDs: append([]string{}, retiring...)}
	if err := a.change(ctx, org, KindAgentKeyRotated, key.AgentID, record, rotateKey(key, retiring, retiredAt)); err != nil {
		return nil, err
	}
	return retiring, nil
}

// rotateKey is the change of a key rotation: key is added, naming the
// rotation's entry, and the agent's other active keys retired at
// retiredAt. Those must be exactly retiring, the keys the ledger entry
// names: a key added or retired since refuses the change, so that the
// entry never says other than what was done.
func rotateKey(key store.AgentKey, retiring []string, retiredAt time.Time) ledger.Change {
	return func(ctx context.Context, tx store.TenantTx, index uint64) error {
		key.LedgerIndex = &index
		agents := tx.Agents()
		if _, err := agents.AddKey(ctx, key); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("%w: the agent is revoked or already has key %s", err, key.KID)
			}
			return err
		}
		keys, err := agents.Keys(ctx, key.AgentID)
		if err != nil {
			return err
		}
		var active []string
		for _, k := range keys {
			if k.Status == store.KeyActive && k.KID != key.KID {
				active = append(active, k.KID)
			}
		}
		if !slices.Equal(active, retiring) {
			return fmt.Errorf("%w: the agent's keys changed meanwhile; run it again", store.ErrConflict)
		}
		for _, kid := range active {
			if err := agents.RetireKey(ctx, key.AgentID, kid, retiredAt); err != nil {
				return err
			}
		}
		return nil
	}
}

// change makes an agent change and appends its entry, in the ledger
// batch's transaction with the log locked.
func (a *Agents) change(ctx context.Context, org store.TenantRef, kind, agentID string, record AgentRecord, change ledger.Change) error {
	rec, err := json.Marshal(record)
	if err != nil {
		return err
	}
	_, err = a.ledger.AppendAllAndChange(ctx, a.ledger.TenantLog(org.ID, org.Slug), []ledger.Entry{{Kind: kind, Subject: agentID, Record: rec}}, change)
	return err
}

// checkRegistrable refuses a key that ParseAgentJWK refuses, or whose kid
// is not the JWK's own.
func checkRegistrable(key store.AgentKey) error {
	jk, err := ParseAgentJWK([]byte(key.PublicJWK))
	if err != nil {
		return err
	}
	if kid, _ := jk.KeyID(); kid != key.KID {
		return fmt.Errorf("%w: the key's kid is not the one it is registered under", ErrInvalidAgentKey)
	}
	return nil
}
