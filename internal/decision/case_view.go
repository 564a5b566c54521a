package decision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// GetCase returns where one of the agent's own cases is (GET
// /v1/cases/{id}): its status, and its receipt once approved. A pending case
// read after its expiry is expired here and then — cases expire lazily, with
// a "case.expired" ledger entry — so an agent never sees a stale pending.
// Another agent's case, a malformed id and an unknown one are all
// store.ErrNotFound; an agent no longer active gets ErrUnknownAgent.
func (s *Service) GetCase(ctx context.Context, org Organization, agentID, caseID string) (CaseView, error) {
	if store.CheckID(store.PrefixCase, caseID) != nil {
		return CaseView{}, fmt.Errorf("%w: case", store.ErrNotFound)
	}
	v, err := s.readCase(ctx, org, agentID, caseID)
	if err != nil || v.Status != store.CasePending || s.now().Before(v.ExpiresAt) {
		return v, err
	}
	return s.expireCase(ctx, org, agentID, caseID)
}

// WaitCase is GetCase as a long poll (GET /v1/cases/{id}?wait=…): it
// re-reads the case every Config.CasePollInterval until it leaves pending,
// wait (at most MaxCaseWait) has passed, or ctx ends. It returns the case as
// last read; a still-pending case after wait is not an error, an ended ctx
// is. An agent with Config.MaxCaseWaits polls already open gets
// ErrTooManyWaits.
//
// still (nil: none) is asked before each re-read whether the caller is
// still who it was when the poll began (its credential not expired or
// revoked since): its error ends the poll and is returned, as the same
// request made afresh would be refused.
func (s *Service) WaitCase(ctx context.Context, org Organization, agentID, caseID string, wait time.Duration, still func(context.Context) error) (CaseView, error) {
	wait = min(wait, MaxCaseWait)
	v, err := s.GetCase(ctx, org, agentID, caseID)
	if err != nil || v.Status != store.CasePending || wait <= 0 {
		return v, err
	}
	done, ok := s.startWait(waitKey(org.ID, agentID))
	if !ok {
		return CaseView{}, ErrTooManyWaits
	}
	defer done()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(max(s.cfg.CasePollInterval, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-deadline.C:
			return v, nil
		case <-tick.C:
		}
		// The organization may have been suspended since the poll began:
		// its agents' requests are refused from then on, this one too.
		// (The agent's own status is checked by every read of the case.)
		if err := s.checkOrganizationActive(ctx, org); err != nil {
			if ctx.Err() != nil {
				return v, ctx.Err()
			}
			return CaseView{}, err
		}
		if still != nil {
			if err := still(ctx); err != nil {
				if ctx.Err() != nil {
					return v, ctx.Err()
				}
				return CaseView{}, err
			}
		}
		next, err := s.GetCase(ctx, org, agentID, caseID)
		switch {
		case err != nil && ctx.Err() != nil:
			return v, ctx.Err() // the case as last read
		case err != nil:
			return CaseView{}, err
		}
		if v = next; v.Status != store.CasePending {
			return v, nil
		}
	}
}

// checkOrganizationActive refuses an organization that is no longer
// active as an agent no longer active is refused (ErrUnknownAgent).
func (s *Service) checkOrganizationActive(ctx context.Context, org Organization) error {
	ref, err := s.cfg.Tenants.ResolveTenantID(ctx, org.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrUnknownAgent
	case err != nil:
		return err
	case ref.Status != store.TenantActive:
		return ErrUnknownAgent
	}
	return nil
}

// waitKey names an agent's open polls in Service.waits.
func waitKey(orgID, agentID string) string { return orgID + "/" + agentID }

// startWait counts one more open poll for key, unless it has
// MaxCaseWaits already; done uncounts it.
func (s *Service) startWait(key string) (done func(), ok bool) {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	if s.waits[key] >= s.cfg.MaxCaseWaits {
		return nil, false
	}
	s.waits[key]++
	return func() {
		s.waitMu.Lock()
		defer s.waitMu.Unlock()
		if s.waits[key]--; s.waits[key] == 0 {
			delete(s.waits, key)
		}
	}, true
}

// readCase reads the agent's case and, once approved, its receipt.
func (s *Service) readCase(ctx context.Context, org Organization, agentID, caseID string) (CaseView, error) {
	var v CaseView
	err := s.cfg.Tenants.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := CheckActive(ctx, tx, agentID); err != nil {
			return err
		}
		c, err := tx.Cases().Get(ctx, caseID)
		if err != nil {
			return err
		}
		if c.AgentID != agentID {
			return fmt.Errorf("%w: case", store.ErrNotFound)
		}
		v = CaseView{ID: c.ID, DecisionID: c.DecisionID, Status: c.Status, ApprovalsRequired: c.ApprovalsRequired, ExpiresAt: c.ExpiresAt}
		if c.Status != store.CaseApproved {
			return nil
		}
		r, err := tx.Receipts().ByDecision(ctx, c.DecisionID)
		switch {
		case err == nil:
			v.Receipt = r.JWS
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		// Approved but its receipt not yet stored: shown without one, as
		// the approval flow writes both.
		return nil
	})
	return v, err
}

// expireCase moves a pending case past its expiry to expired: its ledger
// entry and the state change in one batch, whose change (the log locked)
// decides the race with an approver or another replica — losing it only
// means someone else closed the case, which is re-read.
func (s *Service) expireCase(ctx context.Context, org Organization, agentID, caseID string) (CaseView, error) {
	unlock, err := s.inflight.lock(ctx, "case/"+org.ID+"/"+caseID)
	if err != nil {
		return CaseView{}, err
	}
	defer unlock()
	// Re-read under the lock: a concurrent reader may have expired it.
	v, err := s.readCase(ctx, org, agentID, caseID)
	now := s.now()
	if err != nil || v.Status != store.CasePending || now.Before(v.ExpiresAt) {
		return v, err
	}
	rec, err := canonicalJSON(caseRecord{
		CaseID: v.ID, DecisionID: v.DecisionID, AgentID: agentID, Status: store.CaseExpired,
		ApprovalsRequired: v.ApprovalsRequired, ExpiresAt: v.ExpiresAt, Time: now,
	})
	if err != nil {
		return CaseView{}, fmt.Errorf("decision: encode the case record: %w", err)
	}
	// The entry and the state change commit together, or neither: the
	// change (a close of a case still pending, which takes its row on
	// PostgreSQL) decides with the log locked. Another process or an
	// approver closing it first leaves no entry, as does a failing close,
	// and a caller that gives up leaves neither or both.
	expire := func(ctx context.Context, tx store.TenantTx, _ uint64) error {
		err := tx.Cases().SetStatus(ctx, caseID, store.CaseExpired)
		if errors.Is(err, store.ErrConflict) {
			return errCaseClosed
		}
		return err
	}
	lg := s.cfg.Ledger.TenantLog(org.ID, org.Slug)
	_, err = s.cfg.Ledger.AppendAllAndChange(ctx, lg, []ledger.Entry{{Kind: KindCaseExpired, Subject: v.ID, Record: rec}}, expire)
	if err != nil && !errors.Is(err, errCaseClosed) {
		return CaseView{}, fmt.Errorf("decision: expire the case: %w", err)
	}
	// Read even if ctx has ended meanwhile (a long poll whose client left
	// or whose server stops): the expiry is stored, and the answer must
	// not be the pending case read before it. Bounded all the same: a
	// store that hangs must not hold the case's lock for ever.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), expiredReadTimeout)
	defer cancel()
	return s.readCase(rctx, org, agentID, caseID)
}

// expiredReadTimeout bounds the read of a case just expired, which its
// caller's cancellation does not stop.
const expiredReadTimeout = 5 * time.Second

// errCaseClosed: the case left pending before its expiry was recorded.
var errCaseClosed = errors.New("case no longer pending")
