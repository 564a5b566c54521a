package decision_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
)

// TestPolicyLoadFailingAfterItsCallerLeftIsNotRemembered: a load of the
// active policy that fails on the bundle while its caller's context is
// already done is not remembered as the organization's failure (such a
// failure may be the context's doing, not the bundle's): the next decision
// loads again, rather than failing at once with that error for
// PolicyLoadRetry. A live load's failure still is remembered, as
// TestPolicyThatDoesNotLoad shows; the end checks it again, so that the
// load count is known to tell the two apart.
//
// The bundles here compile under a cancelled context as well, so this
// bundle never loads (a build whose limits it exceeds), and the context is
// cancelled after the load has read the active bundle, before it compiles:
// as when a client goes away while its decision waits for the compile.
func TestPolicyLoadFailingAfterItsCallerLeftIsNotRemembered(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, payee := payingEnv(t, kind)
			tight := bundles.DefaultLimits()
			tight.MaxCompressedBytes = 16
			tenants := &cancelAfterPolicyRead{Backend: e.backend}
			logs := &lockedBuffer{}
			_, _, svc := e.newServiceOver(t, e.ledger, tenants, tight, decision.Config{Logger: slog.New(slog.NewTextHandler(logs, nil))})
			remembered := func() int { return strings.Count(logs.String(), "its decisions fail until it does") }

			// The caller leaves while its load compiles.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tenants.cancelAfterNextRead(cancel)
			if resp, err := svc.Decide(ctx, e.org, agent.ID, payment("100.00", payee.ID), ""); err == nil {
				t.Fatalf("decided without the organization's active policy: %+v", resp)
			} else if !strings.Contains(err.Error(), "the bundle does not load") {
				t.Fatalf("the load did not fail on the bundle: %v", err)
			}
			if ctx.Err() == nil {
				t.Fatal("the context was not cancelled during the load")
			}
			if n := tenants.reads.Load(); n != 1 {
				t.Fatalf("%d loads for the first decision, want 1", n)
			}
			if n := remembered(); n != 0 {
				t.Fatalf("a load whose caller had left was remembered (%d times)", n)
			}

			// The next decision, its caller still there, loads again.
			live := context.Background()
			_, err := svc.Decide(live, e.org, agent.ID, payment("100.00", payee.ID), "")
			if err == nil {
				t.Fatal("decided without the organization's active policy")
			}
			if n := tenants.reads.Load(); n != 2 {
				t.Fatalf("%d loads after the next decision, want 2: it failed with the earlier load's error (%v)", n, err)
			}
			if n := remembered(); n != 1 {
				t.Fatalf("the live load's failure was remembered %d times, want 1", n)
			}

			// That failure is remembered: the one after fails without loading.
			if _, err2 := svc.Decide(live, e.org, agent.ID, payment("100.00", payee.ID), ""); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("a decision within the retry delay: %v, want the remembered %v", err2, err)
			}
			if n := tenants.reads.Load(); n != 2 {
				t.Fatalf("%d loads after a remembered failure, want still 2", n)
			}
		})
	}
}

// cancelAfterPolicyRead counts the read transactions that read the active
// policy bundle (one per Policies.LoadActive) and, when armed, cancels a
// context once such a transaction has ended, before the bundle compiles.
type cancelAfterPolicyRead struct {
	store.Backend
	reads atomic.Int32

	mu     sync.Mutex
	cancel context.CancelFunc
}

// cancelAfterNextRead arms cancel for the next read of the active bundle.
func (b *cancelAfterPolicyRead) cancelAfterNextRead(cancel context.CancelFunc) {
	b.mu.Lock()
	b.cancel = cancel
	b.mu.Unlock()
}

func (b *cancelAfterPolicyRead) InTenantReadTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	var read atomic.Bool
	err := b.Backend.InTenantReadTx(ctx, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		return fn(ctx, activeBundleSpyTx{TenantTx: tx, read: &read})
	})
	if read.Load() {
		b.reads.Add(1)
		b.mu.Lock()
		cancel := b.cancel
		b.cancel = nil
		b.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	}
	return err
}

// activeBundleSpyTx notes whether its transaction read the active bundle.
type activeBundleSpyTx struct {
	store.TenantTx
	read *atomic.Bool
}

func (t activeBundleSpyTx) Policies() store.PolicyTx {
	return activeBundleSpy{PolicyTx: t.TenantTx.Policies(), read: t.read}
}

type activeBundleSpy struct {
	store.PolicyTx
	read *atomic.Bool
}

func (p activeBundleSpy) ActiveBundle(ctx context.Context) (store.PolicyActivation, store.PolicyBundle, error) {
	p.read.Store(true)
	return p.PolicyTx.ActiveBundle(ctx)
}
