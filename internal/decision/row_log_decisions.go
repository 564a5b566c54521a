package decision

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// rowPage is how many decisions, receipts or cases ledger verify reads at
// once.
const rowPage = 500

// pageAll calls check for every row page reads, a page at a time, each
// after the row cursor says of the page before, and returns how many
// there were.
func pageAll[T, C any](ctx context.Context, page func(ctx context.Context, after C, limit int) ([]T, error), cursor func(T) C, check func(T) error) (uint64, error) {
	var n uint64
	var after C
	for {
		rows, err := page(ctx, after, rowPage)
		if err != nil {
			return n, err
		}
		for _, row := range rows {
			n++
			if err := check(row); err != nil {
				return n, err
			}
		}
		if len(rows) < rowPage {
			return n, nil
		}
		after = cursor(rows[len(rows)-1])
	}
}

// entryAt is the entry at index and its record; ok is false when the log
// holds none there.
func entryAt(ctx context.Context, tx store.TenantTx, index uint64) (verify.Entry, []byte, bool, error) {
	es, err := tx.Log().Entries(ctx, index, index+1)
	if err != nil || len(es) == 0 {
		return verify.Entry{}, nil, false, err
	}
	e, err := verify.ParseEntry(es[0].Entry)
	return e, es[0].Record, err == nil, err
}

// decisionRows holds every decision row to the decision entry it names:
// the entry is its decision's, and the row says what the entry's record
// says (agent, action, reason, outcome, reasons, approvals, policies,
// time), as does the response it keeps to answer replays and reads with.
// A row edited, or planted (naming another entry, or none), is found:
// what the service answers a read or a replay with is the row (found by
// review). A decision entry without its row is counted
// (UnstoredDecisions), not refused: the service leaves one when the
// rows' write fails after the entries (record), and a store cannot tell
// it from a row deleted; the tallies below give a deleted row away, but
// for an agent's newest.
//
// The rows come by agent in the order of their tallies, and each tally
// (store.AgentTally: the agent's decisions and denials so far, and the
// time they run to) must be the one before it plus this decision, in the
// order of their entries: the policy input's stats are read from the
// newest, and a tally lowered or dated ahead would hide an agent's
// denials from the base policy's rule (found by the same review).
func (r *RowLog) decisionRows(ctx context.Context, tx store.TenantTx) error {
	var agent string
	var tally store.AgentTally
	var lastIndex uint64
	r.paid = map[string]int{}
	n, err := pageAll(ctx, tx.Decisions().Page, func(d store.Decision) store.Decision { return d }, func(d store.Decision) error {
		e, record, ok, err := entryAt(ctx, tx, d.LedgerIndex)
		switch {
		case err != nil && !errors.Is(err, verify.ErrInvalidEntry):
			return err
		case !ok || e.Kind != KindDecision || e.Subject != d.ID:
			return mismatch("decision %s names entry %d, which is not its decision's", d.ID, d.LedgerIndex)
		}
		var rec decisionRecord
		if err := json.Unmarshal(record, &rec); err != nil {
			return mismatch("entry %d does not hold a decision record", d.LedgerIndex)
		}
		reasons := d.Reasons
		if reasons == nil {
			reasons = []string{}
		}
		if rec.DecisionID != d.ID || rec.AgentID != d.AgentID || string(rec.Action) != d.Action || rec.Reason != d.Reason ||
			string(rec.Outcome) != string(d.Outcome) || !slices.Equal(rec.Reasons, reasons) || rec.ApprovalsRequired != d.ApprovalsRequired ||
			rec.Policy != (PolicyRevisions{BaseRevision: d.BaseRevision, TenantRevision: d.TenantRevision, TenantBundleSHA256: d.TenantBundleSHA256}) {
			return mismatch("decision %s is stored otherwise than entry %d recorded it", d.ID, d.LedgerIndex)
		}
		// The columns kept apart from the action for queries (the
		// counterparty's payment count reads them) are the action's.
		var action struct {
			Type         string `json:"type"`
			Counterparty string `json:"counterparty"`
		}
		if json.Unmarshal(rec.Action, &action) != nil || action.Type != d.ActionType || action.Counterparty != d.CounterpartyID {
			return mismatch("decision %s is stored with another action type or counterparty than entry %d recorded", d.ID, d.LedgerIndex)
		}
		if store.IsPayment(d) {
			r.paid[d.CounterpartyID]++
		}
		switch d.Outcome {
		case store.OutcomeAllow:
			r.allowed++
		case store.OutcomeEscalate:
			r.escalated++
		}
		var b storedBody
		if err := json.Unmarshal([]byte(d.Response), &b); err != nil ||
			b.DecisionID != d.ID || string(b.Outcome) != string(d.Outcome) || !slices.Equal(b.Reasons, reasons) ||
			b.Ledger.Index != d.LedgerIndex || (b.Case != nil) != (d.Outcome == store.OutcomeEscalate) {
			return mismatch("decision %s keeps a response that is not what entry %d recorded", d.ID, d.LedgerIndex)
		}
		if !d.CreatedAt.Equal(store.StoredTime(rec.Time)) {
			return mismatch("decision %s is stored at another time than entry %d recorded", d.ID, d.LedgerIndex)
		}
		if d.AgentID != agent {
			agent, tally, lastIndex = d.AgentID, store.AgentTally{}, 0
		} else if d.LedgerIndex <= lastIndex {
			return mismatch("decision %s of agent %s is tallied after a decision whose entry comes later", d.ID, d.AgentID)
		}
		tally, lastIndex = tally.Add(d.Outcome, d.CreatedAt), d.LedgerIndex
		if d.Tally.Decisions != tally.Decisions || d.Tally.Denials != tally.Denials || !d.Tally.At.Equal(tally.At) {
			return mismatch("decision %s of agent %s is stored with a tally (%d decisions, %d denials, to %s) that its entries do not make (%d, %d, %s)",
				d.ID, d.AgentID, d.Tally.Decisions, d.Tally.Denials, d.Tally.At.Format(time.RFC3339Nano), tally.Decisions, tally.Denials, tally.At.Format(time.RFC3339Nano))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n > r.decisions {
		return mismatch("the store holds %d decisions, the log %d", n, r.decisions)
	}
	r.UnstoredDecisions = r.decisions - n
	return nil
}

// paymentRows holds each counterparty's payment count, which the policy
// input reads (payments_count), to the payments its decisions allowed
// (store.IsPayment): a count no entry records, raised in the store's
// file, would make a new payee look established.
func (r *RowLog) paymentRows(ctx context.Context, tx store.TenantTx) error {
	cps, err := tx.Counterparties().List(ctx)
	if err != nil {
		return err
	}
	for _, cp := range cps {
		n, err := tx.Counterparties().PaymentsCount(ctx, cp.ID)
		if err != nil {
			return err
		}
		if n != r.paid[cp.ID] {
			return mismatch("counterparty %s is stored with %d payments, its decisions allowed %d", cp.ID, n, r.paid[cp.ID])
		}
	}
	return nil
}

// receiptRows holds every receipt row to the receipt entry it names,
// whose JWS is the receipt of the row's decision (its jti the row's id,
// its decision_id the row's decision), an allowed one.
func (r *RowLog) receiptRows(ctx context.Context, tx store.TenantTx) error {
	n, err := pageAll(ctx, tx.Receipts().Page, func(rc store.Receipt) string { return rc.ID }, func(rc store.Receipt) error {
		e, record, ok, err := entryAt(ctx, tx, rc.LedgerIndex)
		switch {
		case err != nil && !errors.Is(err, verify.ErrInvalidEntry):
			return err
		case !ok || e.Kind != KindReceipt || e.Subject != rc.ID:
			return mismatch("receipt %s names entry %d, which is not its receipt's", rc.ID, rc.LedgerIndex)
		}
		var claims struct {
			ID         string `json:"jti"`
			DecisionID string `json:"decision_id"`
		}
		parts := strings.Split(string(record), ".")
		payload, err := base64.RawURLEncoding.DecodeString(parts[min(1, len(parts)-1)])
		if len(parts) != 3 || err != nil || json.Unmarshal(payload, &claims) != nil || claims.ID != rc.ID || claims.DecisionID != rc.DecisionID {
			return mismatch("receipt %s of decision %s names entry %d, whose JWS is another receipt's", rc.ID, rc.DecisionID, rc.LedgerIndex)
		}
		d, err := tx.Decisions().Get(ctx, rc.DecisionID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return mismatch("receipt %s is of decision %s, which the store does not hold", rc.ID, rc.DecisionID)
		case err != nil:
			return err
		case d.Outcome != store.OutcomeAllow:
			// Approvals, when they land, receipt an approved case too.
			return mismatch("receipt %s is of decision %s, which did not allow", rc.ID, rc.DecisionID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n != r.allowed {
		return mismatch("the store holds %d receipts for %d allowed decisions", n, r.allowed)
	}
	return nil
}

// caseRows holds every case row to the entries of its case: opened for
// its decision, agent, approvals and expiry, pending unless an entry
// expired it, expired only if one did. No case is approved or rejected:
// nothing approves yet, so a case that says so was written behind the
// service's back (and would answer its agent with a receipt). As many
// cases as escalated decisions are stored.
func (r *RowLog) caseRows(ctx context.Context, tx store.TenantTx) error {
	n, err := pageAll(ctx, tx.Cases().Page, func(c store.Case) string { return c.ID }, func(c store.Case) error {
		l, ok := r.cases[c.ID]
		switch {
		case !ok:
			return mismatch("case %s is stored, but no entry opened it", c.ID)
		case l.rec.DecisionID != c.DecisionID || l.rec.AgentID != c.AgentID || l.rec.ApprovalsRequired != c.ApprovalsRequired ||
			!c.ExpiresAt.Equal(store.StoredTime(l.rec.ExpiresAt)):
			return mismatch("case %s is stored otherwise than entry %d opened it", c.ID, l.opened)
		case c.Status == store.CasePending && l.expired != nil:
			return mismatch("case %s is pending, but entry %d expired it", c.ID, *l.expired)
		case c.Status == store.CaseExpired && l.expired == nil:
			return mismatch("case %s is expired, but no entry expired it", c.ID)
		case c.Status != store.CasePending && c.Status != store.CaseExpired:
			return mismatch("case %s is %s, but no entry closed it so", c.ID, c.Status)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n != r.escalated {
		return mismatch("the store holds %d cases for %d escalated decisions", n, r.escalated)
	}
	return nil
}
