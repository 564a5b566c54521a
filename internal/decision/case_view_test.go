package decision_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
)

func TestCaseExpiresWhenRead(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, payee := payingEnv(t, kind)
			ctx := context.Background()
			resp := e.decide(t, agent.ID, payment("5000.00", payee.ID), "")

			e.clock.Advance(decision.DefaultCaseLifetime - time.Minute)
			if v, err := e.service.GetCase(ctx, e.org, agent.ID, resp.Case.ID); err != nil || v.Status != store.CasePending {
				t.Fatalf("before expiry: %+v, %v", v, err)
			}
			size := e.ledgerSize(t)
			e.clock.Advance(2 * time.Minute)
			v, err := e.service.GetCase(ctx, e.org, agent.ID, resp.Case.ID)
			if err != nil || v.Status != store.CaseExpired || v.Receipt != "" {
				t.Fatalf("after expiry: %+v, %v", v, err)
			}
			if got := e.ledgerSize(t); got != size+1 {
				t.Fatalf("expiry appended %d entries, want 1", got-size)
			}
			if got, _ := e.entryAt(t, size); got.Kind != decision.KindCaseExpired || got.Subject != resp.Case.ID {
				t.Fatalf("expiry entry %+v", got)
			}
			// Read again: expired once, recorded once.
			if v, err := e.service.WaitCase(ctx, e.org, agent.ID, resp.Case.ID, time.Second, nil); err != nil || v.Status != store.CaseExpired {
				t.Fatalf("read again: %+v, %v", v, err)
			}
			if got := e.ledgerSize(t); got != size+1 {
				t.Fatal("a second read appended again")
			}
			// The decision as answered still shows the case as opened.
			if d, err := e.service.GetDecision(ctx, e.org, agent.ID, resp.DecisionID); err != nil || d.Case.Status != store.CasePending {
				t.Fatalf("GetDecision: %+v, %v", d, err)
			}
		})
	}
}

func TestWaitCase(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			_, _, svc := e.newService(t, e.ledger, decision.Config{CasePollInterval: 10 * time.Millisecond})
			e.activate(t, acmeBundle(t))
			ctx := context.Background()
			agent := e.agent(t, store.RiskLow)
			payee := e.counterparty(t, e.org, store.CounterpartyVerified)
			resp, err := svc.Decide(ctx, e.org, agent.ID, payment("5000.00", payee.ID), "")
			if err != nil {
				t.Fatal(err)
			}
			id := resp.Case.ID

			// Nobody acts: the poll ends after wait with the case pending.
			start := time.Now()
			v, err := svc.WaitCase(ctx, e.org, agent.ID, id, 100*time.Millisecond, nil)
			if err != nil || v.Status != store.CasePending || time.Since(start) < 100*time.Millisecond {
				t.Fatalf("unanswered wait: %+v, %v after %v", v, err, time.Since(start))
			}
			// A caller who leaves ends the poll.
			cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			if _, err := svc.WaitCase(cctx, e.org, agent.ID, id, time.Minute, nil); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("ended context: %v", err)
			}
			// A rejection during the poll is seen at the next tick.
			rejected := make(chan error, 1)
			go func() {
				time.Sleep(50 * time.Millisecond)
				rejected <- e.backend.InTenantTx(ctx, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					return tx.Cases().SetStatus(ctx, id, store.CaseRejected)
				})
			}()
			v, err = svc.WaitCase(ctx, e.org, agent.ID, id, 10*time.Second, nil)
			if rerr := <-rejected; rerr != nil {
				t.Fatal(rerr)
			}
			if err != nil || v.Status != store.CaseRejected {
				t.Fatalf("rejected during the wait: %+v, %v", v, err)
			}
			// The organization suspended during a poll ends it, refused as
			// its agents' new requests are.
			resp, err = svc.Decide(ctx, e.org, agent.ID, payment("5000.00", payee.ID), "")
			if err != nil {
				t.Fatal(err)
			}
			suspended := make(chan error, 1)
			go func() {
				time.Sleep(50 * time.Millisecond)
				suspended <- e.backend.InPlatformTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
					return tx.SetTenantStatus(ctx, e.org.ID, store.TenantSuspended)
				})
			}()
			start = time.Now()
			v, err = svc.WaitCase(ctx, e.org, agent.ID, resp.Case.ID, 10*time.Second, nil)
			if serr := <-suspended; serr != nil {
				t.Fatal(serr)
			}
			if !errors.Is(err, decision.ErrUnknownAgent) || time.Since(start) > 5*time.Second {
				t.Fatalf("the organization suspended during the wait: %+v, %v after %v", v, err, time.Since(start))
			}
		})
	}
}

// TestPolicyLoadedAfterRestart: a process that starts with an empty engine
// loads the organization's active policy on its first decision.
func TestPolicyLoadedAfterRestart(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, payee := payingEnv(t, kind)
			engine, _, restarted := e.newService(t, e.ledger, decision.Config{})
			if engine.Active(e.org.ID) != nil {
				t.Fatal("a fresh engine has a policy")
			}
			resp, err := restarted.Decide(context.Background(), e.org, agent.ID, payment("100.00", payee.ID), "")
			if err != nil || resp.Outcome != decision.Allow {
				t.Fatalf("first decision after a restart: %+v, %v", resp, err)
			}
			if rev, _ := engine.ActiveRevision(e.org.ID); rev != "acme-example-1" {
				t.Fatalf("engine runs %q", rev)
			}
		})
	}
}

// TestCaseWaitsPerAgentAreBounded: an agent cannot hold more than
// MaxCaseWaits long polls open (each re-reads its case on every tick);
// another agent is not held back by it, and a poll that ends frees its
// place.
func TestCaseWaitsPerAgentAreBounded(t *testing.T) {
	e := newServiceEnv(t, "sqlite")
	_, _, svc := e.newService(t, e.ledger, decision.Config{CasePollInterval: 10 * time.Millisecond, MaxCaseWaits: 2})
	e.activate(t, acmeBundle(t))
	ctx := context.Background()
	payee := e.counterparty(t, e.org, store.CounterpartyVerified)
	pending := func(agentID string) string {
		t.Helper()
		resp, err := svc.Decide(ctx, e.org, agentID, payment("5000.00", payee.ID), "")
		if err != nil || resp.Case == nil {
			t.Fatalf("escalation: %+v, %v", resp, err)
		}
		return resp.Case.ID
	}
	busy, other := e.agent(t, store.RiskLow), e.agent(t, store.RiskLow)
	busyCase, otherCase := pending(busy.ID), pending(other.ID)

	wctx, stop := context.WithCancel(ctx)
	ended := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := svc.WaitCase(wctx, e.org, busy.ID, busyCase, time.Minute, nil)
			ended <- err
		}()
	}
	// Once both hold their places, a third is refused.
	for deadline := time.Now().Add(10 * time.Second); svc.OpenWaits(e.org.ID, busy.ID) < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d waits hold a place, want 2", svc.OpenWaits(e.org.ID, busy.ID))
		}
	}
	if _, err := svc.WaitCase(ctx, e.org, busy.ID, busyCase, time.Minute, nil); !errors.Is(err, decision.ErrTooManyWaits) {
		t.Fatalf("third wait: %v", err)
	}
	// Answering at once needs no place.
	if v, err := svc.WaitCase(ctx, e.org, busy.ID, busyCase, 0, nil); err != nil || v.Status != store.CasePending {
		t.Fatalf("a read without waiting: %+v, %v", v, err)
	}
	if v, err := svc.WaitCase(ctx, e.org, other.ID, otherCase, 20*time.Millisecond, nil); err != nil || v.Status != store.CasePending {
		t.Fatalf("another agent's wait: %+v, %v", v, err)
	}
	stop()
	for range 2 {
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("a cancelled wait: %v", err)
		}
	}
	if n := svc.OpenWaits(e.org.ID, busy.ID); n != 0 {
		t.Fatalf("%d places still held once the waits ended", n)
	}
	if v, err := svc.WaitCase(ctx, e.org, busy.ID, busyCase, 20*time.Millisecond, nil); err != nil || v.Status != store.CasePending {
		t.Fatalf("a wait once the others ended: %+v, %v", v, err)
	}
}

// A poll asks still before each re-read: its refusal ends the poll at the
// next tick with that error, not the case; a poll that ends at once (the
// case decided, or no wait) never asks.
func TestWaitCaseEndsWhenTheCallerIsNoLonger(t *testing.T) {
	e, agent, id := escalatedCase(t, "sqlite")
	_, _, svc := e.newService(t, e.ledger, decision.Config{CasePollInterval: 10 * time.Millisecond})
	ctx := context.Background()
	errRevoked := errors.New("the caller's token ended")
	var asked atomic.Int32
	still := func(context.Context) error {
		if asked.Add(1) > 3 {
			return errRevoked
		}
		return nil
	}
	start := time.Now()
	v, err := svc.WaitCase(ctx, e.org, agent.ID, id, 10*time.Second, still)
	if !errors.Is(err, errRevoked) || v != (decision.CaseView{}) {
		t.Fatalf("a poll whose caller was revoked: %+v, %v", v, err)
	}
	if n := asked.Load(); n != 4 || time.Since(start) > 5*time.Second {
		t.Errorf("asked %d times over %v; want the fourth answer to end the poll", n, time.Since(start))
	}
	asked.Store(100) // refuses from now on
	if v, err := svc.WaitCase(ctx, e.org, agent.ID, id, 0, still); err != nil || v.Status != store.CasePending {
		t.Errorf("no wait: %+v, %v; still is for waiting", v, err)
	}
	e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Cases().SetStatus(ctx, id, store.CaseRejected)
	})
	if v, err := svc.WaitCase(ctx, e.org, agent.ID, id, time.Second, still); err != nil || v.Status != store.CaseRejected {
		t.Errorf("a case already decided: %+v, %v", v, err)
	}
}
