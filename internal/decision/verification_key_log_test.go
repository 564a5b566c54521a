package decision_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"

	opabundle "github.com/open-policy-agent/opa/v1/bundle"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
)

// Someone who can write the organization's rows (its database role may
// insert into policy_verification_keys) adds a bundle verification key of
// their own, naming an entry that is not its registration. A bundle signed
// with it is not uploaded as signed, and no upload or activation goes on
// while the stored keys are not those the log registered; nothing is
// logged. A key whose registration the log does record is trusted.
func TestPlantedVerificationKeyIsRefused(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind, func(t *testing.T) {
			e := newServiceEnv(t, kind)
			ctx := context.Background()
			ciPriv, ciPub := newECKey(t, elliptic.P256())
			malloryPriv, malloryPub := newECKey(t, elliptic.P256())
			// keyEntry logs a policy.verification_key entry about subject
			// with record rec.
			keyEntry := func(org decision.Organization, subject string, rec []byte) *uint64 {
				t.Helper()
				a, err := e.ledger.Append(ctx, e.ledger.TenantLog(org.ID, org.Slug), ledger.Entry{Kind: "policy.verification_key", Subject: subject, Record: rec})
				if err != nil {
					t.Fatal(err)
				}
				return &a.Index
			}
			keyRecord := func(kid, alg string, pub []byte) []byte {
				rec, _ := json.Marshal(map[string]string{"event": "verification_key", "kid": kid, "algorithm": alg, "public_pem": string(pub), "by": "usr_mallory"})
				return rec
			}
			at := func(i uint64) *uint64 { return &i }
			n := 0
			// newOrg is an organization that registered key "ci" through
			// the service (its entry's index is ci) and uploaded v1 signed
			// with it.
			newOrg := func(t *testing.T) (org decision.Organization, ci uint64) {
				t.Helper()
				n++
				tn := storetest.CreateTenant(t, e.backend, fmt.Sprintf("org%d", n))
				org = decision.Organization{ID: tn.ID, Slug: tn.Slug}
				if err := e.policies.AddVerificationKey(ctx, org, "ci", "", ciPub, "usr_admin"); err != nil {
					t.Fatal(err)
				}
				cp, err := e.ledger.LatestCheckpoint(ctx, e.ledger.TenantLog(org.ID, org.Slug))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.policies.Upload(ctx, org, signedBundle(t, exampleBundle(t, "v1", false), ciPriv, "ES256", "ci"), "usr_author"); err != nil {
					t.Fatal(err)
				}
				return org, cp.Size - 1
			}
			plant := func(t *testing.T, org decision.Organization, alg string, index *uint64) {
				t.Helper()
				e.inTenant(t, org.ID, func(ctx context.Context, tx store.TenantTx) error {
					return tx.Policies().AddVerificationKey(ctx, store.PolicyVerificationKey{KID: "evil", PublicPEM: string(malloryPub), Algorithm: alg, LedgerIndex: index})
				})
			}
			size := func(org decision.Organization) uint64 {
				cp, err := e.ledger.LatestCheckpoint(ctx, e.ledger.TenantLog(org.ID, org.Slug))
				if err != nil {
					t.Fatal(err)
				}
				return cp.Size
			}
			mallorys := signedBundle(t, exampleBundle(t, "v2", false), malloryPriv, "ES256", "evil")
			for _, tc := range []struct {
				name  string
				index func(org decision.Organization, ci uint64) *uint64
				why   string
			}{
				{"naming the real key's entry", func(_ decision.Organization, ci uint64) *uint64 { return at(ci) }, `is policy.verification_key of "ci"`},
				{"naming an index past the log", func(decision.Organization, uint64) *uint64 { return at(1 << 40) }, "not proven"},
				{"naming an upload entry", func(org decision.Organization, _ uint64) *uint64 {
					a, err := e.ledger.Append(ctx, e.ledger.TenantLog(org.ID, org.Slug), ledger.Entry{Kind: "policy.upload", Subject: "evil", Record: keyRecord("evil", "ES256", malloryPub)})
					if err != nil {
						t.Fatal(err)
					}
					return &a.Index
				}, `is policy.upload of "evil"`},
				{"naming the registration of another key", func(org decision.Organization, _ uint64) *uint64 {
					return keyEntry(org, "evil", keyRecord("evil", "ES256", newPEMKey(t)))
				}, "registered another key or algorithm"},
				{"naming a registration for another algorithm", func(org decision.Organization, _ uint64) *uint64 {
					return keyEntry(org, "evil", keyRecord("evil", "ES384", malloryPub))
				}, "registered another key or algorithm"},
				{"naming a registration whose record is of another kid", func(org decision.Organization, _ uint64) *uint64 {
					return keyEntry(org, "evil", keyRecord("ci", "ES256", malloryPub))
				}, "registered another key or algorithm"},
				{"naming an entry whose record does not decode", func(org decision.Organization, _ uint64) *uint64 {
					return keyEntry(org, "evil", []byte("not JSON"))
				}, "does not decode"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					org, ci := newOrg(t)
					plant(t, org, "ES256", tc.index(org, ci))
					before := size(org)
					refused := func(what string, err error) {
						t.Helper()
						if err == nil || !strings.Contains(err.Error(), `verification key "evil": the bundle verification key is not one the organization's log registered`) ||
							!strings.Contains(err.Error(), tc.why) {
							t.Fatalf("%s under a planted key: %v; want it refused: %s", what, err, tc.why)
						}
					}
					_, err := e.policies.Upload(ctx, org, mallorys, "usr_mallory")
					refused("an upload signed with it", err)
					_, err = e.policies.Upload(ctx, org, signedBundle(t, exampleBundle(t, "v3", false), ciPriv, "ES256", "ci"), "usr_author")
					refused("an upload signed with the real key", err)
					_, err = e.policies.Activate(ctx, org, "v1", "usr_author", "usr_reviewer", false)
					refused("an activation", err)
					if after := size(org); after != before {
						t.Fatalf("the log grew from %d to %d entries", before, after)
					}
				})
			}
			// A planted key that is no key at all is refused as not the
			// log's, not reported as the organization's broken key; and it
			// does not stop the active revision loading (in a process
			// started after it), whose activation is proven.
			t.Run("a planted key that does not parse", func(t *testing.T) {
				org, _ := newOrg(t)
				if _, err := e.policies.Activate(ctx, org, "v1", "usr_author", "usr_reviewer", false); err != nil {
					t.Fatal(err)
				}
				e.inTenant(t, org.ID, func(ctx context.Context, tx store.TenantTx) error {
					return tx.Policies().AddVerificationKey(ctx, store.PolicyVerificationKey{KID: "aaa", PublicPEM: "junk", Algorithm: "ES256", LedgerIndex: at(0)})
				})
				if _, err := e.policies.Upload(ctx, org, signedBundle(t, exampleBundle(t, "v3", false), ciPriv, "ES256", "ci"), "usr_author"); err == nil ||
					!strings.Contains(err.Error(), `verification key "aaa": the bundle verification key is not one the organization's log registered`) {
					t.Fatalf("an upload under a planted key that does not parse: %v", err)
				}
				engine, restarted, _ := e.newService(t, e.ledger, decision.Config{})
				if err := restarted.LoadActive(ctx, org); err != nil {
					t.Fatalf("loading the active revision with a planted key that does not parse: %v", err)
				}
				if rev, _ := engine.ActiveRevision(org.ID); rev != "v1" {
					t.Fatalf("active revision %q, want v1", rev)
				}
			})
			// A key the log registered exactly is the organization's.
			org, _ := newOrg(t)
			plant(t, org, "ES256", keyEntry(org, "evil", keyRecord("evil", "ES256", malloryPub)))
			if _, err := e.policies.Upload(ctx, org, mallorys, "usr_mallory"); err != nil {
				t.Fatalf("a bundle signed with a key the log registered: %v", err)
			}
			if _, err := e.policies.Activate(ctx, org, "v1", "usr_author", "usr_reviewer", false); err != nil {
				t.Fatalf("an activation under keys the log registered: %v", err)
			}
			// A key the log registered that does not parse (no build of
			// the service logs one) is refused as unusable, not skipped.
			t.Run("a logged key that does not parse", func(t *testing.T) {
				org, _ := newOrg(t)
				index := keyEntry(org, "junk", keyRecord("junk", "ES256", []byte("junk")))
				e.inTenant(t, org.ID, func(ctx context.Context, tx store.TenantTx) error {
					return tx.Policies().AddVerificationKey(ctx, store.PolicyVerificationKey{KID: "junk", PublicPEM: "junk", Algorithm: "ES256", LedgerIndex: index})
				})
				if _, err := e.policies.Upload(ctx, org, signedBundle(t, exampleBundle(t, "v3", false), ciPriv, "ES256", "ci"), "usr_author"); err == nil ||
					!strings.Contains(err.Error(), `stored verification key "junk"`) {
					t.Fatalf("an upload under a logged key that does not parse: %v", err)
				}
			})
			if kind != "sqlite" {
				return // a row naming no entry is refused there (TestPolicyRowsNameTheirEntryForAnyWriter)
			}
			// A key from before keys named their entry is taken as stored.
			org, _ = newOrg(t)
			sqlitetest.Tamper(t, e.backend.(*sqlite.Store).TenantFile(org.ID),
				`INSERT INTO policy_verification_keys (tenant_id, kid, public_pem, algorithm, created_at)
				 VALUES ('`+org.ID+`', 'evil', '`+string(malloryPub)+`', 'ES256', '2026-11-01T00:00:00Z')`)
			if _, err := e.policies.Upload(ctx, org, mallorys, "usr_author"); err != nil {
				t.Fatalf("a bundle signed with a key from before keys named their entry: %v", err)
			}
			// Such a key does not end the proof of the keys after it.
			e.inTenant(t, org.ID, func(ctx context.Context, tx store.TenantTx) error {
				return tx.Policies().AddVerificationKey(ctx, store.PolicyVerificationKey{KID: "zzz", PublicPEM: string(malloryPub), Algorithm: "ES256", LedgerIndex: at(1 << 40)})
			})
			if _, err := e.policies.Upload(ctx, org, signedBundle(t, exampleBundle(t, "v4", false), ciPriv, "ES256", "ci"), "usr_author"); err == nil ||
				!strings.Contains(err.Error(), "is not one the organization's log registered") {
				t.Fatalf("a planted key after one from before keys named their entry: %v", err)
			}
		})
	}
}

// newECKey is a fresh ECDSA key on curve, as PKCS #8 and PKIX PEM.
func newECKey(t *testing.T, curve elliptic.Curve) (private, public []byte) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
}

// signedBundle is raw signed as `opa build --signing-key K --signing-alg
// alg` signs it, by OPA's own code, under key id kid.
func signedBundle(t *testing.T, raw, privPEM []byte, alg, kid string) []byte {
	t.Helper()
	b, err := opabundle.NewReader(bytes.NewReader(raw)).Read()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.GenerateSignature(opabundle.NewSigningConfig(string(privPEM), alg, ""), kid, false); err != nil {
		t.Fatal(err)
	}
	var signed bytes.Buffer
	if err := opabundle.NewWriter(&signed).Write(b); err != nil {
		t.Fatal(err)
	}
	return signed.Bytes()
}
