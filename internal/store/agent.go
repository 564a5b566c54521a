package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// AgentTx stores an organization's agents (DESIGN §1: machine actors) and
// their public keys. Agents are suspended or revoked, never deleted; only
// their status and risk tier change, and a revoked agent stays revoked. A
// key is retired, never deleted or changed.
type AgentTx interface {
	// Create stores a new agent, naming the ledger entry that registers
	// it (ErrInvalid without). An empty ID is generated (NewID
	// PrefixAgent), an empty Status is AgentActive; CreatedAt and UpdatedAt
	// are set to now. ErrConflict if the id exists.
	Create(ctx context.Context, a Agent) (Agent, error)
	// Get returns one agent; ErrNotFound if the organization has none by
	// that id.
	Get(ctx context.Context, id string) (Agent, error)
	// List returns every agent, oldest first.
	List(ctx context.Context) ([]Agent, error)
	// SetStatus changes an agent's status. ErrConflict when the agent is
	// revoked and status is not (revocation is final), or when it is
	// suspended and status is active: nothing logs a reinstatement yet,
	// so none is made.
	SetStatus(ctx context.Context, id string, status AgentStatus) error
	// SetRiskTier raises an agent's risk tier; ErrConflict refuses a
	// lower one (nothing logs a lowering yet, and the decision service
	// would not take it).
	SetRiskTier(ctx context.Context, id string, tier RiskTier) error
	// Adopt makes an agent that names no entry (stored before agents
	// named their entry) name index: the entry that records it, its
	// agent.registered one or a new agent.adopted one recording it as
	// found (agentsigna ledger adopt). Until then the decision service
	// trusts it with nothing. ErrNotFound for an unknown agent,
	// ErrConflict when it already names an entry (an entry, once named,
	// is final).
	Adopt(ctx context.Context, id string, index uint64) error

	// AddKey registers a public key for an agent, active from now (an
	// empty Status is KeyActive; a key cannot be added retired), naming
	// the ledger entry that records it (ErrInvalid without).
	// ErrNotFound for an unknown agent, ErrConflict for a revoked agent or
	// a kid the agent already has.
	AddKey(ctx context.Context, k AgentKey) (AgentKey, error)
	// Keys returns an agent's keys, active and retired, oldest first;
	// none for an unknown agent.
	Keys(ctx context.Context, agentID string) ([]AgentKey, error)
	// RetireKey retires an active key at at (now when zero); ErrNotFound
	// unless the agent has an active key with that kid.
	RetireKey(ctx context.Context, agentID, kid string, at time.Time) error
	// AdoptKey is Adopt of a key that names no entry: it names index, the
	// entry that introduced it (agent.registered, agent.key_rotated) or
	// the agent.adopted one that records it, retired or not. ErrNotFound
	// unless the agent has a key with that kid, ErrConflict when the key
	// already names an entry.
	AdoptKey(ctx context.Context, agentID, kid string, index uint64) error
}

// JTITx remembers the client assertions agents have used (RFC 7523 §3),
// by the SHA-256 of their jti (DESIGN §2), until they expire. Unlike the
// records, these rows are deleted once expired.
type JTITx interface {
	// Remember records jtiSHA256 for agentID until exp. ErrConflict when
	// the organization already holds that digest and it has not expired
	// (a replay); an expired row is taken over. The refusal is the unique
	// key's, so two replicas racing with one assertion cannot both pass.
	// ErrNotFound for an unknown agent.
	Remember(ctx context.Context, agentID string, jtiSHA256 []byte, exp time.Time) error
	// Used says whether Remember would refuse the same arguments as a
	// replay, writing nothing: for a caller that must not write (an agent
	// past its token bound) but names a replay as one.
	Used(ctx context.Context, agentID string, jtiSHA256 []byte, exp time.Time) (bool, error)
	// PruneJTIs deletes the rows whose expiry is not after before, and
	// says how many it deleted.
	PruneJTIs(ctx context.Context, before time.Time) (int, error)
}

// AgentStatus is an agent's lifecycle state: only active agents
// authenticate and are allowed anything.
type AgentStatus string

const (
	AgentActive    AgentStatus = "active"
	AgentSuspended AgentStatus = "suspended"
	AgentRevoked   AgentStatus = "revoked" // final
)

// RiskTier is how much an organization trusts an agent (DESIGN §3: base
// rules escalate money movement by high and critical agents).
type RiskTier string

const (
	RiskLow      RiskTier = "low"
	RiskMedium   RiskTier = "medium"
	RiskHigh     RiskTier = "high"
	RiskCritical RiskTier = "critical"
)

// Agent is a registered machine actor of an organization.
type Agent struct {
	ID   string // PrefixAgent id; generated when empty
	Name string // 1-200 bytes
	// Sponsor is the tenant user accountable for the agent (a user id once
	// users exist; until then a free-form sponsor reference), 1-200 bytes.
	// Separation of duties: the sponsor may not approve the agent's cases.
	Sponsor   string
	RiskTier  RiskTier
	Status    AgentStatus
	CreatedAt time.Time
	UpdatedAt time.Time
	// LedgerIndex is the index of the organization's ledger entry that
	// registered the agent (agent.registered): the decision service takes
	// the risk tier it records as the least the agent's is. Required by
	// Create; nil only for an agent stored before agents named their
	// entry, which nothing trusts until Adopt names one (its
	// registration, or an agent.adopted entry).
	LedgerIndex *uint64
}

// AgentKey is one public key an agent signs its client assertions with.
type AgentKey struct {
	AgentID string
	KID     string // 1-128 visible ASCII; unique per agent
	// PublicJWK is the key as registered (RFC 7517 JSON). The caller
	// validates it (identity.ParseAgentJWK); the store refuses anything that
	// is not a JSON object or that carries a private member.
	PublicJWK string
	Status    KeyStatus
	CreatedAt time.Time
	RetiredAt time.Time // zero while active
	// LedgerIndex is the index of the organization's ledger entry that
	// registered the key (agent.registered or agent.key_rotated, or
	// agent.adopted for one stored before keys named their entry): a
	// reader trusts the key once that entry, proven under the log's
	// signature, records it (adopted: as active). Required by AddKey; nil only for a key stored before
	// keys named their entry, which nothing trusts until AdoptKey names
	// one.
	LedgerIndex *uint64
}

// Bounds of agent fields.
const (
	MaxAgentName = 200
	MaxSponsor   = 200
	MaxKID       = 128
	MaxPublicJWK = 4 << 10
)

// CheckAgentStatus reports ErrInvalid for an unknown status.
func CheckAgentStatus(s AgentStatus) error {
	switch s {
	case AgentActive, AgentSuspended, AgentRevoked:
		return nil
	}
	return fmt.Errorf("%w: agent status must be active, suspended or revoked", ErrInvalid)
}

// CheckRiskTier reports ErrInvalid for an unknown tier.
func CheckRiskTier(t RiskTier) error {
	switch t {
	case RiskLow, RiskMedium, RiskHigh, RiskCritical:
		return nil
	}
	return fmt.Errorf("%w: risk tier must be low, medium, high or critical", ErrInvalid)
}

// RiskRank ranks the tiers, safest first (low 0 … critical 3); an unknown
// tier ranks as critical. The stores' SQL and triggers rank alike.
func RiskRank(t RiskTier) int {
	switch t {
	case RiskLow:
		return 0
	case RiskMedium:
		return 1
	case RiskHigh:
		return 2
	}
	return 3
}

// CheckAgent validates an agent before it is stored.
func CheckAgent(a Agent) error {
	if err := CheckID(PrefixAgent, a.ID); err != nil {
		return err
	}
	if err := CheckLabel("agent name", a.Name, MaxAgentName); err != nil {
		return err
	}
	if err := CheckLabel("sponsor", a.Sponsor, MaxSponsor); err != nil {
		return err
	}
	if err := CheckRiskTier(a.RiskTier); err != nil {
		return err
	}
	return CheckAgentStatus(a.Status)
}

// CheckKID reports ErrInvalid unless kid is 1-128 bytes of visible ASCII.
func CheckKID(kid string) error { return checkToken("key id", kid, MaxKID, false) }

// Private members of every JWK type (RFC 7518 §6.2.2, §6.3.2, §6.4.1;
// RFC 8037 §2).
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// CheckLedgerIndex refuses a row's missing ledger index, or one no store
// column holds (past int64): what names it (for the message) must name
// the entry that records it.
func CheckLedgerIndex(i *uint64, what string) error {
	if i == nil || *i > math.MaxInt64 {
		return fmt.Errorf("%w: %s must name the ledger entry that records it", ErrInvalid, what)
	}
	return nil
}

// CheckAgentKey validates an agent key before it is stored. It is a last
// line, not the parser: it makes sure no private key material is ever
// written, whatever the caller checked.
func CheckAgentKey(k AgentKey) error {
	if err := CheckID(PrefixAgent, k.AgentID); err != nil {
		return err
	}
	if err := CheckKID(k.KID); err != nil {
		return err
	}
	if k.Status != KeyActive && k.Status != KeyRetired {
		return fmt.Errorf("%w: unknown key status", ErrInvalid)
	}
	if len(k.PublicJWK) == 0 || len(k.PublicJWK) > MaxPublicJWK {
		return fmt.Errorf("%w: public JWK must be 1-%d bytes", ErrInvalid, MaxPublicJWK)
	}
	if err := CheckLedgerIndex(k.LedgerIndex, "a key"); err != nil {
		return err
	}
	var members map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader([]byte(k.PublicJWK)))
	if err := dec.Decode(&members); err != nil || members == nil || dec.More() {
		return fmt.Errorf("%w: public JWK is not one JSON object", ErrInvalid)
	}
	for _, m := range privateJWKMembers {
		if _, ok := members[m]; ok {
			return fmt.Errorf("%w: public JWK carries private key material", ErrInvalid)
		}
	}
	return nil
}

// CheckJTI validates a Remember call.
func CheckJTI(agentID string, jtiSHA256 []byte, exp time.Time) error {
	if err := CheckID(PrefixAgent, agentID); err != nil {
		return err
	}
	if len(jtiSHA256) != 32 {
		return fmt.Errorf("%w: a jti digest is 32 bytes", ErrInvalid)
	}
	if exp.IsZero() {
		return fmt.Errorf("%w: a jti needs its expiry", ErrInvalid)
	}
	return nil
}
