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
		// Used reads what Remember would refuse, and writes nothing.
		if used, err := jtis.Used(ctx, a1.ID, live, later); err != nil || used {
			return fmt.Errorf("Used before Remember = %v, %v; want false", used, err)
		}
		if err := jtis.Remember(ctx, a1.ID, live, later); err != nil {
			return err
		}
		if used, err := jtis.Used(ctx, a1.ID, live, later); err != nil || !used {
			return fmt.Errorf("Used after Remember = %v, %v; want true", used, err)
		}
		if used, err := jtis.Used(ctx, a2.ID, live, later); err != nil || used {
			return fmt.Errorf("Used of another agent's same jti = %v, %v; want false", used, err)
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
		// Expired: free again, and then live again. The same assertion
		// late (its exp no later than the row's) is still used.
		if used, err := jtis.Used(ctx, a1.ID, lapsed, later); err != nil || used {
			return fmt.Errorf("Used of an expired jti = %v, %v; want false", used, err)
		}
		if used, err := jtis.Used(ctx, a1.ID, lapsed, time.Now().Add(-time.Hour)); err != nil || !used {
			return fmt.Errorf("Used of an expired jti, for an exp no later = %v, %v; want true", used, err)
		}
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
		{"used, malformed agent", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.AssertionJTIs().Used(ctx, "agt_", digest("x"), later)
			return err
		}, store.ErrInvalid},
		{"used, short digest", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.AssertionJTIs().Used(ctx, a1.ID, digest("x")[:31], later)
			return err
		}, store.ErrInvalid},
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

// testAdoptAgents: an agent or key stored before rows named their entry
// (ledger_index NULL, planted with h.Tamper) is made to name one by Adopt
// and AdoptKey, once — a retired key too; one that names an entry keeps
// it, through the API or around it, and another organization's rows are
// not there.
func testAdoptAgents(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme, bravo := CreateTenant(t, b, "acme"), CreateTenant(t, b, "bravo")
	var legacy, named, other store.Agent
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if legacy, err = tx.Agents().Create(ctx, newAgent("Legacy")); err != nil {
			return err
		}
		if named, err = tx.Agents().Create(ctx, store.Agent{Name: "Named", Sponsor: "usr_sponsor", RiskTier: store.RiskLow, LedgerIndex: ledgerIndex(5)}); err != nil {
			return err
		}
		for i, kid := range []string{"k1", "k2", "k3", "k4"} {
			if _, err := tx.Agents().AddKey(ctx, store.AgentKey{AgentID: legacy.ID, KID: kid, PublicJWK: publicJWK(kid), LedgerIndex: ledgerIndex(uint64(i))}); err != nil {
				return err
			}
		}
		for _, kid := range []string{"k2", "k4"} {
			if err := tx.Agents().RetireKey(ctx, legacy.ID, kid, time.Time{}); err != nil {
				return err
			}
		}
		return nil
	})
	inTenant(t, b, bravo.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if other, err = tx.Agents().Create(ctx, newAgent("Other")); err != nil {
			return err
		}
		_, err = tx.Agents().AddKey(ctx, store.AgentKey{AgentID: other.ID, KID: "k1", PublicJWK: publicJWK("k1"), LedgerIndex: ledgerIndex(0)})
		return err
	})
	// k1 active, k2 and k4 retired, all naming none; k3 names entry 2.
	h.Tamper(t, b, acme.ID, `UPDATE agents SET ledger_index = NULL WHERE id = '`+legacy.ID+`'`,
		`UPDATE agent_keys SET ledger_index = NULL WHERE agent_id = '`+legacy.ID+`' AND kid IN ('k1', 'k2', 'k4')`)
	h.Tamper(t, b, bravo.ID, `UPDATE agents SET ledger_index = NULL WHERE id = '`+other.ID+`'`,
		`UPDATE agent_keys SET ledger_index = NULL WHERE agent_id = '`+other.ID+`'`)

	// want checks the entries legacy and its keys name (-1: none).
	want := func(ctx context.Context, tx store.TenantTx, agent int64, keys map[string]int64) error {
		index := func(i *uint64) int64 {
			if i == nil {
				return -1
			}
			return int64(*i)
		}
		got, err := tx.Agents().Get(ctx, legacy.ID)
		if err != nil || index(got.LedgerIndex) != agent || got.Status != store.AgentActive {
			return fmt.Errorf("Get = %+v, %v; want entry %d", got, err, agent)
		}
		list, err := tx.Agents().List(ctx)
		if err != nil {
			return err
		}
		for _, ag := range list {
			if ag.ID == legacy.ID && index(ag.LedgerIndex) != agent || ag.ID == named.ID && index(ag.LedgerIndex) != 5 {
				return fmt.Errorf("List names %+v", ag)
			}
		}
		ks, err := tx.Agents().Keys(ctx, legacy.ID)
		if err != nil || len(ks) != len(keys) {
			return fmt.Errorf("Keys = %+v, %v", ks, err)
		}
		for _, k := range ks {
			retired := k.KID == "k2" || k.KID == "k4"
			if index(k.LedgerIndex) != keys[k.KID] || (k.Status == store.KeyRetired) != retired || k.RetiredAt.IsZero() != !retired {
				return fmt.Errorf("key %+v; want entry %d", k, keys[k.KID])
			}
		}
		return nil
	}
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return want(ctx, tx, -1, map[string]int64{"k1": -1, "k2": -1, "k3": 2, "k4": -1})
	})
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		agents := tx.Agents()
		if err := agents.Adopt(ctx, legacy.ID, 11); err != nil {
			return fmt.Errorf("Adopt: %w", err)
		}
		for _, kid := range []string{"k1", "k2"} {
			if err := agents.AdoptKey(ctx, legacy.ID, kid, 11); err != nil {
				return fmt.Errorf("AdoptKey(%s): %w", kid, err)
			}
		}
		// A refusal leaves the transaction usable.
		if err := agents.Adopt(ctx, legacy.ID, 12); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("Adopt twice: %v, want ErrConflict", err)
		}
		return want(ctx, tx, 11, map[string]int64{"k1": 11, "k2": 11, "k3": 2, "k4": -1})
	})

	adopt := func(id string, index uint64) func(ctx context.Context, tx store.TenantTx) error {
		return func(ctx context.Context, tx store.TenantTx) error { return tx.Agents().Adopt(ctx, id, index) }
	}
	adoptKey := func(id, kid string, index uint64) func(ctx context.Context, tx store.TenantTx) error {
		return func(ctx context.Context, tx store.TenantTx) error { return tx.Agents().AdoptKey(ctx, id, kid, index) }
	}
	expectRefusals(t, b, acme.ID, []refusal{
		{"adopted again", adopt(legacy.ID, 12), store.ErrConflict},
		{"adopted again, same entry", adopt(legacy.ID, 11), store.ErrConflict},
		{"agent naming its entry", adopt(named.ID, 12), store.ErrConflict},
		{"unknown agent", adopt(store.NewID(store.PrefixAgent), 12), store.ErrNotFound},
		{"another organization's agent", adopt(other.ID, 12), store.ErrNotFound},
		{"malformed agent id", adopt("agt_%", 12), store.ErrInvalid},
		{"agent index past int64", adopt(store.NewID(store.PrefixAgent), 1<<63), store.ErrInvalid},
		{"key adopted again", adoptKey(legacy.ID, "k1", 12), store.ErrConflict},
		{"retired key adopted again", adoptKey(legacy.ID, "k2", 12), store.ErrConflict},
		{"key naming its entry", adoptKey(legacy.ID, "k3", 12), store.ErrConflict},
		{"unknown kid", adoptKey(legacy.ID, "nope", 12), store.ErrNotFound},
		{"kid of another agent", adoptKey(named.ID, "k4", 12), store.ErrNotFound},
		{"key of an unknown agent", adoptKey(store.NewID(store.PrefixAgent), "k4", 12), store.ErrNotFound},
		{"another organization's key", adoptKey(other.ID, "k1", 12), store.ErrNotFound},
		{"malformed kid", adoptKey(legacy.ID, "k 4", 12), store.ErrInvalid},
		{"key index past int64", adoptKey(legacy.ID, "k4", 1<<63), store.ErrInvalid},
	})
	// Around the API: an entry once named is final, a retired key takes
	// no other change with its naming, and another organization's rows
	// are not there.
	for _, stmt := range []string{
		`UPDATE agents SET ledger_index = 12 WHERE id = '` + legacy.ID + `'`,
		`UPDATE agents SET ledger_index = NULL WHERE id = '` + legacy.ID + `'`,
		`UPDATE agents SET ledger_index = 12 WHERE id = '` + named.ID + `'`,
		`UPDATE agent_keys SET ledger_index = 12 WHERE kid = 'k1'`,
		`UPDATE agent_keys SET ledger_index = NULL WHERE kid = 'k2'`,
		`UPDATE agent_keys SET ledger_index = 12 WHERE kid = 'k3'`,
		`UPDATE agent_keys SET ledger_index = 12, status = 'active', retired_at = NULL WHERE kid = 'k4'`,
		`UPDATE agent_keys SET ledger_index = 12, retired_at = created_at WHERE kid = 'k4'`,
	} {
		if n, err := h.RawTenantExec(ctx(t), b, acme.ID, stmt); err == nil {
			t.Errorf("%s: accepted (%d rows)", stmt, n)
		}
	}
	for _, stmt := range []string{
		`UPDATE agents SET ledger_index = 12 WHERE id = '` + other.ID + `'`,
		`UPDATE agent_keys SET ledger_index = 12 WHERE agent_id = '` + other.ID + `'`,
	} {
		if n, err := h.RawTenantExec(ctx(t), b, acme.ID, stmt); err == nil && n != 0 {
			t.Errorf("acme: %s: changed %d of bravo's rows", stmt, n)
		}
	}
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return want(ctx, tx, 11, map[string]int64{"k1": 11, "k2": 11, "k3": 2, "k4": -1})
	})
	inTenant(t, b, bravo.ID, func(ctx context.Context, tx store.TenantTx) error {
		got, err := tx.Agents().Get(ctx, other.ID)
		if err != nil || got.LedgerIndex != nil {
			return fmt.Errorf("bravo's agent: %+v, %v", got, err)
		}
		ks, err := tx.Agents().Keys(ctx, other.ID)
		if err != nil || len(ks) != 1 || ks[0].LedgerIndex != nil {
			return fmt.Errorf("bravo's keys: %+v, %v", ks, err)
		}
		// Its own organization adopts it.
		if err := tx.Agents().Adopt(ctx, other.ID, 3); err != nil {
			return err
		}
		return tx.Agents().AdoptKey(ctx, other.ID, "k1", 3)
	})
}
