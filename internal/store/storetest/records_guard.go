package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// testRecordIsolation: another organization sees none of alpha's records
// and cannot change them, through the API or by raw SQL, even knowing
// every id.
func testRecordIsolation(t *testing.T, h Harness) {
	b := newBackend(t, h)
	alpha := CreateTenant(t, b, "alpha")
	bravo := CreateTenant(t, b, "bravo")
	s := seedRecords(t, b, alpha.ID)
	var own store.Agent
	inTenant(t, b, bravo.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if own, err = tx.Agents().Create(ctx, newAgent("Bravo's own")); err != nil {
			return err
		}
		if list, err := tx.Agents().List(ctx); err != nil || len(list) != 1 {
			return fmt.Errorf("bravo lists agents %+v, %v", list, err)
		}
		if keys, err := tx.Agents().Keys(ctx, s.agent.ID); err != nil || len(keys) != 0 {
			return fmt.Errorf("bravo reads alpha's keys: %+v, %v", keys, err)
		}
		if list, err := tx.Counterparties().List(ctx); err != nil || len(list) != 0 {
			return fmt.Errorf("bravo lists counterparties %+v, %v", list, err)
		}
		if n, err := tx.Counterparties().PaymentsCount(ctx, s.counterparty.ID); err != nil || n != 0 {
			return fmt.Errorf("bravo counts alpha's payments: %d, %v", n, err)
		}
		if st, err := tx.Decisions().AgentStats(ctx, s.agent.ID, time.Now()); err != nil || st != (store.AgentStats{}) {
			return fmt.Errorf("bravo reads alpha's agent stats: %+v, %v", st, err)
		}
		// Replay memory is per organization.
		return tx.AssertionJTIs().Remember(ctx, own.ID, s.jti, time.Now().Add(time.Minute))
	})
	foreign := func(d store.Decision) store.Decision { d.ID = ""; return d }
	expectRefusals(t, b, bravo.ID, []refusal{
		{"get agent", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Agents().Get(ctx, s.agent.ID)
			return err
		}, store.ErrNotFound},
		{"suspend agent", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Agents().SetStatus(ctx, s.agent.ID, store.AgentSuspended)
		}, store.ErrNotFound},
		{"reinstate revoked agent", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Agents().SetStatus(ctx, s.revoked.ID, store.AgentActive)
		}, store.ErrNotFound},
		{"change tier", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Agents().SetRiskTier(ctx, s.agent.ID, store.RiskCritical)
		}, store.ErrNotFound},
		{"add key", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Agents().AddKey(ctx, store.AgentKey{AgentID: s.agent.ID, KID: "planted", PublicJWK: publicJWK("planted"), LedgerIndex: ledgerIndex(0)})
			return err
		}, store.ErrNotFound},
		{"retire key", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Agents().RetireKey(ctx, s.agent.ID, "new", time.Time{})
		}, store.ErrNotFound},
		{"remember for alpha's agent", func(ctx context.Context, tx store.TenantTx) error {
			return tx.AssertionJTIs().Remember(ctx, s.agent.ID, randomDigest(), time.Now().Add(time.Minute))
		}, store.ErrNotFound},
		{"get counterparty", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Counterparties().Get(ctx, s.counterparty.ID)
			return err
		}, store.ErrNotFound},
		{"block counterparty", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Counterparties().SetStatus(ctx, s.counterparty.ID, store.CounterpartyBlocked)
		}, store.ErrNotFound},
		{"replace bank details", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Counterparties().SetBankDetails(ctx, s.counterparty.ID, []byte("attacker's account"))
		}, store.ErrNotFound},
		{"get decision", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Decisions().Get(ctx, s.allowed.ID)
			return err
		}, store.ErrNotFound},
		{"idempotency key", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Decisions().ByIdempotencyKey(ctx, s.agent.ID, s.idempotencyKey)
			return err
		}, store.ErrNotFound},
		{"decision as alpha's agent", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Decisions().Insert(ctx, foreign(newDecision(s.agent.ID, store.OutcomeAllow, "payment.send", "")))
			return err
		}, store.ErrNotFound},
		{"decision to alpha's counterparty", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Decisions().Insert(ctx, newDecision(own.ID, store.OutcomeAllow, "payment.send", s.counterparty.ID))
			return err
		}, store.ErrNotFound},
		{"receipt", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Receipts().ByDecision(ctx, s.allowed.ID)
			return err
		}, store.ErrNotFound},
		{"receipt for alpha's decision", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Receipts().Insert(ctx, store.Receipt{DecisionID: s.escalated.ID, JWS: FakeJWS})
			return err
		}, store.ErrNotFound},
		{"get case", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Cases().Get(ctx, s.pendingCase.ID)
			return err
		}, store.ErrNotFound},
		{"approve case", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Cases().SetStatus(ctx, s.pendingCase.ID, store.CaseApproved)
		}, store.ErrNotFound},
		{"case for alpha's decision", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Cases().Create(ctx, store.Case{DecisionID: s.allowed.ID, AgentID: own.ID, ApprovalsRequired: 1, ExpiresAt: time.Now().Add(time.Hour)})
			return err
		}, store.ErrNotFound},
	})
	// Around the API, with bravo's access: alpha's rows are not there.
	for _, stmt := range []string{
		`UPDATE agents SET status = 'revoked' WHERE id = '` + s.agent.ID + `'`,
		`UPDATE agents SET risk_tier = 'low' WHERE id <> '` + own.ID + `'`,
		`UPDATE agent_keys SET status = 'retired', retired_at = created_at`,
		`DELETE FROM assertion_jtis WHERE agent_id = '` + s.agent.ID + `'`,
		`UPDATE counterparties SET bank_details_sealed = NULL, status = 'blocked' WHERE id = '` + s.counterparty.ID + `'`,
		`UPDATE cases SET status = 'approved' WHERE id = '` + s.pendingCase.ID + `'`,
	} {
		if n, err := h.RawTenantExec(ctx(t), b, bravo.ID, stmt); err == nil && n != 0 {
			t.Errorf("bravo: %s: changed %d of alpha's rows", stmt, n)
		}
	}
	checkSeeded(t, b, alpha.ID, s)
}

// testRecordsAppendOnly: the database itself refuses what the API never
// offers — changing a decision or a receipt, deleting any record, changing
// an agent's, key's, counterparty's or case's fixed columns, and undoing a
// revocation, a retirement or a closed case.
func testRecordsAppendOnly(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	s := seedRecords(t, b, acme.ID)
	for _, stmt := range []string{
		`UPDATE decisions SET outcome = 'allow' WHERE outcome <> 'allow'`,
		`UPDATE decisions SET response = '{}'`,
		`UPDATE decisions SET reasons = '[]'`,
		`UPDATE decisions SET idempotency_key_sha256 = NULL`,
		`DELETE FROM decisions WHERE outcome = 'deny'`, // nothing refers to it: only the guard stops this
		`DELETE FROM decisions`,
		`UPDATE receipts SET ledger_index = ledger_index + 1`,
		`UPDATE receipts SET decision_id = '` + s.escalated.ID + `'`,
		`DELETE FROM receipts`,
		`UPDATE agents SET name = 'Renamed'`,
		`UPDATE agents SET sponsor = 'usr_mallory'`,
		`UPDATE agents SET created_at = updated_at`,
		`UPDATE agents SET id = '` + store.NewID(store.PrefixAgent) + `' WHERE status = 'revoked'`,
		`UPDATE agents SET status = 'active' WHERE status = 'revoked'`,
		`DELETE FROM agents WHERE status = 'revoked'`,
		`UPDATE agent_keys SET public_jwk = '{"kty":"OKP"}'`,
		`UPDATE agent_keys SET kid = 'other' WHERE status = 'active'`,
		`UPDATE agent_keys SET status = 'active', retired_at = NULL WHERE status = 'retired'`,
		`DELETE FROM agent_keys WHERE status = 'retired'`,
		`UPDATE counterparties SET name = 'Mallory Ltd'`,
		`UPDATE counterparties SET created_at = updated_at`,
		`DELETE FROM counterparties`,
		`UPDATE cases SET approvals_required = approvals_required - 1`,
		`UPDATE cases SET expires_at = created_at`,
		`UPDATE cases SET agent_id = '` + s.revoked.ID + `'`,
		`UPDATE cases SET status = 'pending' WHERE status <> 'pending'`,
		`UPDATE cases SET status = 'approved' WHERE status = 'rejected'`,
		`DELETE FROM cases`,
	} {
		if n, err := h.RawTenantExec(ctx(t), b, acme.ID, stmt); err == nil {
			t.Errorf("%s: accepted (%d rows)", stmt, n)
		}
	}
	checkSeeded(t, b, acme.ID, s)
	// What may change still can, even around the API.
	for _, stmt := range []string{
		`UPDATE agents SET risk_tier = 'high' WHERE status = 'active'`,
		`UPDATE counterparties SET status = 'blocked'`,
		`DELETE FROM assertion_jtis`,
	} {
		if n, err := h.RawTenantExec(ctx(t), b, acme.ID, stmt); err != nil || n != 1 {
			t.Errorf("%s: %d rows, %v", stmt, n, err)
		}
	}
}

// testRecordRaces: two replicas racing with one assertion, or two approvers
// closing one case, get one winner.
func testRecordRaces(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	s := seedRecords(t, b, acme.ID)
	const racers = 8
	jti := randomDigest()
	for _, race := range []struct {
		name string
		fn   func(ctx context.Context, tx store.TenantTx, i int) error
	}{
		{"remember one jti", func(ctx context.Context, tx store.TenantTx, _ int) error {
			return tx.AssertionJTIs().Remember(ctx, s.agent.ID, jti, time.Now().Add(time.Minute))
		}},
		{"close one case", func(ctx context.Context, tx store.TenantTx, i int) error {
			return tx.Cases().SetStatus(ctx, s.pendingCase.ID, []store.CaseStatus{store.CaseApproved, store.CaseRejected}[i%2])
		}},
	} {
		t.Run(race.name, func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make([]error, racers)
			for i := range racers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = b.InTenantTx(ctx(t), acme.ID, func(ctx context.Context, tx store.TenantTx) error { return race.fn(ctx, tx, i) })
				}()
			}
			wg.Wait()
			won := 0
			for _, err := range errs {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("loser got %v, want ErrConflict", err)
				}
			}
			if won != 1 {
				t.Fatalf("%d winners, want 1", won)
			}
		})
	}
}
