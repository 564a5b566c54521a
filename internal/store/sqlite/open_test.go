package sqlite

import (
	"context"
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
