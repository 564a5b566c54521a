package decision_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// Config.Stages times each recorded decision's stages once: an allow all
// six, an escalation all but "sign"; a refused request and an idempotent
// replay none. The stages are parts of the total.
func TestStagesTimeRecordedDecisions(t *testing.T) {
	e, agent, payee := payingEnv(t, "sqlite")
	stages := decision.NewStages()
	_, _, e.service = e.newService(t, e.ledger, decision.Config{Stages: stages})
	counts := func() map[string]uint64 {
		t.Helper()
		out := map[string]uint64{}
		for stage, s := range stages.Snapshots() {
			out[stage] = s.Count()
		}
		return out
	}
	want := func(what string, read, turn, policy, sign, ledger, total uint64) {
		t.Helper()
		w := map[string]uint64{decision.StageRead: read, decision.StageTurn: turn, decision.StagePolicy: policy,
			decision.StageSign: sign, decision.StageLedger: ledger, decision.StageTotal: total}
		got := counts()
		for stage, n := range w {
			if got[stage] != n {
				t.Errorf("after %s: %s counted %d, want %d", what, stage, got[stage], n)
			}
		}
	}
	want("nothing", 0, 0, 0, 0, 0, 0)

	if resp := e.decide(t, agent.ID, payment("100.00", payee.ID), "key-1"); resp.Outcome != decision.Allow {
		t.Fatalf("%+v", resp)
	}
	want("an allow", 1, 1, 1, 1, 1, 1)
	if resp := e.decide(t, agent.ID, payment("1500.00", payee.ID), ""); resp.Outcome != decision.Escalate {
		t.Fatalf("%+v", resp)
	}
	want("an escalation", 2, 2, 2, 1, 2, 2)

	// Replayed under its Idempotency-Key: not decided again.
	if resp := e.decide(t, agent.ID, payment("100.00", payee.ID), "key-1"); resp.Outcome != decision.Allow {
		t.Fatalf("%+v", resp)
	}
	// Refused: invalid, and an unknown counterparty.
	if _, err := e.service.Decide(context.Background(), e.org, agent.ID, decision.DecisionRequest{}, ""); !errors.Is(err, decision.ErrInvalidRequest) {
		t.Fatalf("an empty request: %v", err)
	}
	missing := store.NewID(store.PrefixCounterparty)
	if _, err := e.service.Decide(context.Background(), e.org, agent.ID, payment("1.00", missing), ""); !errors.Is(err, decision.ErrInvalidRequest) {
		t.Fatalf("an unknown counterparty: %v", err)
	}
	want("a replay and two refusals", 2, 2, 2, 1, 2, 2)

	// Signed, but never recorded: the ledger closed before the append.
	l := e.newLedger(t)
	l.Close()
	_, _, closed := e.newService(t, l, decision.Config{Stages: stages})
	if _, err := closed.Decide(context.Background(), e.org, agent.ID, payment("100.00", payee.ID), ""); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("an allow with the ledger closed: %v", err)
	}
	want("an allow the ledger did not record", 2, 2, 2, 1, 2, 2)

	snap := stages.Snapshots()
	var parts time.Duration
	for _, stage := range []string{decision.StageRead, decision.StageTurn, decision.StagePolicy, decision.StageSign, decision.StageLedger} {
		parts += snap[stage].Sum
	}
	if total := snap[decision.StageTotal].Sum; parts <= 0 || parts > total {
		t.Errorf("the stages took %v in all, the decisions %v: stages must be parts of the total", parts, total)
	}
}
