package identity

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// ErrKeyNotLogged: an agent key row is not one the organization's log
// recorded. Whoever can write the organization's rows (its database role
// may insert into agent_keys; the SQLite file is a file) could otherwise
// add a key of their own to any agent and be issued its access tokens,
// and so its decisions and receipts. Entries they cannot forge under a
// checkpoint the log key signed.
var ErrKeyNotLogged = errors.New("identity: the agent key is not the one the organization's log records")

// KeyLog checks agent key rows against the organization's log: a key is
// trusted once the entry its row names (store.AgentKey.LedgerIndex), an
// agent.registered, agent.key_rotated or agent.adopted entry proven under
// the newest checkpoint the log key signed (ledger.ProvenEntry), records
// that agent, that kid and that public key (and, adopted, as active). A
// key found so is remembered by its row's contents, and so is a key found
// not to be: an entry never changes.
//
// A key that names no entry is trusted with nothing: one stored before
// keys named their entry cannot be told from one planted since, so it
// waits for an operator who has checked it to log it (agentsigna ledger
// adopt: Agents.Adopt).
//
// What it holds against is PostgreSQL's tenant role, which can insert
// key rows but not without an entry, nor change one, nor make a retired
// key active (the tables' triggers and grants). Whoever can write the
// embedded store's file can drop its triggers and make a retired key
// active again (its entry still records it). There, this raises the bar,
// no more.
type KeyLog struct {
	ledger  *ledger.Ledger
	proven  sync.Map // provenKey → struct{}
	refused sync.Map // provenKey → error: why the key is not the log's
}

type provenKey struct {
	tenant, agent, kid string
	index              uint64
	jwk                [sha256.Size]byte
}

// NewKeyLog returns the checker of agent keys against the logs of l.
func NewKeyLog(l *ledger.Ledger) (*KeyLog, error) {
	if l == nil {
		return nil, errors.New("identity: NewKeyLog needs a ledger")
	}
	return &KeyLog{ledger: l}, nil
}

// Check returns nil when key, an agent's key row, may verify the agent's
// assertions; an error wrapping ErrKeyNotLogged, saying why, when it may
// not. Other errors are the store's.
func (k *KeyLog) Check(ctx context.Context, org store.TenantRef, key store.AgentKey) error {
	if key.LedgerIndex == nil {
		return fmt.Errorf("%w: key %q names no ledger entry (planted, or stored before keys were logged and not adopted since)", ErrKeyNotLogged, key.KID)
	}
	index := *key.LedgerIndex
	pk := provenKey{tenant: org.ID, agent: key.AgentID, kid: key.KID, index: index, jwk: sha256.Sum256([]byte(key.PublicJWK))}
	if _, ok := k.proven.Load(pk); ok {
		return nil
	}
	if why, ok := k.refused.Load(pk); ok {
		return why.(error)
	}
	err := k.check(ctx, org, key, index)
	switch {
	case err == nil:
		k.proven.Store(pk, struct{}{})
	case errors.Is(err, ErrKeyNotLogged):
		// Whoever names the agent in an assertion makes no more proofs.
		k.refused.Store(pk, err)
	}
	return err
}

// check proves the entry at index and compares it with key.
func (k *KeyLog) check(ctx context.Context, org store.TenantRef, key store.AgentKey, index uint64) error {
	record, err := k.ledger.ProvenRecord(ctx, k.ledger.TenantLog(org.ID, org.Slug), index, key.AgentID, KindAgentRegistered, KindAgentKeyRotated, KindAgentAdopted)
	switch {
	case errors.Is(err, ledger.ErrNotProven):
		return fmt.Errorf("%w: %v", ErrKeyNotLogged, err)
	case err != nil:
		return err
	}
	var rec AgentRecord
	if json.Unmarshal(record, &rec) != nil {
		return fmt.Errorf("%w: entry %d's record does not decode", ErrKeyNotLogged, index)
	}
	if rec.Event == "agent_adopted" && rec.AgentID == key.AgentID {
		i := slices.IndexFunc(rec.Keys, func(a AdoptedKey) bool { return a.KeyID == key.KID })
		switch {
		case i < 0 || !SameJWK(rec.Keys[i].PublicJWK, []byte(key.PublicJWK)):
			return fmt.Errorf("%w: entry %d records another key than %q", ErrKeyNotLogged, index, key.KID)
		case rec.Keys[i].Status != store.KeyActive:
			return fmt.Errorf("%w: entry %d adopted key %q %s", ErrKeyNotLogged, index, key.KID, rec.Keys[i].Status)
		}
		return nil
	}
	if rec.Event != "agent_registered" && rec.Event != "agent_key_rotated" || rec.AgentID != key.AgentID || rec.KeyID != key.KID || !SameJWK(rec.PublicJWK, []byte(key.PublicJWK)) {
		return fmt.Errorf("%w: entry %d records another key than %q", ErrKeyNotLogged, index, key.KID)
	}
	return nil
}

// SameJWK reports whether a and b are the same JSON value: a key as a
// log's record holds it (compacted, HTML-escaped) and as a row does (as
// registered).
func SameJWK(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}
