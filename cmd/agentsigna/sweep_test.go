package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

func TestPruneJTIs(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acme := storetest.CreateTenant(t, s, "acme")
	now := time.Now()
	old, live := sha256.Sum256([]byte("old")), sha256.Sum256([]byte("live"))
	var agentID string
	err = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		ag, err := tx.Agents().Create(ctx, store.Agent{Name: "a", Sponsor: "s", RiskTier: store.RiskLow})
		if err != nil {
			return err
		}
		agentID = ag.ID
		if err := tx.AssertionJTIs().Remember(ctx, ag.ID, old[:], now.Add(-time.Minute)); err != nil {
			return err
		}
		return tx.AssertionJTIs().Remember(ctx, ag.ID, live[:], now.Add(time.Minute))
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := pruneJTIs(ctx, s, now)
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want the one expired jti", n, err)
	}
	// The live one is still remembered: a replay is still refused.
	err = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.AssertionJTIs().Remember(ctx, agentID, live[:], now.Add(time.Minute))
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("live jti after the sweep: %v, want a replay refusal", err)
	}
}
