package signing_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

func TestJWKSPublishesPublicMembersOnly(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	first := receiptSigner(t, s, kr, acme.ID)
	var second string
	inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		second, err = kr.RotateReceiptKey(ctx, tx.Keys(), acme.ID)
		return err
	})
	raw := receiptJWKS(t, s, kr, acme.ID)

	// Member by member: RFC 7517 §4 plus RFC 8037's crv and x, and no other
	// (in particular no "d", RFC 8037 §2's private member).
	var set struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("%d keys, want the active and the retired one", len(set.Keys))
	}
	want := []string{"alg", "crv", "kid", "kty", "use", "x"}
	for i, k := range set.Keys {
		var names []string
		for name := range k {
			names = append(names, name)
		}
		slices.Sort(names)
		if !slices.Equal(names, want) {
			t.Errorf("key %d has members %v, want %v", i, names, want)
		}
		var x string
		_ = json.Unmarshal(k["x"], &x)
		if b, err := base64.RawURLEncoding.DecodeString(x); err != nil || len(b) != 32 {
			t.Errorf("key %d: x is not a base64url Ed25519 public key", i)
		}
		for member, value := range map[string]string{"kty": `"OKP"`, "crv": `"Ed25519"`, "alg": `"EdDSA"`, "use": `"sig"`} {
			if string(k[member]) != value {
				t.Errorf("key %d: %s = %s, want %s", i, member, k[member], value)
			}
		}
	}
	// Active first, then retired.
	if string(set.Keys[0]["kid"]) != `"`+second+`"` || string(set.Keys[1]["kid"]) != `"`+first.KID()+`"` {
		t.Errorf("kids %s, %s; want %s then %s", set.Keys[0]["kid"], set.Keys[1]["kid"], second, first.KID())
	}
	// Both libraries see public keys only; the kid is the RFC 7638 thumbprint.
	var gj jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &gj); err != nil {
		t.Fatal(err)
	}
	for _, k := range gj.Keys {
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil || !k.IsPublic() || !k.Valid() || k.KeyID != base64.RawURLEncoding.EncodeToString(tp) {
			t.Errorf("go-jose: key %s public=%v valid=%v err=%v", k.KeyID, k.IsPublic(), k.Valid(), err)
		}
	}
	jset, err := jwk.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	for i := range jset.Len() {
		k, _ := jset.Key(i)
		if private, err := jwk.IsPrivateKey(k); err != nil || private {
			t.Errorf("jwx: key %d private=%v err=%v", i, private, err)
		}
	}
}

func TestJWKSReadsNeverCreate(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	for _, purpose := range []store.KeyPurpose{store.PurposeReceipt, store.PurposeToken} {
		inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			got, err := kr.JWKS(ctx, tx.Keys(), acme.ID, purpose)
			if err != nil || string(got) != `{"keys":[]}` {
				t.Errorf("%s: %s, %v", purpose, got, err)
			}
			return nil
		})
	}
	inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if _, err := kr.JWKS(ctx, tx.Keys(), acme.ID, store.PurposeLog); err == nil {
			t.Error("log keys published as a JWKS")
		}
		return nil
	})
}

func TestJWKSRefusesAKeyItCannotDescribe(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Keys().InsertSigningKey(ctx, store.SigningKey{
			KID: "rsa-1", Purpose: store.PurposeReceipt, Algorithm: "RS256",
			PublicKey: []byte("not ed25519"), SealedPrivate: []byte("x"), Status: store.KeyActive,
		})
	})
	inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if got, err := kr.JWKS(ctx, tx.Keys(), acme.ID, store.PurposeReceipt); err == nil {
			t.Errorf("published %s", got)
		}
		return nil
	})
}

// A key row's public column is outside its sealed half's binding. One
// added by someone who can write rows but does not hold the master key —
// their own public key beside junk, or beside another key's seed, or
// another organization's row copied — is neither published nor trusted to
// verify tokens: what they sign would verify otherwise.
func TestKeysWhoseSealedHalfDoesNotDeriveThemAreRefused(t *testing.T) {
	s, kr, master := setup(t)
	beta := storetest.CreateTenant(t, s, "beta")
	betaKeys := map[store.KeyPurpose]store.SigningKey{}
	inTx(t, s, beta.ID, func(ctx context.Context, tx store.TenantTx) error {
		if _, err := kr.FirstReceiptSigner(ctx, tx.Keys(), beta.ID); err != nil {
			return err
		}
		if _, err := kr.TokenKey(ctx, tx.Keys(), beta.ID); err != nil {
			return err
		}
		for _, purpose := range []store.KeyPurpose{store.PurposeReceipt, store.PurposeToken} {
			ks, err := tx.Keys().SigningKeys(ctx, purpose)
			if err != nil {
				return err
			}
			betaKeys[purpose] = ks[0]
		}
		// Checked good where they belong, so that the copies below meet
		// them in the keyring's memory of good rows.
		if _, err := kr.JWKS(ctx, tx.Keys(), beta.ID, store.PurposeReceipt); err != nil {
			return err
		}
		_, err := kr.TokenPublicKeys(ctx, tx.Keys(), beta.ID)
		return err
	})
	attacker, _, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	orgs := 0
	for _, purpose := range []store.KeyPurpose{store.PurposeReceipt, store.PurposeToken} {
		for _, tc := range []struct {
			name string
			row  func(tenantID string) store.SigningKey
		}{
			{"junk for the sealed half", func(string) store.SigningKey {
				return store.SigningKey{KID: "forged", PublicKey: attacker, SealedPrivate: []byte("junk, not sealed")}
			}},
			{"another key's seed sealed for the row", func(tenantID string) store.SigningKey {
				sealed, err := master.Seal(other.Seed(), secrets.Binding{Tenant: tenantID, Table: "signing_keys", Row: "forged", Purpose: string(purpose)})
				if err != nil {
					t.Fatal(err)
				}
				return store.SigningKey{KID: "forged", PublicKey: attacker, SealedPrivate: sealed}
			}},
			{"another organization's row copied", func(string) store.SigningKey {
				k := betaKeys[purpose]
				return store.SigningKey{KID: k.KID, PublicKey: k.PublicKey, SealedPrivate: k.SealedPrivate}
			}},
		} {
			t.Run(string(purpose)+", "+tc.name, func(t *testing.T) {
				orgs++
				org := storetest.CreateTenant(t, s, fmt.Sprintf("org%d", orgs))
				row := tc.row(org.ID)
				row.Purpose, row.Algorithm, row.Status = purpose, signing.ReceiptAlgorithm, store.KeyActive
				if purpose == store.PurposeReceipt {
					// Beside the organization's real key, as a retired one.
					receiptSigner(t, s, kr, org.ID)
					row.Status = store.KeyRetired
				}
				inTx(t, s, org.ID, func(ctx context.Context, tx store.TenantTx) error {
					return tx.Keys().InsertSigningKey(ctx, row)
				})
				inTx(t, s, org.ID, func(ctx context.Context, tx store.TenantTx) error {
					if purpose == store.PurposeToken {
						if keys, err := kr.TokenPublicKeys(ctx, tx.Keys(), org.ID); err == nil {
							t.Errorf("trusted to verify tokens: %v", keys)
						}
						return nil
					}
					if got, err := kr.JWKS(ctx, tx.Keys(), org.ID, purpose); err == nil {
						t.Errorf("published %s", got)
					}
					return nil
				})
			})
		}
	}
}

// A receipt or token key row whose sealed seed and public half agree, but
// whose algorithm is not EdDSA, signs nothing: the row says verifiers
// should read it as another kind of key.
func TestKeysOfAnotherAlgorithmDoNotSign(t *testing.T) {
	s, kr, master := setup(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	for _, purpose := range []store.KeyPurpose{store.PurposeReceipt, store.PurposeToken} {
		org := storetest.CreateTenant(t, s, "es-"+string(purpose))
		sealed, err := master.Seal(priv.Seed(), secrets.Binding{Tenant: org.ID, Table: "signing_keys", Row: "es256", Purpose: string(purpose)})
		if err != nil {
			t.Fatal(err)
		}
		inTx(t, s, org.ID, func(ctx context.Context, tx store.TenantTx) error {
			return tx.Keys().InsertSigningKey(ctx, store.SigningKey{KID: "es256", Purpose: purpose, Algorithm: "ES256",
				PublicKey: priv.Public().(ed25519.PublicKey), SealedPrivate: sealed, Status: store.KeyActive})
		})
		err = s.InTenantTx(context.Background(), org.ID, func(ctx context.Context, tx store.TenantTx) error {
			if purpose == store.PurposeReceipt {
				_, err := kr.FirstReceiptSigner(ctx, tx.Keys(), org.ID)
				return err
			}
			_, err := kr.TokenKey(ctx, tx.Keys(), org.ID)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "not an Ed25519 key") {
			t.Errorf("%s key of algorithm ES256: %v, want it refused", purpose, err)
		}
	}
}
