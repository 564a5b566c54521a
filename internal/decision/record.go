package decision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// record writes an evaluated decision down (steps 4–6 of Decide): its
// ledger entry, the receipt or case and theirs, the inclusion proof of the
// decision's entry, then the store rows, and returns the response.
//
// The ledger comes first because the rows carry their entries' indexes
// and the response its proof. If storing fails afterwards, the entries
// stay (the log is append-only) and the agent gets an error: the log then
// shows a decision the store lacks, never the reverse.
func (s *Service) record(ctx context.Context, org Organization, v *validRequest, g gathered, ev Evaluation, keyHash []byte, now time.Time) (Response, error) {
	lg := s.cfg.Ledger.TenantLog(org.ID, org.Slug)
	decisionID := store.NewID(store.PrefixDecision)
	reasons := ev.Reasons
	if reasons == nil {
		reasons = []string{}
	}
	approvals := 0
	if ev.Outcome == Escalate {
		// Combine gives at least 1 and bundles.MaxApprovals at most; the
		// store's bound is the last word.
		approvals = min(max(ev.ApprovalsRequired, 1), store.MaxApprovals)
	}
	actionSHA, err := signing.ActionDigest(v.action)
	if err != nil {
		return Response{}, fmt.Errorf("decision: action digest: %w", err)
	}
	rec, err := canonicalJSON(decisionRecord{
		DecisionID: decisionID, AgentID: g.agent.ID, Action: v.action, ActionSHA256: actionSHA,
		Reason: v.Reason, Outcome: ev.Outcome, Reasons: reasons, ApprovalsRequired: approvals,
		Policy: ev.Policy, Time: now,
	})
	if err != nil {
		return Response{}, fmt.Errorf("decision: encode the decision record: %w", err)
	}
	entry, err := s.cfg.Ledger.Append(ctx, lg, ledger.Entry{Kind: KindDecision, Subject: decisionID, Record: rec})
	if err != nil {
		return Response{}, fmt.Errorf("decision: append the decision to the ledger: %w", err)
	}

	resp := Response{DecisionID: decisionID, Outcome: ev.Outcome, Reasons: reasons}
	var receipt *store.Receipt
	var opened *store.Case
	switch ev.Outcome {
	case Allow:
		if receipt, err = s.issueReceipt(ctx, org, lg, v, g, ev, decisionID, actionSHA, now); err != nil {
			return Response{}, err
		}
		resp.Receipt = receipt.JWS
	case Escalate:
		if opened, err = s.openCase(ctx, lg, g.agent.ID, decisionID, approvals, now); err != nil {
			return Response{}, err
		}
		resp.Case = &CaseSummary{ID: opened.ID, Status: opened.Status, ApprovalsRequired: opened.ApprovalsRequired, ExpiresAt: opened.ExpiresAt}
	}

	// The proof is against the checkpoint signed for the decision's own
	// batch: the response's checkpoint and proof always go together.
	proof, err := s.cfg.Ledger.InclusionProof(ctx, lg, entry.Index, entry.Checkpoint.Size)
	if err != nil {
		return Response{}, fmt.Errorf("decision: inclusion proof: %w", err)
	}
	hashes := proof.Hashes
	if hashes == nil {
		hashes = [][]byte{} // a one-entry tree: [] not null
	}
	resp.Ledger = LedgerProof{Index: entry.Index, LeafHash: entry.LeafHash, Checkpoint: string(entry.Checkpoint.Note), InclusionProof: hashes}
	body, err := json.Marshal(resp)
	if err != nil {
		return Response{}, fmt.Errorf("decision: encode the response: %w", err)
	}

	row := store.Decision{
		ID: decisionID, AgentID: g.agent.ID, Action: string(v.action), ActionType: v.Action.Type,
		CounterpartyID: v.Action.Counterparty, Reason: v.Reason,
		Outcome: store.Outcome(ev.Outcome), Reasons: reasons, ApprovalsRequired: approvals,
		BaseRevision: ev.Policy.BaseRevision, TenantRevision: ev.Policy.TenantRevision, TenantBundleSHA256: ev.Policy.TenantBundleSHA256,
		IdempotencyKeySHA256: keyHash, RequestSHA256: v.sha256,
		LedgerIndex: entry.Index, Response: string(body), CreatedAt: now,
	}
	err = s.cfg.Tenants.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		if _, err := tx.Decisions().Insert(ctx, row); err != nil {
			return err
		}
		if receipt != nil {
			if _, err := tx.Receipts().Insert(ctx, *receipt); err != nil {
				return err
			}
		}
		if opened != nil {
			if _, err := tx.Cases().Create(ctx, *opened); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrConflict) && keyHash != nil {
		// Another process stored a decision under this Idempotency-Key
		// between our read and our write (the unique key refused ours).
		return s.replayAfterRace(ctx, org, g.agent.ID, keyHash, v.sha256)
	}
	if err != nil {
		return Response{}, fmt.Errorf("decision: store the decision: %w", err)
	}
	return resp, nil
}

// issueReceipt signs an allowed action's receipt (DESIGN §3 "Receipt") and
// appends it to the ledger; the entry's record is the compact JWS itself,
// so the log's digest is the SHA-256 of exactly what the agent holds.
func (s *Service) issueReceipt(ctx context.Context, org Organization, lg ledger.Log, v *validRequest, g gathered, ev Evaluation, decisionID, actionSHA string, now time.Time) (*store.Receipt, error) {
	id := store.NewID(store.PrefixReceipt)
	jws, err := g.signer.Sign(signing.ReceiptClaims{
		Issuer: s.issuer(org), Subject: g.agent.ID, ID: id,
		IssuedAt: now, NotBefore: now, Expiry: now.Add(s.cfg.ReceiptLifetime),
		Tenant: org.ID, DecisionID: decisionID, Outcome: signing.OutcomeAllow,
		Action: v.action, ActionSHA256: actionSHA,
		Agent:     signing.ReceiptAgent{ID: g.agent.ID, Sponsor: g.agent.Sponsor, RiskTier: string(g.agent.RiskTier)},
		Approvals: []signing.ReceiptApproval{},
		Policy: signing.ReceiptPolicy{
			BaseRevision: ev.Policy.BaseRevision, TenantRevision: ev.Policy.TenantRevision,
			TenantBundleSHA256: ev.Policy.TenantBundleSHA256,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("decision: sign the receipt: %w", err)
	}
	entry, err := s.cfg.Ledger.Append(ctx, lg, ledger.Entry{Kind: KindReceipt, Subject: id, Record: []byte(jws)})
	if err != nil {
		return nil, fmt.Errorf("decision: append the receipt to the ledger: %w", err)
	}
	return &store.Receipt{ID: id, DecisionID: decisionID, JWS: jws, LedgerIndex: entry.Index, CreatedAt: now}, nil
}

// openCase opens the case of an escalated decision, pending until people
// approve or reject it or it expires, and appends it to the ledger.
func (s *Service) openCase(ctx context.Context, lg ledger.Log, agentID, decisionID string, approvals int, now time.Time) (*store.Case, error) {
	c := &store.Case{
		ID: store.NewID(store.PrefixCase), DecisionID: decisionID, AgentID: agentID,
		Status: store.CasePending, ApprovalsRequired: approvals,
		ExpiresAt: store.StoredTime(now.Add(s.cfg.CaseLifetime)), CreatedAt: now,
	}
	rec, err := canonicalJSON(caseRecord{
		CaseID: c.ID, DecisionID: decisionID, AgentID: agentID, Status: c.Status,
		ApprovalsRequired: approvals, ExpiresAt: c.ExpiresAt, Time: now,
	})
	if err != nil {
		return nil, fmt.Errorf("decision: encode the case record: %w", err)
	}
	if _, err := s.cfg.Ledger.Append(ctx, lg, ledger.Entry{Kind: KindCaseOpened, Subject: c.ID, Record: rec}); err != nil {
		return nil, fmt.Errorf("decision: append the case to the ledger: %w", err)
	}
	return c, nil
}
