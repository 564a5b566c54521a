package decision

import (
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"time"

	"github.com/agentsigna/agentsigna/internal/jose"
	"github.com/agentsigna/agentsigna/internal/store"
)

// Kinds of the ledger entries the decision service appends (DESIGN §4).
const (
	KindDecision    = "decision"     // record: decisionRecord
	KindReceipt     = "receipt"      // record: the receipt's compact JWS
	KindCaseOpened  = "case.opened"  // record: caseRecord
	KindCaseExpired = "case.expired" // record: caseRecord
)

// decisionRecord is what a decision's ledger entry digests, as RFC 8785
// canonical JSON: everything an auditor needs to see what was asked, by
// whom, what was answered and under which policies — and nothing the
// organization keeps secret (the policy input's counterparty status or the
// agent's stats are not in it; bank details never are anywhere).
type decisionRecord struct {
	DecisionID        string          `json:"decision_id"`
	AgentID           string          `json:"agent_id"`
	Action            json.RawMessage `json:"action"`
	ActionSHA256      string          `json:"action_sha256"`
	Reason            string          `json:"reason"`
	Outcome           Outcome         `json:"outcome"`
	Reasons           []string        `json:"reasons"`
	ApprovalsRequired int             `json:"approvals_required"`
	Policy            PolicyRevisions `json:"policy"`
	Time              time.Time       `json:"time"`
}

// canonical is the record's RFC 8785 form, written directly rather than
// marshalled and canonicalized again (that took 4% of the allow path's
// CPU), with canonicalObject: the action spliced in as it is already
// canonical, integers only, and the time as encoding/json writes it.
// TestDecisionRecordCanonical holds it to signing.Canonical of the
// record's JSON.
func (r *decisionRecord) canonical() ([]byte, error) {
	t, err := r.Time.MarshalJSON()
	if err != nil {
		return nil, err
	}
	o := newCanonicalObject(512 + len(r.Action) + len(r.Reason))
	o.raw("action", r.Action)
	o.string("action_sha256", r.ActionSHA256)
	o.string("agent_id", r.AgentID)
	o.int("approvals_required", r.ApprovalsRequired)
	o.string("decision_id", r.DecisionID)
	o.string("outcome", string(r.Outcome))
	o.open("policy")
	o.string("base_revision", r.Policy.BaseRevision)
	if r.Policy.TenantBundleSHA256 != "" {
		o.string("tenant_bundle_sha256", r.Policy.TenantBundleSHA256)
	}
	if r.Policy.TenantRevision != "" {
		o.string("tenant_revision", r.Policy.TenantRevision)
	}
	o.close()
	o.string("reason", r.Reason)
	o.strings("reasons", r.Reasons)
	o.raw("time", t)
	return o.end()
}

// caseRecord is what a case's ledger entries digest (opened, expired).
type caseRecord struct {
	CaseID            string           `json:"case_id"`
	DecisionID        string           `json:"decision_id"`
	AgentID           string           `json:"agent_id"`
	Status            store.CaseStatus `json:"status"`
	ApprovalsRequired int              `json:"approvals_required"`
	ExpiresAt         time.Time        `json:"expires_at"`
	Time              time.Time        `json:"time"`
}

// RecordAgent returns the agent that a record of the decision service's
// entries names: the agent_id of a decision's or a case's record, the sub
// of a receipt's claims. ok is false for an entry of another kind, and for
// a record that names no agent or more than one way (a duplicate name).
// It reads only what the entry digests, so anyone who holds the entry and
// its record reads the same agent.
func RecordAgent(kind string, record []byte) (agentID string, ok bool) {
	var named struct {
		AgentID string `json:"agent_id"`
		Sub     string `json:"sub"`
	}
	switch kind {
	case KindDecision, KindCaseOpened, KindCaseExpired:
		if jsonv2.Unmarshal(record, &named) != nil || named.AgentID == "" {
			return "", false
		}
		return named.AgentID, true
	case KindReceipt:
		// A compact JWS, split strictly. The signature is not checked: the
		// record is the one the entry digests, and the entry is in the
		// signed log.
		_, payload, err := jose.SplitCompact(string(record))
		if err != nil || jsonv2.Unmarshal(payload, &named) != nil || named.Sub == "" {
			return "", false
		}
		return named.Sub, true
	}
	return "", false
}
