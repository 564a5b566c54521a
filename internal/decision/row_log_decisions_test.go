package decision_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
	"github.com/agentsigna/agentsigna/ledger"
)

// ledger verify holds decision, receipt and case rows to their entries:
// what a read or an idempotent replay answers is the row, and an insider
// who edits the store's file could otherwise change an outcome, give a
// denied decision a receipt, approve a case, or plant and delete
// decisions, while ledger verify said OK (found by review). So were a
// counterparty's bank details and a planted activation; they are held
// to their entries now too.
func TestRowLogHoldsDecisionsToTheirEntries(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stmts func(ids decided) []string
		want  string
		// plant, when set, stands for stmts: it may append entries first
		// — what only a holder of the log key could, for the checks
		// behind the ones an insider meets — and returns the statements.
		plant func(t testing.TB, e *serviceEnv, ids decided) []string
	}{
		{"an outcome changed", func(ids decided) []string {
			return []string{fmt.Sprintf(`UPDATE decisions SET outcome = 'allow', reasons = '[]' WHERE id = '%s'`, ids.deny)}
		}, "decision %[1]s is stored otherwise than entry", nil},
		{"a response changed", func(ids decided) []string {
			return []string{fmt.Sprintf(`UPDATE decisions SET response = replace(response, '"outcome":"deny"', '"outcome":"allow"') WHERE id = '%s'`, ids.deny)}
		}, "decision %[1]s keeps a response that is not what entry", nil},
		{"a decision planted, naming another entry", func(ids decided) []string {
			return []string{fmt.Sprintf(`INSERT INTO decisions SELECT tenant_id, 'dec_aaaaaaaaaaaaaaaaaaaaaaaaaa', agent_id, action, action_type, counterparty_id, reason,
				'allow', '[]', 0, base_revision, tenant_revision, tenant_bundle_sha256, NULL, request_sha256, 0, response, created_at,
				agent_seq + 1000, agent_denials, agent_tally_at FROM decisions WHERE id = '%s'`, ids.deny)}
		}, "decision dec_aaaaaaaaaaaaaaaaaaaaaaaaaa names entry 0, which is not its decision's", nil},
		{"a decision deleted whole", func(ids decided) []string {
			// The agent's newest, so that no later tally gives it away:
			// counted, as a write that failed after its entries is.
			return []string{`DELETE FROM cases`, fmt.Sprintf(`DELETE FROM decisions WHERE id = '%s'`, ids.escalate)}
		}, "unstored 1", nil},
		{"a receipt deleted", func(decided) []string {
			return []string{`DELETE FROM receipts`}
		}, "the store holds 0 receipts for 1 allowed decisions", nil},
		{"a decision deleted from the middle", func(ids decided) []string {
			return []string{fmt.Sprintf(`DELETE FROM decisions WHERE id = '%s'`, ids.deny)}
		}, "is stored with a tally (3 decisions, 1 denials", nil},
		{"a denial untallied", func(ids decided) []string {
			return []string{fmt.Sprintf(`UPDATE decisions SET agent_denials = 0 WHERE id = '%s'`, ids.escalate)}
		}, "is stored with a tally (3 decisions, 0 denials", nil},
		{"a tally dated ahead", func(ids decided) []string {
			return []string{fmt.Sprintf(`UPDATE decisions SET agent_tally_at = '2099-01-01T00:00:00Z' WHERE id = '%s'`, ids.escalate)}
		}, "is stored with a tally (3 decisions, 1 denials, to 2099-01-01T00:00:00Z)", nil},
		{"a counterparty's payments raised", func(decided) []string {
			return []string{`UPDATE counterparty_payments SET payments = payments + 10`}
		}, "is stored with 11 payments, its decisions allowed 1", nil},
		{"a decision's action type changed", func(ids decided) []string {
			return []string{fmt.Sprintf(`UPDATE decisions SET action_type = 'payment.refund' WHERE id = '%s'`, ids.allow)}
		}, "is stored with another action type or counterparty than entry", nil},
		{"a decision's time changed", func(ids decided) []string {
			return []string{fmt.Sprintf(`UPDATE decisions SET created_at = '2020-01-01T00:00:00Z' WHERE id = '%s'`, ids.deny)}
		}, "is stored at another time than entry", nil},
		{"a denied decision given a receipt", func(ids decided) []string {
			return []string{fmt.Sprintf(`INSERT INTO receipts (tenant_id, id, decision_id, ledger_index, created_at)
				SELECT tenant_id, 'rct_aaaaaaaaaaaaaaaaaaaaaaaaaa', '%s', ledger_index, created_at FROM receipts`, ids.deny)}
		}, "receipt rct_aaaaaaaaaaaaaaaaaaaaaaaaaa names entry", nil},
		{"a receipt naming another entry", func(ids decided) []string {
			return []string{`UPDATE receipts SET ledger_index = 0`}
		}, "names entry 0, which is not its receipt's", nil},
		{"a case approved", func(ids decided) []string {
			return []string{`UPDATE cases SET status = 'approved'`}
		}, "is approved, but no entry closed it so", nil},
		{"a case expired early", func(decided) []string {
			return []string{`UPDATE cases SET status = 'expired'`}
		}, "is expired, but no entry expired it", nil},
		{"a receipt of a denial", func(ids decided) []string {
			return []string{fmt.Sprintf(`UPDATE receipts SET decision_id = '%s'`, ids.deny)}
		}, "whose JWS is another receipt's", nil},
		{"a case deleted", func(ids decided) []string {
			return []string{`DELETE FROM cases`}
		}, "the store holds 0 cases for 1 escalated decisions", nil},
		{"a case's expiry moved", func(ids decided) []string {
			return []string{`UPDATE cases SET expires_at = '2099-01-01T00:00:00Z'`}
		}, "is stored otherwise than entry", nil},
		{"a case of another decision", func(ids decided) []string {
			return []string{fmt.Sprintf(`UPDATE cases SET decision_id = '%s'`, ids.deny)}
		}, "is stored otherwise than entry", nil},
		// Not a decision's row, but what a payment pays: a beneficiary
		// swapped behind the log passed too (found by the same review).
		{"a counterparty's bank details swapped", func(decided) []string {
			return []string{`UPDATE counterparties SET bank_details_sealed = X'00' WHERE status = 'verified'`}
		}, "is stored with other bank details than entry", nil},
		{"an activation planted", func(decided) []string {
			return []string{`INSERT INTO policy_activations (tenant_id, seq, revision, rollback, activated_by, approved_by, activated_at, ledger_index)
				SELECT tenant_id, seq + 1, revision, 1, activated_by, approved_by, activated_at, 1 FROM policy_activations`}
		}, "activation 2 names entry 1, which does not record it", nil},
		{"an activation's approver changed", func(decided) []string {
			return []string{`UPDATE policy_activations SET approved_by = 'usr_mallory'`}
		}, "activation 1 names entry", nil},
		{"a counterparty's bank details removed", func(decided) []string {
			return []string{`UPDATE counterparties SET bank_details_sealed = NULL WHERE status = 'verified'`}
		}, "is stored with other bank details than entry", nil},
		{"an agent's decisions reordered", func(ids decided) []string {
			// The escalation tallied before the denial, each tally what
			// the new order makes: the entries' order gives it away.
			return []string{fmt.Sprintf(`UPDATE decisions SET agent_seq = agent_seq + 100 WHERE id IN ('%s', '%s')`, ids.deny, ids.escalate),
				fmt.Sprintf(`UPDATE decisions SET agent_seq = 2, agent_denials = 0 WHERE id = '%s'`, ids.escalate),
				fmt.Sprintf(`UPDATE decisions SET agent_seq = 3, agent_tally_at = (SELECT agent_tally_at FROM decisions WHERE id = '%s') WHERE id = '%s'`, ids.escalate, ids.deny)}
		}, "is tallied after a decision whose entry comes later", nil},
		{"every decision deleted, its receipt kept", func(decided) []string {
			// Each decision the log holds and the store does not is
			// counted; a receipt of one is not a receipt of anything.
			return []string{`DELETE FROM cases`, `DELETE FROM decisions`, `UPDATE counterparty_payments SET payments = 0`}
		}, "which the store does not hold", nil},
		{"a case planted", func(ids decided) []string {
			return []string{fmt.Sprintf(`INSERT INTO cases SELECT tenant_id, 'case_aaaaaaaaaaaaaaaaaaaaaaaaaa', '%s', agent_id, status, approvals_required,
				expires_at, created_at, updated_at FROM cases`, ids.deny)}
		}, "case case_aaaaaaaaaaaaaaaaaaaaaaaaaa is stored, but no entry opened it", nil},
		{"an activation naming no entry after one that does", func(decided) []string {
			return []string{`INSERT INTO policy_activations (tenant_id, seq, revision, rollback, activated_by, approved_by, activated_at, ledger_index)
				SELECT tenant_id, seq + 1, revision, 0, activated_by, approved_by, activated_at, NULL FROM policy_activations`}
		}, "activation 2 names no entry, after an activation that does", nil},
		{"a decision naming an entry whose record is not a decision's", nil, "does not hold a decision record",
			func(t testing.TB, e *serviceEnv, ids decided) []string {
				const id = "dec_aaaaaaaaaaaaaaaaaaaaaaaaaa"
				index := e.appendEntry(t, decision.KindDecision, id, []byte(`"not a decision"`))
				return []string{fmt.Sprintf(`INSERT INTO decisions SELECT tenant_id, '%s', agent_id, action, action_type, counterparty_id, reason,
					outcome, reasons, approvals_required, base_revision, tenant_revision, tenant_bundle_sha256, NULL, request_sha256, %d, response,
					created_at, agent_seq + 1000, agent_denials, agent_tally_at FROM decisions WHERE id = '%s'`, id, index, ids.deny)}
			}},
		{"a logged receipt of a denial", nil, "which did not allow",
			func(t testing.TB, e *serviceEnv, ids decided) []string {
				const id = "rct_aaaaaaaaaaaaaaaaaaaaaaaaaa"
				payload := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"jti":%q,"decision_id":%q}`, id, ids.deny))
				index := e.appendEntry(t, decision.KindReceipt, id, []byte("e30."+payload+".c2ln"))
				return []string{fmt.Sprintf(`INSERT INTO receipts (tenant_id, id, decision_id, ledger_index, created_at)
					SELECT tenant_id, '%s', '%s', %d, created_at FROM receipts`, id, ids.deny, index)}
			}},
		{"a case pending that an entry expired", nil, "is pending, but entry",
			func(t testing.TB, e *serviceEnv, ids decided) []string {
				var c store.Case
				e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					cases, err := tx.Cases().Page(ctx, "", 10)
					if len(cases) != 1 || cases[0].DecisionID != ids.escalate {
						return fmt.Errorf("cases %+v, %v", cases, err)
					}
					c = cases[0]
					return nil
				})
				rec, err := json.Marshal(map[string]any{"case_id": c.ID, "decision_id": c.DecisionID, "agent_id": c.AgentID, "status": "expired",
					"approvals_required": c.ApprovalsRequired, "expires_at": c.ExpiresAt, "time": c.ExpiresAt})
				if err != nil {
					t.Fatal(err)
				}
				e.appendEntry(t, decision.KindCaseExpired, c.ID, rec)
				return nil
			}},
		{"an activation naming an entry that records another bundle", nil, "which records another bundle",
			func(t testing.TB, e *serviceEnv, _ decided) []string {
				var act store.PolicyActivation
				e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					acts, err := tx.Policies().Activations(ctx)
					if len(acts) != 1 {
						return fmt.Errorf("activations %+v, %v", acts, err)
					}
					act = acts[0]
					return nil
				})
				rec, err := json.Marshal(map[string]any{"event": "activate", "seq": act.Seq + 1, "revision": act.Revision,
					"bundle_sha256": base64.StdEncoding.EncodeToString(make([]byte, 32)), "by": act.ActivatedBy, "approved_by": act.ApprovedBy})
				if err != nil {
					t.Fatal(err)
				}
				index := e.appendEntry(t, "policy.activate", act.Revision, rec)
				return []string{fmt.Sprintf(`INSERT INTO policy_activations (tenant_id, seq, revision, rollback, activated_by, approved_by, activated_at, ledger_index)
					SELECT tenant_id, seq + 1, revision, 0, activated_by, approved_by, activated_at, %d FROM policy_activations`, index)}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each its own store; most of the time is commits
			e := newServiceEnv(t, "sqlite")
			e.activate(t, permissiveBundle(t))
			agent := e.agent(t, store.RiskLow)
			verified := e.counterparty(t, e.org, store.CounterpartyVerified)
			blocked := e.counterparty(t, e.org, store.CounterpartyBlocked)
			var ids decided
			for _, d := range []struct {
				req     decision.DecisionRequest
				outcome decision.Outcome
				id      *string
			}{
				{payment("100.00", verified.ID), decision.Allow, &ids.allow},
				{payment("10.00", blocked.ID), decision.Deny, &ids.deny},
				{action("access.grant"), decision.Escalate, &ids.escalate},
			} {
				resp := e.decide(t, agent.ID, d.req, "")
				if resp.Outcome != d.outcome {
					t.Fatalf("%s: %s, want %s", d.req.Action.Type, resp.Outcome, d.outcome)
				}
				*d.id = resp.DecisionID
			}
			check := func() string {
				t.Helper()
				rows := decision.NewRowLog()
				rep, err := e.ledger.CheckWith(context.Background(), e.log(), "", ledger.CheckOptions{CheckRecord: rows.Entry, CheckRows: rows.Rows})
				if err != nil || rep.Problem != nil {
					t.Fatalf("check: %v, %v", rep.Problem, err)
				}
				if rep.RowsProblem == "" && rows.UnstoredDecisions > 0 {
					return fmt.Sprintf("unstored %d", rows.UnstoredDecisions)
				}
				return rep.RowsProblem
			}
			if got := check(); got != "" {
				t.Fatalf("untouched: %s", got)
			}
			var stmts []string
			if tc.plant != nil {
				stmts = tc.plant(t, e, ids)
			} else {
				stmts = tc.stmts(ids)
			}
			if len(stmts) > 0 {
				sqlitetest.Tamper(t, e.backend.(*sqlite.Store).TenantFile(e.org.ID), stmts...)
			}
			want := tc.want
			if strings.Contains(want, "%[1]s") {
				want = fmt.Sprintf(want, ids.deny)
			}
			if got := check(); !strings.Contains(got, want) {
				t.Fatalf("rows problem %q, want %q", got, want)
			}
		})
	}
}

type decided struct{ allow, deny, escalate string }

// appendEntry appends an entry of the organization's log, as only a holder
// of its key could, and returns its index.
func (e *serviceEnv) appendEntry(t testing.TB, kind, subject string, record []byte) uint64 {
	t.Helper()
	a, err := e.ledger.Append(context.Background(), e.log(), ledger.Entry{Kind: kind, Subject: subject, Record: record})
	if err != nil {
		t.Fatal(err)
	}
	return a.Index
}

// A write that fails after its entries leaves decisions the log holds and
// the store does not (record): an honest store, which ledger verify
// passes, counting them (found by review: it failed such a store).
func TestRowLogCountsUnstoredDecisions(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			e.activate(t, permissiveBundle(t))
			agent := e.agent(t, store.RiskLow)
			verified := e.counterparty(t, e.org, store.CounterpartyVerified)
			fb := &failingRecords{Backend: e.backend}
			_, _, svc := e.newServiceOver(t, e.newLedgerOver(t, fb), fb, bundles.Limits{}, decision.Config{})
			e.decide(t, agent.ID, payment("100.00", verified.ID), "")
			for _, req := range []decision.DecisionRequest{payment("100.00", verified.ID), action("access.grant")} {
				fb.fail.Store(true)
				if _, err := svc.Decide(context.Background(), e.org, agent.ID, req, ""); err == nil {
					t.Fatalf("%s: the failed write answered", req.Action.Type)
				}
			}
			e.decide(t, agent.ID, action("access.grant"), "")
			rows := decision.NewRowLog()
			rep, err := e.ledger.CheckWith(context.Background(), e.log(), "", ledger.CheckOptions{CheckRecord: rows.Entry, CheckRows: rows.Rows})
			if err != nil || rep.Problem != nil || rep.RowsProblem != "" || rows.UnstoredDecisions != 2 {
				t.Fatalf("%v, %v, %q; unstored %d, want 2", err, rep.Problem, rep.RowsProblem, rows.UnstoredDecisions)
			}
		})
	}
}

// failingRecords fails the next DecisionTx.Record once fail is set.
type failingRecords struct {
	store.Backend
	fail atomic.Bool
}

func (s *failingRecords) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	return s.Backend.InTenantTx(ctx, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		return fn(ctx, failingRecordsTx{TenantTx: tx, s: s})
	})
}

type failingRecordsTx struct {
	store.TenantTx
	s *failingRecords
}

func (t failingRecordsTx) Decisions() store.DecisionTx {
	return failingDecisionTx{t.TenantTx.Decisions(), t.s}
}

type failingDecisionTx struct {
	store.DecisionTx
	s *failingRecords
}

func (d failingDecisionTx) Record(ctx context.Context, r store.DecisionRecord) error {
	if d.s.fail.CompareAndSwap(true, false) {
		return fmt.Errorf("%w: the rows are not written", store.ErrInvalid)
	}
	return d.DecisionTx.Record(ctx, r)
}
