package decision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// record writes an evaluated decision down (steps 4–5 of Decide): its
// ledger entry, the receipt or case and theirs, and in the same
// transaction the store rows; it returns the response, which carries the
// entry's index, checkpoint and inclusion proof (the row keeps what the
// ledger does not hold, see storedBody).
//
// The rows commit with the entries or not at all, except when storing
// them fails on its own (the write's savepoint): the entries stay (the log
// is append-only) and the agent gets an error — the log then shows a
// decision the store lacks, never the reverse.
//
// stored is false when the decision's row is certainly not in the store:
// it failed before the ledger, its Idempotency-Key was taken, or its write
// failed. A batch that failed may still have committed (a lost COMMIT
// answer), so that is stored.
func (s *Service) record(ctx context.Context, org Organization, v *validRequest, g gathered, ev Evaluation, keyHash []byte, now time.Time) (_ Response, stored bool, _ error) {
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
	// v.action is canonical, and one object without duplicate names
	// (parseParams refuses them in params; the rest is a Go struct).
	actionSHA := signing.CanonicalActionDigest(v.action)
	rec, err := (&decisionRecord{
		DecisionID: decisionID, AgentID: g.agent.ID, Action: v.action, ActionSHA256: actionSHA,
		Reason: v.Reason, Outcome: ev.Outcome, Reasons: reasons, ApprovalsRequired: approvals,
		Policy: ev.Policy, Time: now,
	}).canonical()
	if err != nil {
		return Response{}, false, fmt.Errorf("decision: encode the decision record: %w", err)
	}
	// The decision and its receipt or case go into the ledger together:
	// one batch, one commit, consecutive entries.
	entries := []ledger.Entry{{Kind: KindDecision, Subject: decisionID, Record: rec}}
	resp := Response{DecisionID: decisionID, Outcome: ev.Outcome, Reasons: reasons}
	var receipt *store.Receipt
	var opened *store.Case
	var signTime time.Duration // observed once the decision is recorded
	switch ev.Outcome {
	case Allow:
		signStart := time.Now()
		if receipt, err = s.signReceipt(org, v, g, ev, decisionID, actionSHA, now); err != nil {
			return Response{}, false, err
		}
		signTime = time.Since(signStart)
		entries = append(entries, ledger.Entry{Kind: KindReceipt, Subject: receipt.ID, Record: []byte(receipt.JWS)})
		resp.Receipt = receipt.JWS
	case Escalate:
		var caseRec []byte
		if opened, caseRec, err = s.newCase(g.agent.ID, decisionID, approvals, now); err != nil {
			return Response{}, false, err
		}
		entries = append(entries, ledger.Entry{Kind: KindCaseOpened, Subject: opened.ID, Record: caseRec})
		resp.Case = &CaseSummary{ID: opened.ID, Status: opened.Status, ApprovalsRequired: opened.ApprovalsRequired, ExpiresAt: opened.ExpiresAt}
	}
	// The rows are stored in the batch's transaction, once the entries
	// have their indexes and proof: the stored response is the one sent
	// (less what the ledger keeps, see storedBody).
	write := func(ctx context.Context, tx store.TenantTx, appended []ledger.Appended) error {
		entry := appended[0]
		if receipt != nil {
			receipt.LedgerIndex = appended[1].Index
		}
		// The proof is against the checkpoint signed for the decision's
		// own batch: the response's checkpoint and proof go together.
		resp.Ledger = LedgerProof{Index: entry.Index, LeafHash: entry.LeafHash, Checkpoint: string(entry.Checkpoint.Note), InclusionProof: entry.Proof}
		body, err := storedResponse(resp, entry.Checkpoint.Size)
		if err != nil {
			return fmt.Errorf("decision: encode the response: %w", err)
		}
		row := store.Decision{
			ID: decisionID, AgentID: g.agent.ID, Action: string(v.action), ActionType: v.Action.Type,
			CounterpartyID: v.Action.Counterparty, Reason: v.Reason,
			Outcome: store.Outcome(ev.Outcome), Reasons: reasons, ApprovalsRequired: approvals,
			BaseRevision: ev.Policy.BaseRevision, TenantRevision: ev.Policy.TenantRevision, TenantBundleSHA256: ev.Policy.TenantBundleSHA256,
			IdempotencyKeySHA256: keyHash, RequestSHA256: v.sha256,
			LedgerIndex: entry.Index, Response: string(body), CreatedAt: now,
		}
		return tx.Decisions().Record(ctx, store.DecisionRecord{Decision: row, Receipt: receipt, Case: opened})
	}
	// Under an Idempotency-Key, the batch first checks (the log locked,
	// so in order with every other process's batches) that no decision
	// was stored under it since our read: the one another process or
	// replica stored wins, and ours never reaches the log.
	var check ledger.Precondition
	if keyHash != nil {
		check = func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Decisions().ByIdempotencyKey(ctx, g.agent.ID, keyHash)
			switch {
			case err == nil:
				return errKeyTaken
			case errors.Is(err, store.ErrNotFound):
				return nil
			}
			return err
		}
	}
	appendStart := time.Now()
	appended, err := s.cfg.Ledger.AppendAllAndWriteIf(ctx, lg, entries, check, write)
	appendTime := time.Since(appendStart)
	if errors.Is(err, errKeyTaken) {
		// Another process stored a decision under this Idempotency-Key
		// between our read and our batch; the batch's check found it.
		resp, err := s.replayAfterRace(ctx, org, g.agent.ID, keyHash, v.sha256)
		return resp, false, err
	}
	if err != nil {
		if appended != nil {
			return Response{}, false, fmt.Errorf("decision: store the decision: %w", err)
		}
		return Response{}, true, fmt.Errorf("decision: append the decision to the ledger: %w", err)
	}
	if receipt != nil {
		s.stages.sign.Observe(signTime)
	}
	s.stages.ledger.Observe(appendTime)
	return resp, true, nil
}

// errKeyTaken: the batch's check found a decision already stored under
// the request's Idempotency-Key.
var errKeyTaken = fmt.Errorf("%w: a decision is stored under this Idempotency-Key", store.ErrConflict)

// signReceipt signs an allowed action's receipt (DESIGN §3 "Receipt"). Its
// ledger entry's record is the compact JWS itself, so the log's digest is
// the SHA-256 of exactly what the agent holds.
func (s *Service) signReceipt(org Organization, v *validRequest, g gathered, ev Evaluation, decisionID, actionSHA string, now time.Time) (*store.Receipt, error) {
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
	return &store.Receipt{ID: id, DecisionID: decisionID, JWS: jws, CreatedAt: now}, nil
}

// newCase builds the case of an escalated decision, pending until people
// approve or reject it or it expires, and the record its ledger entry
// digests.
func (s *Service) newCase(agentID, decisionID string, approvals int, now time.Time) (*store.Case, []byte, error) {
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
		return nil, nil, fmt.Errorf("decision: encode the case record: %w", err)
	}
	return c, rec, nil
}
