package sqlite

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// Opening one organization's file, which waits while another process
// holds that file's lock, stalls no other organization's transactions
// (found by review: every organization's requests waited, 3.9 s, behind
// the first open of a file locked elsewhere).
func TestOpeningAFileLockedElsewhereStallsNoOtherOrganization(t *testing.T) {
	dir := t.TempDir()
	a := openTest(t, dir)
	defer a.Close()
	x, y := storetest.CreateTenant(t, a, "x"), storetest.CreateTenant(t, a, "y")
	ctx := context.Background()
	for _, id := range []string{x.ID, y.ID} {
		if err := a.InTenantTx(ctx, id, func(ctx context.Context, tx store.TenantTx) error { return tx.PutSetting(ctx, "k", "v") }); err != nil {
			t.Fatal(err)
		}
	}
	// Another process holds x's write lock until y's transaction ends
	// here, or for ten seconds at most.
	b := openTest(t, dir)
	defer b.Close()
	held, yDone, released := make(chan struct{}), make(chan struct{}), make(chan time.Time, 1)
	go func() {
		_ = b.InTenantTx(ctx, x.ID, func(ctx context.Context, tx store.TenantTx) error {
			if err := tx.PutSetting(ctx, "k", "held"); err != nil {
				return err
			}
			close(held)
			select {
			case <-yDone:
			case <-time.After(10 * time.Second):
			}
			released <- time.Now()
			return nil
		})
	}()
	<-held
	// This process has y open, and opens x for the first time: that
	// waits for x's lock, the busy timeout long enough to outlast it.
	c, err := Open(ctx, Config{DataDir: dir, BusyTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.InTenantTx(ctx, y.ID, func(ctx context.Context, tx store.TenantTx) error { return tx.PutSetting(ctx, "k", "y1") }); err != nil {
		t.Fatal(err)
	}
	xOpened := make(chan error, 1)
	go func() { _, err := c.tenantDB(ctx, x.ID); xOpened <- err }()
	for {
		if !c.mu.TryLock() {
			break // held, as while a file is opened (or by the checkpointer)
		}
		_, opening := c.opening[x.ID]
		c.mu.Unlock()
		if opening {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// y's transaction goes through while x is still being opened.
	err = c.InTenantTx(ctx, y.ID, func(ctx context.Context, tx store.TenantTx) error { return tx.PutSetting(ctx, "k", "y2") })
	yAt := time.Now()
	close(yDone)
	if err != nil {
		t.Fatal(err)
	}
	if at := <-released; !yAt.Before(at) {
		t.Errorf("y's transaction ended only once x's lock was released, %v later", yAt.Sub(at))
	}
	if err := <-xOpened; err != nil {
		t.Errorf("x, opened once its lock was released: %v", err)
	}
}

// Close waits for a file being opened, which then finds the store closed:
// nothing is opened, migrated or claimed after Close returned, and the
// open fails as the store is closed (found by review: Close returned at
// once, the open going on with its own connection to the file).
func TestCloseWaitsForAFileBeingOpened(t *testing.T) {
	dir := t.TempDir()
	a := openTest(t, dir)
	defer a.Close()
	x := storetest.CreateTenant(t, a, "x")
	ctx := context.Background()
	if err := a.InTenantTx(ctx, x.ID, func(ctx context.Context, tx store.TenantTx) error { return tx.PutSetting(ctx, "k", "v") }); err != nil {
		t.Fatal(err)
	}
	b := openTest(t, dir)
	defer b.Close()
	held, release := make(chan struct{}), make(chan struct{})
	go func() {
		_ = b.InTenantTx(ctx, x.ID, func(ctx context.Context, tx store.TenantTx) error {
			if err := tx.PutSetting(ctx, "k", "held"); err != nil {
				return err
			}
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	c, err := Open(ctx, Config{DataDir: dir, BusyTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	type ended struct {
		at  time.Time
		err error
	}
	opened := make(chan ended, 1)
	go func() { _, err := c.tenantDB(ctx, x.ID); opened <- ended{time.Now(), err} }()
	for {
		c.mu.Lock()
		_, opening := c.opening[x.ID]
		c.mu.Unlock()
		if opening {
			break
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan ended, 1)
	go func() { err := c.Close(); closed <- ended{time.Now(), err} }()
	time.Sleep(100 * time.Millisecond) // Close under way (not a measurement)
	close(release)
	o, cl := <-opened, <-closed
	if !errors.Is(o.err, store.ErrUnavailable) || cl.err != nil {
		t.Errorf("the open: %v; Close: %v", o.err, cl.err)
	}
	if !o.at.Before(cl.at) {
		t.Errorf("Close returned %v before the open it did not wait for", o.at.Sub(cl.at))
	}
}
