package decision_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
)

// burst sends reqs at once, as one agent, and returns their outcomes.
func burst(t *testing.T, e *serviceEnv, agentID string, reqs []decision.DecisionRequest) map[decision.Outcome]int {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		start = make(chan struct{})
		got   = map[decision.Outcome]int{}
	)
	for _, req := range reqs {
		wg.Go(func() {
			<-start
			r, err := e.service.Decide(context.Background(), e.org, agentID, req, "")
			if err != nil {
				t.Error(err)
				return
			}
			if (r.Outcome == decision.Allow) != (r.Receipt != "") {
				t.Errorf("outcome %s with receipt %t", r.Outcome, r.Receipt != "")
			}
			mu.Lock()
			got[r.Outcome]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return got
}

// TestBurstSeesEarlierOutcomes: a burst of one agent's requests is judged
// as the same requests one after the other would be, not each against the
// counts of before the burst. A tenant limit on agent.stats or on
// counterparty.payments_count holds, and so does the base rule that
// escalates everything after 5 denials in the hour.
func TestBurstSeesEarlierOutcomes(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			e.activate(t, regoBundle(t, "limits-1", `package tenant

default decision := {}

decision := {"allow": true} if {
	input.action.type == "payment.send"
	input.agent.stats.decisions_1h < 3
}

decision := {"allow": true} if {
	input.action.type == "payment.wire"
	input.counterparty.payments_count < 2
}
`))
			const n = 24
			// Counts may run ahead of the truth for a moment (turns), never
			// behind it: at most this many, and some.
			within := func(got, most int) bool { return got >= 1 && got <= most }

			t.Run("agent.stats", func(t *testing.T) {
				payee := e.counterparty(t, e.org, store.CounterpartyVerified)
				var reqs []decision.DecisionRequest
				for i := range n {
					reqs = append(reqs, payment(fmt.Sprintf("%d.00", 10+i), payee.ID))
				}
				// Three allowed (decisions_1h < 3), then denials up to the
				// fifth, then the base policy escalates the rest.
				got := burst(t, e, e.agent(t, store.RiskLow).ID, reqs)
				if !within(got[decision.Allow], 3) || !within(got[decision.Deny], 5) {
					t.Errorf("outcomes %v, want 3 allowed, 5 denied and the rest escalated", got)
				}
			})
			t.Run("counterparty.payments_count", func(t *testing.T) {
				payee := e.counterparty(t, e.org, store.CounterpartyVerified)
				var reqs []decision.DecisionRequest
				for i := range n {
					req := payment(fmt.Sprintf("%d.00", 10+i), payee.ID)
					req.Action.Type = "payment.wire"
					reqs = append(reqs, req)
				}
				got := burst(t, e, e.agent(t, store.RiskLow).ID, reqs)
				if !within(got[decision.Allow], 2) || !within(got[decision.Deny], 5) {
					t.Errorf("outcomes %v, want 2 allowed (payments_count < 2), 5 denied and the rest escalated", got)
				}
			})
			t.Run("5 denials in the hour", func(t *testing.T) {
				agent := e.agent(t, store.RiskLow)
				for range 4 {
					if r := e.decide(t, agent.ID, action("report.archive"), ""); r.Outcome != decision.Deny {
						t.Fatalf("outcome %s, want deny", r.Outcome)
					}
				}
				var reqs []decision.DecisionRequest
				for range n {
					reqs = append(reqs, action("report.archive"))
				}
				// The burst's first request is the 5th denial; every
				// other one escalates (recent_denials).
				got := burst(t, e, agent.ID, reqs)
				if got[decision.Deny] > 1 || got[decision.Deny]+got[decision.Escalate] != n {
					t.Errorf("outcomes %v, want 1 deny and %d escalated", got, n-1)
				}
			})
		})
	}
}
