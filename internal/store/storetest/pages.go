package storetest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// testPages reads every decision, receipt and case a page at a time, as
// ledger verify does: each once, in order (decisions by agent and tally,
// with their tallies; receipts and cases by id), no page longer than
// asked, and only the organization's own.
func testPages(t *testing.T, h Harness) {
	be := newBackend(t, h)
	f := newDecisionFixture(t, be, "acme")
	other := newDecisionFixture(t, be, "other")
	var receipts, cases []string
	byAgent := map[string][]string{} // decision ids, in the order made
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		for i := range 7 {
			outcome := []store.Outcome{store.OutcomeAllow, store.OutcomeEscalate, store.OutcomeDeny}[i%3]
			agent := []store.Agent{f.a, f.b}[i%2]
			d, err := tx.Decisions().Insert(ctx, newDecision(agent.ID, outcome, "payment.send", ""))
			if err != nil {
				return err
			}
			byAgent[agent.ID] = append(byAgent[agent.ID], d.ID)
			switch outcome {
			case store.OutcomeAllow:
				at, err := appendRecord(ctx, tx.Log(), fmt.Sprintf("%s.%s.c2ln", "eyJhbGciOiJFZERTQSJ9", []string{"eyJhIjoxfQ", "eyJhIjoyfQ", "eyJhIjozfQ"}[len(receipts)]))
				if err != nil {
					return err
				}
				jws, err := tx.Log().Entries(ctx, at, at+1)
				if err != nil {
					return err
				}
				rc, err := tx.Receipts().Insert(ctx, store.Receipt{DecisionID: d.ID, JWS: string(jws[0].Record), LedgerIndex: at})
				if err != nil {
					return err
				}
				receipts = append(receipts, rc.ID)
			case store.OutcomeEscalate:
				cs, err := tx.Cases().Create(ctx, store.Case{DecisionID: d.ID, AgentID: agent.ID, ApprovalsRequired: 1, ExpiresAt: time.Now().Add(time.Hour)})
				if err != nil {
					return err
				}
				cases = append(cases, cs.ID)
			}
		}
		return nil
	})
	inTenant(t, be, other.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := tx.Decisions().Insert(ctx, newDecision(other.a.ID, store.OutcomeDeny, "payment.send", ""))
		return err
	})
	// Decisions come by agent, each agent's in the order made.
	var decisions []string
	for _, agent := range slices.Sorted(maps.Keys(byAgent)) {
		decisions = append(decisions, byAgent[agent]...)
	}
	slices.Sort(receipts)
	slices.Sort(cases)
	byID := map[string]store.Decision{}
	inTenant(t, be, f.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		for _, tc := range []struct {
			name string
			want []string
			page func(after string, limit int) ([]string, error)
		}{
			{"decisions", decisions, func(after string, limit int) ([]string, error) {
				var cursor store.Decision
				if after != "" {
					cursor = byID[after]
				}
				ds, err := tx.Decisions().Page(ctx, cursor, limit)
				for _, d := range ds {
					byID[d.ID] = d
					nth := int64(slices.Index(byAgent[d.AgentID], d.ID) + 1)
					if d.Tally.Decisions != nth || d.Tally.At.IsZero() {
						return nil, fmt.Errorf("decision %s: tally %+v, the %dth of its agent", d.ID, d.Tally, nth)
					}
				}
				return idsOf(ds, func(d store.Decision) string { return d.ID }), err
			}},
			{"receipts", receipts, func(after string, limit int) ([]string, error) {
				rs, err := tx.Receipts().Page(ctx, after, limit)
				for _, r := range rs {
					if r.DecisionID == "" || r.JWS != "" {
						return nil, fmt.Errorf("receipt %+v: want its decision, and no JWS read", r)
					}
				}
				return idsOf(rs, func(r store.Receipt) string { return r.ID }), err
			}},
			{"cases", cases, func(after string, limit int) ([]string, error) {
				cs, err := tx.Cases().Page(ctx, after, limit)
				return idsOf(cs, func(c store.Case) string { return c.ID }), err
			}},
		} {
			var got []string
			after := ""
			for {
				ids, err := tc.page(after, 2)
				if err != nil {
					return fmt.Errorf("%s: %w", tc.name, err)
				}
				if len(ids) > 2 {
					return fmt.Errorf("%s: a page of %d, asked for 2", tc.name, len(ids))
				}
				if len(ids) == 0 {
					break
				}
				got = append(got, ids...)
				after = ids[len(ids)-1]
			}
			if !slices.Equal(got, tc.want) {
				return fmt.Errorf("%s: paged %v, want %v", tc.name, got, tc.want)
			}
		}
		return nil
	})
}

func idsOf[T any](rows []T, id func(T) string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = id(r)
	}
	return out
}
