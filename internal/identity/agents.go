package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

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
	// KindAgentAdopted logs, as found, an agent stored before agents
	// named their entry, and its keys that named none (Agents.Adopt).
	KindAgentAdopted = "agent.adopted"
)

// AgentRecord is the record of an agent entry. Each kind carries its own
// members: agent.registered the agent and its first key, agent.key_rotated
// the key introduced and the keys retired (an empty list when none),
// agent.suspended the agent only, agent.adopted the agent, its status and
// its keys that named no entry, each with its status.
type AgentRecord struct {
	Event         string            `json:"event"` // agent_registered, agent_key_rotated, agent_suspended or agent_adopted
	AgentID       string            `json:"agent_id"`
	Name          string            `json:"name,omitzero"`
	Sponsor       string            `json:"sponsor,omitzero"`
	RiskTier      store.RiskTier    `json:"risk_tier,omitzero"`
	KeyID         string            `json:"key_id,omitzero"`
	PublicJWK     json.RawMessage   `json:"public_jwk,omitzero"`
	RetiredKeyIDs []string          `json:"retired_key_ids,omitzero"`
	Status        store.AgentStatus `json:"status,omitzero"`
	Keys          []AdoptedKey      `json:"keys,omitzero"`
}

// AdoptedKey is a key as an agent.adopted entry records it.
type AdoptedKey struct {
	KeyID     string          `json:"key_id"`
	PublicJWK json.RawMessage `json:"public_jwk"`
	Status    store.KeyStatus `json:"status"`
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

// Unbound is what of an organization's agent rows names no ledger entry,
// and so is trusted with nothing (KeyLog, and the decision service's
// agentLog): agents stored before agents named their entry, with their
// keys that name none; and keys naming none of agents that do.
type Unbound struct {
	Agents []UnboundAgent
	Keys   []store.AgentKey // of agents that name their entry
}

// UnboundAgent is an agent that names no entry, and its keys that name
// none.
type UnboundAgent struct {
	Agent store.Agent
	Keys  []store.AgentKey
}

// ReadUnbound lists, in tx, the agent rows that name no entry.
func ReadUnbound(ctx context.Context, tx store.TenantTx) (Unbound, error) {
	var u Unbound
	agents, err := tx.Agents().List(ctx)
	if err != nil {
		return u, err
	}
	for _, ag := range agents {
		keys, err := tx.Agents().Keys(ctx, ag.ID)
		if err != nil {
			return u, err
		}
		keys = slices.DeleteFunc(keys, func(k store.AgentKey) bool { return k.LedgerIndex != nil })
		switch {
		case ag.LedgerIndex == nil:
			u.Agents = append(u.Agents, UnboundAgent{Agent: ag, Keys: keys})
		default:
			u.Keys = append(u.Keys, keys...)
		}
	}
	return u, nil
}

// Adoption binds rows that name no entry to the entries that record them.
// Agent, when set, is an agent that names none, with its keys that name
// none; else Keys are keys naming none of an agent that names its entry.
//
// Entries the log holds already are named by index: Registered, the
// agent's registration (or adoption), and Introduced, by kid, the entry
// that introduced each key. An agent the log does not register is logged
// as found by a new agent.adopted entry, which records the agent and the
// keys Introduced does not name. The caller (decision.Adopter.Plan) reads
// the log to fill them, and holds the rows to it; Adopt binds as told.
type Adoption struct {
	Agent      *store.Agent
	Keys       []store.AgentKey
	Registered *uint64
	Introduced map[string]uint64
}

// Adopt binds ad's rows, as they were listed, to their entries: to those
// it names, and, for an agent the log does not register, to one new
// agent.adopted entry appended in the rows' transaction. From then on the
// agent and its active keys are trusted as those entries record them. The
// rows must still be as listed: an agent or a key changed, added or bound
// since refuses the adoption (store.ErrConflict), which changes nothing.
// Adopt returns the index of the entry the agent names (of its agent.adopted
// entry when it appended one; 0 for keys alone).
//
// Adopting is the operator's word that the rows are the organization's
// own: a row written behind the service's back, adopted, is trusted as
// one registered. Hence the listing first (agentsigna ledger adopt).
func (a *Agents) Adopt(ctx context.Context, org store.TenantRef, ad Adoption) (uint64, error) {
	agentID, err := ad.check()
	if err != nil {
		return 0, err
	}
	// The rows are bound first, then compared with the listing: bound,
	// they are this transaction's until it ends (on PostgreSQL, whose
	// statements each read what is committed when they start, a change
	// made between a read and the binding would otherwise go unseen).
	bind := func(ctx context.Context, tx store.TenantTx, at uint64) error {
		agents := tx.Agents()
		if ad.Agent != nil {
			if err := agents.Adopt(ctx, agentID, at); err != nil {
				return err
			}
		}
		for _, k := range ad.Keys {
			if err := agents.AdoptKey(ctx, agentID, k.KID, ad.entryOf(k.KID, at)); err != nil {
				return err
			}
		}
		return ad.unchanged(ctx, tx, agentID, at)
	}
	if ad.Agent == nil || ad.Registered != nil {
		// Every row has its entry already: none is appended.
		var at uint64 // unused for keys alone: Introduced names each
		if ad.Registered != nil {
			at = *ad.Registered
		}
		err := a.tenants.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
			return bind(ctx, tx, at)
		})
		return at, err
	}
	ag := ad.Agent
	record := AgentRecord{Event: "agent_adopted", AgentID: ag.ID, Name: ag.Name, Sponsor: ag.Sponsor,
		RiskTier: ag.RiskTier, Status: ag.Status, Keys: []AdoptedKey{}}
	for _, k := range ad.Keys {
		if _, ok := ad.Introduced[k.KID]; !ok {
			record.Keys = append(record.Keys, AdoptedKey{KeyID: k.KID, PublicJWK: json.RawMessage(k.PublicJWK), Status: k.Status})
		}
	}
	var index uint64
	err = a.change(ctx, org, KindAgentAdopted, ag.ID, record, func(ctx context.Context, tx store.TenantTx, at uint64) error {
		index = at
		return bind(ctx, tx, at)
	})
	return index, err
}

// entryOf is the entry key kid is bound to: the one that introduced it,
// or at, the agent's.
func (ad Adoption) entryOf(kid string, at uint64) uint64 {
	if index, ok := ad.Introduced[kid]; ok {
		return index
	}
	return at
}

// check refuses an adoption that is not one, and returns its agent's id.
func (ad Adoption) check() (string, error) {
	var agentID string
	switch {
	case ad.Agent != nil && ad.Agent.LedgerIndex != nil:
		return "", fmt.Errorf("%w: agent %s names entry %d already", store.ErrConflict, ad.Agent.ID, *ad.Agent.LedgerIndex)
	case ad.Agent != nil:
		if err := store.CheckAgent(*ad.Agent); err != nil {
			return "", err
		}
		agentID = ad.Agent.ID
	case len(ad.Keys) == 0 || ad.Registered != nil:
		return "", fmt.Errorf("%w: an adoption of keys alone names their agent's keys and the entries that introduced them", store.ErrInvalid)
	default:
		agentID = ad.Keys[0].AgentID
	}
	for _, k := range ad.Keys {
		_, introduced := ad.Introduced[k.KID]
		switch {
		case k.AgentID != agentID || k.LedgerIndex != nil:
			return "", fmt.Errorf("%w: key %q is not one of agent %s's keys that name no entry", store.ErrInvalid, k.KID, agentID)
		case !introduced && (ad.Agent == nil || ad.Registered != nil):
			return "", fmt.Errorf("%w: key %s of agent %s: no entry introduced it, and no adoption records it", store.ErrInvalid, k.KID, agentID)
		}
		if err := CheckAdoptableKey(k); err != nil {
			return "", err
		}
	}
	return agentID, nil
}

// CheckAdoptableKey refuses a key row naming no entry that its row could
// not hold (store.CheckAgentKey), whose entry would fail ledger verify,
// or, active, that no agent could register today (ParseAgentJWK, its kid
// the JWK's own): the token endpoint would skip it, or find it under
// another kid than its entry records. A retired key verifies nothing,
// whatever it holds.
func CheckAdoptableKey(k store.AgentKey) error {
	named := k
	named.LedgerIndex = new(uint64) // CheckAgentKey asks for one
	if err := store.CheckAgentKey(named); err != nil {
		return fmt.Errorf("key %q of agent %s: %w", k.KID, k.AgentID, err)
	}
	if !utf8.ValidString(k.PublicJWK) {
		return fmt.Errorf("%w: key %q of agent %s: its public JWK is not UTF-8", store.ErrInvalid, k.KID, k.AgentID)
	}
	if k.Status != store.KeyActive {
		return nil
	}
	if err := checkRegistrable(k); err != nil {
		return fmt.Errorf("key %q of agent %s: %w", k.KID, k.AgentID, err)
	}
	return nil
}

// unchanged refuses, in tx, bound rows that are not as ad lists them:
// the agent (if ad adopts it) naming at, each key listed naming its entry,
// and no other key of the agent naming none.
func (ad Adoption) unchanged(ctx context.Context, tx store.TenantTx, agentID string, at uint64) error {
	agents := tx.Agents()
	now, err := agents.Get(ctx, agentID)
	if err != nil {
		return err
	}
	if ag := ad.Agent; ag != nil && (now.LedgerIndex == nil || *now.LedgerIndex != at || now.Name != ag.Name ||
		now.Sponsor != ag.Sponsor || now.RiskTier != ag.RiskTier || now.Status != ag.Status) {
		return fmt.Errorf("%w: agent %s changed since it was listed; list it again", store.ErrConflict, agentID)
	}
	if ad.Agent == nil && now.LedgerIndex == nil {
		return fmt.Errorf("%w: agent %s names no entry now; list it again", store.ErrConflict, agentID)
	}
	keys, err := agents.Keys(ctx, agentID)
	if err != nil {
		return err
	}
	listed := 0
	for _, k := range keys {
		i := slices.IndexFunc(ad.Keys, func(l store.AgentKey) bool { return l.KID == k.KID })
		switch {
		case i < 0 && k.LedgerIndex == nil:
			return fmt.Errorf("%w: agent %s has a key naming no entry that was not listed; list it again", store.ErrConflict, agentID)
		case i < 0:
		case k.PublicJWK != ad.Keys[i].PublicJWK || k.Status != ad.Keys[i].Status || k.LedgerIndex == nil || *k.LedgerIndex != ad.entryOf(k.KID, at):
			return fmt.Errorf("%w: agent %s's key %s changed since it was listed; list it again", store.ErrConflict, agentID, k.KID)
		default:
			listed++
		}
	}
	if listed != len(ad.Keys) {
		return fmt.Errorf("%w: agent %s's keys changed since they were listed; list them again", store.ErrConflict, agentID)
	}
	return nil
}
