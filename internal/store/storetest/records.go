package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// Helpers and fixtures for the record tables: agents, keys, assertion jtis,
// counterparties, decisions, receipts and cases.

// refusal is a call the store must refuse with want.
type refusal struct {
	name string
	fn   func(ctx context.Context, tx store.TenantTx) error
	want error
}

// expectRefusals runs each refusal in its own transaction, rolled back
// whatever happens: after a database error the transaction is spent
// (PostgreSQL aborts it), and a refusal must leave nothing behind.
func expectRefusals(t *testing.T, b store.Backend, tenantID string, rs []refusal) {
	t.Helper()
	for _, r := range rs {
		t.Run(r.name, func(t *testing.T) {
			var got error
			err := b.InTenantTx(ctx(t), tenantID, func(ctx context.Context, tx store.TenantTx) error {
				got = r.fn(ctx, tx)
				return errRollback
			})
			if !errors.Is(err, errRollback) {
				t.Fatalf("transaction: %v", err)
			}
			if !errors.Is(got, r.want) {
				t.Fatalf("got %v, want %v", got, r.want)
			}
		})
	}
}

// inTenant runs fn in one committed transaction and fails the test on error.
func inTenant(t *testing.T, b store.Backend, tenantID string, fn func(ctx context.Context, tx store.TenantTx) error) {
	t.Helper()
	if err := b.InTenantTx(ctx(t), tenantID, fn); err != nil {
		t.Fatal(err)
	}
}

func newAgent(name string) store.Agent {
	return store.Agent{Name: name, Sponsor: "usr_sponsor", RiskTier: store.RiskLow, LedgerIndex: ledgerIndex(0)}
}

// publicJWK is an Ed25519 public key (RFC 8037 A.2) under kid.
func publicJWK(kid string) string {
	return `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"` + kid + `"}`
}

// ledgerIndex is a key's or activation's ledger index (the store keeps it;
// the log is not consulted here).
func ledgerIndex(i uint64) *uint64 { return &i }

func digest(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func randomDigest() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

// newDecision is a valid decision of agentID; counterpartyID may be "".
func newDecision(agentID string, outcome store.Outcome, actionType, counterpartyID string) store.Decision {
	approvals := 0
	if outcome == store.OutcomeEscalate {
		approvals = 1
	}
	return store.Decision{
		AgentID:           agentID,
		Action:            `{"type":"` + actionType + `","amount":{"value":"10.00","currency":"EUR"}}`,
		ActionType:        actionType,
		CounterpartyID:    counterpartyID,
		Reason:            "test",
		Outcome:           outcome,
		Reasons:           []string{"because"},
		ApprovalsRequired: approvals,
		BaseRevision:      "base-1",
		RequestSHA256:     randomDigest(),
		Response:          `{"outcome":"` + string(outcome) + `"}`,
	}
}

// sameAgent compares two agents, times by instant.
func sameAgent(a, b store.Agent) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) || !a.UpdatedAt.Equal(b.UpdatedAt) {
		return false
	}
	if (a.LedgerIndex == nil) != (b.LedgerIndex == nil) || a.LedgerIndex != nil && *a.LedgerIndex != *b.LedgerIndex {
		return false
	}
	a.CreatedAt, a.UpdatedAt, b.CreatedAt, b.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	a.LedgerIndex, b.LedgerIndex = nil, nil
	return a == b
}

// sameDecision compares two decisions, times by instant.
func sameDecision(a, b store.Decision) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return false
	}
	a.CreatedAt, b.CreatedAt = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

// FakeJWS has the shape of a compact JWS.
const FakeJWS = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhZ3QifQ.c2lnbmF0dXJl"

// ReceiptUpgrades are the cases of both stores' tests of migration 0002,
// which keeps a receipt's JWS only as its ledger entry's record: the
// record of the entry a stored receipt (FakeJWS) names, and whether the
// upgrade goes through.
var ReceiptUpgrades = []struct {
	Name, Record string
	OK           bool
}{
	{"every receipt is its entry's record", FakeJWS, true},
	{"a receipt is not its entry's record", FakeJWS + "x", false},
}

// otherJWS is another well-formed compact JWS.
const otherJWS = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJvdGhlciJ9.b3RoZXI"

// seeded names the rows seedRecords wrote.
type seeded struct {
	agent, revoked          store.Agent
	counterparty            store.Counterparty
	allowed, escalated      store.Decision
	closed, denied          store.Decision
	receipt                 store.Receipt
	pendingCase, closedCase store.Case
	jti                     []byte
	idempotencyKey          []byte
}

// SeedRecords writes one of every record to a tenant (see seedRecords), for
// a backend's own tests of its guards.
func SeedRecords(t *testing.T, b store.Backend, tenantID string) { seedRecords(t, b, tenantID) }

// seedRecords writes one of everything to a tenant, in the states the
// guards care about: an active and a revoked agent, an active and a
// retired key, a counterparty with bank details, an allowed decision with
// its receipt and idempotency key, a pending and a closed case, a denied
// decision nothing refers to, and a live jti.
func seedRecords(t *testing.T, b store.Backend, tenantID string) seeded {
	t.Helper()
	var s seeded
	inTenant(t, b, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if s.agent, err = tx.Agents().Create(ctx, newAgent("Payer")); err != nil {
			return err
		}
		if s.revoked, err = tx.Agents().Create(ctx, newAgent("Gone")); err != nil {
			return err
		}
		if err := tx.Agents().SetStatus(ctx, s.revoked.ID, store.AgentRevoked); err != nil {
			return err
		}
		for _, kid := range []string{"old", "new"} {
			if _, err := tx.Agents().AddKey(ctx, store.AgentKey{AgentID: s.agent.ID, KID: kid, PublicJWK: publicJWK(kid), LedgerIndex: ledgerIndex(0)}); err != nil {
				return err
			}
		}
		if err := tx.Agents().RetireKey(ctx, s.agent.ID, "old", time.Time{}); err != nil {
			return err
		}
		s.counterparty, err = tx.Counterparties().Create(ctx, store.Counterparty{Name: "Supplier", Status: store.CounterpartyVerified, LedgerIndex: ledgerIndex(0),
			BankDetailsSealed: []byte("sealed bank details")})
		if err != nil {
			return err
		}
		s.idempotencyKey = randomDigest()
		d := newDecision(s.agent.ID, store.OutcomeAllow, "payment.send", s.counterparty.ID)
		d.IdempotencyKeySHA256 = s.idempotencyKey
		if s.allowed, err = tx.Decisions().Insert(ctx, d); err != nil {
			return err
		}
		at, err := appendRecord(ctx, tx.Log(), FakeJWS)
		if err != nil {
			return err
		}
		if s.receipt, err = tx.Receipts().Insert(ctx, store.Receipt{DecisionID: s.allowed.ID, JWS: FakeJWS, LedgerIndex: at}); err != nil {
			return err
		}
		if s.escalated, err = tx.Decisions().Insert(ctx, newDecision(s.agent.ID, store.OutcomeEscalate, "policy.activate", "")); err != nil {
			return err
		}
		if s.closed, err = tx.Decisions().Insert(ctx, newDecision(s.agent.ID, store.OutcomeEscalate, "access.grant", "")); err != nil {
			return err
		}
		if s.denied, err = tx.Decisions().Insert(ctx, newDecision(s.agent.ID, store.OutcomeDeny, "data.delete", "")); err != nil {
			return err
		}
		day := time.Now().Add(24 * time.Hour)
		if s.pendingCase, err = tx.Cases().Create(ctx, store.Case{DecisionID: s.escalated.ID, AgentID: s.agent.ID, ApprovalsRequired: 2, ExpiresAt: day}); err != nil {
			return err
		}
		if s.closedCase, err = tx.Cases().Create(ctx, store.Case{DecisionID: s.closed.ID, AgentID: s.agent.ID, ApprovalsRequired: 1, ExpiresAt: day}); err != nil {
			return err
		}
		if err := tx.Cases().SetStatus(ctx, s.closedCase.ID, store.CaseRejected); err != nil {
			return err
		}
		s.jti = randomDigest()
		return tx.AssertionJTIs().Remember(ctx, s.agent.ID, s.jti, time.Now().Add(5*time.Minute))
	})
	return s
}

// checkSeeded fails unless tenantID still holds exactly what seedRecords
// wrote (with the states it left).
func checkSeeded(t *testing.T, b store.Backend, tenantID string, s seeded) {
	t.Helper()
	inTenant(t, b, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		for _, want := range []store.Agent{s.agent, s.revoked} {
			got, err := tx.Agents().Get(ctx, want.ID)
			if err != nil || got.Name != want.Name || got.Sponsor != want.Sponsor || got.RiskTier != want.RiskTier || !got.CreatedAt.Equal(want.CreatedAt) {
				t.Errorf("agent %s now %+v, %v", want.Name, got, err)
			}
		}
		if got, _ := tx.Agents().Get(ctx, s.revoked.ID); got.Status != store.AgentRevoked {
			t.Errorf("revoked agent is %q", got.Status)
		}
		keys, err := tx.Agents().Keys(ctx, s.agent.ID)
		if err != nil || len(keys) != 2 {
			t.Errorf("keys now %+v, %v", keys, err)
		}
		for _, k := range keys {
			want := map[string]store.KeyStatus{"old": store.KeyRetired, "new": store.KeyActive}[k.KID]
			if k.Status != want || k.PublicJWK != publicJWK(k.KID) {
				t.Errorf("key %s now %+v", k.KID, k)
			}
		}
		cp, err := tx.Counterparties().Get(ctx, s.counterparty.ID)
		if err != nil || cp.Name != "Supplier" || cp.Status != store.CounterpartyVerified || !bytes.Equal(cp.BankDetailsSealed, []byte("sealed bank details")) {
			t.Errorf("counterparty now %+v, %v", cp, err)
		}
		for _, want := range []store.Decision{s.allowed, s.escalated, s.closed, s.denied} {
			if got, err := tx.Decisions().Get(ctx, want.ID); err != nil || !sameDecision(got, want) {
				t.Errorf("decision %s now %+v, %v", want.ID, got, err)
			}
		}
		if rc, err := tx.Receipts().ByDecision(ctx, s.allowed.ID); err != nil || rc.JWS != FakeJWS || rc.ID != s.receipt.ID {
			t.Errorf("receipt now %+v, %v", rc, err)
		}
		for want, id := range map[store.CaseStatus]string{store.CasePending: s.pendingCase.ID, store.CaseRejected: s.closedCase.ID} {
			if cs, err := tx.Cases().Get(ctx, id); err != nil || cs.Status != want || cs.ApprovalsRequired != map[store.CaseStatus]int{store.CasePending: 2, store.CaseRejected: 1}[want] {
				t.Errorf("case %s now %+v, %v", id, cs, err)
			}
		}
		if err := tx.AssertionJTIs().Remember(ctx, s.agent.ID, s.jti, time.Now().Add(time.Minute)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("the seeded jti is forgotten: %v", err)
		}
		return nil
	})
}
