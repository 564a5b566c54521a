package postgres_test

import (
	"testing"

	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// BenchmarkReadDecisionInputs reads what a payment decision needs: the
// agent (with 100 decisions), its stats, a counterparty and its payments,
// in one round trip.
func BenchmarkReadDecisionInputs(b *testing.B) {
	storetest.BenchReadDecisionInputs(b, openTest(b, pgtest.New(b), 4), 100)
}
