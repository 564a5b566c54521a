package store

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// SumPayments gives one increment per counterparty paid, in order of
// first appearance; only allowed payment.* decisions with a counterparty
// are payments.
func TestSumPayments(t *testing.T) {
	dec := func(outcome Outcome, actionType, counterparty string) Decision {
		return Decision{AgentID: "agt_a", Outcome: outcome, ActionType: actionType, CounterpartyID: counterparty}
	}
	payments := SumPayments([]Decision{
		dec(OutcomeAllow, "payment.send", "cp_1"),
		dec(OutcomeDeny, "payment.send", "cp_1"),
		dec(OutcomeAllow, "payment.send", "cp_2"),
		dec(OutcomeAllow, "payment.send", "cp_1"),
		dec(OutcomeEscalate, "payment.send", "cp_2"),
		dec(OutcomeAllow, "access.grant", "cp_2"),
		dec(OutcomeAllow, "payment.send", ""),
	})
	want := []PaymentCount{{CounterpartyID: "cp_1", Payments: 2}, {CounterpartyID: "cp_2", Payments: 1}}
	if !reflect.DeepEqual(payments, want) {
		t.Errorf("payments = %+v\nwant %+v", payments, want)
	}
	if p := SumPayments(nil); p != nil {
		t.Errorf("no decisions: %v", p)
	}
}

// A tally counts every decision and the denials among them, and its time
// never goes back; stats are the differences of tallies.
func TestAgentTally(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	var tally AgentTally
	var asOf []AgentTally
	for _, d := range []struct {
		o  Outcome
		at time.Time
	}{
		{OutcomeAllow, t0},
		{OutcomeDeny, t0.Add(time.Second)},
		{OutcomeEscalate, t0.Add(3 * time.Second)},
		{OutcomeDeny, t0.Add(2 * time.Second)}, // stored after a later one
		{OutcomeAllow, t0.Add(4 * time.Second)},
	} {
		tally = tally.Add(d.o, d.at)
		asOf = append(asOf, tally)
	}
	if want := (AgentTally{Decisions: 5, Denials: 2, At: t0.Add(4 * time.Second)}); tally != want {
		t.Fatalf("tally = %+v, want %+v", tally, want)
	}
	if asOf[3].At != t0.Add(3*time.Second) {
		t.Fatalf("a decision stored late took its own time %v, not its predecessor's", asOf[3].At)
	}
	got := StatsFromTallies(tally, asOf[1], AgentTally{})
	if want := (AgentStats{Decisions1h: 3, Denials1h: 1, Decisions24h: 5}); got != want {
		t.Fatalf("stats = %+v, want %+v", got, want)
	}
	if got := StatsFromTallies(tally, tally, tally); got != (AgentStats{}) {
		t.Fatalf("nothing since: %+v", got)
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

// A queue keeps clones, and a failed savepoint drops what it queued and
// nothing before it; a successful one keeps all.
func TestRecordQueue(t *testing.T) {
	var q RecordQueue
	r := DecisionRecord{Decision: Decision{ID: "dec_1", Reasons: []string{"a"}}}
	q.Add(r)
	r.Decision.Reasons[0] = "changed"
	savepoint := func(ids []string, fail error) (err error) {
		defer q.DropOnError(len(q.Records()), &err)
		for _, id := range ids {
			q.Add(DecisionRecord{Decision: Decision{ID: id}})
		}
		return fail
	}
	if err := savepoint([]string{"dec_2", "dec_3"}, errors.New("refused")); err == nil {
		t.Fatal("the failure was lost")
	}
	_ = savepoint([]string{"dec_4"}, nil)
	var ids []string
	for _, r := range q.Records() {
		ids = append(ids, r.Decision.ID)
	}
	if got := strings.Join(ids, ","); got != "dec_1,dec_4" || q.Records()[0].Decision.Reasons[0] != "a" {
		t.Fatalf("queued %s, first reasons %v", got, q.Records()[0].Decision.Reasons)
	}
}
