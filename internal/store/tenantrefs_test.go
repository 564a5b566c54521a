package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// directory is a fake directory read that counts its reads; during, when
// set, runs in the middle of a read (a commit racing it).
type directory struct {
	refs   map[string]store.TenantRef
	reads  int
	during func()
}

func (d *directory) read(_ context.Context, id string) (store.TenantRef, error) {
	d.reads++
	ref, ok := d.refs[id]
	if d.during != nil {
		d.during()
	}
	if !ok {
		return store.TenantRef{}, fmt.Errorf("%w: tenant", store.ErrNotFound)
	}
	return ref, nil
}

func TestTenantRefs(t *testing.T) {
	ctx := context.Background()
	id := store.NewTenantID()
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	active := store.TenantRef{ID: id, Slug: "acme", Status: store.TenantActive}
	suspended := store.TenantRef{ID: id, Slug: "acme", Status: store.TenantSuspended}

	resolve := func(t *testing.T, c *store.TenantRefs, d *directory, want store.TenantRef, wantReads int) {
		t.Helper()
		got, err := c.Resolve(ctx, id, d.read)
		if err != nil || got != want {
			t.Fatalf("Resolve = %+v, %v; want %+v", got, err, want)
		}
		if d.reads != wantReads {
			t.Fatalf("%d directory reads, want %d", d.reads, wantReads)
		}
	}

	t.Run("remembered for its lifetime", func(t *testing.T) {
		c := store.NewTenantRefs(time.Second, clock)
		d := &directory{refs: map[string]store.TenantRef{id: active}}
		resolve(t, c, d, active, 1)
		d.refs[id] = suspended // changed elsewhere
		now = now.Add(999 * time.Millisecond)
		resolve(t, c, d, active, 1)
		now = now.Add(time.Millisecond)
		resolve(t, c, d, suspended, 2)
	})

	t.Run("invalidated", func(t *testing.T) {
		c := store.NewTenantRefs(time.Minute, clock)
		d := &directory{refs: map[string]store.TenantRef{id: active}}
		resolve(t, c, d, active, 1)
		d.refs[id] = suspended
		c.Invalidate()
		resolve(t, c, d, suspended, 2)
	})

	t.Run("a read the invalidation raced is not remembered", func(t *testing.T) {
		c := store.NewTenantRefs(time.Minute, clock)
		d := &directory{refs: map[string]store.TenantRef{id: active}}
		// The read sees the old entry, then the change commits.
		d.during = func() { d.refs[id] = suspended; c.Invalidate() }
		resolve(t, c, d, active, 1)
		d.during = nil
		resolve(t, c, d, suspended, 2)
		resolve(t, c, d, suspended, 2)
	})

	t.Run("failures are not remembered", func(t *testing.T) {
		c := store.NewTenantRefs(time.Minute, clock)
		d := &directory{refs: map[string]store.TenantRef{}}
		for i := 1; i <= 2; i++ {
			if _, err := c.Resolve(ctx, id, d.read); !errors.Is(err, store.ErrNotFound) || d.reads != i {
				t.Fatalf("read %d: %v after %d directory reads", i, err, d.reads)
			}
		}
		d.refs[id] = active // created since
		resolve(t, c, d, active, 3)
	})

	t.Run("lives from when its read began", func(t *testing.T) {
		c := store.NewTenantRefs(time.Second, clock)
		d := &directory{refs: map[string]store.TenantRef{id: active}}
		d.during = func() { now = now.Add(time.Second) } // a read as slow as the lifetime
		resolve(t, c, d, active, 1)
		d.during = nil
		resolve(t, c, d, active, 2)
	})

	t.Run("bounded", func(t *testing.T) {
		c := store.NewTenantRefs(time.Minute, clock)
		d := &directory{refs: map[string]store.TenantRef{}}
		ids := make([]string, store.MaxTenantRefs+1)
		for i := range ids {
			ids[i] = store.NewTenantID()
			d.refs[ids[i]] = store.TenantRef{ID: ids[i], Slug: "org", Status: store.TenantActive}
		}
		again := func(id string, wantRead bool) {
			t.Helper()
			reads := d.reads
			if _, err := c.Resolve(ctx, id, d.read); err != nil {
				t.Fatal(err)
			}
			if read := d.reads > reads; read != wantRead {
				t.Fatalf("read again: %v, want %v", read, wantRead)
			}
		}
		for _, id := range ids[:store.MaxTenantRefs] {
			again(id, true)
		}
		// Full: one remembered already is read from memory and forgets
		// nothing; the first and the last still are.
		again(ids[store.MaxTenantRefs-1], false)
		again(ids[0], false)
		// One more than the bound forgets the rest.
		again(ids[store.MaxTenantRefs], true)
		again(ids[store.MaxTenantRefs], false)
		again(ids[0], true)
	})
}
