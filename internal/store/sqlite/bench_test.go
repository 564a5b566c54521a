package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// BenchmarkAgentStats reads the stats of an agent that has made n
// decisions at a steady rate over the last 61 minutes, so that the first
// minute of its 1h window holds n/61 of them. The cost should not grow
// with n.
func BenchmarkAgentStats(b *testing.B) {
	for _, n := range []int{610, 61000} {
		b.Run(fmt.Sprintf("decisions=%d", n), func(b *testing.B) {
			s := openTest(b, b.TempDir())
			defer s.Close()
			acme := storetest.CreateTenant(b, s, "acme")
			ctx := context.Background()
			now := time.Now().UTC()
			var agent store.Agent
			err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
				var err error
				if agent, err = tx.Agents().Create(ctx, store.Agent{Name: "payer", Sponsor: "usr_1", RiskTier: store.RiskLow, LedgerIndex: new(uint64)}); err != nil {
					return err
				}
				step := 61 * time.Minute / time.Duration(n)
				for i := range n {
					outcome := store.OutcomeAllow
					if i%10 == 0 {
						outcome = store.OutcomeDeny
					}
					_, err := tx.Decisions().Insert(ctx, store.Decision{
						AgentID: agent.ID, Action: `{"type":"invoice.approve"}`, ActionType: "invoice.approve",
						Reason: "r", Outcome: outcome, Reasons: []string{}, BaseRevision: "b",
						RequestSHA256: make([]byte, 32), LedgerIndex: uint64(i), Response: "{}",
						CreatedAt: now.Add(-61 * time.Minute).Add(time.Duration(i) * step),
					})
					if err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				err := s.InTenantReadTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
					st, err := tx.Decisions().AgentStats(ctx, agent.ID, now)
					if err == nil && (st.Decisions24h != n || st.Decisions1h == 0) {
						err = fmt.Errorf("stats %+v of %d decisions", st, n)
					}
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadDecisionInputs reads what a payment decision needs: the
// agent (with 100 decisions), its stats, a counterparty and its payments.
func BenchmarkReadDecisionInputs(b *testing.B) {
	s := openTest(b, b.TempDir())
	defer s.Close()
	storetest.BenchReadDecisionInputs(b, s, 100)
}
