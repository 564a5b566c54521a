package decision_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

func TestIdempotencyKey(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			e.activate(t, acmeBundle(t))
			ctx := context.Background()
			agent, other := e.agent(t, store.RiskLow), e.agent(t, store.RiskLow)
			payee := e.counterparty(t, e.org, store.CounterpartyVerified)
			req := payment("100.00", payee.ID)

			first := e.decide(t, agent.ID, req, "key-1")
			firstJSON, _ := json.Marshal(first)
			size := e.ledgerSize(t)

			// The same key and body: the same answer, byte for byte, and
			// nothing new in the ledger. The body is compared canonically:
			// member order and spacing inside params do not matter.
			same := req
			same.Action.Params = json.RawMessage(" { \"po\" : \"PO-77\" } ")
			again := e.decide(t, agent.ID, same, "key-1")
			if b, _ := json.Marshal(again); string(b) != string(firstJSON) {
				t.Fatalf("replay =\n%s\nwant\n%s", b, firstJSON)
			}
			if got := e.ledgerSize(t); got != size {
				t.Fatalf("a replay appended %d entries", got-size)
			}

			// The same key with another body is refused.
			for _, changed := range []decision.DecisionRequest{payment("100.01", payee.ID), func() decision.DecisionRequest {
				r := req
				r.Reason = "another reason"
				return r
			}()} {
				if _, err := e.service.Decide(ctx, e.org, agent.ID, changed, "key-1"); !errors.Is(err, decision.ErrIdempotencyMismatch) {
					t.Fatalf("same key, other body: %v", err)
				}
			}

			// Keys are per agent: another agent's "key-1" is its own.
			theirs := e.decide(t, other.ID, req, "key-1")
			if theirs.DecisionID == first.DecisionID || theirs.Outcome != decision.Allow {
				t.Fatalf("another agent's key-1: %+v", theirs)
			}
			// And without a key, the same body is a new decision.
			if fresh := e.decide(t, agent.ID, req, ""); fresh.DecisionID == first.DecisionID {
				t.Fatal("a request without a key was replayed")
			}
		})
	}
}

// TestIdempotencyConcurrent: identical requests racing, in one process and
// across two, end in one stored decision that every caller is answered with.
func TestIdempotencyConcurrent(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, payee := payingEnv(t, kind)
			req := payment("100.00", payee.ID)
			// The organization's first receipt key (an entry of its own)
			// before any subtest counts entries: each may run alone.
			if _, err := e.service.Decide(context.Background(), e.org, agent.ID, action("report.generate"), ""); err != nil {
				t.Fatal(err)
			}

			t.Run("one process", func(t *testing.T) {
				size := e.ledgerSize(t)
				ids := race(t, 8, func(int) *decision.Service { return e.service }, e, agent.ID, req, "same-process")
				if len(ids) != 1 {
					t.Fatalf("%d decisions for one key: %v", len(ids), ids)
				}
				// One decision entry and its receipt's: the waiters replayed.
				if got := e.ledgerSize(t); got != size+2 {
					t.Fatalf("ledger grew by %d, want 2", got-size)
				}
			})
			t.Run("two processes", func(t *testing.T) {
				// A second process: its own ledger writer, engine and
				// service over the same store.
				_, _, second := e.newService(t, e.newLedger(t), decision.Config{})
				services := []*decision.Service{e.service, second}
				size := e.ledgerSize(t)
				ids := race(t, 8, func(i int) *decision.Service { return services[i%2] }, e, agent.ID, req, "two-processes")
				if len(ids) != 1 {
					t.Fatalf("%d decisions for one key: %v", len(ids), ids)
				}
				if got := e.ledgerSize(t); got != size+2 {
					t.Fatalf("ledger grew by %d, want 2", got-size)
				}
			})
			t.Run("two processes past their reads", func(t *testing.T) {
				// Both have read that nothing is stored under the key
				// before either batch commits: the second batch's check
				// finds the first's decision, and no second decision or
				// receipt reaches the log.
				_, _, second := e.newService(t, e.newLedger(t), decision.Config{})
				size := e.ledgerSize(t)
				release := storetest.HoldWriter(t, e.backend, e.org.ID)
				var wg sync.WaitGroup
				answers := make([]decision.Response, 2)
				for i, svc := range []*decision.Service{e.service, second} {
					wg.Go(func() {
						var err error
						if answers[i], err = svc.Decide(context.Background(), e.org, agent.ID, req, "past-their-reads"); err != nil {
							t.Errorf("process %d: %v", i, err)
						}
					})
				}
				time.Sleep(300 * time.Millisecond) // both reach their ledger writer
				release()
				wg.Wait()
				if answers[0].DecisionID == "" || answers[0].DecisionID != answers[1].DecisionID || answers[0].Receipt != answers[1].Receipt {
					t.Fatalf("answers %+v and %+v", answers[0], answers[1])
				}
				if got := e.ledgerSize(t); got != size+2 {
					t.Fatalf("ledger grew by %d, want 2: one decision and one receipt", got-size)
				}
			})
		})
	}
}

// race sends n identical requests at once and returns the decision ids
// they were answered with.
func race(t *testing.T, n int, service func(i int) *decision.Service, e *serviceEnv, agentID string, req decision.DecisionRequest, key string) map[string]bool {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]bool{}
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := service(i).Decide(context.Background(), e.org, agentID, req, key)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			mu.Lock()
			ids[resp.DecisionID] = true
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return ids
}
