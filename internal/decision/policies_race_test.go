package decision_test

import (
	"context"
	"crypto/elliptic"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
)

// afterFirstTx runs after, once its first tenant transaction has ended:
// another process's change lands between a policy change's read and its
// ledger batch.
type afterFirstTx struct {
	store.Backend
	once  sync.Once
	after func()
}

func (a *afterFirstTx) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	err := a.Backend.InTenantTx(ctx, tenantID, fn)
	a.once.Do(a.after)
	return err
}

// overtakenBy is a Policies of another process whose first read is
// followed, before its ledger batch, by after.
func (e *policyEnv) overtakenBy(after func()) *decision.Policies {
	return decision.NewPolicies(&afterFirstTx{Backend: e.backend, after: after}, e.ledger, bundles.NewEngine(), decision.PoliciesOptions{})
}

// A policy change whose read another process's change has overtaken is
// refused with nothing in the ledger: the entry and the stored change
// commit together, under the log's lock, only if the change still
// applies. Before, each was written to the ledger first and stored after,
// and the ledger showed both.
func TestPolicyChangesRacingAnotherProcess(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			t.Run("upload of a revision uploaded meanwhile with other content", func(t *testing.T) {
				e := newPolicyEnv(t, kind)
				other := exampleBundle(t, "v1", true)
				p := e.overtakenBy(func() {
					if _, err := e.policies.Upload(ctx, e.org, other, "usr_bob"); err != nil {
						t.Error(err)
					}
				})
				if _, err := p.Upload(ctx, e.org, exampleBundle(t, "v1", false), "usr_alice"); !errors.Is(err, bundles.ErrRevisionConflict) {
					t.Fatalf("upload: %v, want ErrRevisionConflict", err)
				}
				kinds, recs := e.policyEntries(t)
				if len(kinds) != 1 || recs[0]["by"] != "usr_bob" {
					t.Fatalf("ledger %v %v, want bob's upload alone", kinds, recs)
				}
				if _, err := p.Upload(ctx, e.org, other, "usr_alice"); err != nil {
					t.Errorf("the stored bundle again: %v", err)
				}
			})
			t.Run("upload of the bundle uploaded meanwhile", func(t *testing.T) {
				e := newPolicyEnv(t, kind)
				same := exampleBundle(t, "v1", false)
				p := e.overtakenBy(func() {
					if _, err := e.policies.Upload(ctx, e.org, same, "usr_bob"); err != nil {
						t.Error(err)
					}
				})
				if b, err := p.Upload(ctx, e.org, same, "usr_alice"); err != nil || b.Revision != "v1" {
					t.Fatalf("upload: %v, %v; want the stored bundle", b, err)
				}
				if kinds, recs := e.policyEntries(t); len(kinds) != 1 || recs[0]["by"] != "usr_bob" {
					t.Fatalf("ledger %v %v, want bob's upload alone", kinds, recs)
				}
			})
			t.Run("activation after another activation", func(t *testing.T) {
				e := newPolicyEnv(t, kind)
				for _, rev := range []string{"r23", "r24", "r25"} {
					if _, err := e.policies.Upload(ctx, e.org, exampleBundle(t, rev, false), "usr_author"); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := e.policies.Activate(ctx, e.org, "r23", "usr_a", "usr_b", false); err != nil {
					t.Fatal(err)
				}
				// Both decided against r23 active: r25 is newer, and so was
				// r24 then. Whichever lands second must not pass for an
				// activation made against r23.
				p := e.overtakenBy(func() {
					if _, err := e.policies.Activate(ctx, e.org, "r24", "usr_carol", "usr_dave", false); err != nil {
						t.Error(err)
					}
				})
				if _, err := p.Activate(ctx, e.org, "r25", "usr_alice", "usr_bob", false); !errors.Is(err, store.ErrConflict) {
					t.Fatalf("activation: %v, want ErrConflict", err)
				}
				kinds, recs := e.policyEntries(t)
				last := recs[len(recs)-1]
				if n := strings.Count(strings.Join(kinds, ","), "policy.activate"); n != 2 || last["revision"] != "r24" || last["previous_revision"] != "r23" {
					t.Fatalf("ledger %v, last %v; want r23's and r24's activations alone", kinds, last)
				}
				// Decided again, against r24 active, it goes through.
				act, err := p.Activate(ctx, e.org, "r25", "usr_alice", "usr_bob", false)
				if err != nil || act.Revision != "r25" {
					t.Fatalf("activation decided again: %+v, %v", act, err)
				}
				if _, recs := e.policyEntries(t); recs[len(recs)-1]["previous_revision"] != "r24" {
					t.Fatalf("its record: %v", recs[len(recs)-1])
				}
			})
			t.Run("unsigned upload after a verification key was registered", func(t *testing.T) {
				e := newPolicyEnv(t, kind)
				p := e.overtakenBy(func() {
					if err := e.policies.AddVerificationKey(ctx, e.org, "ci", "", newPEMKey(t), "usr_admin"); err != nil {
						t.Error(err)
					}
				})
				if _, err := p.Upload(ctx, e.org, exampleBundle(t, "v1", false), "usr_alice"); !errors.Is(err, store.ErrConflict) {
					t.Fatalf("upload checked under no key: %v, want ErrConflict", err)
				}
				if _, err := p.Upload(ctx, e.org, exampleBundle(t, "v1", false), "usr_alice"); !errors.Is(err, bundles.ErrUnsigned) {
					t.Fatalf("the upload again: %v, want ErrUnsigned", err)
				}
				if kinds, _ := e.policyEntries(t); len(kinds) != 1 {
					t.Fatalf("ledger %v, want the key alone", kinds)
				}
			})
			t.Run("activation after a verification key was registered", func(t *testing.T) {
				e := newPolicyEnv(t, kind)
				if _, err := e.policies.Upload(ctx, e.org, exampleBundle(t, "v1", false), "usr_author"); err != nil {
					t.Fatal(err)
				}
				p := e.overtakenBy(func() {
					if err := e.policies.AddVerificationKey(ctx, e.org, "ci", "", newPEMKey(t), "usr_admin"); err != nil {
						t.Error(err)
					}
				})
				if _, err := p.Activate(ctx, e.org, "v1", "usr_alice", "usr_bob", false); !errors.Is(err, store.ErrConflict) {
					t.Fatalf("activation decided under no key: %v, want ErrConflict", err)
				}
				if kinds, _ := e.policyEntries(t); strings.Contains(strings.Join(kinds, ","), "policy.activate") {
					t.Fatalf("ledger %v: the refused activation is in it", kinds)
				}
			})
			t.Run("verification key id registered already", func(t *testing.T) {
				e := newPolicyEnv(t, kind)
				if err := e.policies.AddVerificationKey(ctx, e.org, "k", "", newPEMKey(t), "usr_alice"); err != nil {
					t.Fatal(err)
				}
				if err := e.policies.AddVerificationKey(ctx, e.org, "k", "", newPEMKey(t), "usr_mallory"); !errors.Is(err, store.ErrConflict) {
					t.Fatalf("the same id again: %v, want ErrConflict", err)
				}
				if kinds, recs := e.policyEntries(t); len(kinds) != 1 || recs[0]["by"] != "usr_alice" {
					t.Fatalf("ledger %v %v, want alice's key alone", kinds, recs)
				}
				if err := e.policies.AddVerificationKey(ctx, e.org, "k2", "", newPEMKey(t), " "); !errors.Is(err, store.ErrInvalid) {
					t.Fatalf("by nobody: %v, want ErrInvalid", err)
				}
			})
		})
	}
}

// newPEMKey is a fresh P-256 public key, as PKIX PEM (newECKey).
func newPEMKey(t *testing.T) []byte {
	t.Helper()
	_, public := newECKey(t, elliptic.P256())
	return public
}
