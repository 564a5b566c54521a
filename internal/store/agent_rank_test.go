package store_test

import (
	"testing"

	"github.com/agentsigna/agentsigna/internal/store"
)

// Tiers rank safest first, and a tier no one knows ranks as the riskiest:
// the decision service takes the riskier of a row's and its entry's.
func TestRiskRank(t *testing.T) {
	for i, tier := range []store.RiskTier{store.RiskLow, store.RiskMedium, store.RiskHigh, store.RiskCritical} {
		if got := store.RiskRank(tier); got != i {
			t.Errorf("RiskRank(%s) = %d, want %d", tier, got, i)
		}
	}
	for _, tier := range []store.RiskTier{"", "extreme", "LOW"} {
		if got := store.RiskRank(tier); got != 3 {
			t.Errorf("RiskRank(%q) = %d, want 3", tier, got)
		}
	}
}
