package signing_test

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"slices"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/lestrrat-go/jwx/v3/jwk"

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
	raw := receiptJWKS(t, s, acme.ID)

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
	s, _, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	for _, purpose := range []store.KeyPurpose{store.PurposeReceipt, store.PurposeToken} {
		inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			got, err := signing.JWKS(ctx, tx.Keys(), purpose)
			if err != nil || string(got) != `{"keys":[]}` {
				t.Errorf("%s: %s, %v", purpose, got, err)
			}
			return nil
		})
	}
	inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if _, err := signing.JWKS(ctx, tx.Keys(), store.PurposeLog); err == nil {
			t.Error("log keys published as a JWKS")
		}
		return nil
	})
}

func TestJWKSRefusesAKeyItCannotDescribe(t *testing.T) {
	s, _, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Keys().InsertSigningKey(ctx, store.SigningKey{
			KID: "rsa-1", Purpose: store.PurposeReceipt, Algorithm: "RS256",
			PublicKey: []byte("not ed25519"), SealedPrivate: []byte("x"), Status: store.KeyActive,
		})
	})
	inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if got, err := signing.JWKS(ctx, tx.Keys(), store.PurposeReceipt); err == nil {
			t.Errorf("published %s", got)
		}
		return nil
	})
}
