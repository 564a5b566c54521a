package decision_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
)

func TestDecideAllow(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, payee := payingEnv(t, kind)
			ctx := context.Background()
			req := payment("100.00", payee.ID)

			resp := e.decide(t, agent.ID, req, "")
			if resp.Outcome != decision.Allow || len(resp.Reasons) != 0 || resp.Case != nil || resp.Receipt == "" {
				t.Fatalf("response %+v", resp)
			}
			e.verifyLedger(t, resp)

			// The receipt verifies with the published JWKS alone.
			claims, err := signing.VerifyReceipt(resp.Receipt, e.jwks(t), e.clock.Now())
			if err != nil {
				t.Fatalf("receipt does not verify: %v", err)
			}
			var stored store.Receipt
			e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				stored, err = tx.Receipts().ByDecision(ctx, resp.DecisionID)
				return err
			})
			wantAction := `{"amount":{"currency":"EUR","value":"100.00"},"counterparty":"` + payee.ID +
				`","params":{"po":"PO-77"},"resource":"invoice:INV-2291","type":"payment.send"}`
			switch {
			case claims.Issuer != publicURL+"/t/acme", claims.Subject != agent.ID, claims.Tenant != e.org.ID,
				claims.ID != stored.ID, stored.JWS != resp.Receipt,
				claims.DecisionID != resp.DecisionID, claims.Outcome != signing.OutcomeAllow,
				string(claims.Action) != wantAction,
				claims.Agent != (signing.ReceiptAgent{ID: agent.ID, Sponsor: agent.Sponsor, RiskTier: "low"}),
				len(claims.Approvals) != 0,
				claims.Policy.TenantRevision != "acme-example-1" || claims.Policy.BaseRevision == "" || claims.Policy.TenantBundleSHA256 != e.activeBundleSHA256(t),
				claims.Expiry.Sub(claims.IssuedAt) != decision.DefaultReceiptLifetime:
				t.Fatalf("receipt claims %+v (stored receipt %s)", claims, stored.ID)
			}
			// The receipt has its own ledger entry, whose record is the JWS.
			got, rec := e.entryAt(t, stored.LedgerIndex)
			if got.Kind != decision.KindReceipt || got.Subject != stored.ID || string(rec) != resp.Receipt {
				t.Fatalf("receipt entry %+v", got)
			}

			// The JSON is DESIGN §3's: no case member for an allow.
			var fields map[string]json.RawMessage
			body, _ := json.Marshal(resp)
			if err := json.Unmarshal(body, &fields); err != nil {
				t.Fatal(err)
			}
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range fields {
					if !yield(k) {
						return
					}
				}
			})
			if strings.Join(keys, ",") != "decision_id,ledger,outcome,reasons,receipt" || string(fields["reasons"]) != "[]" {
				t.Fatalf("response JSON %s", body)
			}

			// The agent reads it back exactly as answered.
			again, err := e.service.GetDecision(ctx, e.org, agent.ID, resp.DecisionID)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := json.Marshal(again); string(b) != string(body) {
				t.Fatalf("GetDecision =\n%s\nwant\n%s", b, body)
			}
			// The JWS is stored once, in the receipt's row, and the
			// checkpoint and proof are the log's: the decision's row keeps
			// the rest of the response, and the tree size to prove it in.
			e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				d, err := tx.Decisions().Get(ctx, resp.DecisionID)
				origin, _, _ := strings.Cut(resp.Ledger.Checkpoint, "\n")
				if err == nil && (strings.Contains(d.Response, `"receipt"`) || !strings.Contains(d.Response, `"ledger"`) ||
					strings.Contains(d.Response, origin) || strings.Contains(d.Response, `"checkpoint"`) || strings.Contains(d.Response, `"inclusion_proof"`) ||
					!strings.Contains(d.Response, `"tree_size":`)) {
					t.Errorf("stored response %s", d.Response)
				}
				return err
			})

			// The allowed payment counts for the counterparty's history.
			e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				n, err := tx.Counterparties().PaymentsCount(ctx, payee.ID)
				if err == nil && n != 1 {
					t.Errorf("payments_count = %d after one allowed payment", n)
				}
				return err
			})
		})
	}
}

func TestDecideEscalate(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, verified := payingEnv(t, kind)
			unverified := e.counterparty(t, e.org, store.CounterpartyNew)
			for _, tc := range []struct {
				name      string
				req       decision.DecisionRequest
				reasons   []string
				approvals int
			}{
				{"over 1,000 EUR", payment("1500.00", verified.ID), []string{"amount_above_limit"}, 1},
				{"over 25,000 EUR", payment("30000", verified.ID), []string{"amount_above_limit"}, 2},
				{"unverified counterparty", payment("100.00", unverified.ID), []string{"unverified_counterparty"}, 1},
				{"bank details change", decision.DecisionRequest{Action: decision.RequestAction{
					Type: "counterparty.bank_details.update", Counterparty: verified.ID}},
					[]string{"high_risk_category:counterparty.bank_details"}, 2},
			} {
				t.Run(tc.name, func(t *testing.T) {
					before := e.clock.Now()
					resp := e.decide(t, agent.ID, tc.req, "")
					if resp.Outcome != decision.Escalate || !slices.Equal(resp.Reasons, tc.reasons) || resp.Receipt != "" || resp.Case == nil {
						t.Fatalf("response %+v", resp)
					}
					c := resp.Case
					if c.Status != store.CasePending || c.ApprovalsRequired != tc.approvals ||
						c.ExpiresAt.Sub(before) < decision.DefaultCaseLifetime-time.Second || c.ExpiresAt.Sub(before) > decision.DefaultCaseLifetime+time.Minute {
						t.Fatalf("case %+v", c)
					}
					e.verifyLedger(t, resp)
					view, err := e.service.GetCase(context.Background(), e.org, agent.ID, c.ID)
					if err != nil {
						t.Fatal(err)
					}
					if view != (decision.CaseView{ID: c.ID, DecisionID: resp.DecisionID, Status: store.CasePending, ApprovalsRequired: tc.approvals, ExpiresAt: c.ExpiresAt}) {
						t.Fatalf("GetCase = %+v, response case %+v", view, c)
					}
					// The case opened has its entry right after the decision's.
					got, _ := e.entryAt(t, resp.Ledger.Index+1)
					if got.Kind != decision.KindCaseOpened || got.Subject != c.ID {
						t.Fatalf("entry after the decision: %+v", got)
					}
				})
			}
		})
	}
}

func TestDecideDenyNoAuthority(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			e.activate(t, acmeBundle(t))
			agent := e.agent(t, store.RiskLow)
			resp := e.decide(t, agent.ID, action("inventory.reorder"), "")
			if resp.Outcome != decision.Deny || !slices.Equal(resp.Reasons, []string{decision.ReasonNoAuthority}) || resp.Receipt != "" || resp.Case != nil {
				t.Fatalf("response %+v", resp)
			}
			e.verifyLedger(t, resp)
			if size := e.ledgerSize(t); size != resp.Ledger.Index+1 {
				t.Fatalf("a deny appended %d entries", size-resp.Ledger.Index)
			}
		})
	}
}

// TestBaseRules: each hard rule of DESIGN §3 holds against an organization
// policy that allows everything.
func TestBaseRules(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			e.activate(t, permissiveBundle(t))
			low, high, critical := e.agent(t, store.RiskLow), e.agent(t, store.RiskHigh), e.agent(t, store.RiskCritical)
			verified := e.counterparty(t, e.org, store.CounterpartyVerified)
			fresh := e.counterparty(t, e.org, store.CounterpartyNew)
			blocked := e.counterparty(t, e.org, store.CounterpartyBlocked)
			suspended := e.agent(t, store.RiskLow)
			e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				return tx.Agents().SetStatus(ctx, suspended.ID, store.AgentSuspended)
			})
			withCP := func(r decision.DecisionRequest, cp string) decision.DecisionRequest {
				r.Action.Counterparty = cp
				return r
			}
			withParams := func(r decision.DecisionRequest, params string) decision.DecisionRequest {
				r.Action.Params = json.RawMessage(params)
				return r
			}
			for _, tc := range []struct {
				name      string
				agent     store.Agent
				req       decision.DecisionRequest
				outcome   decision.Outcome
				reasons   []string
				approvals int
			}{
				{"allowed when nothing objects", low, payment("100.00", verified.ID), decision.Allow, []string{}, 0},
				{"bank details", low, withCP(action("counterparty.bank_details.update"), verified.ID), decision.Escalate, []string{"high_risk_category:counterparty.bank_details"}, 2},
				{"bank details under a near type", low, withCP(action("counterparty.bank_details_update"), verified.ID), decision.Escalate, []string{"high_risk_category:counterparty.bank_details"}, 2},
				{"bank details in another action's params", low, withParams(withCP(action("counterparty.update"), verified.ID), `{"bank_details":{"iban":"DE89370400440532013000"}}`), decision.Escalate, []string{"high_risk_category:counterparty.bank_details"}, 2},
				{"an IBAN deep in a payment's params", low, withParams(payment("10.00", verified.ID), `{"beneficiary":{"accounts":[{"IBAN":"DE89370400440532013000"}]}}`), decision.Escalate, []string{"high_risk_category:counterparty.bank_details"}, 2},
				{"params without bank details", low, withParams(withCP(action("counterparty.update"), verified.ID), `{"name":"Initech","banking_day":"monday"}`), decision.Allow, []string{}, 0},
				{"counterparty creation", low, action("counterparty.create"), decision.Escalate, []string{"high_risk_category:counterparty.create"}, 1},
				{"counterparty creation under a near type", low, action("counterparty.create_bulk"), decision.Escalate, []string{"high_risk_category:counterparty.create"}, 1},
				{"agent identity", low, action("agent.credential.rotate"), decision.Escalate, []string{"high_risk_category:agent"}, 1},
				{"agent tier", low, action("agent.tier.raise"), decision.Escalate, []string{"high_risk_category:agent"}, 1},
				{"policy", low, action("policy.activate"), decision.Escalate, []string{"high_risk_category:policy"}, 2},
				{"privilege grant", low, action("access.grant"), decision.Escalate, []string{"high_risk_category:access"}, 2},
				{"data export", low, action("data.export_all"), decision.Escalate, []string{"high_risk_category:data.export"}, 1},
				{"data delete", low, action("data.delete.records"), decision.Escalate, []string{"high_risk_category:data.delete"}, 1},
				{"payment to an unverified counterparty", low, payment("10.00", fresh.ID), decision.Escalate, []string{"unverified_counterparty"}, 1},
				{"payment without counterparty", low, payment("10.00", ""), decision.Escalate, []string{"no_counterparty"}, 1},
				{"funds moved without counterparty", low, action("funds.transfer"), decision.Escalate, []string{"no_counterparty"}, 1},
				{"payment by a high-tier agent", high, payment("10.00", verified.ID), decision.Escalate, []string{"high_tier_money_movement"}, 1},
				{"funds moved by a critical-tier agent", critical, withCP(action("funds.transfer"), verified.ID), decision.Escalate, []string{"high_tier_money_movement"}, 1},
				{"suspended agent", suspended, action("report.generate"), decision.Deny, []string{"agent_not_active"}, 0},
				{"blocked counterparty", low, payment("10.00", blocked.ID), decision.Deny, []string{"counterparty_blocked"}, 0},
			} {
				t.Run(tc.name, func(t *testing.T) {
					resp := e.decide(t, tc.agent.ID, tc.req, "")
					if resp.Outcome != tc.outcome || !slices.Equal(resp.Reasons, tc.reasons) {
						t.Fatalf("got %s %v, want %s %v", resp.Outcome, resp.Reasons, tc.outcome, tc.reasons)
					}
					if tc.outcome == decision.Escalate && resp.Case.ApprovalsRequired != tc.approvals {
						t.Fatalf("approvals %d, want %d", resp.Case.ApprovalsRequired, tc.approvals)
					}
					if (resp.Receipt != "") != (tc.outcome == decision.Allow) {
						t.Fatalf("receipt %q for %s", resp.Receipt, resp.Outcome)
					}
				})
			}
		})
	}
}

// TestRecentDenials: an agent's own record reaches its policy input — five
// denials in the hour send everything it asks to people.
func TestRecentDenials(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			e.activate(t, acmeBundle(t))
			agent, other := e.agent(t, store.RiskLow), e.agent(t, store.RiskLow)
			payee := e.counterparty(t, e.org, store.CounterpartyVerified)
			for i := range 5 {
				if resp := e.decide(t, agent.ID, payment("100.00", payee.ID), ""); resp.Outcome != decision.Allow {
					t.Fatalf("payment %d before the denials: %s %v", i, resp.Outcome, resp.Reasons)
				}
				if resp := e.decide(t, agent.ID, action("inventory.reorder"), ""); resp.Outcome != decision.Deny {
					t.Fatalf("denial %d: %s", i, resp.Outcome)
				}
			}
			resp := e.decide(t, agent.ID, payment("100.00", payee.ID), "")
			if resp.Outcome != decision.Escalate || !slices.Equal(resp.Reasons, []string{"recent_denials"}) {
				t.Fatalf("after 5 denials: %s %v", resp.Outcome, resp.Reasons)
			}
			// Another agent's record is its own.
			if resp := e.decide(t, other.ID, payment("100.00", payee.ID), ""); resp.Outcome != decision.Allow {
				t.Fatalf("another agent: %s %v", resp.Outcome, resp.Reasons)
			}
			// An hour later the denials have left the window.
			e.clock.Advance(time.Hour + time.Second)
			if resp := e.decide(t, agent.ID, payment("100.00", payee.ID), ""); resp.Outcome != decision.Allow {
				t.Fatalf("an hour later: %s %v", resp.Outcome, resp.Reasons)
			}
		})
	}
}

func TestDecideRefusals(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, payee := payingEnv(t, kind)
			globex := storeTenant(t, e, "globex")
			foreign := e.counterparty(t, decision.Organization{ID: globex, Slug: "globex"}, store.CounterpartyVerified)
			ctx := context.Background()

			for _, tc := range []struct {
				name string
				req  decision.DecisionRequest
			}{
				{"bad type", action("Payment.Send")},
				{"bad amount", payment("1,000.00", payee.ID)},
				{"bad currency", func() decision.DecisionRequest {
					r := payment("10.00", payee.ID)
					r.Action.Amount.Currency = "EUX"
					return r
				}()},
				{"long reason", func() decision.DecisionRequest {
					r := payment("10.00", payee.ID)
					r.Reason = strings.Repeat("x", 1025)
					return r
				}()},
				// PostgreSQL's text refuses U+0000: once the entries were
				// in the log, storing the row failed (a 500, and entries
				// without a row at every retry).
				{"NUL in the reason", func() decision.DecisionRequest {
					r := payment("10.00", payee.ID)
					r.Reason = "pay\x00invoice"
					return r
				}()},
				{"params too deep", func() decision.DecisionRequest {
					r := payment("10.00", payee.ID)
					r.Action.Params = json.RawMessage(`{"a":{"b":{"c":{"d":{}}}}}`)
					return r
				}()},
				{"duplicate params", func() decision.DecisionRequest {
					r := payment("10.00", payee.ID)
					r.Action.Params = json.RawMessage(`{"po":"PO-77","po":"PO-78"}`)
					return r
				}()},
				{"unknown counterparty", payment("10.00", store.NewID(store.PrefixCounterparty))},
				{"another organization's counterparty", payment("10.00", foreign.ID)},
			} {
				t.Run(tc.name, func(t *testing.T) {
					before := e.ledgerSize(t)
					_, err := e.service.Decide(ctx, e.org, agent.ID, tc.req, "")
					if !errors.Is(err, decision.ErrInvalidRequest) {
						t.Fatalf("err = %v, want ErrInvalidRequest", err)
					}
					if strings.Contains(err.Error(), payee.ID) || strings.Contains(err.Error(), foreign.ID) {
						t.Fatalf("error quotes the request: %v", err)
					}
					if after := e.ledgerSize(t); after != before {
						t.Fatalf("a refused request appended %d entries", after-before)
					}
				})
			}
			if _, err := e.service.Decide(ctx, e.org, store.NewID(store.PrefixAgent), action("report.generate"), ""); !errors.Is(err, decision.ErrUnknownAgent) {
				t.Fatalf("unknown agent: %v", err)
			}
			if _, err := e.service.Decide(ctx, e.org, agent.ID, action("report.generate"), "bad\nkey"); !errors.Is(err, decision.ErrInvalidRequest) {
				t.Fatalf("control character in the Idempotency-Key: %v", err)
			}
			// An Idempotency-Key of the longest length is taken, one byte
			// more refused before anything is logged.
			before := e.ledgerSize(t)
			if _, err := e.service.Decide(ctx, e.org, agent.ID, action("report.generate"), strings.Repeat("k", decision.MaxIdempotencyKey+1)); !errors.Is(err, decision.ErrInvalidRequest) {
				t.Fatalf("an Idempotency-Key of %d bytes: %v", decision.MaxIdempotencyKey+1, err)
			}
			if after := e.ledgerSize(t); after != before {
				t.Fatalf("a refused Idempotency-Key appended %d entries", after-before)
			}
			if _, err := e.service.Decide(ctx, e.org, agent.ID, action("report.generate"), strings.Repeat("k", decision.MaxIdempotencyKey)); err != nil {
				t.Fatalf("an Idempotency-Key of %d bytes: %v", decision.MaxIdempotencyKey, err)
			}
		})
	}
}

// storeTenant creates another organization and returns its id.
func storeTenant(t *testing.T, e *serviceEnv, slug string) string {
	t.Helper()
	var id string
	err := e.backend.InPlatformTx(context.Background(), func(ctx context.Context, tx store.PlatformTx) error {
		tn, err := tx.CreateTenant(ctx, store.Tenant{Slug: slug, Name: "Org " + slug})
		id = tn.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestAgentsSeeOnlyTheirOwn: another agent of the same organization cannot
// read a decision or a case, and cannot tell it from one that never existed.
func TestAgentsSeeOnlyTheirOwn(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			e.activate(t, acmeBundle(t))
			ctx := context.Background()
			owner, other := e.agent(t, store.RiskLow), e.agent(t, store.RiskLow)
			payee := e.counterparty(t, e.org, store.CounterpartyVerified)
			resp := e.decide(t, owner.ID, payment("5000.00", payee.ID), "")
			if resp.Case == nil {
				t.Fatalf("no case: %+v", resp)
			}
			if _, err := e.service.GetDecision(ctx, e.org, owner.ID, resp.DecisionID); err != nil {
				t.Fatal(err)
			}
			if _, err := e.service.GetCase(ctx, e.org, owner.ID, resp.Case.ID); err != nil {
				t.Fatal(err)
			}
			if index, err := e.service.DecisionIndex(ctx, e.org, owner.ID, resp.DecisionID); err != nil || index != resp.Ledger.Index {
				t.Fatalf("DecisionIndex = %d, %v; want %d", index, err, resp.Ledger.Index)
			}
			for name, err := range map[string]error{
				"decision of another agent":   second(e.service.GetDecision(ctx, e.org, other.ID, resp.DecisionID)),
				"index of another's decision": second(e.service.DecisionIndex(ctx, e.org, other.ID, resp.DecisionID)),
				"index of a malformed id":     second(e.service.DecisionIndex(ctx, e.org, owner.ID, "dec_../../x")),
				"case of another agent":       second(e.service.GetCase(ctx, e.org, other.ID, resp.Case.ID)),
				"wait on another's case":      second(e.service.WaitCase(ctx, e.org, other.ID, resp.Case.ID, time.Second, nil)),
				"unknown decision":            second(e.service.GetDecision(ctx, e.org, owner.ID, store.NewID(store.PrefixDecision))),
				"malformed decision id":       second(e.service.GetDecision(ctx, e.org, owner.ID, "dec_../../x")),
				"malformed case id":           second(e.service.GetCase(ctx, e.org, owner.ID, resp.DecisionID)),
			} {
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("%s: %v, want ErrNotFound", name, err)
				}
			}
		})
	}
}

// TestInactiveAgentReadsNothing: once an agent is suspended or revoked, its
// still-valid access token reads none of its decisions, proofs or cases,
// nor replays a request under its Idempotency-Key — no receipt leaves, not
// even one of an earlier allow — and a long poll in progress ends.
func TestInactiveAgentReadsNothing(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, payee := payingEnv(t, kind)
			_, _, svc := e.newService(t, e.ledger, decision.Config{CasePollInterval: 10 * time.Millisecond})
			ctx := context.Background()
			allowed := e.decide(t, agent.ID, payment("100.00", payee.ID), "before")
			escalated := e.decide(t, agent.ID, payment("5000.00", payee.ID), "")
			if allowed.Receipt == "" || escalated.Case == nil {
				t.Fatalf("setup: %+v, %+v", allowed, escalated)
			}
			setStatus := func(status store.AgentStatus) {
				t.Helper()
				e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					return tx.Agents().SetStatus(ctx, agent.ID, status)
				})
			}
			// Suspended while waiting on its case: the poll ends refused.
			waited := make(chan error, 1)
			go func() {
				_, err := svc.WaitCase(ctx, e.org, agent.ID, escalated.Case.ID, 10*time.Second, nil)
				waited <- err
			}()
			// A place is held once the first read found the case pending:
			// the poll is under way when the agent is suspended.
			for deadline := time.Now().Add(10 * time.Second); svc.OpenWaits(e.org.ID, agent.ID) < 1; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the wait never started polling")
				}
			}
			setStatus(store.AgentSuspended)
			select {
			case err := <-waited:
				if !errors.Is(err, decision.ErrUnknownAgent) {
					t.Fatalf("wait of an agent suspended meanwhile: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the wait of a suspended agent went on")
			}
			// Suspended (not reinstated: nothing logs that yet), then
			// revoked (final).
			for _, status := range []store.AgentStatus{store.AgentSuspended, store.AgentRevoked} {
				setStatus(status)
				for name, err := range map[string]error{
					"its allowed decision": second(svc.GetDecision(ctx, e.org, agent.ID, allowed.DecisionID)),
					"its decision's index": second(svc.DecisionIndex(ctx, e.org, agent.ID, allowed.DecisionID)),
					"its case":             second(svc.GetCase(ctx, e.org, agent.ID, escalated.Case.ID)),
					"a wait on its case":   second(svc.WaitCase(ctx, e.org, agent.ID, escalated.Case.ID, time.Second, nil)),
					// A replay would hand out the stored receipt.
					"a replay of its allow": second(svc.Decide(ctx, e.org, agent.ID, payment("100.00", payee.ID), "before")),
				} {
					if !errors.Is(err, decision.ErrUnknownAgent) {
						t.Errorf("%s agent, %s: %v, want ErrUnknownAgent", status, name, err)
					}
				}
			}
		})
	}
}

// An allowed decision whose receipt row is missing is a broken store: the
// agent gets an error, not a response without its receipt, nor a "not
// found" that would pass for an unknown decision.
func TestAllowedDecisionWithoutReceipt(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			agent := e.agent(t, store.RiskLow)
			var d store.Decision
			e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				var err error
				d, err = tx.Decisions().Insert(ctx, store.Decision{
					AgentID: agent.ID, Action: `{"type":"invoice.approve"}`, ActionType: "invoice.approve",
					Reason: "r", Outcome: store.OutcomeAllow, BaseRevision: "b", RequestSHA256: make([]byte, 32),
					Response: `{"decision_id":"x","outcome":"allow","reasons":[]}`,
				})
				return err
			})
			resp, err := e.service.GetDecision(context.Background(), e.org, agent.ID, d.ID)
			if err == nil || errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "has no stored receipt") {
				t.Fatalf("GetDecision = %+v, %v; want the internal error of a missing receipt", resp, err)
			}
		})
	}
}

// A decision's row names its ledger entry and the size of the tree its
// proof is in; reading it back rebuilds the checkpoint and proof from the
// log. A row stored before that (no tree size) keeps its own. A row that
// names what the log does not hold is a broken store: an internal error,
// not a "not found" that would pass for an unknown decision.
func TestStoredResponseProofFromTheLog(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e, agent, payee := payingEnv(t, kind)
			req := payment("100.00", payee.ID)
			sent := e.decide(t, agent.ID, req, "key-1")
			if sent.Outcome != decision.Allow {
				t.Fatalf("decision %+v, want an allow (its receipt is the entry after its own)", sent)
			}
			sentJSON, _ := json.Marshal(sent)
			// The log grows past the decision's checkpoint: a later read and
			// a replay still answer with the checkpoint and proof sent.
			for range 3 {
				e.decide(t, agent.ID, payment("100.00", payee.ID), "")
			}
			later, err := e.service.GetDecision(context.Background(), e.org, agent.ID, sent.DecisionID)
			if b, _ := json.Marshal(later); err != nil || string(b) != string(sentJSON) {
				t.Errorf("GetDecision after the log grew =\n%s, %v\nwant\n%s", b, err, sentJSON)
			}
			if b, _ := json.Marshal(e.decide(t, agent.ID, req, "key-1")); string(b) != string(sentJSON) {
				t.Errorf("replay after the log grew =\n%s\nwant\n%s", b, sentJSON)
			}
			size := strings.Split(sent.Ledger.Checkpoint, "\n")[1]
			leaf := base64.StdEncoding.EncodeToString(sent.Ledger.LeafHash)
			index, next := fmt.Sprint(sent.Ledger.Index), fmt.Sprint(sent.Ledger.Index+1)
			receiptEntry, err := e.ledger.Entry(context.Background(), e.log(), sent.Ledger.Index+1)
			if err != nil {
				t.Fatal(err)
			}
			nextLeaf := base64.StdEncoding.EncodeToString(receiptEntry.LeafHash)
			// Denials: no receipt to read back.
			stored := func(column uint64, ledger string) string {
				var d store.Decision
				e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					var err error
					d, err = tx.Decisions().Insert(ctx, store.Decision{
						AgentID: agent.ID, Action: `{"type":"invoice.approve"}`, ActionType: "invoice.approve",
						Reason: "r", Outcome: store.OutcomeDeny, Reasons: []string{"no_authority"}, BaseRevision: "b",
						RequestSHA256: make([]byte, 32), LedgerIndex: column,
						Response: `{"decision_id":"x","outcome":"deny","reasons":["no_authority"],` + ledger + `}`,
					})
					return err
				})
				return d.ID
			}
			get := func(id string) (decision.Response, error) {
				return e.service.GetDecision(context.Background(), e.org, agent.ID, id)
			}

			at := sent.Ledger.Index
			got, err := get(stored(at, `"ledger":{"index":`+index+`,"leaf_hash":"`+leaf+`","checkpoint":"","inclusion_proof":null},"tree_size":`+size))
			if err != nil || got.Ledger.Checkpoint != sent.Ledger.Checkpoint || !slices.EqualFunc(got.Ledger.InclusionProof, sent.Ledger.InclusionProof, bytes.Equal) {
				t.Errorf("rebuilt: %+v, %v; want the checkpoint and proof sent with %+v", got.Ledger, err, sent.Ledger)
			}
			got, err = get(stored(at, `"ledger":{"index":`+index+`,"leaf_hash":"`+leaf+`","checkpoint":"an older row's","inclusion_proof":["AAAA"]}`))
			if err != nil || got.Ledger.Checkpoint != "an older row's" || len(got.Ledger.InclusionProof) != 1 || !bytes.Equal(got.Ledger.InclusionProof[0], []byte{0, 0, 0}) {
				t.Errorf("an older row: %+v, %v; want its own checkpoint and proof", got.Ledger, err)
			}
			for _, tc := range []struct {
				name   string
				column uint64 // the row's ledger_index
				ledger string
			}{
				{"another entry's index", at + 1, `"ledger":{"index":` + next + `,"leaf_hash":"` + leaf + `","checkpoint":"","inclusion_proof":null},"tree_size":` + size},
				// The next entry, proved as it stands: only the row's column
				// says it is not this decision's.
				{"an index the row's column does not name", at, `"ledger":{"index":` + next + `,"leaf_hash":"` + nextLeaf + `","checkpoint":"","inclusion_proof":null},"tree_size":` + size},
				{"a tree size never signed", at, `"ledger":{"index":` + index + `,"leaf_hash":"` + leaf + `","checkpoint":"","inclusion_proof":null},"tree_size":99999`},
				{"an index beyond its tree", 99999, `"ledger":{"index":99999,"leaf_hash":"` + leaf + `","checkpoint":"","inclusion_proof":null},"tree_size":` + size},
				{"neither a checkpoint nor a size", at, `"ledger":{"index":` + index + `,"leaf_hash":"` + leaf + `","checkpoint":"","inclusion_proof":null}`},
			} {
				got, err := get(stored(tc.column, tc.ledger))
				if err == nil || errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "internal") {
					t.Errorf("%s: %+v, %v; want an internal error", tc.name, got, err)
				}
			}
		})
	}
}

func second[T any](_ T, err error) error { return err }

// NewService refuses a configuration it cannot honour.
func TestServiceConfigRefusals(t *testing.T) {
	e := newServiceEnv(t, "sqlite")
	kr, err := signing.NewKeyring(e.master)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := decision.NewEvaluator(context.Background(), e.engine, decision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	valid := decision.Config{Tenants: e.backend, Ledger: e.ledger, Keyring: kr, Evaluator: ev, Policies: e.policies, PublicURL: publicURL}
	if _, err := decision.NewService(valid); err != nil {
		t.Fatalf("a valid configuration: %v", err)
	}
	for name, change := range map[string]func(*decision.Config){
		"no store":                    func(c *decision.Config) { c.Tenants = nil },
		"relative public URL":         func(c *decision.Config) { c.PublicURL = "/t" },
		"receipt lifetime under 1 s":  func(c *decision.Config) { c.ReceiptLifetime = time.Millisecond },
		"case lifetime over the max":  func(c *decision.Config) { c.CaseLifetime = store.MaxCaseLifetime + time.Second },
		"negative case poll interval": func(c *decision.Config) { c.CasePollInterval = -time.Second },
		"negative long polls":         func(c *decision.Config) { c.MaxCaseWaits = -1 },
	} {
		cfg := valid
		change(&cfg)
		if _, err := decision.NewService(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
