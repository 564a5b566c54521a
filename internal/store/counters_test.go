package store

import (
	"reflect"
	"testing"
	"time"
)

// SumCounters gives one increment per agent and minute and per
// counterparty paid, in order of first appearance; denials count as
// decisions too, and only allowed payment.* decisions with a counterparty
// are payments.
func TestSumCounters(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 30, 0, time.UTC)
	dec := func(agent string, at time.Time, outcome Outcome, actionType, counterparty string) Decision {
		return Decision{AgentID: agent, CreatedAt: at, Outcome: outcome, ActionType: actionType, CounterpartyID: counterparty}
	}
	activity, payments := SumCounters([]Decision{
		dec("agt_a", t0, OutcomeAllow, "payment.send", "cp_1"),
		dec("agt_b", t0, OutcomeDeny, "payment.send", "cp_1"),
		dec("agt_a", t0.Add(20*time.Second), OutcomeAllow, "payment.send", "cp_2"),
		dec("agt_a", t0.Add(29*time.Second), OutcomeDeny, "vendor.update", "cp_1"),
		dec("agt_a", t0.Add(30*time.Second), OutcomeAllow, "payment.send", "cp_1"), // the next minute
		dec("agt_b", t0, OutcomeEscalate, "payment.send", "cp_2"),
		dec("agt_b", t0, OutcomeAllow, "access.grant", "cp_2"),
		dec("agt_b", t0, OutcomeAllow, "payment.send", ""),
	})
	m := ActivityMinute(t0)
	wantActivity := []ActivityCount{
		{AgentID: "agt_a", Minute: m, Decisions: 3, Denials: 1},
		{AgentID: "agt_b", Minute: m, Decisions: 4, Denials: 1},
		{AgentID: "agt_a", Minute: m + 1, Decisions: 1},
	}
	wantPayments := []PaymentCount{{CounterpartyID: "cp_1", Payments: 2}, {CounterpartyID: "cp_2", Payments: 1}}
	if !reflect.DeepEqual(activity, wantActivity) {
		t.Errorf("activity = %+v\nwant %+v", activity, wantActivity)
	}
	if !reflect.DeepEqual(payments, wantPayments) {
		t.Errorf("payments = %+v\nwant %+v", payments, wantPayments)
	}
	if a, p := SumCounters(nil); a != nil || p != nil {
		t.Errorf("no decisions: %v, %v", a, p)
	}
}

// A clone shares no memory with its record: what the caller changes after
// Record returns does not reach a queued record.
func TestDecisionRecordClone(t *testing.T) {
	r := DecisionRecord{
		Decision: Decision{ID: "dec_1", Reasons: []string{"a"}, IdempotencyKeySHA256: []byte{1}, RequestSHA256: []byte{2}},
		Receipt:  &Receipt{ID: "rct_1"},
		Case:     &Case{ID: "case_1"},
	}
	c := r.Clone()
	r.Decision.Reasons[0], r.Decision.IdempotencyKeySHA256[0], r.Decision.RequestSHA256[0] = "changed", 9, 9
	r.Receipt.ID, r.Case.ID = "rct_changed", "case_changed"
	want := DecisionRecord{
		Decision: Decision{ID: "dec_1", Reasons: []string{"a"}, IdempotencyKeySHA256: []byte{1}, RequestSHA256: []byte{2}},
		Receipt:  &Receipt{ID: "rct_1"},
		Case:     &Case{ID: "case_1"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("clone after the original changed: %+v (receipt %+v, case %+v)", c, c.Receipt, c.Case)
	}
	if n := (DecisionRecord{}).Clone(); n.Decision.IdempotencyKeySHA256 != nil || n.Receipt != nil || n.Case != nil {
		t.Fatalf("a clone of an empty record: %+v; nil stays nil (a NULL key)", n)
	}
}
