package identity

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// JTIStore remembers the assertions already used, to refuse replays
// (RFC 7523 §3 item 7). It is given the SHA-256 of the jti, never the jti
// (DESIGN §2), and keeps it until exp: after that the assertion is refused
// as expired anyway.
type JTIStore interface {
	// Remember records (agentID, jtiSHA256) until exp, or returns ErrReplay
	// if that agent already presented that jti. The store refuses a replay
	// atomically (a unique key), so two replicas racing with one assertion
	// issue one token.
	Remember(ctx context.Context, agentID string, jtiSHA256 []byte, exp time.Time) error
}

// MemoryJTIStore is a JTIStore in memory, for tests and single-process
// tools. It forgets on restart; the server uses the store's.
type MemoryJTIStore struct {
	now func() time.Time

	mu   sync.Mutex
	seen map[memoryJTIKey]time.Time // → exp
}

type memoryJTIKey struct {
	agentID string
	jti     [sha256.Size]byte
}

// NewMemoryJTIStore returns an empty store whose clock is now (time.Now if nil):
// entries whose exp has passed by that clock are forgotten.
func NewMemoryJTIStore(now func() time.Time) *MemoryJTIStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryJTIStore{now: now, seen: map[memoryJTIKey]time.Time{}}
}

// Remember implements JTIStore.
func (m *MemoryJTIStore) Remember(_ context.Context, agentID string, jtiSHA256 []byte, exp time.Time) error {
	if len(jtiSHA256) != sha256.Size {
		return errors.New("identity: a jti digest is 32 bytes")
	}
	key := memoryJTIKey{agentID: agentID, jti: [sha256.Size]byte(jtiSHA256)}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, e := range m.seen {
		if !e.After(now) {
			delete(m.seen, k)
		}
	}
	if _, ok := m.seen[key]; ok {
		return ErrReplay
	}
	m.seen[key] = exp
	return nil
}
