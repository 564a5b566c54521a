package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// UpgradedRowsAdopt is the end of each store's upgrade test for rows from
// before they named their ledger entry: tenant's agent agentID (active,
// with an active key "k-new" and a key "k-old" retired at retiredAt) and
// its verified counterparty cpID, written by an earlier release, read as
// naming no entry after the upgrade; each is adopted once (agent and keys
// at entry 7, the counterparty at 8) and never again, the retired key
// staying retired with its time. It is the path ledger adopt takes.
func UpgradedRowsAdopt(t testing.TB, b store.TenantStore, tenantID, agentID, cpID string, retiredAt time.Time) {
	t.Helper()
	err := b.InTenantTx(context.Background(), tenantID, func(ctx context.Context, tx store.TenantTx) error {
		ag, err := tx.Agents().Get(ctx, agentID)
		if err != nil || ag.LedgerIndex != nil {
			return fmt.Errorf("the agent upgraded: %+v, %v; want it naming no entry", ag, err)
		}
		cp, err := tx.Counterparties().Get(ctx, cpID)
		if err != nil || cp.LedgerIndex != nil {
			return fmt.Errorf("the counterparty upgraded: %+v, %v; want it naming no entry", cp, err)
		}
		if err := tx.Agents().Adopt(ctx, agentID, 7); err != nil {
			return fmt.Errorf("adopt the agent: %w", err)
		}
		for _, kid := range []string{"k-old", "k-new"} {
			if err := tx.Agents().AdoptKey(ctx, agentID, kid, 7); err != nil {
				return fmt.Errorf("adopt key %s: %w", kid, err)
			}
		}
		if err := tx.Counterparties().Adopt(ctx, cpID, 8); err != nil {
			return fmt.Errorf("adopt the counterparty: %w", err)
		}
		if err := tx.Agents().Adopt(ctx, agentID, 9); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("the agent adopted again: %v, want ErrConflict", err)
		}
		if err := tx.Agents().AdoptKey(ctx, agentID, "k-old", 9); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("the retired key adopted again: %v, want ErrConflict", err)
		}
		if err := tx.Counterparties().Adopt(ctx, cpID, 9); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("the counterparty adopted again: %v, want ErrConflict", err)
		}
		keys, err := tx.Agents().Keys(ctx, agentID)
		if err != nil || len(keys) != 2 {
			return fmt.Errorf("keys %+v, %v", keys, err)
		}
		for _, k := range keys {
			retired := k.KID == "k-old"
			if k.LedgerIndex == nil || *k.LedgerIndex != 7 || retired != (k.Status == store.KeyRetired) || retired != k.RetiredAt.Equal(retiredAt) {
				return fmt.Errorf("key %+v after adoption", k)
			}
		}
		if ag, err = tx.Agents().Get(ctx, agentID); err != nil || ag.LedgerIndex == nil || *ag.LedgerIndex != 7 || ag.Status != store.AgentActive {
			return fmt.Errorf("the agent after adoption: %+v, %v", ag, err)
		}
		cp, err = tx.Counterparties().Get(ctx, cpID)
		if err != nil || cp.LedgerIndex == nil || *cp.LedgerIndex != 8 || cp.Status != store.CounterpartyVerified {
			return fmt.Errorf("the counterparty after adoption: %+v, %v", cp, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
