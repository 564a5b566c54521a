package decision

import (
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// Response is the answer to POST /v1/decisions and GET /v1/decisions/{id},
// exactly DESIGN §3 "Response": the HTTP layer marshals it as is. It is
// stored as JSON with the decision, less what the ledger holds (storedBody),
// and replayed byte for byte (an Idempotency-Key replay, a later GET), so
// every field survives a JSON round trip unchanged.
type Response struct {
	DecisionID string   `json:"decision_id"`
	Outcome    Outcome  `json:"outcome"`
	Reasons    []string `json:"reasons"`
	// Receipt is the compact JWS, only when Outcome is allow.
	Receipt string `json:"receipt,omitempty"`
	// Case is the case the escalation opened, only when Outcome is
	// escalate. It is the case as opened: GetCase tells where it is now.
	Case *CaseSummary `json:"case,omitempty"`
	// Ledger is the decision's own entry and its inclusion proof.
	Ledger LedgerProof `json:"ledger"`
}

// CaseSummary is the case of an escalated decision as the response shows it.
type CaseSummary struct {
	ID                string           `json:"id"`
	Status            store.CaseStatus `json:"status"`
	ApprovalsRequired int              `json:"approvals_required"`
	ExpiresAt         time.Time        `json:"expires_at"`
}

// LedgerProof places the decision's entry in the organization's log: its
// index and leaf hash, the signed checkpoint (C2SP signed note) of the
// batch that included it, and the RFC 6962 inclusion proof against that
// checkpoint. Hashes are standard base64 (encoding/json's []byte), as in
// C2SP.
type LedgerProof struct {
	Index          uint64   `json:"index"`
	LeafHash       []byte   `json:"leaf_hash"`
	Checkpoint     string   `json:"checkpoint"`
	InclusionProof [][]byte `json:"inclusion_proof"`
}

// CaseView is what GET /v1/cases/{id} shows the agent: where its case is.
type CaseView struct {
	ID                string           `json:"id"`
	DecisionID        string           `json:"decision_id"`
	Status            store.CaseStatus `json:"status"`
	ApprovalsRequired int              `json:"approvals_required"`
	ExpiresAt         time.Time        `json:"expires_at"`
	// Receipt is the compact JWS signed when the case was approved.
	Receipt string `json:"receipt,omitempty"`
}
