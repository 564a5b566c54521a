package decision

import (
	"encoding/json"
	"time"

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
