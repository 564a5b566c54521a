package decision_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
)

// An agent made safer in the store — a high-risk agent set to low by
// whoever writes the SQLite file (the database role cannot: the store and
// a trigger refuse it), or a row of its own naming another agent's
// registration — is seen by the policy as its registration says, or as
// critical: its payments escalate. A row made riskier is taken as stored.
func TestAgentTierNoSaferThanLogged(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, logs := loggingEnv(t, kind)
			payee := e.counterparty(t, e.org, store.CounterpartyVerified)
			high, low := e.agent(t, store.RiskHigh), e.agent(t, store.RiskLow)
			escalates := func(what, agentID string) {
				t.Helper()
				got := e.decide(t, agentID, payment("10.00", payee.ID), "")
				if got.Outcome != decision.Escalate || !slices.Contains(got.Reasons, "high_tier_money_movement") {
					t.Fatalf("%s: %s %v, want an escalation for the agent's tier", what, got.Outcome, got.Reasons)
				}
			}
			if got := e.decide(t, low.ID, payment("10.00", payee.ID), ""); got.Outcome != decision.Allow {
				t.Fatalf("a low-risk agent: %s %v", got.Outcome, got.Reasons)
			}
			escalates("a high-risk agent", high.ID)

			e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				if err := tx.Agents().SetRiskTier(ctx, high.ID, store.RiskLow); !errors.Is(err, store.ErrConflict) {
					return fmt.Errorf("high → low in the store: %v, want ErrConflict", err)
				}
				return tx.Agents().SetRiskTier(ctx, low.ID, store.RiskCritical)
			})
			// Whoever writes the SQLite file can: the proof holds the
			// policy to the registration. (On PostgreSQL the row is
			// unchanged: the store refused.)
			if kind == "sqlite" {
				sqlitetest.Tamper(t, e.backend.(*sqlite.Store).TenantFile(e.org.ID),
					`UPDATE agents SET risk_tier = 'low' WHERE id = '`+high.ID+`'`)
			}
			escalates("a high-risk agent set to low in the store", high.ID)
			escalates("a low-risk agent set to critical in the store", low.ID)

			var planted store.Agent
			e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				var err error
				planted, err = tx.Agents().Create(ctx, store.Agent{Name: "ap-bot", Sponsor: "usr_sponsor", RiskTier: store.RiskLow, LedgerIndex: low.LedgerIndex})
				return err
			})
			for range 2 {
				escalates("a planted agent naming another's registration", planted.ID)
			}
			if n := strings.Count(logs.String(), "agent="+planted.ID); n != 1 {
				t.Fatalf("the planted agent reported %d times, want once:\n%s", n, logs.String())
			}
		})
	}
}

// A proof that cannot be read is an outage, not a refusal: the answer is
// the error, and the row is not remembered as refused (a later read, the
// store back, proves it).
func TestRowProofOutage(t *testing.T) {
	e := newServiceEnv(t, "sqlite")
	e.activate(t, acmeBundle(t))
	ag := e.agent(t, store.RiskHigh)
	payee := e.counterparty(t, e.org, store.CounterpartyVerified)
	_, _, svc := e.newService(t, e.ledger, decision.Config{}) // nothing proven yet
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if tier, err := svc.TierFor(cancelled, e.org, ag); err == nil || tier != "" {
		t.Fatalf("an agent's tier while the store cannot be read: %q, %v", tier, err)
	}
	if status, err := svc.StatusFor(cancelled, e.org, payee); err == nil || status != "" {
		t.Fatalf("a counterparty's status while the store cannot be read: %q, %v", status, err)
	}
	ctx := context.Background()
	if tier, err := svc.TierFor(ctx, e.org, ag); err != nil || tier != store.RiskHigh {
		t.Fatalf("an agent's tier once the store reads: %q, %v", tier, err)
	}
	if status, err := svc.StatusFor(ctx, e.org, payee); err != nil || status != store.CounterpartyVerified {
		t.Fatalf("a counterparty's status once the store reads: %q, %v", status, err)
	}
}
