package decision_test

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
)

// Someone who can write the organization's rows (its database role may
// insert into policy_bundles and policy_activations) stores a bundle that
// allows everything and an activation of it, with no signature, no second
// person and no ledger entry. Neither the running service nor a new
// process decides under it: the active revision is the one the log's
// activation entries say, or none. An activation row kept before rows
// named their entry still loads when the log's newest activation is its.
func TestActivationRowsMustBeTheLogs(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			at := func(i uint64) *uint64 { return &i }
			for _, tc := range []struct {
				name string
				// index is the planted row's ledger index, given the
				// legitimate activation's.
				index func(legit uint64) *uint64
			}{
				{"no ledger index", func(uint64) *uint64 { return nil }},
				{"the index of the real activation's entry", func(legit uint64) *uint64 { return at(legit) }},
				{"the index of another kind of entry", func(legit uint64) *uint64 { return at(legit - 1) }},
				{"an index past the log", func(uint64) *uint64 { return at(1 << 40) }},
			} {
				t.Run(tc.name, func(t *testing.T) {
					e, agent, _ := payingEnv(t, kind)
					legit := e.activationIndex(t)
					if resp := e.decide(t, agent.ID, action("inventory.reorder"), ""); resp.Outcome != decision.Deny {
						t.Fatalf("before: %s %v", resp.Outcome, resp.Reasons)
					}
					e.plantActivation(t, "evil-1", tc.index(legit))
					_, _, fresh := e.newService(t, e.ledger, decision.Config{})
					for name, svc := range map[string]*decision.Service{"the running service": e.service, "a new process": fresh} {
						resp, err := svc.Decide(context.Background(), e.org, agent.ID, action("inventory.reorder"), "")
						if err == nil || !strings.Contains(err.Error(), "its activation is not the one the organization's log records") {
							t.Fatalf("%s decided under a planted activation: %+v, %v", name, resp, err)
						}
					}
				})
			}
			t.Run("an activation replayed", func(t *testing.T) {
				e, agent, _ := payingEnv(t, kind)
				first := e.activationIndex(t)
				e.activate(t, permissiveBundle(t))
				if resp := e.decide(t, agent.ID, action("inventory.reorder"), ""); resp.Outcome != decision.Allow {
					t.Fatalf("under the permissive policy: %s %v", resp.Outcome, resp.Reasons)
				}
				// Back to the first revision, naming its old entry.
				var acme string
				e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					acts, err := tx.Policies().Activations(ctx)
					acme = acts[0].Revision
					return err
				})
				e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					_, err := tx.Policies().Activate(ctx, store.PolicyActivation{Revision: acme, ActivatedBy: "usr_author", ApprovedBy: "usr_reviewer", LedgerIndex: &first})
					return err
				})
				_, _, fresh := e.newService(t, e.ledger, decision.Config{})
				if _, err := fresh.Decide(context.Background(), e.org, agent.ID, action("inventory.reorder"), ""); err == nil || !strings.Contains(err.Error(), "not after activation") {
					t.Fatalf("a replayed activation: %v", err)
				}
			})
			t.Run("a row kept before rows named their entry", func(t *testing.T) {
				e, agent, payee := payingEnv(t, kind)
				var acme store.PolicyActivation
				e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					acts, err := tx.Policies().Activations(ctx)
					acme = acts[0]
					return err
				})
				// The same activation as the log's newest, without an index.
				e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					_, err := tx.Policies().Activate(ctx, store.PolicyActivation{Revision: acme.Revision, ActivatedBy: acme.ActivatedBy, ApprovedBy: acme.ApprovedBy})
					return err
				})
				_, _, fresh := e.newService(t, e.ledger, decision.Config{})
				resp, err := fresh.Decide(context.Background(), e.org, agent.ID, payment("100.00", payee.ID), "")
				if err != nil || resp.Outcome != decision.Allow {
					t.Fatalf("under a legacy row of the logged activation: %+v, %v", resp, err)
				}
			})
		})
	}
}

// activationIndex is the ledger index the newest activation row names.
func (e *serviceEnv) activationIndex(t *testing.T) uint64 {
	t.Helper()
	var idx *uint64
	e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
		act, _, err := tx.Policies().ActiveBundle(ctx)
		idx = act.LedgerIndex
		return err
	})
	if idx == nil {
		t.Fatal("the service's activation names no ledger entry")
	}
	return *idx
}

// plantActivation stores, as the database role may, a bundle of revision
// that allows everything and an activation of it naming index.
func (e *serviceEnv) plantActivation(t *testing.T, revision string, index *uint64) {
	t.Helper()
	raw := regoBundle(t, revision, "package tenant\n\ndecision := {\"allow\": true}\n")
	sum := sha256.Sum256(raw)
	e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.Policies().InsertBundle(ctx, store.PolicyBundle{Revision: revision, Digest: sum[:], Bundle: raw,
			Manifest: `{"revision":"` + revision + `"}`, UploadedBy: "usr_mallory"}); err != nil {
			return err
		}
		_, err := tx.Policies().Activate(ctx, store.PolicyActivation{Revision: revision, ActivatedBy: "usr_mallory", ApprovedBy: "usr_mallory", LedgerIndex: index})
		return err
	})
}
