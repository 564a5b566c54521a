package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// decisionFixture is an organization with two agents and a counterparty.
type decisionFixture struct {
	tenant       store.Tenant
	a, b         store.Agent
	counterparty store.Counterparty
}

func newDecisionFixture(t *testing.T, be store.Backend, slug string) decisionFixture {
	t.Helper()
	f := decisionFixture{tenant: CreateTenant(t, be, slug)}
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if f.a, err = tx.Agents().Create(ctx, newAgent("A")); err != nil {
			return err
		}
		if f.b, err = tx.Agents().Create(ctx, newAgent("B")); err != nil {
			return err
		}
		f.counterparty, err = tx.Counterparties().Create(ctx, store.Counterparty{Name: "Payee", Status: store.CounterpartyVerified, LedgerIndex: ledgerIndex(0)})
		return err
	})
	return f
}

func testDecisions(t *testing.T, h Harness) {
	be := newBackend(t, h)
	f := newDecisionFixture(t, be, "acme")
	key := digest("Idempotency-Key: 8e03978e")
	var full, bare store.Decision
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		d := newDecision(f.a.ID, store.OutcomeEscalate, "payment.send", f.counterparty.ID)
		d.Reasons = []string{"unverified_counterparty", "amount_above_limit"}
		d.ApprovalsRequired = 2
		d.TenantRevision, d.TenantBundleSHA256 = "2026-05-01", "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg"
		d.IdempotencyKeySHA256, d.LedgerIndex = key, 41
		var err error
		if full, err = tx.Decisions().Insert(ctx, d); err != nil {
			return err
		}
		if store.CheckID(store.PrefixDecision, full.ID) != nil || full.CreatedAt.IsZero() {
			return fmt.Errorf("inserted %+v", full)
		}
		d = newDecision(f.a.ID, store.OutcomeDeny, "data.export_all", "")
		d.Reasons = nil
		if bare, err = tx.Decisions().Insert(ctx, d); err != nil {
			return err
		}
		// NULL keys are not unique: any number of decisions without one.
		_, err = tx.Decisions().Insert(ctx, newDecision(f.a.ID, store.OutcomeAllow, "invoice.approve", ""))
		if err != nil {
			return err
		}
		// Five parts, the most an action type has (DESIGN §3).
		if _, err = tx.Decisions().Insert(ctx, newDecision(f.a.ID, store.OutcomeDeny, "a.b.c.d.e", "")); err != nil {
			return fmt.Errorf("a five-part action type: %w", err)
		}
		return nil
	})
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		decs := tx.Decisions()
		got, err := decs.Get(ctx, full.ID)
		if err != nil || !sameDecision(got, full) {
			return fmt.Errorf("Get = %+v, %v;\ninserted %+v", got, err, full)
		}
		got, err = decs.Get(ctx, bare.ID)
		if err != nil || got.CounterpartyID != "" || got.IdempotencyKeySHA256 != nil || got.Reasons == nil || len(got.Reasons) != 0 || !sameDecision(got, bare) {
			return fmt.Errorf("Get(bare) = %+v, %v", got, err)
		}
		if got, err := decs.ByIdempotencyKey(ctx, f.a.ID, key); err != nil || got.ID != full.ID || got.Response != full.Response {
			return fmt.Errorf("ByIdempotencyKey = %+v, %v", got, err)
		}
		if _, err := decs.ByIdempotencyKey(ctx, f.b.ID, key); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("another agent's key: %v", err)
		}
		if _, err := decs.ByIdempotencyKey(ctx, f.a.ID, digest("other")); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("unknown key: %v", err)
		}
		// The same key is the other agent's own.
		d := newDecision(f.b.ID, store.OutcomeAllow, "payment.send", f.counterparty.ID)
		d.IdempotencyKeySHA256 = key
		if _, err := decs.Insert(ctx, d); err != nil {
			return fmt.Errorf("same key, other agent: %w", err)
		}
		if got, err := decs.ByIdempotencyKey(ctx, f.b.ID, key); err != nil || got.AgentID != f.b.ID {
			return fmt.Errorf("ByIdempotencyKey(b) = %+v, %v", got, err)
		}
		return nil
	})

	unknownAgent, unknownCP := store.NewID(store.PrefixAgent), store.NewID(store.PrefixCounterparty)
	insert := func(mutate func(*store.Decision)) func(ctx context.Context, tx store.TenantTx) error {
		return func(ctx context.Context, tx store.TenantTx) error {
			d := newDecision(f.a.ID, store.OutcomeAllow, "payment.send", f.counterparty.ID)
			mutate(&d)
			_, err := tx.Decisions().Insert(ctx, d)
			return err
		}
	}
	expectRefusals(t, be, f.tenant.ID, []refusal{
		{"same key, same agent", insert(func(d *store.Decision) { d.IdempotencyKeySHA256 = key }), store.ErrConflict},
		{"duplicate id", insert(func(d *store.Decision) { d.ID = full.ID }), store.ErrConflict},
		{"unknown agent", insert(func(d *store.Decision) { d.AgentID = unknownAgent }), store.ErrNotFound},
		{"unknown counterparty", insert(func(d *store.Decision) { d.CounterpartyID = unknownCP }), store.ErrNotFound},
		{"malformed id", insert(func(d *store.Decision) { d.ID = "dec_1" }), store.ErrInvalid},
		{"malformed counterparty", insert(func(d *store.Decision) { d.CounterpartyID = "cp_1" }), store.ErrInvalid},
		{"bad outcome", insert(func(d *store.Decision) { d.Outcome = "maybe" }), store.ErrInvalid},
		{"no outcome", insert(func(d *store.Decision) { d.Outcome = "" }), store.ErrInvalid},
		{"action not JSON", insert(func(d *store.Decision) { d.Action = `{"type":` }), store.ErrInvalid},
		{"no action", insert(func(d *store.Decision) { d.Action = "" }), store.ErrInvalid},
		{"oversized action", insert(func(d *store.Decision) { d.Action = `"` + strings.Repeat("a", store.MaxAction) + `"` }), store.ErrInvalid},
		{"bad action type", insert(func(d *store.Decision) { d.ActionType = "Payment.Send" }), store.ErrInvalid},
		{"one-part action type", insert(func(d *store.Decision) { d.ActionType = "payment" }), store.ErrInvalid},
		{"six-part action type", insert(func(d *store.Decision) { d.ActionType = "a.b.c.d.e.f" }), store.ErrInvalid},
		{"long reason", insert(func(d *store.Decision) { d.Reason = strings.Repeat("r", store.MaxReason+1) }), store.ErrInvalid},
		// PostgreSQL's text refuses U+0000 with an SQL error: both stores
		// refuse it alike, as invalid.
		{"NUL in the reason", insert(func(d *store.Decision) { d.Reason = "pay\x00invoice" }), store.ErrInvalid},
		{"empty reason in reasons", insert(func(d *store.Decision) { d.Reasons = []string{""} }), store.ErrInvalid},
		{"too many reasons", insert(func(d *store.Decision) { d.Reasons = make([]string, store.MaxReasons+1) }), store.ErrInvalid},
		{"negative approvals", insert(func(d *store.Decision) { d.ApprovalsRequired = -1 }), store.ErrInvalid},
		{"too many approvals", insert(func(d *store.Decision) { d.ApprovalsRequired = store.MaxApprovals + 1 }), store.ErrInvalid},
		{"no base revision", insert(func(d *store.Decision) { d.BaseRevision = "" }), store.ErrInvalid},
		{"revision with a newline", insert(func(d *store.Decision) { d.TenantRevision = "v1\nv2" }), store.ErrInvalid},
		{"short idempotency digest", insert(func(d *store.Decision) { d.IdempotencyKeySHA256 = []byte("key") }), store.ErrInvalid},
		{"no request digest", insert(func(d *store.Decision) { d.RequestSHA256 = nil }), store.ErrInvalid},
		{"ledger index over int64", insert(func(d *store.Decision) { d.LedgerIndex = 1 << 63 }), store.ErrInvalid},
		{"no response", insert(func(d *store.Decision) { d.Response = "" }), store.ErrInvalid},
		{"response not JSON", insert(func(d *store.Decision) { d.Response = "ok" }), store.ErrInvalid},
		{"get unknown", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Decisions().Get(ctx, store.NewID(store.PrefixDecision))
			return err
		}, store.ErrNotFound},
		{"get malformed", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Decisions().Get(ctx, full.ID+"x")
			return err
		}, store.ErrInvalid},
		{"key lookup with a short digest", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Decisions().ByIdempotencyKey(ctx, f.a.ID, key[:16])
			return err
		}, store.ErrInvalid},
	})
}

// PaymentsCount counts allowed payment.* decisions to one counterparty.
func testPaymentsCount(t *testing.T, h Harness) {
	be := newBackend(t, h)
	f := newDecisionFixture(t, be, "acme")
	var other store.Counterparty
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if other, err = tx.Counterparties().Create(ctx, store.Counterparty{Name: "Other", LedgerIndex: ledgerIndex(0)}); err != nil {
			return err
		}
		for _, d := range []store.Decision{
			newDecision(f.a.ID, store.OutcomeAllow, "payment.send", f.counterparty.ID),
			newDecision(f.b.ID, store.OutcomeAllow, "payment.refund.partial", f.counterparty.ID),
			newDecision(f.a.ID, store.OutcomeDeny, "payment.send", f.counterparty.ID),
			newDecision(f.a.ID, store.OutcomeEscalate, "payment.send", f.counterparty.ID),
			newDecision(f.a.ID, store.OutcomeAllow, "funds.transfer", f.counterparty.ID),
			newDecision(f.a.ID, store.OutcomeAllow, "payments.send", f.counterparty.ID),
			newDecision(f.a.ID, store.OutcomeAllow, "payment.send", other.ID),
			newDecision(f.a.ID, store.OutcomeAllow, "payment.send", ""),
		} {
			if _, err := tx.Decisions().Insert(ctx, d); err != nil {
				return err
			}
		}
		return nil
	})
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		for id, want := range map[string]int{f.counterparty.ID: 2, other.ID: 1, store.NewID(store.PrefixCounterparty): 0} {
			if n, err := tx.Counterparties().PaymentsCount(ctx, id); err != nil || n != want {
				return fmt.Errorf("PaymentsCount(%s) = %d, %v; want %d", id, n, err, want)
			}
		}
		return nil
	})
}

func testAgentStats(t *testing.T, h Harness) {
	be := newBackend(t, h)
	f := newDecisionFixture(t, be, "acme")
	now := time.Now().UTC().Truncate(time.Second)
	at := func(agent store.Agent, outcome store.Outcome, ago time.Duration) store.Decision {
		d := newDecision(agent.ID, outcome, "invoice.approve", "")
		d.CreatedAt = now.Add(-ago)
		return d
	}
	insert := func(ds ...store.Decision) {
		t.Helper()
		inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
			for _, d := range ds {
				got, err := tx.Decisions().Insert(ctx, d)
				if err != nil {
					return err
				}
				if !got.CreatedAt.Equal(d.CreatedAt) {
					return fmt.Errorf("CreatedAt %v not honoured: %v", d.CreatedAt, got.CreatedAt)
				}
			}
			return nil
		})
	}
	// Stored in the order of their times, as the decision service stores
	// them: the counts are exact.
	insert(
		at(f.a, store.OutcomeDeny, 25*time.Hour),
		at(f.a, store.OutcomeAllow, 24*time.Hour), // the 24h window's start: outside it
		at(f.a, store.OutcomeAllow, 23*time.Hour),
		at(f.a, store.OutcomeDeny, 2*time.Hour),
		at(f.a, store.OutcomeDeny, time.Hour), // the 1h window's start: outside it
		at(f.a, store.OutcomeDeny, 59*time.Minute+59*time.Second),
		at(f.a, store.OutcomeEscalate, 45*time.Minute),
		at(f.a, store.OutcomeDeny, 30*time.Minute),
		at(f.b, store.OutcomeDeny, 5*time.Minute), // another agent's
		at(f.a, store.OutcomeAllow, 10*time.Minute),
		at(f.a, store.OutcomeAllow, -time.Minute), // ahead of now (a replica's clock): counts
	)
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		for _, tc := range []struct {
			agent string
			now   time.Time
			want  store.AgentStats
		}{
			{f.a.ID, now, store.AgentStats{Decisions1h: 5, Denials1h: 2, Decisions24h: 8}},
			{f.b.ID, now, store.AgentStats{Decisions1h: 1, Denials1h: 1, Decisions24h: 1}},
			{f.a.ID, now.Add(48 * time.Hour), store.AgentStats{}},
			{store.NewID(store.PrefixAgent), now, store.AgentStats{}},
		} {
			if got, err := tx.Decisions().AgentStats(ctx, tc.agent, tc.now); err != nil || got != tc.want {
				return fmt.Errorf("AgentStats(%s, %v) = %+v, %v; want %+v", tc.agent, tc.now, got, err, tc.want)
			}
		}
		if _, err := tx.Decisions().AgentStats(ctx, "agt_?", now); !errors.Is(err, store.ErrInvalid) {
			return fmt.Errorf("malformed agent: %v", err)
		}
		return nil
	})
	// A decision stored after later-stamped ones (a request overtaken by
	// others, a replica's clock) counts as made at the latest of them
	// (store.AgentTally): once, in both windows now, and in none once the
	// windows have passed it.
	insert(at(f.a, store.OutcomeDeny, 90*time.Minute))
	// The same within one pipeline (PostgreSQL's array insert): b's -4m
	// decision is stored after its -3m one.
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Pipeline(ctx, func(ctx context.Context) error {
			for _, ago := range []time.Duration{3 * time.Minute, 4 * time.Minute, 2 * time.Minute} {
				d := at(f.b, store.OutcomeDeny, ago)
				d.ID = store.NewID(store.PrefixDecision)
				if err := tx.Decisions().Record(ctx, store.DecisionRecord{Decision: d}); err != nil {
					return err
				}
			}
			return nil
		})
	})
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		for _, tc := range []struct {
			what  string
			agent string
			now   time.Time
			want  store.AgentStats
		}{
			{"a, stored late", f.a.ID, now, store.AgentStats{Decisions1h: 6, Denials1h: 3, Decisions24h: 9}},
			{"a, two days on", f.a.ID, now.Add(48 * time.Hour), store.AgentStats{}},
			{"b, pipelined", f.b.ID, now, store.AgentStats{Decisions1h: 4, Denials1h: 4, Decisions24h: 4}},
			// The window starts between -3m and -2m: only -2m is after it.
			{"b, window past -3m", f.b.ID, now.Add(time.Hour - 3*time.Minute + time.Second), store.AgentStats{Decisions1h: 1, Denials1h: 1, Decisions24h: 4}},
			{"b, two days on", f.b.ID, now.Add(48 * time.Hour), store.AgentStats{}},
		} {
			if got, err := tx.Decisions().AgentStats(ctx, tc.agent, tc.now); err != nil || got != tc.want {
				return fmt.Errorf("%s: AgentStats = %+v, %v; want %+v", tc.what, got, err, tc.want)
			}
		}
		return nil
	})
}

func testReceipts(t *testing.T, h Harness) {
	be := newBackend(t, h)
	f := newDecisionFixture(t, be, "acme")
	var allowed, another, denied, escalated store.Decision
	var pending store.Case
	var rc store.Receipt
	var jwsAt, otherAt uint64
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		for _, d := range []struct {
			dst     *store.Decision
			outcome store.Outcome
		}{{&allowed, store.OutcomeAllow}, {&another, store.OutcomeAllow}, {&denied, store.OutcomeDeny}, {&escalated, store.OutcomeEscalate}} {
			if *d.dst, err = tx.Decisions().Insert(ctx, newDecision(f.a.ID, d.outcome, "payment.send", f.counterparty.ID)); err != nil {
				return err
			}
		}
		pending, err = tx.Cases().Create(ctx, store.Case{DecisionID: escalated.ID, AgentID: f.a.ID, ApprovalsRequired: 1, ExpiresAt: time.Now().Add(time.Hour)})
		if err != nil {
			return err
		}
		// The receipt's JWS is the record of the ledger entry it names;
		// other JWS records for the refusals below.
		if _, err := AppendBatch(ctx, tx.Log(), 7, "before"); err != nil {
			return err
		}
		if jwsAt, err = appendRecord(ctx, tx.Log(), FakeJWS); err != nil {
			return err
		}
		if otherAt, err = appendRecord(ctx, tx.Log(), otherJWS); err != nil {
			return err
		}
		rc, err = tx.Receipts().Insert(ctx, store.Receipt{DecisionID: allowed.ID, JWS: FakeJWS, LedgerIndex: jwsAt})
		if err != nil || store.CheckID(store.PrefixReceipt, rc.ID) != nil || rc.CreatedAt.IsZero() {
			return fmt.Errorf("Insert = %+v, %v", rc, err)
		}
		return nil
	})
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		got, err := tx.Receipts().ByDecision(ctx, allowed.ID)
		if err != nil || got.ID != rc.ID || got.DecisionID != allowed.ID || got.JWS != FakeJWS || got.LedgerIndex != jwsAt || !got.CreatedAt.Equal(rc.CreatedAt) {
			return fmt.Errorf("ByDecision = %+v, %v", got, err)
		}
		if _, err := tx.Receipts().ByDecision(ctx, denied.ID); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("receipt of a denied decision: %v", err)
		}
		return nil
	})
	// Each refusal names the entry holding its JWS, so that the refusal is
	// the one its name says (except where the entry is the point).
	insert := func(r store.Receipt) func(ctx context.Context, tx store.TenantTx) error {
		if r.LedgerIndex == 0 {
			r.LedgerIndex = jwsAt
		}
		return func(ctx context.Context, tx store.TenantTx) error { _, err := tx.Receipts().Insert(ctx, r); return err }
	}
	expectRefusals(t, be, f.tenant.ID, []refusal{
		{"JWS not the record of its entry", insert(store.Receipt{DecisionID: another.ID, JWS: FakeJWS, LedgerIndex: otherAt}), store.ErrInvalid},
		{"another JWS than its entry's record", insert(store.Receipt{DecisionID: another.ID, JWS: otherJWS, LedgerIndex: jwsAt}), store.ErrInvalid},
		{"entry past the log", insert(store.Receipt{DecisionID: another.ID, JWS: FakeJWS, LedgerIndex: otherAt + 100}), store.ErrInvalid},
		{"second receipt for a decision", insert(store.Receipt{DecisionID: allowed.ID, JWS: FakeJWS}), store.ErrConflict},
		{"duplicate id", insert(store.Receipt{ID: rc.ID, DecisionID: another.ID, JWS: FakeJWS}), store.ErrConflict},
		{"denied decision", insert(store.Receipt{DecisionID: denied.ID, JWS: FakeJWS}), store.ErrConflict},
		{"case still pending", insert(store.Receipt{DecisionID: escalated.ID, JWS: FakeJWS}), store.ErrConflict},
		{"unknown decision", insert(store.Receipt{DecisionID: store.NewID(store.PrefixDecision), JWS: FakeJWS}), store.ErrNotFound},
		// The order of the refusals when the entry does not match either:
		// the decision's first, a duplicate's only once the entry matches.
		{"unknown decision, entry not holding the JWS", insert(store.Receipt{DecisionID: store.NewID(store.PrefixDecision), JWS: FakeJWS, LedgerIndex: otherAt}), store.ErrNotFound},
		{"denied decision, entry not holding the JWS", insert(store.Receipt{DecisionID: denied.ID, JWS: FakeJWS, LedgerIndex: otherAt}), store.ErrConflict},
		{"second receipt, entry not holding the JWS", insert(store.Receipt{DecisionID: allowed.ID, JWS: FakeJWS, LedgerIndex: otherAt}), store.ErrInvalid},
		{"malformed decision", insert(store.Receipt{DecisionID: "dec_", JWS: FakeJWS}), store.ErrInvalid},
		{"malformed id", insert(store.Receipt{ID: "rct_x", DecisionID: denied.ID, JWS: FakeJWS}), store.ErrInvalid},
		{"empty JWS", insert(store.Receipt{DecisionID: denied.ID}), store.ErrInvalid},
		{"two parts", insert(store.Receipt{DecisionID: denied.ID, JWS: "a.b"}), store.ErrInvalid},
		{"four parts", insert(store.Receipt{DecisionID: denied.ID, JWS: "a.b.c.d"}), store.ErrInvalid},
		{"no signature", insert(store.Receipt{DecisionID: denied.ID, JWS: "a.b."}), store.ErrInvalid},
		{"not base64url", insert(store.Receipt{DecisionID: denied.ID, JWS: "a+/.b.c"}), store.ErrInvalid},
		{"JSON serialization", insert(store.Receipt{DecisionID: denied.ID, JWS: `{"payload":"x"}`}), store.ErrInvalid},
		{"by malformed decision", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Receipts().ByDecision(ctx, "rct_"+allowed.ID[4:])
			return err
		}, store.ErrInvalid},
	})
	// An escalation gets its receipt once its case is approved.
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.Cases().SetStatus(ctx, pending.ID, store.CaseApproved); err != nil {
			return err
		}
		at, err := appendRecord(ctx, tx.Log(), otherJWS)
		if err != nil {
			return err
		}
		_, err = tx.Receipts().Insert(ctx, store.Receipt{DecisionID: escalated.ID, JWS: otherJWS, LedgerIndex: at})
		return err
	})
}

func testCases(t *testing.T, h Harness) {
	be := newBackend(t, h)
	f := newDecisionFixture(t, be, "acme")
	var escalated, spare, allowed store.Decision
	var cs store.Case
	created := time.Now().Add(-time.Minute)
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if escalated, err = tx.Decisions().Insert(ctx, newDecision(f.a.ID, store.OutcomeEscalate, "agent.rotate_key", "")); err != nil {
			return err
		}
		if spare, err = tx.Decisions().Insert(ctx, newDecision(f.a.ID, store.OutcomeEscalate, "policy.activate", "")); err != nil {
			return err
		}
		if allowed, err = tx.Decisions().Insert(ctx, newDecision(f.a.ID, store.OutcomeAllow, "invoice.approve", "")); err != nil {
			return err
		}
		cs, err = tx.Cases().Create(ctx, store.Case{DecisionID: escalated.ID, AgentID: f.a.ID, ApprovalsRequired: 2,
			CreatedAt: created, ExpiresAt: created.Add(24 * time.Hour)})
		if err != nil || cs.Status != store.CasePending || store.CheckID(store.PrefixCase, cs.ID) != nil ||
			!cs.CreatedAt.Equal(store.StoredTime(created)) || !cs.UpdatedAt.Equal(cs.CreatedAt) {
			return fmt.Errorf("Create = %+v, %v", cs, err)
		}
		return nil
	})
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		got, err := tx.Cases().Get(ctx, cs.ID)
		if err != nil || got.DecisionID != escalated.ID || got.AgentID != f.a.ID || got.Status != store.CasePending || got.ApprovalsRequired != 2 ||
			!got.ExpiresAt.Equal(cs.ExpiresAt) || !got.CreatedAt.Equal(cs.CreatedAt) || !got.UpdatedAt.Equal(cs.UpdatedAt) {
			return fmt.Errorf("Get = %+v, %v; created %+v", got, err, cs)
		}
		if err := tx.Cases().SetStatus(ctx, cs.ID, store.CaseApproved); err != nil {
			return err
		}
		// Closed once: a second vote, or the expiry, finds it closed.
		for _, s := range []store.CaseStatus{store.CaseApproved, store.CaseRejected, store.CaseExpired} {
			if err := tx.Cases().SetStatus(ctx, cs.ID, s); !errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("approved → %s: %v, want ErrConflict", s, err)
			}
		}
		got, err = tx.Cases().Get(ctx, cs.ID)
		if err != nil || got.Status != store.CaseApproved || got.UpdatedAt.Before(got.CreatedAt) || !got.ExpiresAt.Equal(cs.ExpiresAt) {
			return fmt.Errorf("after approval: %+v, %v", got, err)
		}
		return nil
	})
	day := time.Now().Add(24 * time.Hour)
	create := func(mutate func(*store.Case)) func(ctx context.Context, tx store.TenantTx) error {
		return func(ctx context.Context, tx store.TenantTx) error {
			c := store.Case{DecisionID: spare.ID, AgentID: f.a.ID, ApprovalsRequired: 1, ExpiresAt: day}
			mutate(&c)
			_, err := tx.Cases().Create(ctx, c)
			return err
		}
	}
	expectRefusals(t, be, f.tenant.ID, []refusal{
		{"second case for a decision", create(func(c *store.Case) { c.DecisionID = escalated.ID }), store.ErrConflict},
		{"duplicate id", create(func(c *store.Case) { c.ID = cs.ID }), store.ErrConflict},
		{"unknown decision", create(func(c *store.Case) { c.DecisionID = store.NewID(store.PrefixDecision) }), store.ErrNotFound},
		{"another agent's decision", create(func(c *store.Case) { c.AgentID = f.b.ID }), store.ErrConflict},
		{"unknown agent", create(func(c *store.Case) { c.AgentID = store.NewID(store.PrefixAgent) }), store.ErrConflict},
		{"allowed decision", create(func(c *store.Case) { c.DecisionID = allowed.ID }), store.ErrConflict},
		{"created closed", create(func(c *store.Case) { c.Status = store.CaseApproved }), store.ErrInvalid},
		{"bad status", create(func(c *store.Case) { c.Status = "open" }), store.ErrInvalid},
		{"no approvals", create(func(c *store.Case) { c.ApprovalsRequired = 0 }), store.ErrInvalid},
		{"too many approvals", create(func(c *store.Case) { c.ApprovalsRequired = store.MaxApprovals + 1 }), store.ErrInvalid},
		{"no expiry", create(func(c *store.Case) { c.ExpiresAt = time.Time{} }), store.ErrInvalid},
		{"expired at creation", create(func(c *store.Case) { c.ExpiresAt = time.Now().Add(-time.Second) }), store.ErrInvalid},
		{"expiry beyond a year", create(func(c *store.Case) { c.ExpiresAt = time.Now().Add(store.MaxCaseLifetime + time.Hour) }), store.ErrInvalid},
		{"malformed id", create(func(c *store.Case) { c.ID = "case_" }), store.ErrInvalid},
		{"get unknown", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Cases().Get(ctx, store.NewID(store.PrefixCase))
			return err
		}, store.ErrNotFound},
		{"get malformed", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Cases().Get(ctx, escalated.ID)
			return err
		}, store.ErrInvalid},
		{"close unknown", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Cases().SetStatus(ctx, store.NewID(store.PrefixCase), store.CaseRejected)
		}, store.ErrNotFound},
		{"back to pending", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Cases().SetStatus(ctx, cs.ID, store.CasePending)
		}, store.ErrInvalid},
		{"unknown status", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Cases().SetStatus(ctx, cs.ID, "done")
		}, store.ErrInvalid},
	})
}

// testRecord: a decision with its receipt or case, all or nothing, and the
// transaction goes on after a refused one.
func testRecord(t *testing.T, h Harness) {
	be := newBackend(t, h)
	f := newDecisionFixture(t, be, "acme")
	now := time.Now()
	// Every receipt below names ledger entry 8, which holds its JWS.
	const receiptJWS = "eyJhbGciOiJFZERTQSJ9.e30.c2ln"
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		if _, err := AppendBatch(ctx, tx.Log(), 8, "before"); err != nil {
			return err
		}
		at, err := appendRecord(ctx, tx.Log(), receiptJWS)
		if err == nil && at != 8 {
			err = fmt.Errorf("the receipt's entry went in at %d", at)
		}
		return err
	})
	record := func(outcome store.Outcome) store.DecisionRecord {
		d := newDecision(f.a.ID, outcome, "payment.send", f.counterparty.ID)
		d.ID, d.CreatedAt = store.NewID(store.PrefixDecision), now
		r := store.DecisionRecord{Decision: d}
		switch outcome {
		case store.OutcomeAllow:
			r.Receipt = &store.Receipt{ID: store.NewID(store.PrefixReceipt), DecisionID: d.ID, JWS: receiptJWS, LedgerIndex: 8}
		case store.OutcomeEscalate:
			r.Case = &store.Case{ID: store.NewID(store.PrefixCase), DecisionID: d.ID, AgentID: d.AgentID,
				ApprovalsRequired: 1, ExpiresAt: now.Add(time.Hour)}
		}
		return r
	}
	allowed, escalated, denied := record(store.OutcomeAllow), record(store.OutcomeEscalate), record(store.OutcomeDeny)
	// counters checks the counterparty's payments and the agent's decisions
	// and denials of the last hour, as the policy input will see them.
	counters := func(ctx context.Context, tx store.TenantTx, what string, payments, decisions, denials int) error {
		n, err := tx.Counterparties().PaymentsCount(ctx, f.counterparty.ID)
		if err != nil || n != payments {
			return fmt.Errorf("payments %s: %d, %v; want %d", what, n, err, payments)
		}
		stats, err := tx.Decisions().AgentStats(ctx, f.a.ID, now.Add(time.Second))
		if err != nil || stats.Decisions1h != decisions || stats.Denials1h != denials {
			return fmt.Errorf("agent stats %s: %+v, %v; want %d decisions, %d denials", what, stats, err, decisions, denials)
		}
		return nil
	}
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		for _, r := range []store.DecisionRecord{allowed, escalated, denied} {
			if err := tx.Decisions().Record(ctx, r); err != nil {
				return fmt.Errorf("record %s: %w", r.Decision.Outcome, err)
			}
		}
		return nil
	})
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		for _, r := range []store.DecisionRecord{allowed, escalated, denied} {
			if got, err := tx.Decisions().Get(ctx, r.Decision.ID); err != nil || got.Outcome != r.Decision.Outcome || got.Response != r.Decision.Response {
				return fmt.Errorf("recorded decision %s: %+v, %v", r.Decision.Outcome, got, err)
			}
		}
		if rc, err := tx.Receipts().ByDecision(ctx, allowed.Decision.ID); err != nil || rc.ID != allowed.Receipt.ID || rc.JWS != allowed.Receipt.JWS || rc.LedgerIndex != 8 {
			return fmt.Errorf("recorded receipt: %+v, %v", rc, err)
		}
		if c, err := tx.Cases().Get(ctx, escalated.Case.ID); err != nil || c.Status != store.CasePending || c.DecisionID != escalated.Decision.ID {
			return fmt.Errorf("recorded case: %+v, %v", c, err)
		}
		return counters(ctx, tx, "after three recorded decisions", 1, 3, 1)
	})

	// Refused before the database: parts that do not belong together.
	for name, mutate := range map[string]func(*store.DecisionRecord){
		"receipt of a denial":     func(r *store.DecisionRecord) { r.Decision.Outcome = store.OutcomeDeny },
		"receipt of another":      func(r *store.DecisionRecord) { r.Receipt.DecisionID = store.NewID(store.PrefixDecision) },
		"case of an allowed one":  func(r *store.DecisionRecord) { r.Case = escalated.Case },
		"case of another's agent": func(r *store.DecisionRecord) { *r = record(store.OutcomeEscalate); r.Case.AgentID = f.b.ID },
		"case of another decision": func(r *store.DecisionRecord) {
			*r = record(store.OutcomeEscalate)
			r.Case.DecisionID = allowed.Decision.ID
		},
		"a receipt and a case": func(r *store.DecisionRecord) {
			esc := record(store.OutcomeEscalate)
			r.Case = esc.Case
			r.Case.DecisionID, r.Case.AgentID = r.Decision.ID, r.Decision.AgentID
		},
		"a case already closed": func(r *store.DecisionRecord) {
			*r = record(store.OutcomeEscalate)
			r.Case.Status = store.CaseApproved
		},
	} {
		r := record(store.OutcomeAllow)
		mutate(&r)
		err := be.InTenantTx(ctx(t), f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
			return tx.Decisions().Record(ctx, r)
		})
		wantErr(t, name, err, store.ErrInvalid)
	}

	// Refused by the database after the decision went in: the receipt's id
	// is taken. Nothing of it stays, and the transaction goes on.
	dup := record(store.OutcomeAllow)
	dup.Receipt.ID = allowed.Receipt.ID
	later := record(store.OutcomeAllow)
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.Decisions().Record(ctx, dup); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("a receipt id taken: %v, want ErrConflict", err)
		}
		if _, err := tx.Decisions().Get(ctx, dup.Decision.ID); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("the refused record's decision stayed: %v", err)
		}
		return tx.Decisions().Record(ctx, later)
	})
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		if _, err := tx.Decisions().Get(ctx, later.Decision.ID); err != nil {
			return fmt.Errorf("the record after a refused one: %v", err)
		}
		return counters(ctx, tx, "with the refused record undone", 2, 4, 1)
	})

	// A receipt naming an entry that does not hold its JWS is refused, and
	// its decision with it: the JWS is only ever kept as that record. So
	// in a pipeline, as the ledger writes them, where the good records
	// before it go too (two: on SQLite the three receipts are written in
	// chunks of two and one, and the refused one is in the last).
	for name, mutate := range map[string]func(*store.DecisionRecord){
		"receipt not its entry's record": func(r *store.DecisionRecord) { r.Receipt.LedgerIndex = 3 },
		"receipt past the log":           func(r *store.DecisionRecord) { r.Receipt.LedgerIndex = 1000 },
	} {
		for _, pipelined := range []bool{false, true} {
			r, good, good2 := record(store.OutcomeAllow), record(store.OutcomeAllow), record(store.OutcomeAllow)
			mutate(&r)
			inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
				var err error
				if pipelined {
					err = tx.Savepoint(ctx, func(ctx context.Context) error {
						return tx.Pipeline(ctx, func(ctx context.Context) error {
							for _, g := range []store.DecisionRecord{good, good2} {
								if err := tx.Decisions().Record(ctx, g); err != nil {
									return err
								}
							}
							return tx.Decisions().Record(ctx, r)
						})
					})
				} else {
					err = tx.Decisions().Record(ctx, r)
				}
				if !errors.Is(err, store.ErrInvalid) {
					return fmt.Errorf("%s (pipelined %v): %v, want ErrInvalid", name, pipelined, err)
				}
				for _, d := range []store.DecisionRecord{r, good, good2} {
					if _, err := tx.Decisions().Get(ctx, d.Decision.ID); !errors.Is(err, store.ErrNotFound) && (pipelined || d.Decision.ID == r.Decision.ID) {
						return fmt.Errorf("%s (pipelined %v): decision %s stayed: %v", name, pipelined, d.Decision.ID, err)
					}
				}
				return nil
			})
		}
	}

	// In a Pipeline, under a Savepoint: records go together, and one
	// refused takes the others of its pipeline with it, nothing else.
	p1, p2, p3, p4 := record(store.OutcomeAllow), record(store.OutcomeEscalate), record(store.OutcomeAllow), record(store.OutcomeDeny)
	// Two more payments and a denial in p1's pipeline: the agent's tallies
	// run on within it, and the counterparty's payments are summed.
	p1b, p1d := record(store.OutcomeAllow), record(store.OutcomeDeny)
	// p5 goes in a pipeline whose savepoint around undone fails.
	p5, undone := record(store.OutcomeAllow), record(store.OutcomeAllow)
	p1key := sha256.Sum256([]byte("pipelined idempotency key"))
	p1.Decision.IdempotencyKeySHA256 = p1key[:]
	bad := record(store.OutcomeAllow)
	bad.Receipt.ID = allowed.Receipt.ID
	pipelined := func(ctx context.Context, tx store.TenantTx, rs ...store.DecisionRecord) error {
		return tx.Savepoint(ctx, func(ctx context.Context) error {
			return tx.Pipeline(ctx, func(ctx context.Context) error {
				for _, r := range rs {
					if err := tx.Decisions().Record(ctx, r); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		// Nested, the outer pipeline sends the inner one's records too.
		err := tx.Savepoint(ctx, func(ctx context.Context) error {
			return tx.Pipeline(ctx, func(ctx context.Context) error {
				for _, r := range []store.DecisionRecord{p1, p1b, p1d} {
					if err := tx.Decisions().Record(ctx, r); err != nil {
						return err
					}
				}
				return pipelined(ctx, tx, p2)
			})
		})
		if err != nil {
			return fmt.Errorf("a pipeline of two records, one nested: %w", err)
		}
		// A savepoint inside the pipeline that fails drops what it queued;
		// queued records are not visible before the pipeline writes them.
		err = tx.Pipeline(ctx, func(ctx context.Context) error {
			if err := tx.Decisions().Record(ctx, p5); err != nil {
				return err
			}
			if _, err := tx.Decisions().Get(ctx, p5.Decision.ID); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("a queued record read before its pipeline ended: %v, want ErrNotFound", err)
			}
			undo := errors.New("undo")
			if err := tx.Savepoint(ctx, func(ctx context.Context) error {
				if err := tx.Decisions().Record(ctx, undone); err != nil {
					return err
				}
				return undo
			}); !errors.Is(err, undo) {
				return fmt.Errorf("a failing savepoint in a pipeline: %v", err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("a pipeline with a failed savepoint: %w", err)
		}
		if err := pipelined(ctx, tx, p3, bad); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("a pipeline with a taken receipt id: %v, want ErrConflict", err)
		}
		if err := pipelined(ctx, tx, p4, store.DecisionRecord{Decision: store.Decision{}}); !errors.Is(err, store.ErrInvalid) {
			return fmt.Errorf("a pipeline with an invalid record: %v, want ErrInvalid", err)
		}
		return nil
	})
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		for _, r := range []store.DecisionRecord{p1, p1b, p1d, p2} {
			if got, err := tx.Decisions().Get(ctx, r.Decision.ID); err != nil || got.Outcome != r.Decision.Outcome ||
				got.Response != r.Decision.Response || got.CounterpartyID != r.Decision.CounterpartyID {
				return fmt.Errorf("pipelined record: %+v, %v", got, err)
			}
		}
		if got, err := tx.Decisions().ByIdempotencyKey(ctx, f.a.ID, p1key[:]); err != nil || got.ID != p1.Decision.ID {
			return fmt.Errorf("a pipelined record by its idempotency key: %+v, %v", got, err)
		}
		for _, r := range []store.DecisionRecord{p1, p1b} {
			if rc, err := tx.Receipts().ByDecision(ctx, r.Decision.ID); err != nil || rc.ID != r.Receipt.ID || rc.JWS != r.Receipt.JWS || rc.LedgerIndex != 8 {
				return fmt.Errorf("pipelined receipt: %+v, %v", rc, err)
			}
		}
		// Before the pipelines: 2 payments, 4 decisions, 1 denial; the
		// refused pipelines and the undone record count for nothing.
		if err := counters(ctx, tx, "after five pipelined decisions", 5, 9, 2); err != nil {
			return err
		}
		if _, err := tx.Decisions().Get(ctx, p5.Decision.ID); err != nil {
			return fmt.Errorf("the record before a failed savepoint in its pipeline: %v", err)
		}
		for _, r := range []store.DecisionRecord{p3, bad, p4, undone} {
			if _, err := tx.Decisions().Get(ctx, r.Decision.ID); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("a record of a refused pipeline stayed: %v", err)
			}
		}
		if _, err := tx.Cases().Get(ctx, p2.Case.ID); err != nil {
			return fmt.Errorf("pipelined case: %v", err)
		}
		return nil
	})
}
