package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

func testAgents(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	before := time.Now().Add(-time.Minute)
	var payer, given store.Agent
	givenID := store.NewID(store.PrefixAgent)
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if payer, err = tx.Agents().Create(ctx, newAgent("Payer")); err != nil {
			return err
		}
		if err := store.CheckID(store.PrefixAgent, payer.ID); err != nil {
			return fmt.Errorf("generated id %q: %w", payer.ID, err)
		}
		if payer.Status != store.AgentActive || payer.CreatedAt.Before(before) || !payer.UpdatedAt.Equal(payer.CreatedAt) {
			return fmt.Errorf("created %+v", payer)
		}
		given, err = tx.Agents().Create(ctx, store.Agent{ID: givenID, Name: "Ops bot ✓", Sponsor: "usr_ops", RiskTier: store.RiskHigh, Status: store.AgentSuspended, LedgerIndex: ledgerIndex(0)})
		return err
	})
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		got, err := tx.Agents().Get(ctx, payer.ID)
		if err != nil || !sameAgent(got, payer) {
			return fmt.Errorf("Get = %+v, %v; created %+v", got, err, payer)
		}
		if got, err := tx.Agents().Get(ctx, givenID); err != nil || !sameAgent(got, given) || got.Name != "Ops bot ✓" || got.Status != store.AgentSuspended || got.RiskTier != store.RiskHigh ||
			got.LedgerIndex == nil || *got.LedgerIndex != 0 {
			return fmt.Errorf("Get(given id) = %+v, %v", got, err)
		}
		list, err := tx.Agents().List(ctx)
		if err != nil || len(list) != 2 {
			return fmt.Errorf("List = %+v, %v", list, err)
		}
		if ids := list[0].ID + list[1].ID; !strings.Contains(ids, payer.ID) || !strings.Contains(ids, givenID) {
			return fmt.Errorf("List = %+v", list)
		}
		return nil
	})

	// Status and tier changes; revocation is final, and a suspended agent
	// is not reinstated (nothing logs a reinstatement yet).
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		agents := tx.Agents()
		if err := agents.SetStatus(ctx, given.ID, store.AgentActive); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("suspended → active: %v, want ErrConflict", err)
		}
		for _, s := range []store.AgentStatus{store.AgentSuspended, store.AgentRevoked, store.AgentRevoked} {
			if err := agents.SetStatus(ctx, given.ID, s); err != nil {
				return fmt.Errorf("SetStatus(%s): %w", s, err)
			}
		}
		for _, s := range []store.AgentStatus{store.AgentActive, store.AgentSuspended} {
			if err := agents.SetStatus(ctx, given.ID, s); !errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("revoked → %s: %v, want ErrConflict", s, err)
			}
		}
		if err := agents.SetRiskTier(ctx, payer.ID, store.RiskCritical); err != nil {
			return err
		}
		// Only up: nothing logs a lowering yet.
		if err := agents.SetRiskTier(ctx, payer.ID, store.RiskHigh); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("critical → high: %v, want ErrConflict", err)
		}
		got, err := agents.Get(ctx, payer.ID)
		if err != nil || got.RiskTier != store.RiskCritical || got.Status != store.AgentActive || got.UpdatedAt.Before(got.CreatedAt) {
			return fmt.Errorf("after SetRiskTier: %+v, %v", got, err)
		}
		if got, err := agents.Get(ctx, given.ID); err != nil || got.Status != store.AgentRevoked {
			return fmt.Errorf("after revocation: %+v, %v", got, err)
		}
		return nil
	})

	unknown := store.NewID(store.PrefixAgent)
	create := func(mutate func(*store.Agent)) func(ctx context.Context, tx store.TenantTx) error {
		return func(ctx context.Context, tx store.TenantTx) error {
			a := newAgent("Agent")
			mutate(&a)
			_, err := tx.Agents().Create(ctx, a)
			return err
		}
	}
	expectRefusals(t, b, acme.ID, []refusal{
		{"duplicate id", create(func(a *store.Agent) { a.ID = payer.ID }), store.ErrConflict},
		{"malformed id", create(func(a *store.Agent) { a.ID = "agt_short" }), store.ErrInvalid},
		{"id of another kind", create(func(a *store.Agent) { a.ID = "cp_" + payer.ID[4:] }), store.ErrInvalid},
		{"upper-case id", create(func(a *store.Agent) { a.ID = strings.ToUpper(payer.ID) }), store.ErrInvalid},
		{"empty name", create(func(a *store.Agent) { a.Name = "" }), store.ErrInvalid},
		{"blank name", create(func(a *store.Agent) { a.Name = "  " }), store.ErrInvalid},
		{"long name", create(func(a *store.Agent) { a.Name = strings.Repeat("n", store.MaxAgentName+1) }), store.ErrInvalid},
		{"name with a newline", create(func(a *store.Agent) { a.Name = "a\nb" }), store.ErrInvalid},
		{"name with a bidi override", create(func(a *store.Agent) { a.Name = "pay\u202eusr" }), store.ErrInvalid},
		{"name not UTF-8", create(func(a *store.Agent) { a.Name = "\xff" }), store.ErrInvalid},
		{"name with a line separator", create(func(a *store.Agent) { a.Name = "a\u2028b" }), store.ErrInvalid},
		{"invisible name", create(func(a *store.Agent) { a.Name = "\u200b" }), store.ErrInvalid},
		{"name of a lone accent", create(func(a *store.Agent) { a.Name = "\u0301" }), store.ErrInvalid},
		{"sponsor with a bidi mark", create(func(a *store.Agent) { a.Sponsor = "usr\u200f" }), store.ErrInvalid},
		{"no sponsor", create(func(a *store.Agent) { a.Sponsor = "" }), store.ErrInvalid},
		{"no tier", create(func(a *store.Agent) { a.RiskTier = "" }), store.ErrInvalid},
		{"bad tier", create(func(a *store.Agent) { a.RiskTier = "extreme" }), store.ErrInvalid},
		{"bad status", create(func(a *store.Agent) { a.Status = "deleted" }), store.ErrInvalid},
		{"no ledger entry", create(func(a *store.Agent) { a.LedgerIndex = nil }), store.ErrInvalid},
		{"ledger index past int64", create(func(a *store.Agent) { a.LedgerIndex = ledgerIndex(1 << 63) }), store.ErrInvalid},
		{"get unknown", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Agents().Get(ctx, unknown)
			return err
		}, store.ErrNotFound},
		{"get malformed", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Agents().Get(ctx, "agt_' OR '1'='1")
			return err
		}, store.ErrInvalid},
		{"status of unknown", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Agents().SetStatus(ctx, unknown, store.AgentSuspended)
		}, store.ErrNotFound},
		{"bad status change", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Agents().SetStatus(ctx, payer.ID, "deleted")
		}, store.ErrInvalid},
		{"tier of unknown", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Agents().SetRiskTier(ctx, unknown, store.RiskLow)
		}, store.ErrNotFound},
		{"bad tier change", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Agents().SetRiskTier(ctx, payer.ID, "none")
		}, store.ErrInvalid},
	})
}

func testAgentKeys(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	var agent, revoked store.Agent
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if agent, err = tx.Agents().Create(ctx, newAgent("Keyed")); err != nil {
			return err
		}
		if revoked, err = tx.Agents().Create(ctx, newAgent("Revoked")); err != nil {
			return err
		}
		if err := tx.Agents().SetStatus(ctx, revoked.ID, store.AgentRevoked); err != nil {
			return err
		}
		k, err := tx.Agents().AddKey(ctx, store.AgentKey{AgentID: agent.ID, KID: "k1", PublicJWK: publicJWK("k1"), LedgerIndex: ledgerIndex(0)})
		if err != nil || k.Status != store.KeyActive || k.CreatedAt.IsZero() || !k.RetiredAt.IsZero() {
			return fmt.Errorf("AddKey = %+v, %v", k, err)
		}
		_, err = tx.Agents().AddKey(ctx, store.AgentKey{AgentID: agent.ID, KID: "k2", PublicJWK: publicJWK("k2"), Status: store.KeyActive, LedgerIndex: ledgerIndex(7)})
		return err
	})
	retiredAt := time.Now().Add(-time.Second)
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.Agents().RetireKey(ctx, agent.ID, "k1", retiredAt); err != nil {
			return err
		}
		if err := tx.Agents().RetireKey(ctx, agent.ID, "k1", time.Time{}); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("retire twice: %v", err)
		}
		keys, err := tx.Agents().Keys(ctx, agent.ID)
		if err != nil || len(keys) != 2 {
			return fmt.Errorf("Keys = %+v, %v", keys, err)
		}
		for _, k := range keys {
			switch {
			case k.AgentID != agent.ID || k.PublicJWK != publicJWK(k.KID) || k.LedgerIndex == nil:
				return fmt.Errorf("key read back as %+v", k)
			case k.KID == "k1" && *k.LedgerIndex != 0, k.KID == "k2" && *k.LedgerIndex != 7:
				return fmt.Errorf("key %s names entry %d", k.KID, *k.LedgerIndex)
			case k.KID == "k1" && (k.Status != store.KeyRetired || !k.RetiredAt.Equal(store.StoredTime(retiredAt))):
				return fmt.Errorf("retired key %+v", k)
			case k.KID == "k2" && (k.Status != store.KeyActive || !k.RetiredAt.IsZero()):
				return fmt.Errorf("active key %+v", k)
			}
		}
		if keys, err := tx.Agents().Keys(ctx, store.NewID(store.PrefixAgent)); err != nil || len(keys) != 0 {
			return fmt.Errorf("keys of an unknown agent: %+v, %v", keys, err)
		}
		return nil
	})
	add := func(k store.AgentKey) func(ctx context.Context, tx store.TenantTx) error {
		if k.LedgerIndex == nil {
			k.LedgerIndex = ledgerIndex(9)
		}
		return func(ctx context.Context, tx store.TenantTx) error { _, err := tx.Agents().AddKey(ctx, k); return err }
	}
	noEntry := func(k store.AgentKey) func(ctx context.Context, tx store.TenantTx) error {
		return func(ctx context.Context, tx store.TenantTx) error { _, err := tx.Agents().AddKey(ctx, k); return err }
	}
	jwk := publicJWK("k3")
	expectRefusals(t, b, acme.ID, []refusal{
		{"duplicate kid", add(store.AgentKey{AgentID: agent.ID, KID: "k1", PublicJWK: publicJWK("k1")}), store.ErrConflict},
		{"unknown agent", add(store.AgentKey{AgentID: store.NewID(store.PrefixAgent), KID: "k3", PublicJWK: jwk}), store.ErrNotFound},
		{"revoked agent", add(store.AgentKey{AgentID: revoked.ID, KID: "k3", PublicJWK: jwk}), store.ErrConflict},
		{"malformed agent id", add(store.AgentKey{AgentID: "agt_x", KID: "k3", PublicJWK: jwk}), store.ErrInvalid},
		{"empty kid", add(store.AgentKey{AgentID: agent.ID, PublicJWK: jwk}), store.ErrInvalid},
		{"kid with a space", add(store.AgentKey{AgentID: agent.ID, KID: "k 3", PublicJWK: jwk}), store.ErrInvalid},
		{"long kid", add(store.AgentKey{AgentID: agent.ID, KID: strings.Repeat("k", store.MaxKID+1), PublicJWK: jwk}), store.ErrInvalid},
		{"added retired", add(store.AgentKey{AgentID: agent.ID, KID: "k3", PublicJWK: jwk, Status: store.KeyRetired}), store.ErrInvalid},
		{"no JWK", add(store.AgentKey{AgentID: agent.ID, KID: "k3"}), store.ErrInvalid},
		{"no ledger entry", noEntry(store.AgentKey{AgentID: agent.ID, KID: "k3", PublicJWK: jwk}), store.ErrInvalid},
		{"ledger index past int64", add(store.AgentKey{AgentID: agent.ID, KID: "k3", PublicJWK: jwk, LedgerIndex: ledgerIndex(1 << 63)}), store.ErrInvalid},
		{"JWK not an object", add(store.AgentKey{AgentID: agent.ID, KID: "k3", PublicJWK: `["kty"]`}), store.ErrInvalid},
		{"two JSON values", add(store.AgentKey{AgentID: agent.ID, KID: "k3", PublicJWK: jwk + jwk}), store.ErrInvalid},
		{"private JWK", add(store.AgentKey{AgentID: agent.ID, KID: "k3",
			PublicJWK: strings.Replace(jwk, `"kty"`, `"d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","kty"`, 1)}), store.ErrInvalid},
		{"symmetric JWK", add(store.AgentKey{AgentID: agent.ID, KID: "k3", PublicJWK: `{"kty":"oct","k":"c2VjcmV0","kid":"k3"}`}), store.ErrInvalid},
		{"oversized JWK", add(store.AgentKey{AgentID: agent.ID, KID: "k3",
			PublicJWK: `{"kty":"OKP","pad":"` + strings.Repeat("x", store.MaxPublicJWK) + `"}`}), store.ErrInvalid},
		{"retire unknown kid", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Agents().RetireKey(ctx, agent.ID, "nope", time.Time{})
		}, store.ErrNotFound},
		{"retire bad kid", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Agents().RetireKey(ctx, agent.ID, "", time.Time{})
		}, store.ErrInvalid},
		{"keys of a malformed id", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Agents().Keys(ctx, "agt_%")
			return err
		}, store.ErrInvalid},
	})
}

func testJTIs(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	var a1, a2 store.Agent
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if a1, err = tx.Agents().Create(ctx, newAgent("One")); err != nil {
			return err
		}
		a2, err = tx.Agents().Create(ctx, newAgent("Two"))
		return err
	})
	live, later := digest("jti live"), time.Now().Add(5*time.Minute)
	lapsed, stale := digest("jti lapsed"), digest("jti stale")
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		jtis := tx.AssertionJTIs()
		if err := jtis.Remember(ctx, a1.ID, live, later); err != nil {
			return err
		}
		// A replay is refused without spending the transaction.
		if err := jtis.Remember(ctx, a1.ID, live, later); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("replay: %v, want ErrConflict", err)
		}
		// Each agent has its own jtis (RFC 7519 §4.1.7: unique per
		// issuer): another agent's same jti is no replay; its replay is.
		if err := jtis.Remember(ctx, a2.ID, live, later); err != nil {
			return fmt.Errorf("same jti from another agent: %v, want it accepted", err)
		}
		if err := jtis.Remember(ctx, a2.ID, live, later); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("the other agent's replay: %v, want ErrConflict", err)
		}
		for _, d := range [][]byte{lapsed, stale} {
			if err := jtis.Remember(ctx, a1.ID, d, time.Now().Add(-time.Second)); err != nil {
				return err
			}
		}
		return nil
	})
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		jtis := tx.AssertionJTIs()
		// Expired: free again, and then live again.
		if err := jtis.Remember(ctx, a1.ID, lapsed, later); err != nil {
			return fmt.Errorf("expired jti: %v, want it free", err)
		}
		if err := jtis.Remember(ctx, a1.ID, lapsed, later); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("taken-over jti: %v, want ErrConflict", err)
		}
		n, err := jtis.PruneJTIs(ctx, time.Now())
		if err != nil || n != 1 {
			return fmt.Errorf("PruneJTIs = %d, %v; want only the stale row", n, err)
		}
		if n, err := jtis.PruneJTIs(ctx, time.Now()); err != nil || n != 0 {
			return fmt.Errorf("second PruneJTIs = %d, %v", n, err)
		}
		if err := jtis.Remember(ctx, a1.ID, live, later); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("pruning forgot a live jti: %v", err)
		}
		return jtis.Remember(ctx, a1.ID, stale, later)
	})
	// The same assertion again, written once its exp has passed (its
	// expiry was checked before a write that waited): a replay, not a
	// jti free for reuse.
	late := digest("jti written late")
	lateExp := time.Now().Add(-time.Second)
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		jtis := tx.AssertionJTIs()
		if err := jtis.Remember(ctx, a1.ID, late, lateExp); err != nil {
			return err
		}
		if err := jtis.Remember(ctx, a1.ID, late, lateExp); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("the same assertion written after its exp: %v, want ErrConflict", err)
		}
		if err := jtis.Remember(ctx, a1.ID, late, lateExp.Add(-time.Second)); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("an assertion that expired earlier, same jti: %v, want ErrConflict", err)
		}
		return nil
	})
	remember := func(agentID string, d []byte, exp time.Time) func(ctx context.Context, tx store.TenantTx) error {
		return func(ctx context.Context, tx store.TenantTx) error {
			return tx.AssertionJTIs().Remember(ctx, agentID, d, exp)
		}
	}
	expectRefusals(t, b, acme.ID, []refusal{
		{"unknown agent", remember(store.NewID(store.PrefixAgent), digest("x"), later), store.ErrNotFound},
		{"malformed agent", remember("agt_", digest("x"), later), store.ErrInvalid},
		{"short digest", remember(a1.ID, digest("x")[:31], later), store.ErrInvalid},
		{"no digest", remember(a1.ID, nil, later), store.ErrInvalid},
		{"no expiry", remember(a1.ID, digest("x"), time.Time{}), store.ErrInvalid},
		{"prune without a time", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.AssertionJTIs().PruneJTIs(ctx, time.Time{})
			return err
		}, store.ErrInvalid},
	})
}

// The token endpoint finds an agent's organization through the directory.
func testAgentDirectory(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	beta := CreateTenant(t, b, "beta")
	c := ctx(t)
	var ag store.Agent
	err := b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		ag, err = tx.Agents().Create(ctx, store.Agent{Name: "payer", Sponsor: "usr_s", RiskTier: store.RiskLow, LedgerIndex: ledgerIndex(0)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := b.ResolveAgent(c, ag.ID)
	if err != nil || ref.ID != acme.ID || ref.Slug != "acme" || ref.Status != store.TenantActive {
		t.Fatalf("ResolveAgent = %+v, %v", ref, err)
	}
	if _, err := b.ResolveAgent(c, store.NewID(store.PrefixAgent)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown agent: %v", err)
	}
	for _, bad := range []string{"", "agt_x' OR '1'='1", "cp_" + ag.ID[4:], strings.ToUpper(ag.ID)} {
		if _, err := b.ResolveAgent(c, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ResolveAgent(%q): %v, want ErrInvalid", bad, err)
		}
	}
	// Another organization cannot take the id over.
	err = b.InTenantTx(c, beta.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := tx.Agents().Create(ctx, store.Agent{ID: ag.ID, Name: "impostor", Sponsor: "usr_x", RiskTier: store.RiskLow, LedgerIndex: ledgerIndex(0)})
		return err
	})
	if err == nil {
		t.Fatal("beta registered acme's agent id")
	}
	if ref, err := b.ResolveAgent(c, ag.ID); err != nil || ref.ID != acme.ID {
		t.Fatalf("after beta's attempt the agent resolves to %+v, %v", ref, err)
	}
}
