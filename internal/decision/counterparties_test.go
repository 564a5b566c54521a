package decision_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
)

// A counterparty the organization's database role stores as verified —
// a row of its own naming a real entry, or one far past the log — is
// seen by the policy as new: a payment to it escalates (DESIGN §3's base
// rule), as it would had nobody touched the rows. A logged verified
// counterparty is paid without a human; one blocked in the store is
// blocked, whatever its entry says, and so is one its entry recorded
// blocked, whatever the store says (a row may trust less, never more).
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

			// Its own entry recorded it new, stored as verified since (the
			// store refuses that: edited in the file): new, reported once.
			if kind == "sqlite" {
				promoted := e.counterparty(t, e.org, store.CounterpartyNew)
				sqlitetest.Tamper(t, e.backend.(*sqlite.Store).TenantFile(e.org.ID), `UPDATE counterparties SET status = 'verified' WHERE id = '`+promoted.ID+`'`)
				for range 2 {
					if got := e.decide(t, agent.ID, payment("10.00", promoted.ID), ""); got.Outcome != decision.Escalate || !slices.Contains(got.Reasons, "unverified_counterparty") {
						t.Fatalf("recorded new, stored verified: %s %v", got.Outcome, got.Reasons)
					}
				}
				if n := strings.Count(logs.String(), "counterparty="+promoted.ID); n != 1 || !strings.Contains(logs.String(), "it is stored verified, but entry") {
					t.Fatalf("recorded new, stored verified: reported %d times:\n%s", n, logs.String())
				}
			}

			// Recorded blocked by its entry, stored as new since: blocked
			// (found by review), reported once.
			for _, stored := range []store.CounterpartyStatus{store.CounterpartyNew, store.CounterpartyVerified} {
				banned := e.counterparty(t, e.org, store.CounterpartyBlocked)
				if stored == store.CounterpartyNew {
					e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
						return tx.Counterparties().SetStatus(ctx, banned.ID, stored)
					})
				} else if kind == "sqlite" {
					// The store refuses to make it verified: edited in the file.
					sqlitetest.Tamper(t, e.backend.(*sqlite.Store).TenantFile(e.org.ID), `UPDATE counterparties SET status = 'verified' WHERE id = '`+banned.ID+`'`)
				} else {
					continue
				}
				var reported []int
				for range 2 {
					if got := e.decide(t, agent.ID, payment("10.00", banned.ID), ""); got.Outcome != decision.Deny || !slices.Contains(got.Reasons, "counterparty_blocked") {
						t.Fatalf("a counterparty recorded blocked, stored as %s: %s %v", stored, got.Outcome, got.Reasons)
					}
					reported = append(reported, strings.Count(logs.String(), "counterparty="+banned.ID))
				}
				// Reported on the first decision (stored as verified, also
				// as not verified in the log), not again.
				if reported[0] == 0 || reported[1] != reported[0] || !strings.Contains(logs.String(), "recorded blocked is stored unblocked") {
					t.Fatalf("recorded blocked, stored as %s: reported %v times:\n%s", stored, reported, logs.String())
				}
			}
			// The new counterparty logged new stays new: a payment escalates.
			if got := e.decide(t, agent.ID, payment("10.00", newcomer.ID), ""); got.Outcome != decision.Escalate || !slices.Contains(got.Reasons, "unverified_counterparty") {
				t.Fatalf("a logged new counterparty: %s %v", got.Outcome, got.Reasons)
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

// AddAll stores and logs several counterparties in one batch, each row
// naming its own entry, or none of them: a batch with one the store
// refuses leaves neither rows nor entries.
func TestCounterpartiesAddAll(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			ctx := context.Background()
			cps, err := decision.NewCounterparties(e.ledger)
			if err != nil {
				t.Fatal(err)
			}
			added, err := cps.AddAll(ctx, e.org, []store.Counterparty{{Name: "One", Status: store.CounterpartyVerified}, {Name: "Two", Status: store.CounterpartyVerified}})
			if err != nil || len(added) != 2 || added[0].LedgerIndex == nil || added[1].LedgerIndex == nil ||
				*added[1].LedgerIndex != *added[0].LedgerIndex+1 {
				t.Fatalf("AddAll = %+v, %v", added, err)
			}
			for _, c := range added {
				if status, err := e.service.StatusFor(ctx, e.org, c); err != nil || status != store.CounterpartyVerified {
					t.Fatalf("%s, entry %d: seen %q, %v; want verified", c.Name, *c.LedgerIndex, status, err)
				}
			}
			size := e.ledgerSize(t)
			id := store.NewID(store.PrefixCounterparty)
			if got, err := cps.AddAll(ctx, e.org, []store.Counterparty{{ID: id, Name: "Three"}, {ID: id, Name: "Three again"}}); err == nil {
				t.Fatalf("a batch naming one id twice: %+v", got)
			}
			if got := e.ledgerSize(t); got != size {
				t.Fatalf("the refused batch logged %d entries", got-size)
			}
			e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				if c, err := tx.Counterparties().Get(ctx, id); err == nil {
					t.Errorf("the refused batch stored %+v", c)
				}
				return nil
			})
		})
	}
}
