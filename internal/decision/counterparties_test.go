package decision_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
)

// A counterparty the organization's database role stores as verified —
// a row of its own naming a real entry, or one far past the log — is
// seen by the policy as new: a payment to it escalates (DESIGN §3's base
// rule), as it would had nobody touched the rows. A logged verified
// counterparty is paid without a human; one blocked in the store is
// blocked, whatever its entry says (a row may trust less, never more).
func TestCounterpartyVerifiedOnlyAsLogged(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, logs := loggingEnv(t, kind)
			agent := e.agent(t, store.RiskLow)
			payee := e.counterparty(t, e.org, store.CounterpartyVerified)
			newcomer := e.counterparty(t, e.org, store.CounterpartyNew)
			if got := e.decide(t, agent.ID, payment("10.00", payee.ID), ""); got.Outcome != decision.Allow {
				t.Fatalf("a logged verified counterparty: %s %v", got.Outcome, got.Reasons)
			}

			plant := func(index uint64) store.Counterparty {
				var c store.Counterparty
				e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					var err error
					c, err = tx.Counterparties().Create(ctx, store.Counterparty{Name: "Mallory Ltd", Status: store.CounterpartyVerified, LedgerIndex: &index})
					return err
				})
				return c
			}
			for _, tc := range []struct {
				name string
				cp   store.Counterparty
			}{
				{"naming the verified payee's entry", plant(*payee.LedgerIndex)},
				{"naming the new counterparty's entry", plant(*newcomer.LedgerIndex)},
				{"naming an entry past the log", plant(1 << 40)},
			} {
				for range 2 {
					got := e.decide(t, agent.ID, payment("10.00", tc.cp.ID), "")
					if got.Outcome != decision.Escalate || !slices.Contains(got.Reasons, "unverified_counterparty") {
						t.Fatalf("%s: %s %v, want an escalation for an unverified counterparty", tc.name, got.Outcome, got.Reasons)
					}
				}
				if n := strings.Count(logs.String(), "counterparty="+tc.cp.ID); n != 1 {
					t.Fatalf("%s: reported %d times, want once:\n%s", tc.name, n, logs.String())
				}
			}

			// Blocked in the store (nothing logs it yet): honored.
			e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				return tx.Counterparties().SetStatus(ctx, payee.ID, store.CounterpartyBlocked)
			})
			if got := e.decide(t, agent.ID, payment("10.00", payee.ID), ""); got.Outcome != decision.Deny || !slices.Contains(got.Reasons, "counterparty_blocked") {
				t.Fatalf("a counterparty blocked in the store: %s %v", got.Outcome, got.Reasons)
			}
		})
	}
}
