package decision_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/proctest"
	"github.com/agentsigna/agentsigna/internal/store"
)

// crashingBundle allows every action, except a payment of 666.00: its
// evaluation unifies a value of 2^19 shared leaves, which overflows the
// goroutine stack and ends the process evaluating it.
func crashingBundle(t testing.TB) []byte {
	t.Helper()
	var rego strings.Builder
	rego.WriteString("package tenant\n\nx0 := {\"a\": 1, \"b\": 2}\n")
	for i := 1; i <= 19; i++ {
		fmt.Fprintf(&rego, "x%d := {k: x%d | some k in [\"a\", \"b\"]}\n", i, i-1)
	}
	rego.WriteString(`
decision := {"allow": true} if input.action.amount.value != "666.00"

decision := {"allow": true} if {
	input.action.amount.value == "666.00"
	x19 = x19
}
`)
	return regoBundle(t, "crash-1", rego.String())
}

// A malicious organization's policy ends its worker, not the service: its
// decision is denied policy_error and recorded, another organization's
// decisions go on meanwhile, and once its worker has restarted the
// organization decides again.
func TestDecisionsSurviveAPolicyThatEndsItsProcess(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			ws, err := bundles.NewWorkers(bundles.WorkerOptions{
				// The pause is long enough for the decisions between the
				// crash and the check "in the pause" on a loaded machine:
				// at 200 ms a make test run once saw the worker restarted.
				StackBytes: 32 << 20, RestartAfter: time.Second,
				Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(ws.Close)
			e.workers = ws
			e.engine, e.policies, e.service = e.newService(t, e.ledger, decision.Config{})
			e.activate(t, crashingBundle(t))
			agent, payee := e.agent(t, store.RiskLow), e.counterparty(t, e.org, store.CounterpartyVerified)

			beta := decision.Organization{ID: storeTenant(t, e, "beta"), Slug: "beta"}
			ctx := context.Background()
			b, err := e.policies.Upload(ctx, beta, permissiveBundle(t), "usr_author")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.policies.Activate(ctx, beta, b.Revision, "usr_author", "usr_reviewer", false); err != nil {
				t.Fatal(err)
			}
			betaAgent := e.agentIn(t, beta, store.RiskLow)
			betaDecides := func() {
				t.Helper()
				resp, err := e.service.Decide(ctx, beta, betaAgent.ID, action("inventory.reorder"), "")
				if err != nil || resp.Outcome != decision.Allow {
					t.Fatalf("beta: %+v, %v", resp, err)
				}
			}

			if resp := e.decide(t, agent.ID, payment("100.00", payee.ID), ""); resp.Outcome != decision.Allow {
				t.Fatalf("before: %+v", resp)
			}
			resp := e.decide(t, agent.ID, payment("666.00", payee.ID), "")
			if resp.Outcome != decision.Deny || !slices.Equal(resp.Reasons, []string{decision.ReasonPolicyError}) || resp.Receipt != "" {
				t.Fatalf("the crashing decision: %+v", resp)
			}
			e.verifyLedger(t, resp)
			betaDecides()

			// In the pause before the restart, acme's decisions deny at
			// once; after it, they are allowed again.
			if resp := e.decide(t, agent.ID, payment("100.00", payee.ID), ""); resp.Outcome != decision.Deny || !slices.Equal(resp.Reasons, []string{decision.ReasonPolicyError}) {
				t.Fatalf("in the pause: %+v", resp)
			}
			// (Polled on the policy itself: denied decisions would count
			// as the agent's recent denials.)
			probe := bundles.NewInput(ast.MustParseTerm(`{"action": {"amount": {"value": "1.00"}}}`).Value)
			deadline := time.Now().Add(10 * time.Second)
			for {
				ctx, cancel := context.WithTimeout(ctx, time.Second)
				_, err := e.engine.Active(e.org.ID).Evaluate(ctx, probe)
				cancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("acme's policy still fails after the restart pause: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if resp := e.decide(t, agent.ID, payment("100.00", payee.ID), ""); resp.Outcome != decision.Allow {
				t.Fatalf("after the restart: %+v", resp)
			}
			betaDecides()
		})
	}
}

// workerPIDs lists this test process's children: the policy workers its
// services started.
func workerPIDs(t *testing.T) []int {
	t.Helper()
	pids, err := proctest.Children(os.Getpid())
	if err != nil {
		t.Skip("no /proc here:", err)
	}
	return pids
}

// A policy that leaves the engine stops its worker: the one an upload
// compiles to check the bundle, and the one an activation replaces. A
// worker per activation would otherwise pile up.
func TestReplacedPoliciesStopTheirWorkers(t *testing.T) {
	e := newServiceEnv(t, "sqlite")
	ws, err := bundles.NewWorkers(bundles.WorkerOptions{KillAfter: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ws.Close)
	e.workers = ws
	e.engine, e.policies, e.service = e.newService(t, e.ledger, decision.Config{})
	settled := func(n int) []int {
		t.Helper()
		var pids []int
		proctest.WaitUntil(t, 5*time.Second, func() bool { pids = workerPIDs(t); return len(pids) == n })
		return pids
	}
	e.activate(t, permissiveBundle(t))
	first := settled(1)
	e.activate(t, regoBundle(t, "permissive-2", "package tenant\n\ndecision := {\"allow\": true}\n"))
	if second := settled(1); second[0] == first[0] {
		t.Errorf("the worker of the first revision, %d, still serves", first[0])
	}
	agent := e.agent(t, store.RiskLow)
	if resp := e.decide(t, agent.ID, action("inventory.reorder"), ""); resp.Outcome != decision.Allow {
		t.Fatalf("decision under the second revision: %+v", resp)
	}
	ws.Close()
	settled(0)
}

// An organization whose worker was stopped for idleness decides on its
// next request as before: the worker starts again on the request's time,
// not within the evaluation's deadline, which a policy that compiles for
// longer would miss (policy_timeout) on every first request after a quiet
// spell.
func TestAnIdleOrganizationsWorkerStartsOnTheRequestsTime(t *testing.T) {
	e := newServiceEnv(t, "sqlite")
	// A second: the decision after the wake is done, and its worker
	// counted, well before the worker could go idle again.
	ws, err := bundles.NewWorkers(bundles.WorkerOptions{IdleAfter: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ws.Close)
	e.workers = ws
	e.evalTimeout = decision.DefaultTimeout
	e.engine, e.policies, e.service = e.newService(t, e.ledger, decision.Config{})
	// Thousands of rules: a quarter of a second to compile (more under
	// the race detector), a millisecond to evaluate.
	var rego strings.Builder
	rego.WriteString("package tenant\n\ndecision := {\"allow\": true}\n")
	for i := range 3000 {
		fmt.Fprintf(&rego, "r%d if input.action.type == \"t%d\"\n", i, i)
	}
	e.activate(t, regoBundle(t, "many-rules-1", rego.String()))
	agent := e.agent(t, store.RiskLow)
	if resp := e.decide(t, agent.ID, action("inventory.reorder"), ""); resp.Outcome != decision.Allow {
		t.Fatalf("with the worker running: %+v", resp)
	}
	proctest.WaitUntil(t, 10*time.Second, func() bool { return len(workerPIDs(t)) == 0 })
	if resp := e.decide(t, agent.ID, action("inventory.reorder"), ""); resp.Outcome != decision.Allow {
		t.Fatalf("the first decision after the worker went idle: %+v", resp)
	}
	if n := len(workerPIDs(t)); n != 1 {
		t.Errorf("%d workers after the decision, want 1", n)
	}
}

// When no worker can be started (the executable is not there, the
// system refuses a process), nothing is learnt about the bundle: the
// next decision tries again, rather than the organization's decisions
// failing for PolicyLoadRetry as for a bundle that does not compile.
func TestNoWorkerIsNotABundleThatDoesNotLoad(t *testing.T) {
	e := newServiceEnv(t, "sqlite")
	e.activate(t, permissiveBundle(t))
	exe := filepath.Join(t.TempDir(), "agentsigna")
	ws, err := bundles.NewWorkers(bundles.WorkerOptions{Executable: exe, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ws.Close)
	e.workers = ws
	e.engine, e.policies, e.service = e.newService(t, e.ledger, decision.Config{})
	agent := e.agent(t, store.RiskLow)
	ctx := context.Background()
	if _, err := e.service.Decide(ctx, e.org, agent.ID, action("inventory.reorder"), ""); !errors.Is(err, bundles.ErrWorker) {
		t.Fatalf("without an executable: err = %v, want ErrWorker", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, exe); err != nil {
		t.Fatal(err)
	}
	if resp := e.decide(t, agent.ID, action("inventory.reorder"), ""); resp.Outcome != decision.Allow {
		t.Fatalf("once the executable is there: %+v", resp)
	}
}
