package decision_test

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
	"github.com/agentsigna/agentsigna/ledger"
)

// A policy change whose row the store fails to write leaves nothing in the
// log: no entry records an upload, activation or key that is not stored.
func TestPolicyChangeFailingLeavesNoEntry(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e := newPolicyEnv(t, kind)
			ctx := context.Background()
			if _, err := e.policies.Upload(ctx, e.org, exampleBundle(t, "v1", false), "usr_author"); err != nil {
				t.Fatal(err)
			}
			// Another process's Policies, whose ledger batches go through
			// a store that fails every policy write.
			failing, err := ledger.New(ledger.Config{Tenants: failingPolicyWrites{e.backend}, Platform: e.backend, Keys: e.keys, Origin: "agentsigna.test"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(failing.Close)
			p := decision.NewPolicies(e.backend, failing, bundles.NewEngine(), decision.PoliciesOptions{})
			lg := e.ledger.TenantLog(e.org.ID, e.org.Slug)
			size := func() uint64 {
				t.Helper()
				cp, err := e.ledger.LatestCheckpoint(ctx, lg)
				if err != nil {
					t.Fatal(err)
				}
				return cp.Size
			}
			before := size()
			for name, change := range map[string]func() error{
				"upload": func() error {
					_, err := p.Upload(ctx, e.org, exampleBundle(t, "v2", false), "usr_author")
					return err
				},
				"activation": func() error {
					_, err := p.Activate(ctx, e.org, "v1", "usr_author", "usr_reviewer", false)
					return err
				},
				"verification key": func() error { return p.AddVerificationKey(ctx, e.org, "k1", "", newPEMKey(t), "usr_admin") },
			} {
				if err := change(); !errors.Is(err, errInjectedWrite) {
					t.Errorf("%s: %v, want the store's failure", name, err)
				}
				if now := size(); now != before {
					t.Errorf("%s: the log grew from %d to %d entries for a change not stored", name, before, now)
				}
			}
			// Nothing half-done stands in the way of the same changes.
			if _, err := e.policies.Activate(ctx, e.org, "v1", "usr_author", "usr_reviewer", false); err != nil {
				t.Fatal(err)
			}
			if rep, err := e.ledger.Check(ctx, lg, ""); err != nil || rep.Problem != nil || rep.Size != before+1 {
				t.Fatalf("check: %+v, %v", rep, err)
			}
		})
	}
}

var errInjectedWrite = errors.New("injected: the store failed the write")

// failingPolicyWrites is a store whose transactions fail every policy
// write (and read as usual).
type failingPolicyWrites struct{ store.TenantStore }

func (s failingPolicyWrites) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	return s.TenantStore.InTenantTx(ctx, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		return fn(ctx, failingPolicyTx{tx})
	})
}

type failingPolicyTx struct{ store.TenantTx }

func (t failingPolicyTx) Policies() store.PolicyTx { return failingPolicies{t.TenantTx.Policies()} }

type failingPolicies struct{ store.PolicyTx }

func (failingPolicies) InsertBundle(context.Context, store.PolicyBundle) error {
	return errInjectedWrite
}

func (failingPolicies) Activate(context.Context, store.PolicyActivation) (store.PolicyActivation, error) {
	return store.PolicyActivation{}, errInjectedWrite
}

func (failingPolicies) AddVerificationKey(context.Context, store.PolicyVerificationKey) error {
	return errInjectedWrite
}

// Two activations from one revision at once, in one process and one
// ledger batch (it lingers until both are in, and commits once): the
// second's check sees the first's change, so only one passes, and the log
// records that one alone.
func TestPolicyChangesInOneBatch(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			e := newPolicyEnv(t, kind)
			ctx := context.Background()
			for _, rev := range []string{"v1", "v2", "v3"} {
				if _, err := e.policies.Upload(ctx, e.org, exampleBundle(t, rev, false), "usr_author"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := e.policies.Activate(ctx, e.org, "v1", "usr_author", "usr_reviewer", false); err != nil {
				t.Fatal(err)
			}
			stages := ledger.NewStages()
			lingering, err := ledger.New(ledger.Config{Tenants: e.backend, Platform: e.backend, Keys: e.keys, Origin: "agentsigna.test",
				MaxWait: time.Minute, MaxBatch: 2, Stages: stages})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(lingering.Close)
			p := decision.NewPolicies(e.backend, lingering, bundles.NewEngine(), decision.PoliciesOptions{})
			errs := make(chan error, 2)
			for _, rev := range []string{"v2", "v3"} {
				go func() {
					_, err := p.Activate(ctx, e.org, rev, "usr_author", "usr_reviewer", false)
					errs <- err
				}()
			}
			var won, lost int
			for range 2 {
				switch err := <-errs; {
				case err == nil:
					won++
				case errors.Is(err, store.ErrConflict):
					lost++
				default:
					t.Fatalf("an activation: %v", err)
				}
			}
			if won != 1 || lost != 1 {
				t.Fatalf("%d activations passed, %d refused; want one each", won, lost)
			}
			if n := stages.Snapshots()[ledger.StageCommit].Count(); n != 1 {
				t.Fatalf("%d batches committed, want both in one", n)
			}
			kinds, _ := e.policyEntries(t)
			if n := countOf(kinds, "policy.activate"); n != 2 {
				t.Fatalf("the log records %d activations (%v), want v1's and the winner's", n, kinds)
			}
		})
	}
}

func countOf(kinds []string, kind string) int {
	n := 0
	for _, k := range kinds {
		if k == kind {
			n++
		}
	}
	return n
}

// Two refusals that keep what the log says and what the store holds the
// same: a key file with invalid UTF-8 (PEM skips text before the key, but
// the ledger record, JSON, could not hold it as stored), and an
// activation of a revision whose stored bytes are not the ones uploaded
// (edited in the SQLite file): neither changes the store or the log.
func TestPolicyChangesRefusedBeforeTheLog(t *testing.T) {
	e := newPolicyEnv(t, "sqlite")
	ctx := context.Background()
	if _, err := e.policies.Upload(ctx, e.org, exampleBundle(t, "v1", false), "usr_author"); err != nil {
		t.Fatal(err)
	}
	kinds, _ := e.policyEntries(t)
	if err := e.policies.AddVerificationKey(ctx, e.org, "ci", "", append([]byte("Schl\xfcssel\n"), newPEMKey(t)...), "usr_admin"); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a key file with invalid UTF-8: %v", err)
	}
	// Another bundle of the same revision, which compiles: only its
	// digest tells it from the one uploaded.
	sqlitetest.Tamper(t, e.backend.(*sqlite.Store).TenantFile(e.org.ID), `UPDATE policy_bundles SET bundle = X'`+hex.EncodeToString(exampleBundle(t, "v1", true))+`'`)
	if _, err := e.policies.Activate(ctx, e.org, "v1", "usr_author", "usr_reviewer", false); err == nil || !strings.Contains(err.Error(), "are not the bundle uploaded") {
		t.Fatalf("an activation of bytes never uploaded: %v", err)
	}
	if after, _ := e.policyEntries(t); len(after) != len(kinds) {
		t.Fatalf("the log went from %v to %v", kinds, after)
	}
	var keys []store.PolicyVerificationKey
	var acts []store.PolicyActivation
	err := e.backend.InTenantTx(ctx, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if keys, err = tx.Policies().VerificationKeys(ctx); err != nil {
			return err
		}
		acts, err = tx.Policies().Activations(ctx)
		return err
	})
	if err != nil || len(keys) != 0 || len(acts) != 0 {
		t.Fatalf("stored: %d keys, %d activations, %v", len(keys), len(acts), err)
	}
}
