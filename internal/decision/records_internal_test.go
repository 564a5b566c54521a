package decision

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
)

// RecordAgent reads the agent from the records the service writes, as it
// writes them, and from nothing else: another kind, a record that names
// no agent or names it twice, a receipt that is no compact JWS.
func TestRecordAgent(t *testing.T) {
	const agent = "agt_bbbbbbbbbbbbbbbbbbbbbbbbbb"
	at := time.Date(2026, 11, 29, 9, 30, 0, 0, time.UTC)
	dec, err := (&decisionRecord{
		DecisionID: "dec_aaaaaaaaaaaaaaaaaaaaaaaaaa", AgentID: agent,
		// The action names another agent: only the record's own member counts.
		Action:  json.RawMessage(`{"params":{"agent_id":"agt_cccccccccccccccccccccccccc","sub":"agt_cccccccccccccccccccccccccc"},"type":"agent.update"}`),
		Outcome: Escalate, Reasons: []string{}, Policy: PolicyRevisions{BaseRevision: "base-1"}, Time: at,
	}).canonical()
	if err != nil {
		t.Fatal(err)
	}
	cs, err := canonicalJSON(caseRecord{CaseID: "case_x", DecisionID: "dec_x", AgentID: agent, Status: "pending", ApprovalsRequired: 1, ExpiresAt: at, Time: at})
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	receipt := func(payload string) []byte {
		return []byte(b64([]byte(`{"alg":"EdDSA"}`)) + "." + b64([]byte(payload)) + "." + b64([]byte("signature")))
	}
	for _, tc := range []struct {
		name, kind string
		record     []byte
		want       string // "" for none
	}{
		{"a decision", KindDecision, dec, agent},
		{"a case opened", KindCaseOpened, cs, agent},
		{"a case expired", KindCaseExpired, cs, agent},
		{"a receipt", KindReceipt, receipt(`{"sub":"` + agent + `","agent":{"id":"agt_cccccccccccccccccccccccccc"}}`), agent},
		{"another kind with an agent_id", "policy.activated", cs, ""},
		{"a decision record read as a receipt", KindReceipt, dec, ""},
		{"a decision naming no agent", KindDecision, []byte(`{"decision_id":"dec_x"}`), ""},
		{"a decision naming two", KindDecision, []byte(`{"agent_id":"agt_cccccccccccccccccccccccccc","agent_id":"` + agent + `"}`), ""},
		{"a decision naming it in another case", KindDecision, []byte(`{"Agent_ID":"` + agent + `"}`), ""},
		{"not JSON", KindDecision, []byte(`agent_id=` + agent), ""},
		{"a receipt naming two", KindReceipt, receipt(`{"sub":"agt_cccccccccccccccccccccccccc","sub":"` + agent + `"}`), ""},
		{"a receipt naming none", KindReceipt, receipt(`{"agent":{"id":"` + agent + `"}}`), ""},
		{"a receipt of four parts", KindReceipt, append(receipt(`{"sub":"`+agent+`"}`), ".x"...), ""},
		{"a receipt padded", KindReceipt, []byte(b64([]byte(`{}`)) + "." + base64.URLEncoding.EncodeToString([]byte(`{"sub":"`+agent+`"}`)) + ".c2ln"), ""},
	} {
		got, ok := RecordAgent(tc.kind, tc.record)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.name, got, ok, tc.want)
		}
	}
}
