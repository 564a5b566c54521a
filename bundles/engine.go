package bundles

import (
	"sync"
	"sync/atomic"
)

// Engine holds each organization's active Policy. Lookups take a read lock
// only to find the organization's slot; the Policy itself is swapped with an
// atomic pointer, so an activation never waits for, or disturbs, decisions in
// flight: each one finishes on the Policy it started with.
//
// The Engine is a cache of what the store says is active; it neither orders
// revisions (CheckActivation does, against the store's history) nor
// persists anything.
type Engine struct {
	mu      sync.RWMutex
	tenants map[string]*atomic.Pointer[Policy]
}

// NewEngine returns an Engine with no active policies.
func NewEngine() *Engine {
	return &Engine{tenants: map[string]*atomic.Pointer[Policy]{}}
}

// Activate makes p the active policy of tenantID; nil deactivates (the
// organization's decisions then have no tenant authority: deny
// no_authority). It returns the policy it replaced, if any.
func (e *Engine) Activate(tenantID string, p *Policy) (previous *Policy) {
	return e.slot(tenantID).Swap(p)
}

// Active returns tenantID's active policy, or nil.
func (e *Engine) Active(tenantID string) *Policy {
	e.mu.RLock()
	s := e.tenants[tenantID]
	e.mu.RUnlock()
	if s == nil {
		return nil
	}
	return s.Load()
}

// ActiveRevision returns the revision and bundle digest of tenantID's active
// policy, or empty strings. (Whether to load another revision is decided
// by activation seq, in internal/decision's Policies.)
func (e *Engine) ActiveRevision(tenantID string) (revision, digest string) {
	if p := e.Active(tenantID); p != nil {
		return p.revision, p.digest
	}
	return "", ""
}

func (e *Engine) slot(tenantID string) *atomic.Pointer[Policy] {
	e.mu.RLock()
	s := e.tenants[tenantID]
	e.mu.RUnlock()
	if s != nil {
		return s
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if s = e.tenants[tenantID]; s == nil {
		s = new(atomic.Pointer[Policy])
		e.tenants[tenantID] = s
	}
	return s
}
