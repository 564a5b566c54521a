package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// testDecisionInputs: ReadDecisionInputs reads what the same statements
// read one by one in a read transaction (readInputsOneByOne), rows
// it lacks are nil, and another organization's rows (its policy
// activations included) are not there at all.
func testDecisionInputs(t *testing.T, h Harness) {
	be := newBackend(t, h)
	f := newDecisionFixture(t, be, "acme")
	bravo := newDecisionFixture(t, be, "bravo")
	now := time.Now().UTC()
	key := digest("Idempotency-Key: inputs")
	var sealed store.Counterparty
	var keyed store.Decision
	var agentA store.Agent
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if sealed, err = tx.Counterparties().Create(ctx, store.Counterparty{Name: "Sealed", Status: store.CounterpartyVerified, LedgerIndex: ledgerIndex(6),
			BankDetailsSealed: []byte("sealed v1")}); err != nil {
			return err
		}
		// Changed after they were made, so that created_at and updated_at
		// differ, and a read that swapped them would show.
		time.Sleep(2 * time.Millisecond)
		if err := tx.Counterparties().SetStatus(ctx, sealed.ID, store.CounterpartyBlocked); err != nil {
			return err
		}
		if err := tx.Agents().SetRiskTier(ctx, f.a.ID, store.RiskMedium); err != nil {
			return err
		}
		if agentA, err = tx.Agents().Get(ctx, f.a.ID); err != nil {
			return err
		}
		// Two activations: the newest one's seq is read.
		for _, rev := range []string{"v1", "v2"} {
			if err := tx.Policies().InsertBundle(ctx, testBundle(rev)); err != nil {
				return err
			}
			idx := uint64(0) // the log's entry: not what this suite reads
			if _, err := tx.Policies().Activate(ctx, store.PolicyActivation{Revision: rev, ActivatedBy: "usr_a", ApprovedBy: "usr_b", LedgerIndex: &idx}); err != nil {
				return err
			}
		}
		for i, o := range []store.Outcome{store.OutcomeAllow, store.OutcomeDeny, store.OutcomeAllow} {
			d := newDecision(f.a.ID, o, "payment.send", sealed.ID)
			d.CreatedAt = now.Add(time.Duration(i-10) * time.Minute)
			if i == 2 {
				d.IdempotencyKeySHA256 = key
			}
			if d, err = tx.Decisions().Insert(ctx, d); err != nil {
				return err
			}
			keyed = d
		}
		return nil
	})
	read := func(tenantID string, q store.DecisionInputsQuery) (store.DecisionInputs, error) {
		return be.ReadDecisionInputs(ctx(t), tenantID, q)
	}
	full := store.DecisionInputsQuery{AgentID: f.a.ID, IdempotencyKeySHA256: key, CounterpartyID: sealed.ID, Now: now}
	got, err := read(f.tenant.ID, full)
	if err != nil {
		t.Fatal(err)
	}
	if got.Previous == nil || got.Previous.ID != keyed.ID || got.Previous.Response != keyed.Response ||
		got.Agent == nil || !sameAgent(*got.Agent, agentA) || agentA.RiskTier != store.RiskMedium ||
		got.Stats != (store.AgentStats{Decisions1h: 3, Denials1h: 1, Decisions24h: 3}) ||
		got.Counterparty == nil || got.Counterparty.ID != sealed.ID || got.Counterparty.Status != store.CounterpartyBlocked ||
		got.Counterparty.LedgerIndex == nil || *got.Counterparty.LedgerIndex != 6 ||
		got.Counterparty.BankDetailsSealed != nil || got.Payments != 2 || got.PolicySeq != 2 {
		t.Fatalf("inputs %+v (previous %+v, agent %+v, counterparty %+v)", got, got.Previous, got.Agent, got.Counterparty)
	}
	// The same as the statements one by one, field for field.
	err = be.InTenantReadTx(ctx(t), f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		want, err := readInputsOneByOne(ctx, tx, full)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("ReadDecisionInputs %+v; statement by statement %+v (previous %+v / %+v, agent %+v / %+v, counterparty %+v / %+v)",
				got, want, got.Previous, want.Previous, got.Agent, want.Agent, got.Counterparty, want.Counterparty)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A counterparty never paid: there, with a count of 0.
	unpaid := store.DecisionInputsQuery{AgentID: f.b.ID, CounterpartyID: f.counterparty.ID, Now: now}
	if got, err := read(f.tenant.ID, unpaid); err != nil || got.Counterparty == nil || got.Counterparty.ID != f.counterparty.ID ||
		got.Payments != 0 || got.Agent == nil || got.Agent.ID != f.b.ID {
		t.Errorf("a counterparty never paid: %+v (counterparty %+v), %v", got, got.Counterparty, err)
	}

	// Rows the organization lacks are nil; what was not asked is nil; and
	// each read is what the statements read one by one.
	for _, tc := range []struct {
		what   string
		tenant string
		q      store.DecisionInputsQuery
	}{
		{"nothing asked but the agent", f.tenant.ID, store.DecisionInputsQuery{AgentID: f.b.ID, Now: now}},
		// The key is the agent's own: b has made no decision under a's.
		{"another agent's key", f.tenant.ID, store.DecisionInputsQuery{AgentID: f.b.ID, IdempotencyKeySHA256: key, Now: now}},
		{"unknown agent, key, counterparty", f.tenant.ID, store.DecisionInputsQuery{AgentID: store.NewID(store.PrefixAgent),
			IdempotencyKeySHA256: digest("other"), CounterpartyID: store.NewID(store.PrefixCounterparty), Now: now}},
		// Another organization asking for acme's agent, key and
		// counterparty sees none of them.
		{"acme's rows, asked by bravo", bravo.tenant.ID, full},
	} {
		got, err := read(tc.tenant, tc.q)
		wantAgent := tc.q.AgentID == f.b.ID
		wantSeq := map[string]uint64{f.tenant.ID: 2, bravo.tenant.ID: 0}[tc.tenant]
		if err != nil || got.Previous != nil || (got.Agent != nil) != wantAgent || got.Stats != (store.AgentStats{}) ||
			got.Counterparty != nil || got.Payments != 0 || got.PolicySeq != wantSeq {
			t.Errorf("%s: %+v, %v", tc.what, got, err)
		}
		err = be.InTenantReadTx(ctx(t), tc.tenant, func(ctx context.Context, tx store.TenantTx) error {
			want, err := readInputsOneByOne(ctx, tx, tc.q)
			if err == nil && !reflect.DeepEqual(got, want) {
				err = fmt.Errorf("%+v; statement by statement %+v", got, want)
			}
			return err
		})
		if err != nil {
			t.Errorf("%s: %v", tc.what, err)
		}
	}

	for _, tc := range []struct {
		what   string
		tenant string
		q      store.DecisionInputsQuery
		want   error
	}{
		{"unknown tenant", "8a2b6f64-7c0e-4a53-9d55-2f1c9a0b7e41", full, store.ErrNotFound},
		{"malformed tenant", "acme", full, store.ErrInvalid},
		{"malformed agent", f.tenant.ID, store.DecisionInputsQuery{AgentID: "agt_../x", Now: now}, store.ErrInvalid},
		{"malformed counterparty", f.tenant.ID, store.DecisionInputsQuery{AgentID: f.a.ID, CounterpartyID: "cp_?", Now: now}, store.ErrInvalid},
		{"short key digest", f.tenant.ID, store.DecisionInputsQuery{AgentID: f.a.ID, IdempotencyKeySHA256: []byte{1}, Now: now}, store.ErrInvalid},
	} {
		if _, err := read(tc.tenant, tc.q); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
		}
	}

	// BeforeRead runs once, before the read's snapshot: a decision another
	// transaction commits in it is in the read (the decision service
	// counts on that to count each outcome at least once).
	calls := 0
	late := store.DecisionInputsQuery{AgentID: f.b.ID, Now: time.Now().UTC().Add(time.Minute), BeforeRead: func() {
		calls++
		inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Decisions().Insert(ctx, newDecision(f.b.ID, store.OutcomeDeny, "report.archive", ""))
			return err
		})
	}}
	if got, err := read(f.tenant.ID, late); err != nil || calls != 1 || got.Stats != (store.AgentStats{Decisions1h: 1, Denials1h: 1, Decisions24h: 1}) {
		t.Errorf("a decision committed in BeforeRead (called %d times): stats %+v, %v; want it read", calls, got.Stats, err)
	}
}

// readInputsOneByOne reads q in tx, one statement at a time: the
// reference the stores' ReadDecisionInputs are tested against.
func readInputsOneByOne(ctx context.Context, tx store.TenantTx, q store.DecisionInputsQuery) (store.DecisionInputs, error) {
	var in store.DecisionInputs
	if err := q.Check(); err != nil {
		return in, err
	}
	var err error
	if q.IdempotencyKeySHA256 != nil {
		if in.Previous, err = store.Optional(tx.Decisions().ByIdempotencyKey(ctx, q.AgentID, q.IdempotencyKeySHA256)); err != nil {
			return in, err
		}
	}
	if in.Agent, err = store.Optional(tx.Agents().Get(ctx, q.AgentID)); err != nil {
		return in, err
	}
	if in.Stats, err = tx.Decisions().AgentStats(ctx, q.AgentID, q.Now); err != nil {
		return in, err
	}
	switch act, _, err := tx.Policies().ActiveBundle(ctx); {
	case err == nil:
		in.PolicySeq = act.Seq
	case !errors.Is(err, store.ErrNotFound):
		return in, err
	}
	if q.CounterpartyID == "" {
		return in, nil
	}
	if in.Counterparty, err = store.Optional(tx.Counterparties().Get(ctx, q.CounterpartyID)); err != nil {
		return in, err
	}
	if in.Counterparty != nil {
		in.Counterparty.BankDetailsSealed = nil
	}
	in.Payments, err = tx.Counterparties().PaymentsCount(ctx, q.CounterpartyID)
	return in, err
}

// paymentHistory creates organization acme with an agent that made n
// allowed payments to one verified counterparty in the last n seconds,
// and returns the organization and the query of the agent's next payment
// decision.
func paymentHistory(tb testing.TB, be store.Backend, n int) (store.Tenant, store.DecisionInputsQuery) {
	tb.Helper()
	acme := CreateTenant(tb, be, "acme")
	now := time.Now().UTC()
	var q store.DecisionInputsQuery
	err := be.InTenantTx(ctx(tb), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		agent, err := tx.Agents().Create(ctx, store.Agent{Name: "payer", Sponsor: "usr_1", RiskTier: store.RiskLow, LedgerIndex: ledgerIndex(0)})
		if err != nil {
			return err
		}
		cp, err := tx.Counterparties().Create(ctx, store.Counterparty{Name: "Acme Supplies", Status: store.CounterpartyVerified, LedgerIndex: ledgerIndex(0)})
		if err != nil {
			return err
		}
		for i := range n {
			_, err := tx.Decisions().Insert(ctx, store.Decision{
				AgentID: agent.ID, Action: `{"type":"payment.send"}`, ActionType: "payment.send", CounterpartyID: cp.ID,
				Reason: "r", Outcome: store.OutcomeAllow, Reasons: []string{}, BaseRevision: "b",
				RequestSHA256: make([]byte, 32), LedgerIndex: uint64(i), Response: "{}",
				CreatedAt: now.Add(-time.Duration(n-i) * time.Second),
			})
			if err != nil {
				return err
			}
		}
		q = store.DecisionInputsQuery{AgentID: agent.ID, CounterpartyID: cp.ID, Now: now}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return acme, q
}

// BenchReadDecisionInputs times a store's ReadDecisionInputs: what a
// payment decision needs, for an agent with n allowed payments to one
// verified counterparty in the last n seconds. Every read is checked.
func BenchReadDecisionInputs(b *testing.B, be store.Backend, n int) {
	b.Helper()
	acme, q := paymentHistory(b, be, n)
	for b.Loop() {
		in, err := be.ReadDecisionInputs(context.Background(), acme.ID, q)
		if err != nil || in.Agent == nil || in.Counterparty == nil || in.Stats.Decisions1h != n || in.Payments != n {
			b.Fatalf("%+v, %v", in, err)
		}
	}
}
