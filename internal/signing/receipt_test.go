package signing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// sampleAction is DESIGN §3's request action, with insignificant whitespace
// and member order that canonicalization must erase.
const sampleAction = `{ "type": "payment.send", "resource": "invoice:INV-2291",
  "counterparty": "cp_1", "amount": {"value": "1250.00", "currency": "EUR"},
  "params": {"po": "PO-77"} }`

// sampleActionCanonical is sampleAction in RFC 8785 form, written by hand so
// that the digest is checked against something jcs did not produce.
const sampleActionCanonical = `{"amount":{"currency":"EUR","value":"1250.00"},"counterparty":"cp_1",` +
	`"params":{"po":"PO-77"},"resource":"invoice:INV-2291","type":"payment.send"}`

func sampleClaims(tenantID string, iat time.Time) signing.ReceiptClaims {
	return signing.ReceiptClaims{
		Issuer: "https://agentsigna.test/t/acme", Subject: "agt_1", ID: "rcpt_1",
		IssuedAt: iat, Tenant: tenantID, DecisionID: "dec_1", Outcome: signing.OutcomeAllow,
		Action: json.RawMessage(sampleAction),
		Agent:  signing.ReceiptAgent{ID: "agt_1", Sponsor: "usr_1", RiskTier: "low"},
		Policy: signing.ReceiptPolicy{BaseRevision: "base-1", TenantRevision: "r7", TenantBundleSHA256: "q1w2"},
	}
}

func inTx(t *testing.T, s *sqlite.Store, tenantID string, fn func(ctx context.Context, tx store.TenantTx) error) {
	t.Helper()
	if err := s.InTenantTx(context.Background(), tenantID, fn); err != nil {
		t.Fatal(err)
	}
}

func receiptSigner(t *testing.T, s *sqlite.Store, kr *signing.Keyring, tenantID string) *signing.ReceiptSigner {
	t.Helper()
	var rs *signing.ReceiptSigner
	inTx(t, s, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		rs, err = kr.FirstReceiptSigner(ctx, tx.Keys(), tenantID)
		return err
	})
	return rs
}

func receiptJWKS(t *testing.T, s *sqlite.Store, kr *signing.Keyring, tenantID string) []byte {
	t.Helper()
	var out []byte
	inTx(t, s, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		out, err = kr.JWKS(ctx, tx.Keys(), tenantID, store.PurposeReceipt)
		return err
	})
	return out
}

// verifyWithGoJOSE verifies a receipt as a downstream system would with
// another JOSE implementation and nothing but the published JWKS.
func verifyWithGoJOSE(t *testing.T, receipt string, jwks []byte) map[string]any {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("go-jose cannot read the JWKS: %v", err)
	}
	sig, err := jose.ParseSignedCompact(receipt, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatalf("go-jose cannot parse the receipt: %v", err)
	}
	hdr := sig.Signatures[0].Protected
	if hdr.Algorithm != "EdDSA" || hdr.ExtraHeaders["typ"] != signing.ReceiptType {
		t.Fatalf("header alg %q typ %v", hdr.Algorithm, hdr.ExtraHeaders["typ"])
	}
	keys := set.Key(hdr.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q names %d keys in the JWKS", hdr.KeyID, len(keys))
	}
	payload, err := sig.Verify(keys[0])
	if err != nil {
		t.Fatalf("go-jose: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestReceiptVerifiesWithTheJWKSAloneInTwoLibraries(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	iat := time.Now().Truncate(time.Second)
	claims := sampleClaims(acme.ID, iat)
	claims.Outcome = signing.OutcomeApproved
	claims.Approvals = []signing.ReceiptApproval{{Approver: "usr_2", At: iat.Add(-time.Minute)}}
	receipt, err := receiptSigner(t, s, kr, acme.ID).Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	jwks := receiptJWKS(t, s, kr, acme.ID)

	got := verifyWithGoJOSE(t, receipt, jwks)
	// DESIGN §3 "Receipt": a protected header of exactly alg, kid and typ.
	rawHeader, err := base64.RawURLEncoding.Strict().DecodeString(strings.Split(receipt, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var header map[string]string
	if err := json.Unmarshal(rawHeader, &header); err != nil {
		t.Fatalf("header %s: %v", rawHeader, err)
	}
	if want := map[string]string{"alg": "EdDSA", "kid": receiptSigner(t, s, kr, acme.ID).KID(), "typ": signing.ReceiptType}; !maps.Equal(header, want) {
		t.Errorf("protected header %v, want %v", header, want)
	}
	// and exactly these claims.
	want := []string{"action", "action_sha256", "agent", "approvals", "decision_id", "exp", "iat",
		"iss", "jti", "nbf", "outcome", "policy", "sub", "tenant"}
	var names []string
	for name := range got {
		names = append(names, name)
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("claims %v, want %v", names, want)
	}
	sum := sha256.Sum256([]byte(sampleActionCanonical))
	if got["action_sha256"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Errorf("action_sha256 %v is not the digest of the RFC 8785 form", got["action_sha256"])
	}
	if got["iat"] != float64(iat.Unix()) || got["nbf"] != got["iat"] || got["exp"] != float64(iat.Add(10*time.Minute).Unix()) {
		t.Errorf("iat %v nbf %v exp %v", got["iat"], got["nbf"], got["exp"])
	}

	v, err := signing.VerifyReceipt(receipt, jwks, iat.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if v.Tenant != acme.ID || v.Outcome != signing.OutcomeApproved || len(v.Approvals) != 1 ||
		!v.Approvals[0].At.Equal(iat.Add(-time.Minute)) || v.Policy != claims.Policy || v.Agent != claims.Agent {
		t.Errorf("verified claims differ: %+v", v)
	}
}

func TestActionDigestIsRFC8785(t *testing.T) {
	digest := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return base64.RawURLEncoding.EncodeToString(sum[:])
	}
	for _, tc := range []struct{ action, canonical string }{
		{sampleAction, sampleActionCanonical},
		// Numbers in ES6 form, members sorted by UTF-16 code units ("€" is
		// U+20AC, before the surrogate pair D83D DE00 of "😀"), no escapes but
		// the required ones (RFC 8785 §3.2).
		{`{"b": 1.0E2, "a": ["\u00e9", 1e-7, -0], "\u20ac": true, "\ud83d\ude00": null}`,
			`{"a":["é",1e-7,0],"b":100,"€":true,"😀":null}`},
	} {
		got, err := signing.ActionDigest(json.RawMessage(tc.action))
		if err != nil {
			t.Fatalf("%s: %v", tc.action, err)
		}
		if got != digest(tc.canonical) {
			t.Errorf("ActionDigest(%s) is not the digest of %s", tc.action, tc.canonical)
		}
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{"a":1} {"a":2}`, `{"a":1,"a":2}`,
		`{"a":{"b":1,"b":1}}`, `{"a":[{"c":1,"c":2}]}`, `{"a":`, `{"a":1}x`} {
		if _, err := signing.ActionDigest(json.RawMessage(bad)); err == nil {
			t.Errorf("ActionDigest(%q) accepted", bad)
		}
	}
}

func TestRotationKeepsOldReceiptsVerifiable(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	now := time.Now()
	first := receiptSigner(t, s, kr, acme.ID)
	old, err := first.Sign(sampleClaims(acme.ID, now))
	if err != nil {
		t.Fatal(err)
	}
	// Cached after reading back, not re-created.
	if again := receiptSigner(t, s, kr, acme.ID); again.KID() != first.KID() {
		t.Fatalf("second call made another key: %s, %s", first.KID(), again.KID())
	}

	var newKID string
	inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		newKID, err = kr.RotateReceiptKey(ctx, tx.Keys(), acme.ID)
		return err
	})
	if newKID == first.KID() {
		t.Fatal("rotation kept the kid")
	}
	// The same key ring signs with the new key at once: rotation dropped its cache.
	second := receiptSigner(t, s, kr, acme.ID)
	if second.KID() != newKID {
		t.Fatalf("signer after rotation uses %s, want %s", second.KID(), newKID)
	}
	fresh, err := second.Sign(sampleClaims(acme.ID, now))
	if err != nil {
		t.Fatal(err)
	}

	inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		ks, err := tx.Keys().SigningKeys(ctx, store.PurposeReceipt)
		if err != nil {
			return err
		}
		if len(ks) != 2 || ks[0].KID != first.KID() || ks[0].Status != store.KeyRetired || ks[0].RetiredAt.IsZero() ||
			ks[1].KID != newKID || ks[1].Status != store.KeyActive {
			t.Errorf("stored keys after rotation: %+v", ks)
		}
		return nil
	})

	jwks := receiptJWKS(t, s, kr, acme.ID)
	for name, r := range map[string]string{"retired key's receipt": old, "new key's receipt": fresh} {
		if _, err := signing.VerifyReceipt(r, jwks, now); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		verifyWithGoJOSE(t, r, jwks)
	}
}

func TestReceiptKeyRollbackLeavesNoKey(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	var rolledBack *signing.ReceiptSigner
	_ = s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		rolledBack, _ = kr.FirstReceiptSigner(ctx, tx.Keys(), acme.ID)
		return errors.New("boom")
	})
	if rolledBack == nil {
		t.Fatal("no signer")
	}
	if kept := receiptSigner(t, s, kr, acme.ID); kept.KID() == rolledBack.KID() {
		t.Fatal("a key from a rolled-back transaction was served")
	}
}

func TestReceiptKeyBoundToItsTenant(t *testing.T) {
	s, kr, master := setup(t)
	a := storetest.CreateTenant(t, s, "alpha")
	b := storetest.CreateTenant(t, s, "bravo")
	receiptSigner(t, s, kr, a.ID)
	var sealed store.SigningKey
	inTx(t, s, a.ID, func(ctx context.Context, tx store.TenantTx) error {
		ks, err := tx.Keys().SigningKeys(ctx, store.PurposeReceipt)
		if err == nil {
			sealed = ks[0]
		}
		return err
	})
	// An attacker with database access copies alpha's sealed key into bravo,
	// hoping bravo's receipts get signed by a key they know from alpha.
	inTx(t, s, b.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Keys().InsertSigningKey(ctx, sealed)
	})
	fresh, _ := signing.NewKeyring(master)
	err := s.InTenantTx(context.Background(), b.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := fresh.FirstReceiptSigner(ctx, tx.Keys(), b.ID)
		return err
	})
	if !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("alpha's receipt key opened as bravo's: %v", err)
	}
	// And another master key opens nothing.
	other, _ := secrets.GenerateMasterKey()
	kr2, _ := signing.NewKeyring(other)
	err = s.InTenantTx(context.Background(), a.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := kr2.FirstReceiptSigner(ctx, tx.Keys(), a.ID)
		return err
	})
	if !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("receipt key opened under another master key: %v", err)
	}
}

func TestSignRefusesWhatVerifiersWouldMisread(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	rs := receiptSigner(t, s, kr, acme.ID)
	now := time.Now()
	for _, tc := range []struct {
		name   string
		mutate func(*signing.ReceiptClaims)
	}{
		{"another organization", func(c *signing.ReceiptClaims) { c.Tenant = "00000000-0000-0000-0000-000000000000" }},
		{"outcome deny", func(c *signing.ReceiptClaims) { c.Outcome = "deny" }},
		{"outcome escalate", func(c *signing.ReceiptClaims) { c.Outcome = "escalate" }},
		{"action_sha256 of another action", func(c *signing.ReceiptClaims) { c.ActionSHA256 = "AAAA" }},
		{"action not an object", func(c *signing.ReceiptClaims) { c.Action = json.RawMessage(`["x"]`) }},
		{"no action", func(c *signing.ReceiptClaims) { c.Action = nil }},
		{"duplicate member in action", func(c *signing.ReceiptClaims) { c.Action = json.RawMessage(`{"type":"a.b","type":"c.d"}`) }},
		{"no jti", func(c *signing.ReceiptClaims) { c.ID = "" }},
		{"no issuer", func(c *signing.ReceiptClaims) { c.Issuer = "" }},
		{"no decision", func(c *signing.ReceiptClaims) { c.DecisionID = "" }},
		{"agent is not sub", func(c *signing.ReceiptClaims) { c.Agent.ID = "agt_2" }},
		{"expires before valid", func(c *signing.ReceiptClaims) { c.Expiry = c.IssuedAt.Add(-time.Second) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sampleClaims(acme.ID, now)
			tc.mutate(&c)
			if _, err := rs.Sign(c); err == nil {
				t.Fatal("signed")
			}
		})
	}
	// An empty tenant is the signer's own.
	c := sampleClaims("", now)
	r, err := rs.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signing.VerifyReceipt(r, receiptJWKS(t, s, kr, acme.ID), now)
	if err != nil || v.Tenant != acme.ID {
		t.Fatalf("tenant %q, %v", v.Tenant, err)
	}
}

func TestReceiptSignerConcurrentUse(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	want := receiptSigner(t, s, kr, acme.ID).KID()
	jwks := receiptJWKS(t, s, kr, acme.ID)
	now := time.Now()
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			errs <- s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
				rs, err := kr.FirstReceiptSigner(ctx, tx.Keys(), acme.ID)
				if err != nil {
					return err
				}
				if rs.KID() != want {
					return errors.New("another key")
				}
				r, err := rs.Sign(sampleClaims(acme.ID, now))
				if err != nil {
					return err
				}
				_, err = signing.VerifyReceipt(r, jwks, now)
				return err
			})
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestSignLeavesTheCallersClaimsAlone(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	c := sampleClaims(acme.ID, time.Now())
	c.Outcome = signing.OutcomeApproved
	c.Approvals = []signing.ReceiptApproval{{Approver: "usr_2", At: at}}
	if _, err := receiptSigner(t, s, kr, acme.ID).Sign(c); err != nil {
		t.Fatal(err)
	}
	if c.Approvals[0].At.Location() != at.Location() || c.ActionSHA256 != "" {
		t.Error("Sign rewrote the caller's claims")
	}
}

// benchReceipts returns a signer and its JWKS for benchmarks.
func benchReceipts(b *testing.B) (*signing.ReceiptSigner, []byte, string) {
	b.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	master, _ := secrets.GenerateMasterKey()
	kr, _ := signing.NewKeyring(master)
	acme := storetest.CreateTenant(b, s, "acme")
	var rs *signing.ReceiptSigner
	var jwks []byte
	err = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if rs, err = kr.FirstReceiptSigner(ctx, tx.Keys(), acme.ID); err != nil {
			return err
		}
		jwks, err = kr.JWKS(ctx, tx.Keys(), acme.ID, store.PurposeReceipt)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return rs, jwks, acme.ID
}

func BenchmarkReceiptSign(b *testing.B) {
	rs, _, tenantID := benchReceipts(b)
	c := sampleClaims(tenantID, time.Now())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rs.Sign(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyReceipt(b *testing.B) {
	rs, jwks, tenantID := benchReceipts(b)
	now := time.Now()
	r, err := rs.Sign(sampleClaims(tenantID, now))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := signing.VerifyReceipt(r, jwks, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReceiptVerifier is BenchmarkVerifyReceipt with the JWKS read
// once, as audit verify reads an export's receipts.
func BenchmarkReceiptVerifier(b *testing.B) {
	rs, jwks, tenantID := benchReceipts(b)
	now := time.Now()
	r, err := rs.Sign(sampleClaims(tenantID, now))
	if err != nil {
		b.Fatal(err)
	}
	v, err := signing.NewReceiptVerifier(jwks)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(r, now); err != nil {
			b.Fatal(err)
		}
	}
}

// CachedReceiptSigner answers from memory only: nothing before the key has
// been read through this Keyring, the same signer after, and nothing once
// a rotation has dropped it.
func TestCachedReceiptSigner(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	if _, ok := kr.CachedReceiptSigner(acme.ID); ok {
		t.Fatal("a signer cached before any key exists")
	}
	created := receiptSigner(t, s, kr, acme.ID) // creates the key: not cached
	if _, ok := kr.CachedReceiptSigner(acme.ID); ok {
		t.Fatal("a key created in a transaction that might roll back was cached")
	}
	read := receiptSigner(t, s, kr, acme.ID) // reads the committed key
	got, ok := kr.CachedReceiptSigner(acme.ID)
	if !ok || got.KID() != read.KID() || got.KID() != created.KID() {
		t.Fatalf("cached signer %v, %v; want kid %s", got, ok, created.KID())
	}
	if _, ok := kr.CachedReceiptSigner(""); ok {
		t.Fatal("a signer for no organization")
	}
	inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := kr.RotateReceiptKey(ctx, tx.Keys(), acme.ID)
		return err
	})
	if _, ok := kr.CachedReceiptSigner(acme.ID); ok {
		t.Fatal("the retired key's signer is still cached after a rotation")
	}
}

// Two rotations at once: the second read the key as active, and finds it
// retired when it retires it (on PostgreSQL its UPDATE waited for the
// first). It fails as a conflict, not as a missing key, and its caller's
// transaction rolls back with nothing changed.
func TestConcurrentRotationConflicts(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	first := receiptSigner(t, s, kr, acme.ID)
	err := s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := kr.RotateReceiptKey(ctx, retiredMeanwhile{tx.Keys()}, acme.ID)
		return err
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a rotation that lost to another: %v, want ErrConflict", err)
	}
	if again := receiptSigner(t, s, kr, acme.ID); again.KID() != first.KID() {
		t.Fatalf("after a failed rotation the key is %s, want %s still", again.KID(), first.KID())
	}
}

// retiredMeanwhile is a transaction in which every key read as active has
// been retired by another by the time it retires it.
type retiredMeanwhile struct{ store.KeyTx }

func (retiredMeanwhile) RetireSigningKey(context.Context, string, time.Time) error {
	return fmt.Errorf("%w: active signing key", store.ErrNotFound)
}

// A key ring whose master key is not the one an organization's keys were
// sealed under seals nothing new for it: a key the right master key could
// never open would break its JWKS, or its tokens, for good (signing keys
// are written once), and every receipt it ever issued with them.
func TestWrongMasterKeySealsNothing(t *testing.T) {
	s, good, _ := setup(t)
	wrongMaster, err := secrets.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := signing.NewKeyring(wrongMaster)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	acme := storetest.CreateTenant(t, s, "acme")
	bravo := storetest.CreateTenant(t, s, "bravo")
	charlie := storetest.CreateTenant(t, s, "charlie")
	// acme: a log key and a receipt key; bravo: a log key only; charlie:
	// a receipt key only.
	for _, id := range []string{acme.ID, bravo.ID} {
		inTx(t, s, id, func(ctx context.Context, tx store.TenantTx) error {
			_, err := good.LogKey(ctx, tx.Keys(), signing.LogScope{TenantID: id, Origin: "agentsigna.test/t/" + id})
			return err
		})
	}
	first := receiptSigner(t, s, good, acme.ID)
	receiptSigner(t, s, good, charlie.ID)
	jwks := receiptJWKS(t, s, good, acme.ID)

	keysOf := func(id string) map[store.KeyPurpose]int {
		n := map[store.KeyPurpose]int{}
		inTx(t, s, id, func(ctx context.Context, tx store.TenantTx) error {
			for _, p := range []store.KeyPurpose{store.PurposeLog, store.PurposeReceipt, store.PurposeToken} {
				ks, err := tx.Keys().SigningKeys(ctx, p)
				if err != nil {
					return err
				}
				for _, k := range ks {
					if k.Status == store.KeyActive {
						n[p]++
					}
				}
			}
			return nil
		})
		return n
	}
	before := map[string]map[store.KeyPurpose]int{acme.ID: keysOf(acme.ID), bravo.ID: keysOf(bravo.ID), charlie.ID: keysOf(charlie.ID)}
	for _, tc := range []struct {
		name, tenant string
		do           func(ctx context.Context, tx store.TenantTx) error
	}{
		{"rotate acme's receipt key", acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			_, err := wrong.RotateReceiptKey(ctx, tx.Keys(), acme.ID)
			return err
		}},
		{"acme's first token key", acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			_, err := wrong.TokenKey(ctx, tx.Keys(), acme.ID)
			return err
		}},
		{"bravo's first receipt key", bravo.ID, func(ctx context.Context, tx store.TenantTx) error {
			_, err := wrong.FirstReceiptSigner(ctx, tx.Keys(), bravo.ID)
			return err
		}},
		{"charlie's log key", charlie.ID, func(ctx context.Context, tx store.TenantTx) error {
			_, err := wrong.LogKey(ctx, tx.Keys(), signing.LogScope{TenantID: charlie.ID, Origin: "agentsigna.test/t/charlie"})
			return err
		}},
		{"check acme", acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			return wrong.CheckMasterKey(ctx, tx.Keys(), acme.ID)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The caller commits what the call did not refuse.
			err := s.InTenantTx(ctx, tc.tenant, tc.do)
			if !errors.Is(err, signing.ErrWrongMasterKey) {
				t.Fatalf("got %v, want ErrWrongMasterKey", err)
			}
			if got := keysOf(tc.tenant); !maps.Equal(got, before[tc.tenant]) {
				t.Errorf("active keys %v, want %v as before", got, before[tc.tenant])
			}
		})
	}
	// The right master key still signs with, and publishes, what it had.
	if again := receiptSigner(t, s, good, acme.ID); again.KID() != first.KID() {
		t.Errorf("acme signs with %s, want %s", again.KID(), first.KID())
	}
	if got := receiptJWKS(t, s, good, acme.ID); !bytes.Equal(got, jwks) {
		t.Errorf("acme's JWKS changed:\n%s\nwant\n%s", got, jwks)
	}
	inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return good.CheckMasterKey(ctx, tx.Keys(), acme.ID)
	})
	// An organization with no key yet has nothing to check against.
	delta := storetest.CreateTenant(t, s, "delta")
	inTx(t, s, delta.ID, func(ctx context.Context, tx store.TenantTx) error {
		return wrong.CheckMasterKey(ctx, tx.Keys(), delta.ID)
	})
}

// ReceiptSigner only opens: an organization without a receipt key gets
// ErrNoReceiptKey and still has none, since a key must come with the
// ledger entry recording it (decision.ReceiptKeys installs it).
func TestReceiptSignerCreatesNoKey(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	err := s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := kr.ReceiptSigner(ctx, tx.Keys(), acme.ID)
		return err
	})
	if !errors.Is(err, signing.ErrNoReceiptKey) {
		t.Fatalf("ReceiptSigner of an organization without a key: %v, want ErrNoReceiptKey", err)
	}
	inTx(t, s, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if ks, err := tx.Keys().SigningKeys(ctx, store.PurposeReceipt); err != nil || len(ks) != 0 {
			t.Fatalf("keys after ReceiptSigner: %v, %v", ks, err)
		}
		return nil
	})
}

// A JWKS handed to an auditor may hold a key of small order, under which
// a signature nobody made verifies (R = the identity, S = 0): such a key
// verifies no receipt. The forgery is built on a genuine receipt's claims.
func TestVerifierRefusesSmallOrderKeys(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	receipt, err := receiptSigner(t, s, kr, acme.ID).Sign(sampleClaims(acme.ID, time.Now().Truncate(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	identity := make([]byte, 32)
	identity[0] = 1 // the identity point: y = 1
	if !ed25519.Verify(identity, []byte("anything"), append(slices.Clone(identity), make([]byte, 32)...)) {
		t.Fatal("the forgery this test is about no longer verifies under crypto/ed25519")
	}
	jwks := fmt.Sprintf(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"small","use":"sig","alg":"EdDSA","x":%q}]}`,
		base64.RawURLEncoding.EncodeToString(identity))
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","kid":"small","typ":"` + signing.ReceiptType + `"}`))
	payload := strings.Split(receipt, ".")[1]
	forged := hdr + "." + payload + "." + base64.RawURLEncoding.EncodeToString(append(slices.Clone(identity), make([]byte, 32)...))
	if _, err := signing.VerifyReceipt(forged, []byte(jwks), time.Now()); !errors.Is(err, signing.ErrReceiptUnknownKey) {
		t.Fatalf("a receipt under a small-order key: %v, want ErrReceiptUnknownKey", err)
	}
}

// The action member of a receipt's payload is the RFC 8785 form of the
// action, byte for byte: nothing escaped for HTML (<, >, &, U+2028), so
// that hashing the member as it stands gives action_sha256.
func TestReceiptCarriesTheCanonicalActionBytes(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	claims := sampleClaims(acme.ID, time.Now().Truncate(time.Second))
	claims.Action = json.RawMessage(`{ "type": "payment.send", "resource": "inv<1>&\u2028", "params": {"b": 1.50, "a": "x"} }`)
	receipt, err := receiptSigner(t, s, kr, acme.ID).Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(receipt, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	canonical, err := signing.Canonical(claims.Action)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(payload, append([]byte(`"action":`), canonical...)) {
		t.Fatalf("payload %s does not carry the canonical action %s", payload, canonical)
	}
	sum := sha256.Sum256(canonical)
	if !bytes.Contains(payload, []byte(`"action_sha256":"`+base64.RawURLEncoding.EncodeToString(sum[:])+`"`)) {
		t.Fatalf("payload %s: action_sha256 is not the canonical action's", payload)
	}
	if _, err := signing.VerifyReceipt(receipt, receiptJWKS(t, s, kr, acme.ID), time.Now()); err != nil {
		t.Fatal(err)
	}
}

// A JWKS key whose key_ops leave out verify verifies no receipt, as one
// whose use is not sig does not (RFC 7517 §4.3).
func TestVerifierHonoursKeyOps(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	receipt, err := receiptSigner(t, s, kr, acme.ID).Sign(sampleClaims(acme.ID, time.Now().Truncate(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	var set map[string][]map[string]any
	if err := json.Unmarshal(receiptJWKS(t, s, kr, acme.ID), &set); err != nil {
		t.Fatal(err)
	}
	for ops, ok := range map[string]bool{`["verify"]`: true, `["sign","verify"]`: true, `["encrypt"]`: false, `[]`: false} {
		set["keys"][0]["key_ops"] = json.RawMessage(ops)
		jwks, _ := json.Marshal(set)
		_, err := signing.VerifyReceipt(receipt, jwks, time.Now())
		if ok && err != nil || !ok && !errors.Is(err, signing.ErrReceiptUnknownKey) {
			t.Errorf("key_ops %s: %v", ops, err)
		}
	}
}
