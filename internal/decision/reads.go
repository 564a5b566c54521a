package decision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// GetDecision returns one of the agent's own decisions, as it was answered
// (GET /v1/decisions/{id}). Another agent's decision, even of the same
// organization, a malformed id and an unknown one are all store.ErrNotFound:
// an agent cannot tell them apart. An agent no longer active gets
// ErrUnknownAgent.
func (s *Service) GetDecision(ctx context.Context, org Organization, agentID, decisionID string) (Response, error) {
	var answered Response
	err := s.ownDecision(ctx, org, agentID, decisionID, func(ctx context.Context, tx store.TenantTx, d store.Decision) error {
		var err error
		answered, err = s.readResponse(ctx, org, tx, d)
		return err
	})
	return answered, err
}

// DecisionIndex returns the index of the ledger entry of one of the
// agent's own decisions, refused as GetDecision refuses.
func (s *Service) DecisionIndex(ctx context.Context, org Organization, agentID, decisionID string) (uint64, error) {
	var index uint64
	err := s.ownDecision(ctx, org, agentID, decisionID, func(_ context.Context, _ store.TenantTx, d store.Decision) error {
		index = d.LedgerIndex
		return nil
	})
	return index, err
}

// ReceiptIndex returns the index of the ledger entry of the receipt of one
// of the agent's own decisions, refused as GetDecision refuses;
// store.ErrNotFound when the decision has no receipt (it was not allowed,
// or its case is not approved).
func (s *Service) ReceiptIndex(ctx context.Context, org Organization, agentID, decisionID string) (uint64, error) {
	var index uint64
	err := s.ownDecision(ctx, org, agentID, decisionID, func(ctx context.Context, tx store.TenantTx, d store.Decision) error {
		r, err := tx.Receipts().ByDecision(ctx, d.ID)
		if err != nil {
			return err
		}
		index = r.LedgerIndex
		return nil
	})
	return index, err
}

// ownDecision runs fn, in a read transaction, with one of the agent's own
// decisions.
func (s *Service) ownDecision(ctx context.Context, org Organization, agentID, decisionID string, fn func(context.Context, store.TenantTx, store.Decision) error) error {
	if store.CheckID(store.PrefixDecision, decisionID) != nil {
		return fmt.Errorf("%w: decision", store.ErrNotFound)
	}
	return s.cfg.Tenants.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := CheckActive(ctx, tx, agentID); err != nil {
			return err
		}
		d, err := tx.Decisions().Get(ctx, decisionID)
		if err != nil {
			return err
		}
		if d.AgentID != agentID {
			return fmt.Errorf("%w: decision", store.ErrNotFound)
		}
		return fn(ctx, tx, d)
	})
}

// CheckActive refuses an agent that is not active (ErrUnknownAgent: no
// such agent, or suspended, or revoked), for the read routes: suspending or
// revoking an agent takes effect at once, not when its access tokens
// expire — it no longer collects a receipt, of an earlier decision or of a
// case approved since, nor reads its organization's log. (Its decision
// requests are not refused: the base policy denies them, and the denial
// is recorded.)
func CheckActive(ctx context.Context, tx store.TenantTx, agentID string) error {
	a, err := store.Optional(tx.Agents().Get(ctx, agentID))
	switch {
	case errors.Is(err, store.ErrInvalid):
		return ErrUnknownAgent
	case err != nil:
		return err
	case !isActive(a):
		return ErrUnknownAgent
	}
	return nil
}

// isActive reports whether a (nil: no such agent) is an active agent.
func isActive(a *store.Agent) bool { return a != nil && a.Status == store.AgentActive }

// storedBody is what a decision's row keeps of its response: all of it but
// what the ledger holds. An allowed action's receipt is the record of its
// ledger entry (ReceiptTx.ByDecision); the entry's checkpoint and
// inclusion proof are those of the tree at TreeSize, the size of the batch
// that included it, and rebuilt from it. They were most of the row, and
// the proof grows with the log.
//
// Rows stored before TreeSize (0) keep their checkpoint and proof.
type storedBody struct {
	Response
	Ledger   storedLedger `json:"ledger"` // in place of Response's
	TreeSize uint64       `json:"tree_size,omitempty"`
}

// storedLedger is LedgerProof as a row keeps it: without checkpoint and
// proof since TreeSize.
type storedLedger struct {
	Index          uint64   `json:"index"`
	LeafHash       []byte   `json:"leaf_hash"`
	Checkpoint     string   `json:"checkpoint,omitempty"`
	InclusionProof [][]byte `json:"inclusion_proof,omitempty"`
}

// storedResponse is r as its decision's row keeps it; treeSize is its
// checkpoint's.
func storedResponse(r Response, treeSize uint64) ([]byte, error) {
	r.Receipt = ""
	return json.Marshal(storedBody{Response: r, Ledger: storedLedger{Index: r.Ledger.Index, LeafHash: r.Ledger.LeafHash}, TreeSize: treeSize})
}

// readResponse is the response decision d was answered with, read in tx:
// the stored one, for an allowed action with its receipt, and with its
// entry's checkpoint and inclusion proof rebuilt from the log.
func (s *Service) readResponse(ctx context.Context, org Organization, tx store.TenantTx, d store.Decision) (Response, error) {
	var b storedBody
	if err := json.Unmarshal([]byte(d.Response), &b); err != nil {
		return Response{}, fmt.Errorf("decision: stored response of %s: %w", d.ID, err)
	}
	r := b.Response
	r.Ledger = LedgerProof(b.Ledger)
	if r.Ledger.Index != d.LedgerIndex {
		return Response{}, fmt.Errorf("decision: internal: decision %s's row names ledger entry %d, its response %d", d.ID, d.LedgerIndex, r.Ledger.Index)
	}
	if d.Outcome == store.OutcomeAllow {
		rc, err := tx.Receipts().ByDecision(ctx, d.ID)
		if errors.Is(err, store.ErrNotFound) {
			// Stored with the decision, all or nothing: a broken store, not
			// an unknown decision.
			return Response{}, fmt.Errorf("decision: internal: allowed decision %s has no stored receipt", d.ID)
		}
		if err != nil {
			return Response{}, err
		}
		r.Receipt = rc.JWS
	}
	if b.TreeSize == 0 {
		if r.Ledger.Checkpoint == "" {
			return Response{}, fmt.Errorf("decision: internal: stored response of %s has neither a checkpoint nor a tree size", d.ID)
		}
		return r, nil // stored before tree_size, with its checkpoint and proof
	}
	p, err := s.cfg.Ledger.InclusionProofIn(ctx, s.cfg.Ledger.TenantLog(org.ID, org.Slug), tx.Log(), r.Ledger.Index, b.TreeSize)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid), errors.Is(err, ledger.ErrNoCheckpoint):
		// The decision exists and the log does not hold what its row
		// names: a broken store, not an unknown decision nor a bad request.
		return Response{}, fmt.Errorf("decision: internal: inclusion proof of %s: %v", d.ID, err)
	case err != nil:
		return Response{}, fmt.Errorf("decision: inclusion proof of %s: %w", d.ID, err)
	}
	if !bytes.Equal(p.LeafHash, r.Ledger.LeafHash) {
		return Response{}, fmt.Errorf("decision: internal: ledger entry %d does not have the leaf hash decision %s's row names", r.Ledger.Index, d.ID)
	}
	r.Ledger.Checkpoint = string(p.Checkpoint.Note)
	r.Ledger.InclusionProof = p.Hashes
	return r, nil
}
