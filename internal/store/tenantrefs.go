package store

import (
	"context"
	"sync"
	"time"
)

// TenantRefLifetime is how long a store remembers an organization's
// directory entry (ResolveTenantID): how long a change made by another
// process or replica (an organization suspended there) may take to be
// seen here. A change this store commits is seen at once.
const TenantRefLifetime = time.Second

// maxTenantRefs bounds the entries remembered; past it they are all
// forgotten and read again. Only organizations that exist are remembered.
const maxTenantRefs = 4096

// TenantRefs remembers directory entries by organization id, for the
// lookup every agent request makes: the organization its access token
// names, and whether it is active.
//
// An entry is remembered for at most its lifetime from the moment its
// read began. A store calls Invalidate after each of its platform
// transactions that changed an organization's status ends, whether it
// committed or not: what was remembered is forgotten, and a read that was
// in flight meanwhile is not remembered, as it may have seen the directory
// before the change. (An organization's id and slug never change.) A
// failed read, an unknown organization among them, is never remembered.
type TenantRefs struct {
	lifetime time.Duration
	now      func() time.Time

	mu      sync.Mutex
	gen     uint64 // bumped by Invalidate
	entries map[string]tenantRefEntry
}

type tenantRefEntry struct {
	ref   TenantRef
	until time.Time
}

// NewTenantRefs returns an empty cache whose entries live for lifetime,
// on clock now (time.Now when nil).
func NewTenantRefs(lifetime time.Duration, now func() time.Time) *TenantRefs {
	if now == nil {
		now = time.Now
	}
	return &TenantRefs{lifetime: lifetime, now: now, entries: make(map[string]tenantRefEntry)}
}

// Resolve returns the entry of organization id: the remembered one if it
// is still live, otherwise what read returns, remembered when read
// succeeds and nothing was invalidated during it.
func (c *TenantRefs) Resolve(ctx context.Context, id string, read func(context.Context, string) (TenantRef, error)) (TenantRef, error) {
	start := c.now()
	c.mu.Lock()
	e, ok := c.entries[id]
	gen := c.gen
	c.mu.Unlock()
	if ok && start.Before(e.until) {
		return e.ref, nil
	}
	ref, err := read(ctx, id)
	if err != nil {
		return ref, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		if len(c.entries) >= maxTenantRefs {
			clear(c.entries)
		}
		c.entries[id] = tenantRefEntry{ref: ref, until: start.Add(c.lifetime)}
	}
	return ref, nil
}

// Invalidate forgets every entry, and any read in flight.
func (c *TenantRefs) Invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
}
