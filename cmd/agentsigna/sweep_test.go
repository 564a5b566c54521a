package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/store"
)

func TestPruneJTIs(t *testing.T) {
	ctx := context.Background()
	s, acme := acmeStore(t)
	now := time.Now()
	old, live := sha256.Sum256([]byte("old")), sha256.Sum256([]byte("live"))
	// Expired, but by less than the clock skew replicas may have between
	// them: one behind this one may still take its assertion.
	lately := sha256.Sum256([]byte("lately"))
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		ag, err := tx.Agents().Create(ctx, store.Agent{Name: "a", Sponsor: "s", RiskTier: store.RiskLow, LedgerIndex: new(uint64)})
		if err != nil {
			return err
		}
		if err := tx.AssertionJTIs().Remember(ctx, ag.ID, old[:], now.Add(-time.Minute)); err != nil {
			return err
		}
		if err := tx.AssertionJTIs().Remember(ctx, ag.ID, lately[:], now.Add(-identity.ClockSkew/2)); err != nil {
			return err
		}
		return tx.AssertionJTIs().Remember(ctx, ag.ID, live[:], now.Add(time.Minute))
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := pruneJTIs(ctx, s, now)
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want the one expired beyond the clock skew", n, err)
	}
	// The live one is still remembered, and the one that expired lately:
	// pruning them all later finds both.
	err = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		n, err := tx.AssertionJTIs().PruneJTIs(ctx, now.Add(time.Hour))
		if err == nil && n != 2 {
			err = fmt.Errorf("%d jtis left after the sweep, want the live one and the lately expired one", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
