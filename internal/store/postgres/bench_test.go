package postgres_test

import (
	"context"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// BenchmarkReadDecisionInputs reads what a payment decision needs: the
// agent (with 100 decisions), its stats, a counterparty and its payments,
// in one round trip.
func BenchmarkReadDecisionInputs(b *testing.B) {
	db := pgtest.New(b)
	s := openTest(b, db, 4)
	acme, q := storetest.PaymentHistory(b, s, 100)
	ctx := context.Background()
	for b.Loop() {
		in, err := s.ReadDecisionInputs(ctx, acme.ID, q)
		if err != nil || in.Agent == nil || in.Counterparty == nil || in.Stats.Decisions1h != 100 || in.Payments != 100 {
			b.Fatalf("%+v, %v", in, err)
		}
	}
}
