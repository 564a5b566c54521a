package decision_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
	"github.com/agentsigna/agentsigna/ledger"
)

// Someone who can write the organization's rows (its database role may
// insert into policy_bundles and policy_activations) stores a bundle that
// allows everything and an activation of it, with no signature, no second
// person and no ledger entry, or naming an entry that is not its own.
// Neither the running service nor a new process decides under it: the
// active revision is the one its activation's entry says, or none.
func TestActivationRowsMustBeTheLogs(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			at := func(i uint64) *uint64 { return &i }
			refused := func(t *testing.T, e *serviceEnv, agent store.Agent, why string) {
				t.Helper()
				_, _, fresh := e.newService(t, e.ledger, decision.Config{})
				for name, svc := range map[string]*decision.Service{"the running service": e.service, "a new process": fresh} {
					resp, err := svc.Decide(context.Background(), e.org, agent.ID, action("inventory.reorder"), "")
					if err == nil || !strings.Contains(err.Error(), "its activation is not the one the organization's log records") || !strings.Contains(err.Error(), why) {
						t.Fatalf("%s decided under a planted activation: %+v, %v; want it refused: %s", name, resp, err, why)
					}
				}
			}
			for _, tc := range []struct {
				name string
				// index is the planted row's ledger index, given the
				// legitimate activation's and a newer decision's entry.
				index func(legit, decision uint64) *uint64
				why   string
			}{
				{"the real activation's entry", func(legit, _ uint64) *uint64 { return at(legit) }, `is policy.activate of "acme-example-1"`},
				{"a newer entry of another kind", func(_, decision uint64) *uint64 { return at(decision) }, "is decision of"},
				{"an index past the log", func(uint64, uint64) *uint64 { return at(1 << 40) }, "entry 1099511627776"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					e, agent, _ := payingEnv(t, kind)
					legit := e.activationIndex(t)
					resp := e.decide(t, agent.ID, action("inventory.reorder"), "")
					if resp.Outcome != decision.Deny {
						t.Fatalf("before: %s %v", resp.Outcome, resp.Reasons)
					}
					e.plantActivation(t, "evil-1", tc.index(legit, resp.Ledger.Index))
					refused(t, e, agent, tc.why)
				})
			}
			// The store, and on PostgreSQL the table's trigger whatever the
			// writer, refuses an activation that names no entry: it would
			// pass as a row from before the binding.
			t.Run("no ledger index", func(t *testing.T) {
				e, agent, _ := payingEnv(t, kind)
				if err := e.tryPlantActivation(t, "evil-1", nil); !errors.Is(err, store.ErrInvalid) {
					t.Fatalf("an activation naming no entry: %v", err)
				}
				if resp := e.decide(t, agent.ID, action("inventory.reorder"), ""); resp.Outcome != decision.Deny {
					t.Fatalf("after: %s %v", resp.Outcome, resp.Reasons)
				}
			})
			// Two real activations; a planted third names the first's entry
			// to bring its revision back: the entry names activation 1.
			t.Run("an activation replayed", func(t *testing.T) {
				e, agent, _ := payingEnv(t, kind)
				first := e.activationIndex(t)
				e.activate(t, permissiveBundle(t))
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
				if _, err := fresh.Decide(context.Background(), e.org, agent.ID, action("inventory.reorder"), ""); err == nil || !strings.Contains(err.Error(), "records activation 1, not 3") {
					t.Fatalf("a replayed activation: %v", err)
				}
			})
			// A planted row that names nothing true stops its organization
			// only until the next real activation, which takes the next seq.
			t.Run("a planted row stops only itself", func(t *testing.T) {
				e, agent, _ := payingEnv(t, kind)
				e.plantActivation(t, "evil-1", at(1<<40))
				refused(t, e, agent, "entry 1099511627776")
				e.activate(t, permissiveBundle(t))
				_, _, fresh := e.newService(t, e.ledger, decision.Config{})
				if resp, err := fresh.Decide(context.Background(), e.org, agent.ID, action("inventory.reorder"), ""); err != nil || resp.Outcome != decision.Allow {
					t.Fatalf("after a real activation: %+v, %v", resp, err)
				}
			})
			// A row or bundle edited in place (on SQLite, by whoever can
			// write the file, its triggers dropped) no longer says what the
			// log does: the bytes, the people, the kind of activation.
			for _, tc := range []struct{ name, stmt, why string }{
				{"stored bytes swapped", `UPDATE policy_bundles SET bundle = X'` + hex.EncodeToString(permissiveBundle(t)) + `'`, "are not the bundle uploaded"},
				{"approver rewritten", `UPDATE policy_activations SET approved_by = 'usr_mallory'`, "records another activation"},
				{"made a rollback", `UPDATE policy_activations SET rollback = 1`, "is policy.activate of"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					if kind != "sqlite" {
						t.Skip("edited here through the SQLite file")
					}
					e, agent, _ := payingEnv(t, kind)
					sqlitetest.Tamper(t, e.backend.(*sqlite.Store).TenantFile(e.org.ID), tc.stmt)
					// (The running service keeps the revision it loaded and
					// checked before the edit.)
					_, _, fresh := e.newService(t, e.ledger, decision.Config{})
					resp, err := fresh.Decide(context.Background(), e.org, agent.ID, action("inventory.reorder"), "")
					if err == nil || !strings.Contains(err.Error(), tc.why) {
						t.Fatalf("a new process under an edited activation: %+v, %v; want it refused: %s", resp, err, tc.why)
					}
				})
			}
			// Rows from before rows named their entries are trusted as
			// before while none does; an entry from then (no seq) binds no
			// row, so one cannot be replayed either.
			t.Run("rows from before the binding", func(t *testing.T) {
				if kind != "sqlite" {
					t.Skip("rows without an entry are made here by editing the SQLite file, its triggers dropped")
				}
				e := newServiceEnv(t, kind)
				agent := e.agent(t, store.RiskLow)
				ctx := context.Background()
				b, err := e.policies.Upload(ctx, e.org, permissiveBundle(t), "usr_author")
				if err != nil {
					t.Fatal(err)
				}
				old, err := e.ledger.Append(ctx, e.log(), ledger.Entry{Kind: "policy.activate", Subject: b.Revision,
					Record: []byte(`{"event":"activate","revision":"` + b.Revision + `","bundle_sha256":"` + b.Digest + `","by":"usr_author","approved_by":"usr_reviewer"}`)})
				if err != nil {
					t.Fatal(err)
				}
				sqlitetest.Tamper(t, e.backend.(*sqlite.Store).TenantFile(e.org.ID),
					`INSERT INTO policy_activations (tenant_id, seq, revision, rollback, activated_by, approved_by, activated_at)
					 VALUES ('`+e.org.ID+`', 1, '`+b.Revision+`', 0, 'usr_author', 'usr_reviewer', '2026-11-01T00:00:00Z')`)
				_, _, fresh := e.newService(t, e.ledger, decision.Config{})
				if resp, err := fresh.Decide(ctx, e.org, agent.ID, action("inventory.reorder"), ""); err != nil || resp.Outcome != decision.Allow {
					t.Fatalf("under a row from before the binding: %+v, %v", resp, err)
				}
				e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					_, err := tx.Policies().Activate(ctx, store.PolicyActivation{Revision: b.Revision, ActivatedBy: "usr_author", ApprovedBy: "usr_reviewer", LedgerIndex: &old.Index})
					return err
				})
				refused(t, e, agent, "records activation 0, not 2")
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
	if err := e.tryPlantActivation(t, revision, index); err != nil {
		t.Fatal(err)
	}
}

// tryPlantActivation is plantActivation, returning the store's refusal.
func (e *serviceEnv) tryPlantActivation(t *testing.T, revision string, index *uint64) error {
	t.Helper()
	raw := regoBundle(t, revision, "package tenant\n\ndecision := {\"allow\": true}\n")
	sum := sha256.Sum256(raw)
	return e.backend.InTenantTx(context.Background(), e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
		planted := uint64(0) // naming an entry, as a new row must
		if err := tx.Policies().InsertBundle(ctx, store.PolicyBundle{Revision: revision, Digest: sum[:], Bundle: raw,
			Manifest: `{"revision":"` + revision + `"}`, UploadedBy: "usr_mallory", LedgerIndex: &planted}); err != nil {
			return err
		}
		_, err := tx.Policies().Activate(ctx, store.PolicyActivation{Revision: revision, ActivatedBy: "usr_mallory", ApprovedBy: "usr_mallory", LedgerIndex: index})
		return err
	})
}

// Policy records give the bundle's SHA-256 in hex, as older builds read
// it; an activation whose record gives it in standard base64 (DESIGN §3),
// as a later build will write, binds its row too, and a digest of other
// bytes in either encoding does not.
func TestActivationRecordDigests(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				encode  func([]byte) string
				other   bool // the digest of other bytes
				allowed bool
			}{
				{"hex, as written today", hex.EncodeToString, false, true},
				{"base64, as a later build writes", base64.StdEncoding.EncodeToString, false, true},
				{"hex of other bytes", hex.EncodeToString, true, false},
				{"base64 of other bytes", base64.StdEncoding.EncodeToString, true, false},
			} {
				t.Run(tc.name, func(t *testing.T) {
					e := newServiceEnv(t, kind)
					agent := e.agent(t, store.RiskLow)
					ctx := context.Background()
					raw := permissiveBundle(t)
					b, err := e.policies.Upload(ctx, e.org, raw, "usr_author")
					if err != nil {
						t.Fatal(err)
					}
					sum := sha256.Sum256(raw)
					upload, rec := e.entryAt(t, e.ledgerSize(t)-1)
					if upload.Kind != "policy.upload" || !strings.Contains(string(rec), `"bundle_sha256":"`+base64.StdEncoding.EncodeToString(sum[:])+`"`) {
						t.Fatalf("the upload's record: %s %s", upload.Kind, rec)
					}
					if tc.other {
						sum = sha256.Sum256([]byte("other bytes"))
					}
					old, err := e.ledger.Append(ctx, e.log(), ledger.Entry{Kind: "policy.activate", Subject: b.Revision,
						Record: []byte(`{"event":"activate","seq":1,"revision":"` + b.Revision + `","bundle_sha256":"` + tc.encode(sum[:]) + `","by":"usr_author","approved_by":"usr_reviewer"}`)})
					if err != nil {
						t.Fatal(err)
					}
					e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
						_, err := tx.Policies().Activate(ctx, store.PolicyActivation{Revision: b.Revision, ActivatedBy: "usr_author", ApprovedBy: "usr_reviewer", LedgerIndex: &old.Index})
						return err
					})
					_, _, fresh := e.newService(t, e.ledger, decision.Config{})
					resp, err := fresh.Decide(ctx, e.org, agent.ID, action("inventory.reorder"), "")
					switch {
					case tc.allowed && (err != nil || resp.Outcome != decision.Allow):
						t.Fatalf("under an activation the log records: %+v, %v", resp, err)
					case !tc.allowed && (err == nil || !strings.Contains(err.Error(), "records another activation")):
						t.Fatalf("under an activation of other bytes: %+v, %v", resp, err)
					}
				})
			}
		})
	}
}

// An activation proves the upload entry its revision's row names: a
// revision the organization's database role inserted (bytes and digest
// that agree) is not approved and logged, whatever entry it names, unless
// the log records that very upload. A row from before bundles named their
// entry is taken as stored.
func TestActivationProvesTheUpload(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			ctx := context.Background()
			real, err := e.policies.Upload(ctx, e.org, permissiveBundle(t), "usr_author")
			if err != nil {
				t.Fatal(err)
			}
			realIndex := e.ledgerSize(t) - 1
			plant := func(revision string, index *uint64) {
				t.Helper()
				raw := regoBundle(t, revision, "package tenant\n\ndecision := {\"allow\": true}\n")
				sum := sha256.Sum256(raw)
				e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
					return tx.Policies().InsertBundle(ctx, store.PolicyBundle{Revision: revision, Digest: sum[:], Bundle: raw,
						Manifest: `{"revision":"` + revision + `"}`, UploadedBy: "usr_mallory", LedgerIndex: index})
				})
			}
			// logUpload logs an upload of revision (recorded as of recorded,
			// by, and with extra members); the planted rows are unsigned,
			// by usr_mallory.
			logUpload := func(revision, recorded, digest, by, extra string) *uint64 {
				t.Helper()
				a, err := e.ledger.Append(ctx, e.log(), ledger.Entry{Kind: "policy.upload", Subject: revision,
					Record: []byte(`{"event":"upload","revision":"` + recorded + `","bundle_sha256":"` + digest + `","by":"` + by + `"` + extra + `}`)})
				if err != nil {
					t.Fatal(err)
				}
				return &a.Index
			}
			digestOf := func(revision string) string {
				sum := sha256.Sum256(regoBundle(t, revision, "package tenant\n\ndecision := {\"allow\": true}\n"))
				return hex.EncodeToString(sum[:])
			}
			at := func(i uint64) *uint64 { return &i }
			for _, tc := range []struct {
				name, revision string
				index          func() *uint64
				why            string
			}{
				{"naming another revision's upload", "evil-1", func() *uint64 { return at(realIndex) }, "is not the upload"},
				{"naming an index past the log", "evil-2", func() *uint64 { return at(1 << 40) }, "is not the upload"},
				{"naming an upload of other bytes", "evil-3", func() *uint64 { return logUpload("evil-3", "evil-3", strings.Repeat("0", 64), "usr_mallory", "") }, "records another upload"},
				{"naming an upload by someone else", "evil-4", func() *uint64 { return logUpload("evil-4", "evil-4", digestOf("evil-4"), "usr_author", "") }, "records another upload"},
				{"naming a signed upload", "evil-5", func() *uint64 {
					return logUpload("evil-5", "evil-5", digestOf("evil-5"), "usr_mallory", `,"signed_by":"ci"`)
				}, "records another upload"},
				{"naming an entry whose record is of another revision", "evil-6", func() *uint64 {
					return logUpload("evil-6", "evil-7", digestOf("evil-6"), "usr_mallory", "")
				}, "records another upload"},
				{"naming an upload entry whose record does not decode", "evil-8", func() *uint64 {
					a, err := e.ledger.Append(ctx, e.log(), ledger.Entry{Kind: "policy.upload", Subject: "evil-8", Record: []byte("not JSON")})
					if err != nil {
						t.Fatal(err)
					}
					return &a.Index
				}, "does not decode"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					plant(tc.revision, tc.index())
					before := e.ledgerSize(t)
					_, err := e.policies.Activate(ctx, e.org, tc.revision, "usr_author", "usr_reviewer", false)
					if err == nil || !strings.Contains(err.Error(), "the revision is not the upload the organization's log records") || !strings.Contains(err.Error(), tc.why) {
						t.Fatalf("a planted revision activated: %v; want it refused: %s", err, tc.why)
					}
					if after := e.ledgerSize(t); after != before {
						t.Fatalf("the log grew from %d to %d entries", before, after)
					}
				})
			}
			if _, err := e.policies.Activate(ctx, e.org, real.Revision, "usr_author", "usr_reviewer", false); err != nil {
				t.Fatalf("an upload through the service: %v", err)
			}
			// The upload the log records, exactly: activated.
			plant("logged-1", logUpload("logged-1", "logged-1", digestOf("logged-1"), "usr_mallory", ""))
			if _, err := e.policies.Activate(ctx, e.org, "logged-1", "usr_author", "usr_reviewer", false); err != nil {
				t.Fatalf("a revision whose upload the log records: %v", err)
			}
			// The very bytes someone is about to upload, planted first: the
			// upload is refused, not reported done (it logs nothing, and the
			// planted row never activates).
			plant("pre-1", at(realIndex))
			before := e.ledgerSize(t)
			if _, err := e.policies.Upload(ctx, e.org, regoBundle(t, "pre-1", "package tenant\n\ndecision := {\"allow\": true}\n"), "usr_author"); err == nil ||
				!strings.Contains(err.Error(), "the revision is not the upload the organization's log records") {
				t.Fatalf("an upload of bytes planted before it: %v", err)
			}
			if after := e.ledgerSize(t); after != before {
				t.Fatalf("the log grew from %d to %d entries", before, after)
			}
			if kind != "sqlite" {
				return // a row naming no entry is refused there (TestPolicyRowsNameTheirEntryForAnyWriter)
			}
			raw := regoBundle(t, "old-1", "package tenant\n\ndecision := {\"allow\": true}\n")
			sum := sha256.Sum256(raw)
			sqlitetest.Tamper(t, e.backend.(*sqlite.Store).TenantFile(e.org.ID),
				`INSERT INTO policy_bundles (tenant_id, revision, digest, bundle, manifest, signed, uploaded_by, uploaded_at)
				 VALUES ('`+e.org.ID+`', 'old-1', X'`+hex.EncodeToString(sum[:])+`', X'`+hex.EncodeToString(raw)+`', '{}', 0, 'usr_author', '2026-11-01T00:00:00Z')`)
			if _, err := e.policies.Activate(ctx, e.org, "old-1", "usr_author", "usr_reviewer", true); err != nil {
				t.Fatalf("a revision from before bundles named their upload: %v", err)
			}
		})
	}
}
