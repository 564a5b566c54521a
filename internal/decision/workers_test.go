package decision_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
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
	raw, err := bundles.PackFS(fstest.MapFS{
		".manifest":            {Data: []byte(`{"revision":"crash-1","roots":["tenant"],"rego_version":1}`)},
		"tenant/decision.rego": {Data: []byte(rego.String())},
	}, bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return raw
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
				StackBytes: 32 << 20, RestartAfter: 200 * time.Millisecond,
				Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(ws.Close)
			e.workers = ws
			e.engine, e.policies, e.service = e.newService(t, e.ledger, decision.Config{})
			e.activate(t, crashingBundle(t))
			agent, payee := e.agent(t, store.RiskLow), e.counterparty(t, e.org.ID, store.CounterpartyVerified)

			beta := decision.Organization{ID: storeTenant(t, e, "beta"), Slug: "beta"}
			ctx := context.Background()
			b, err := e.policies.Upload(ctx, beta, permissiveBundle(t), "usr_author")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.policies.Activate(ctx, beta, b.Revision, "usr_author", "usr_reviewer", false); err != nil {
				t.Fatal(err)
			}
			var betaAgent store.Agent
			e.inTenant(t, beta.ID, func(ctx context.Context, tx store.TenantTx) error {
				betaAgent, err = tx.Agents().Create(ctx, store.Agent{Name: "beta-bot", Sponsor: "usr_sponsor", RiskTier: store.RiskLow})
				return err
			})
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
