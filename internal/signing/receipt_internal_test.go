package signing

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/jose"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// twoReceiptKeys returns an organization's retired and active receipt
// signers, and its JWKS holding both.
func twoReceiptKeys(t *testing.T) (retired, active *ReceiptSigner, jwks []byte, tenantID string) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	master, err := secrets.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, _ := NewKeyring(master)
	acme := storetest.CreateTenant(t, s, "acme")
	err = s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if retired, err = kr.FirstReceiptSigner(ctx, tx.Keys(), acme.ID); err != nil {
			return err
		}
		if _, err = kr.RotateReceiptKey(ctx, tx.Keys(), acme.ID); err != nil {
			return err
		}
		if active, err = kr.FirstReceiptSigner(ctx, tx.Keys(), acme.ID); err != nil {
			return err
		}
		jwks, err = kr.JWKS(ctx, tx.Keys(), acme.ID, store.PurposeReceipt)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return retired, active, jwks, acme.ID
}

func testClaims(tenantID string, iat time.Time) ReceiptClaims {
	return ReceiptClaims{
		Issuer: "https://agentsigna.test/t/acme", Subject: "agt_1", ID: "rcpt_1", IssuedAt: iat,
		Tenant: tenantID, DecisionID: "dec_1", Outcome: OutcomeAllow,
		Action: json.RawMessage(`{"type":"payment.send","amount":{"value":"1250.00","currency":"EUR"}}`),
		Agent:  ReceiptAgent{ID: "agt_1", Sponsor: "usr_1", RiskTier: "low"},
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// withTrailingBit sets a bit of an unpadded base64url string's last
// character that lies past its last byte (s must not be a multiple of 4
// characters long): lenient decoders read the same bytes.
func withTrailingBit(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, s[len(s)-1])
	return s[:len(s)-1] + string(alphabet[i|1])
}

// stdAlphabet is s in base64's standard alphabet (RFC 4648 §4); s must
// hold '-' or '_'.
func stdAlphabet(t *testing.T, s string) string {
	t.Helper()
	std := strings.NewReplacer("-", "+", "_", "/").Replace(s)
	if std == s {
		t.Fatal("nothing to respell")
	}
	return std
}

// forge builds a compact JWS by hand, so a test can put in it what no
// well-behaved signer would.
func forge(t *testing.T, header map[string]any, payload []byte, sign func(input []byte) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(payload)
	return input + "." + b64(sign([]byte(input)))
}

// forgeRaw is forge with the header written out, duplicates and all.
func forgeRaw(header string, payload []byte, sign func(input []byte) []byte) string {
	input := b64([]byte(header)) + "." + b64(payload)
	return input + "." + b64(sign([]byte(input)))
}

func payloadOf(t *testing.T, c ReceiptClaims) []byte {
	t.Helper()
	if c.NotBefore.IsZero() {
		c.NotBefore = c.IssuedAt
	}
	if c.Expiry.IsZero() {
		c.Expiry = c.IssuedAt.Add(DefaultReceiptLifetime)
	}
	if c.ActionSHA256 == "" {
		c.ActionSHA256, _ = ActionDigest(c.Action)
	}
	p, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyReceiptRejects(t *testing.T) {
	retired, active, jwks, tenantID := twoReceiptKeys(t)
	now := time.Now().Truncate(time.Second)
	edSign := func(s *ReceiptSigner) func([]byte) []byte {
		return func(in []byte) []byte { return ed25519.Sign(s.key.k, in) }
	}
	hdr := func(alg, kid, typ string) map[string]any {
		h := map[string]any{"alg": alg}
		if kid != "" {
			h["kid"] = kid
		}
		if typ != "" {
			h["typ"] = typ
		}
		return h
	}
	good := payloadOf(t, testClaims(tenantID, now))
	valid, err := active.Sign(testClaims(tenantID, now))
	for i := 1; err == nil && !strings.ContainsAny(valid[strings.LastIndexByte(valid, '.'):], "-_"); i++ {
		// A signature with a character the standard alphabet spells
		// otherwise, for the case below: another receipt id, the same
		// times (the controls below are at the edges of them).
		c := testClaims(tenantID, now)
		c.ID = fmt.Sprintf("rcpt_%d", i)
		valid, err = active.Sign(c)
	}
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(valid, ".")

	// The classic confusion: HMAC keyed with the public key the verifier holds.
	var set struct {
		Keys []struct{ Kid, X string } `json:"keys"`
	}
	_ = json.Unmarshal(jwks, &set)
	pubX := set.Keys[0].X
	activeX, privD := b64(active.PublicKey()), b64(active.key.k.Seed())
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherX := b64(otherPub)
	hmacWith := func(key []byte) func([]byte) []byte {
		return func(in []byte) []byte { m := hmac.New(sha256.New, key); m.Write(in); return m.Sum(nil) }
	}

	tampered := testClaims(tenantID, now)
	tampered.Action = json.RawMessage(`{"type":"payment.send","amount":{"value":"99999.00","currency":"EUR"}}`)

	mismatch := testClaims(tenantID, now)
	mismatch.ActionSHA256, _ = ActionDigest(json.RawMessage(`{"type":"payment.send"}`))

	expired := testClaims(tenantID, now.Add(-time.Hour))
	early := testClaims(tenantID, now)
	early.NotBefore = now.Add(5 * time.Minute)
	early.Expiry = now.Add(15 * time.Minute)
	deny := testClaims(tenantID, now)
	deny.Outcome = "deny"
	noExp := func() []byte {
		var m map[string]any
		_ = json.Unmarshal(good, &m)
		delete(m, "exp")
		b, _ := json.Marshal(m)
		return b
	}()

	for _, tc := range []struct {
		name    string
		receipt string
		jwks    []byte
		want    error
	}{
		{"tampered payload", parts[0] + "." + b64(payloadOf(t, tampered)) + "." + parts[2], nil, ErrReceiptSignature},
		{"tampered signature", parts[0] + "." + parts[1] + "." + b64(make([]byte, 64)), nil, ErrReceiptSignature},
		{"kid of another published key", forge(t, hdr("EdDSA", retired.kid, ReceiptType), good, edSign(active)), nil, ErrReceiptSignature},
		{"unknown kid", forge(t, hdr("EdDSA", "nope", ReceiptType), good, edSign(active)), nil, ErrReceiptUnknownKey},
		{"no kid", forge(t, hdr("EdDSA", "", ReceiptType), good, edSign(active)), nil, ErrReceiptUnknownKey},
		{"alg none", forge(t, hdr("none", active.kid, ReceiptType), good, func([]byte) []byte { return nil }), nil, ErrReceiptAlgorithm},
		{"alg None", forge(t, hdr("None", active.kid, ReceiptType), good, func([]byte) []byte { return nil }), nil, ErrReceiptAlgorithm},
		{"HS256 keyed with the raw public key", forge(t, hdr("HS256", active.kid, ReceiptType), good, hmacWith(active.PublicKey())), nil, ErrReceiptAlgorithm},
		{"HS256 keyed with the JWKS x", forge(t, hdr("HS256", active.kid, ReceiptType), good, hmacWith([]byte(pubX))), nil, ErrReceiptAlgorithm},
		{"HS256 keyed with the JWKS", forge(t, hdr("HS256", active.kid, ReceiptType), good, hmacWith(jwks)), nil, ErrReceiptAlgorithm},
		{"alg Ed25519 (fully specified, not ours)", forge(t, hdr("Ed25519", active.kid, ReceiptType), good, edSign(active)), nil, ErrReceiptAlgorithm},
		{"alg ES256", forge(t, hdr("ES256", active.kid, ReceiptType), good, edSign(active)), nil, ErrReceiptAlgorithm},
		{"alg RS256", forge(t, hdr("RS256", active.kid, ReceiptType), good, edSign(active)), nil, ErrReceiptAlgorithm},
		{"no alg", forge(t, map[string]any{"kid": active.kid, "typ": ReceiptType}, good, edSign(active)), nil, ErrReceiptAlgorithm},
		{"typ JWT", forge(t, hdr("EdDSA", active.kid, "JWT"), good, edSign(active)), nil, ErrReceiptType},
		{"typ at+jwt", forge(t, hdr("EdDSA", active.kid, "at+jwt"), good, edSign(active)), nil, ErrReceiptType},
		{"typ with media type prefix", forge(t, hdr("EdDSA", active.kid, "application/"+ReceiptType), good, edSign(active)), nil, ErrReceiptType},
		{"no typ", forge(t, hdr("EdDSA", active.kid, ""), good, edSign(active)), nil, ErrReceiptType},
		{"expired", forge(t, hdr("EdDSA", active.kid, ReceiptType), payloadOf(t, expired), edSign(active)), nil, ErrReceiptExpired},
		{"not yet valid", forge(t, hdr("EdDSA", active.kid, ReceiptType), payloadOf(t, early), edSign(active)), nil, ErrReceiptNotYetValid},
		{"action_sha256 of another action", forge(t, hdr("EdDSA", active.kid, ReceiptType), payloadOf(t, mismatch), edSign(active)), nil, ErrReceiptActionDigest},
		{"outcome deny", forge(t, hdr("EdDSA", active.kid, ReceiptType), payloadOf(t, deny), edSign(active)), nil, ErrReceiptMalformed},
		{"no exp", forge(t, hdr("EdDSA", active.kid, ReceiptType), noExp, edSign(active)), nil, ErrReceiptMalformed},
		{"claims not JSON", forge(t, hdr("EdDSA", active.kid, ReceiptType), []byte("hello"), edSign(active)), nil, ErrReceiptMalformed},
		{"crit header", forge(t, map[string]any{"alg": "EdDSA", "kid": active.kid, "typ": ReceiptType, "crit": []string{"exp"}, "exp": 1}, good, edSign(active)), nil, ErrReceiptMalformed},
		{"b64 false", forge(t, map[string]any{"alg": "EdDSA", "kid": active.kid, "typ": ReceiptType, "b64": false, "crit": []string{"b64"}}, good, edSign(active)), nil, ErrReceiptMalformed},
		{"duplicate header member", forgeRaw(`{"alg":"EdDSA","kid":"`+active.kid+`","typ":"`+ReceiptType+`","typ":"JWT"}`, good, edSign(active)), nil, ErrReceiptMalformed},
		{"header not base64url", "e30=." + parts[1] + "." + parts[2], nil, ErrReceiptMalformed},
		{"JSON serialization", fmt.Sprintf(`{"protected":%q,"payload":%q,"signature":%q}`, parts[0], parts[1], parts[2]), nil, ErrReceiptMalformed},
		{"two parts", parts[0] + "." + parts[1], nil, ErrReceiptMalformed},
		{"garbage", "not a receipt", nil, ErrReceiptMalformed},
		{"huge", strings.Repeat("a", maxReceiptSize+1), nil, ErrReceiptMalformed},
		// Other spellings of the valid receipt's bytes, which jwx decodes
		// as the same receipt: one receipt has one string, and so one
		// SHA-256 (its ledger entry's digest).
		{"signature padded", valid + "==", nil, ErrReceiptMalformed},
		{"signature with trailing bits", parts[0] + "." + parts[1] + "." + withTrailingBit(parts[2]), nil, ErrReceiptMalformed},
		{"signature in the standard alphabet", parts[0] + "." + parts[1] + "." + stdAlphabet(t, parts[2]), nil, ErrReceiptMalformed},
		{"line break in the signature", parts[0] + "." + parts[1] + "." + parts[2][:40] + "\n" + parts[2][40:], nil, ErrReceiptMalformed},
		{"JWKS without the key", valid, []byte(`{"keys":[]}`), ErrReceiptUnknownKey},
		{"JWKS key of another type under the kid", valid, []byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"` + active.kid +
			`","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`), ErrReceiptUnknownKey},
		{"JWKS key for another alg", valid, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"HS256","kid":"` + active.kid + `","x":"` + pubX + `"}]}`), ErrReceiptUnknownKey},
		{"JWKS key for encryption", valid, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","use":"enc","kid":"` + active.kid + `","x":"` + pubX + `"}]}`), ErrReceiptUnknownKey},
		{"JWKS not JSON", valid, []byte(`nope`), ErrInvalidJWKS},
		// A key set that publishes what signs: refused whole, wherever.
		{"JWKS with the private key", valid, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"` + active.kid + `","x":"` + activeX + `","d":"` + privD + `"}]}`), ErrInvalidJWKS},
		{"JWKS with a private key under another kid", valid, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"` + active.kid + `","x":"` + activeX +
			`"},{"kty":"OKP","crv":"Ed25519","kid":"other","x":"` + activeX + `","d":"` + privD + `"}]}`), ErrInvalidJWKS},
		{"JWKS with a symmetric key", valid, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"` + active.kid + `","x":"` + activeX +
			`"},{"kty":"oct","kid":"hmac","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]}`), ErrInvalidJWKS},
		// Two keys under one kid: refused whatever their order, the right
		// key first included (go-jose would try both, jwx only the first).
		{"JWKS with the key twice under its kid", valid, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"` + active.kid + `","x":"` + activeX +
			`"},{"kty":"OKP","crv":"Ed25519","kid":"` + active.kid + `","x":"` + activeX + `"}]}`), ErrInvalidJWKS},
		{"JWKS with the key first and another under its kid", valid, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"` + active.kid + `","x":"` + activeX +
			`"},{"kty":"OKP","crv":"Ed25519","kid":"` + active.kid + `","x":"` + otherX + `"}]}`), ErrInvalidJWKS},
		{"JWKS with another key first under the kid", valid, []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"` + active.kid + `","x":"` + pubX +
			`"},{"kty":"OKP","crv":"Ed25519","kid":"` + active.kid + `","x":"` + activeX + `"}]}`), ErrInvalidJWKS},
		// A key set that is also a key reads as one or the other: jwx
		// reads "keys", a reader of one JWK the key on top.
		{"JWKS that is also a key", valid, []byte(`{"kty":"OKP","crv":"Ed25519","kid":"` + active.kid + `","x":"` + pubX +
			`","keys":[{"kty":"OKP","crv":"Ed25519","kid":"` + active.kid + `","x":"` + activeX + `"}]}`), ErrInvalidJWKS},
		{"JWKS with an EC key first under the kid", valid, []byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"` + active.kid +
			`","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},{"kty":"OKP","crv":"Ed25519","kid":"` +
			active.kid + `","x":"` + activeX + `"}]}`), ErrInvalidJWKS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := jwks
			if tc.jwks != nil {
				keys = tc.jwks
			}
			c, err := VerifyReceipt(tc.receipt, keys, now)
			if !errors.Is(err, tc.want) || c != nil {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.want != ErrInvalidJWKS && !errors.Is(err, ErrInvalidReceipt) {
				t.Errorf("%v does not wrap ErrInvalidReceipt", err)
			}
		})
	}

	// The controls: what is valid, including at the edges of the skew.
	for name, at := range map[string]time.Time{
		"now":                        now,
		"just before exp plus skew":  now.Add(DefaultReceiptLifetime + ReceiptSkew - time.Second),
		"just before nbf minus skew": now.Add(-ReceiptSkew),
	} {
		if _, err := VerifyReceipt(valid, jwks, at); err != nil {
			t.Errorf("valid receipt at %s: %v", name, err)
		}
	}
	if _, err := VerifyReceipt(valid, jwks, now.Add(DefaultReceiptLifetime+ReceiptSkew)); !errors.Is(err, ErrReceiptExpired) {
		t.Errorf("at exp plus skew: %v", err)
	}
	// A retired key's receipt still verifies: retired keys are for verification.
	old, err := retired.Sign(testClaims(tenantID, now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyReceipt(old, jwks, now); err != nil {
		t.Errorf("retired key's receipt: %v", err)
	}
}

func TestSignedReceiptHeader(t *testing.T) {
	_, active, _, tenantID := twoReceiptKeys(t)
	r, err := active.Sign(testClaims(tenantID, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(r, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(h, &got)
	want := map[string]any{"alg": "EdDSA", "kid": active.kid, "typ": ReceiptType}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("header %v, want exactly %v", got, want)
	}
}

func TestReceiptSignerPrintsNoKeyMaterial(t *testing.T) {
	_, active, _, _ := twoReceiptKeys(t)
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "signer", active)
	wrapped := struct{ s ReceiptSigner }{*active}
	checkNoKeyMaterial(t, active.key.k.Seed(),
		fmt.Sprintf("%v %+v %#v %s %x %q %d", active, active, active, active, active, active, active),
		fmt.Sprintf("%v %+v %#v", *active, *active, wrapped),
		buf.String())
}

// checkNoKeyMaterial fails if any of outs shows seed in a form a printer
// would use.
func checkNoKeyMaterial(t *testing.T, seed []byte, outs ...string) {
	t.Helper()
	forms := []string{hex.EncodeToString(seed), b64(seed), base64.StdEncoding.EncodeToString(seed[:30]),
		strings.Trim(fmt.Sprint(seed[:8]), "[]")}
	for _, out := range outs {
		for _, f := range forms {
			if strings.Contains(out, f) {
				t.Fatalf("key material printed: %q", out)
			}
		}
	}
}

// RFC 7515 §4: header parameter names are case-sensitive, and jwx reads
// {"KID":…,"TYP":…} as a header with neither kid nor typ. A reader that
// folds case (encoding/json v1 into a struct) reads both: such a header,
// and one with a duplicate, has two readings, and is refused. A member
// VerifyReceipt does not read is ignored, as RFC 7515 §4 says.
func TestVerifyReceiptReadsHeaderMembersByExactName(t *testing.T) {
	_, active, jwks, tenantID := twoReceiptKeys(t)
	now := time.Now().Truncate(time.Second)
	good := payloadOf(t, testClaims(tenantID, now))
	sign := func(in []byte) []byte { return ed25519.Sign(active.key.k, in) }
	kid := `"` + active.kid + `"`
	typ := `"` + ReceiptType + `"`
	for _, tc := range []struct{ name, header string }{
		{"KID and TYP", `{"alg":"EdDSA","KID":` + kid + `,"TYP":` + typ + `}`},
		{"Typ beside typ JWT", `{"alg":"EdDSA","kid":` + kid + `,"Typ":` + typ + `,"typ":"JWT"}`},
		{"typ JWT beside Typ", `{"alg":"EdDSA","kid":` + kid + `,"typ":"JWT","Typ":` + typ + `}`},
		{"typ beside TYP JWT", `{"alg":"EdDSA","kid":` + kid + `,"typ":` + typ + `,"TYP":"JWT"}`},
		{"Kid beside kid", `{"alg":"EdDSA","kid":` + kid + `,"Kid":"another","typ":` + typ + `}`},
		{"Kid with a Kelvin sign", `{"alg":"EdDSA","\u212Aid":` + kid + `,"typ":` + typ + `}`},
		{"ALG none beside alg", `{"alg":"EdDSA","ALG":"none","kid":` + kid + `,"typ":` + typ + `}`},
		{"Typ_ alone", `{"alg":"EdDSA","kid":` + kid + `,"Typ_":` + typ + `}`},
		{"Crit", `{"alg":"EdDSA","kid":` + kid + `,"typ":` + typ + `,"Crit":["exp"],"exp":1}`},
		{"B64", `{"alg":"EdDSA","kid":` + kid + `,"typ":` + typ + `,"B64":false}`},
		{"duplicate kid", `{"alg":"EdDSA","kid":` + kid + `,"kid":"another","typ":` + typ + `}`},
		{"crit null", `{"alg":"EdDSA","kid":` + kid + `,"typ":` + typ + `,"crit":null}`},
		{"duplicate in an unread member", `{"alg":"EdDSA","kid":` + kid + `,"typ":` + typ + `,"x":{"a":1,"a":2}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := VerifyReceipt(forgeRaw(tc.header, good, sign), jwks, now)
			if !errors.Is(err, ErrReceiptMalformed) || c != nil {
				t.Fatalf("got %v, want %v", err, ErrReceiptMalformed)
			}
		})
	}
	// Members VerifyReceipt does not read are ignored, whatever their case.
	for _, header := range []string{
		`{"alg":"EdDSA","kid":` + kid + `,"typ":` + typ + `,"cty":"JSON","x-request":{"ID":1,"id":2}}`,
		`{"typ":` + typ + `,"kid":` + kid + `,"alg":"EdDSA","kid2":"another","type":null}`,
	} {
		if _, err := VerifyReceipt(forgeRaw(header, good, sign), jwks, now); err != nil {
			t.Errorf("header %s: %v", header, err)
		}
	}
}

// RFC 7519 §4: claim names are case-sensitive. A payload with "OUTCOME"
// beside "outcome", or a duplicate, reads one way to a JOSE library and
// another to encoding/json v1: it is refused, at any depth VerifyReceipt
// reads. Claims it does not read are ignored (RFC 7519 §4), and the action
// is read whole, its member names as they are.
func TestVerifyReceiptReadsClaimsByExactName(t *testing.T) {
	_, active, jwks, tenantID := twoReceiptKeys(t)
	now := time.Now().Truncate(time.Second)
	claims := testClaims(tenantID, now)
	claims.Outcome = OutcomeApproved
	claims.Approvals = []ReceiptApproval{{Approver: "usr_2", At: now.Add(-time.Minute)}}
	claims.Policy = ReceiptPolicy{BaseRevision: "base-1", TenantRevision: "r7", TenantBundleSHA256: "q1w2"}
	good := string(payloadOf(t, claims))
	// with writes good with old, which it must hold once, replaced by new.
	with := func(old, new string) []byte {
		t.Helper()
		if strings.Count(good, old) != 1 {
			t.Fatalf("%s is not once in %s", old, good)
		}
		return []byte(strings.Replace(good, old, new, 1))
	}
	sign := func(payload []byte) string {
		h, _ := json.Marshal(protectedHeader{Alg: ReceiptAlgorithm, KID: active.kid, Typ: ReceiptType})
		return forgeRaw(string(h), payload, func(in []byte) []byte { return ed25519.Sign(active.key.k, in) })
	}
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"OUTCOME beside outcome", with(`"outcome":"approved"`, `"outcome":"allow","OUTCOME":"approved"`)},
		{"outcome twice", with(`"outcome":"approved"`, `"outcome":"allow","outcome":"approved"`)},
		{"EXP after exp", []byte(strings.TrimSuffix(good, "}") + `,"EXP":99999999999}`)},
		{"Decision-ID beside decision_id", with(`"decision_id":`, `"Decision-ID":"dec_2","decision_id":`)},
		{"Approvals beside approvals", with(`"approvals":`, `"Approvals":[],"approvals":`)},
		{"agent.RISK_TIER beside risk_tier", with(`"risk_tier":"low"`, `"risk_tier":"low","RISK_TIER":"critical"`)},
		{"approvals[0].Approver beside approver", with(`"approver":"usr_2"`, `"approver":"usr_2","Approver":"usr_9"`)},
		{"policy.tenant_revision twice", with(`"tenant_revision":"r7"`, `"tenant_revision":"r7","tenant_revision":"r8"`)},
		{"a duplicate in action", with(`"type":"payment.send"`, `"type":"payment.send","type":"payment.refund"`)},
		// Exact names, but a value of another type: the decode refuses it.
		{"outcome a number", with(`"outcome":"approved"`, `"outcome":1`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := VerifyReceipt(sign(tc.payload), jwks, now)
			if c != nil {
				t.Fatalf("verified: outcome %q, exp %v, decision %q", c.Outcome, c.Expiry, c.DecisionID)
			}
			if !errors.Is(err, ErrReceiptMalformed) {
				t.Fatalf("got %v, want %v", err, ErrReceiptMalformed)
			}
			// The claims refuse it themselves, whoever decodes them.
			var direct ReceiptClaims
			if err := json.Unmarshal(tc.payload, &direct); err == nil {
				t.Errorf("json.Unmarshal read outcome %q", direct.Outcome)
			}
		})
	}

	// Claims VerifyReceipt does not read are ignored, whatever their case.
	extra := with(`"outcome":"approved"`, `"outcome":"approved","scope":"pay","Scope":"all","x-request":{"ID":1,"id":2}`)
	c, err := VerifyReceipt(sign(extra), jwks, now)
	if err != nil || c.Outcome != OutcomeApproved {
		t.Errorf("unknown claims: %+v, %v", c, err)
	}
	// And the action's member names are the agent's, in any case.
	mixed := claims
	mixed.Action = json.RawMessage(`{"type":"payment.send","Type":"payment.refund","amount":{"value":"1.00","Value":"2.00"}}`)
	c, err = VerifyReceipt(sign(payloadOf(t, mixed)), jwks, now)
	if err != nil || string(c.Action) != string(mixed.Action) {
		t.Errorf("action with case-variant members: %+v, %v", c, err)
	}
}

// receiptClaimMembers must name every member Sign writes, at every depth,
// and nothing else: a claim it missed would be read case-insensitively.
func TestReceiptClaimMembersAreWhatSignWrites(t *testing.T) {
	c := testClaims("org_1", time.Now())
	c.Approvals = []ReceiptApproval{{Approver: "usr_2", At: time.Now()}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	// membersOf is the names of v's objects, or of its first element's.
	var membersOf func(v any) jose.Members
	membersOf = func(v any) jose.Members {
		switch v := v.(type) {
		case map[string]any:
			m := jose.Members{}
			for name, value := range v {
				m[name] = membersOf(value)
			}
			return m
		case []any:
			if len(v) > 0 {
				return membersOf(v[0])
			}
		}
		return nil
	}
	written := membersOf(v)
	written["action"] = nil // read whole
	if !reflect.DeepEqual(written, receiptClaimMembers) {
		t.Errorf("Sign writes %v, receiptClaimMembers names %v", written, receiptClaimMembers)
	}
}

// A JWKS with a duplicate member, or a case variant of a JWK member, is
// read one way by jwx (whose probe reads "KTY" as kty, and which keeps the
// last of two "x" and the first of two "keys") and another by go-jose or
// encoding/json: it is refused, whichever key the receipt names.
// One ReceiptVerifier checks receipts of every key its JWKS holds, and
// refuses what VerifyReceipt refuses; a JWKS VerifyReceipt refuses gives
// no verifier.
func TestReceiptVerifier(t *testing.T) {
	retired, active, jwks, tenantID := twoReceiptKeys(t)
	now := time.Now().Truncate(time.Second)
	v, err := NewReceiptVerifier(jwks)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*ReceiptSigner{retired, active, retired} {
		r, err := s.Sign(testClaims(tenantID, now))
		if err != nil {
			t.Fatal(err)
		}
		if c, err := v.Verify(r, now); err != nil || c.Tenant != tenantID {
			t.Fatalf("receipt of %s: %+v, %v", s.kid, c, err)
		}
		// Another signature byte: "AA" in place of the last two characters
		// was the signature itself one time in 256.
		c := "A"
		if r[len(r)-2] == 'A' {
			c = "B"
		}
		tampered := r[:len(r)-2] + c + r[len(r)-1:]
		if _, err := v.Verify(tampered, now); !errors.Is(err, ErrReceiptSignature) {
			t.Errorf("a tampered receipt of %s: %v", s.kid, err)
		}
	}
	other, _, _, otherTenant := twoReceiptKeys(t)
	r, err := other.Sign(testClaims(otherTenant, now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(r, now); !errors.Is(err, ErrReceiptUnknownKey) {
		t.Errorf("a receipt of a key not in the JWKS: %v", err)
	}
	if _, err := NewReceiptVerifier([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)); !errors.Is(err, ErrInvalidJWKS) {
		t.Errorf("a JWKS with a secret key: %v", err)
	}
}

func TestVerifyReceiptRefusesAmbiguousJWKS(t *testing.T) {
	retired, active, jwks, tenantID := twoReceiptKeys(t)
	now := time.Now().Truncate(time.Second)
	receipt, err := active.Sign(testClaims(tenantID, now))
	if err != nil {
		t.Fatal(err)
	}
	kid, x, otherX := `"`+active.kid+`"`, `"`+b64(active.PublicKey())+`"`, `"`+b64(retired.PublicKey())+`"`
	key := func(members string) string { return `{"kty":"OKP","crv":"Ed25519",` + members + `}` }
	for _, tc := range []struct{ name, jwks string }{
		{"KTY for kty", `{"keys":[{"KTY":"OKP","crv":"Ed25519","kid":` + kid + `,"x":` + x + `}]}`},
		{"x twice", `{"keys":[` + key(`"kid":`+kid+`,"x":`+otherX+`,"x":`+x) + `]}`},
		{"X beside x", `{"keys":[` + key(`"kid":`+kid+`,"x":`+x+`,"X":`+otherX) + `]}`},
		{"keys twice", `{"keys":[` + key(`"kid":`+kid+`,"x":`+x) + `],"keys":[]}`},
		{"Keys beside keys", `{"keys":[` + key(`"kid":`+kid+`,"x":`+x) + `],"Keys":[]}`},
		{"Kid beside kid", `{"keys":[` + key(`"kid":`+kid+`,"Kid":"another","x":`+x) + `]}`},
		{"USE enc", `{"keys":[` + key(`"kid":`+kid+`,"x":`+x+`,"USE":"enc"`) + `]}`},
		{"use twice", `{"keys":[` + key(`"kid":`+kid+`,"x":`+x+`,"use":"enc","use":"sig"`) + `]}`},
		{"key_ops as Key-Ops", `{"keys":[` + key(`"kid":`+kid+`,"x":`+x+`,"Key-Ops":["encrypt"]`) + `]}`},
		{"a bare JWK with KTY", `{"KTY":"OKP","crv":"Ed25519","kid":` + kid + `,"x":` + x + `}`},
		{"a duplicate in another key", `{"keys":[` + key(`"kid":`+kid+`,"x":`+x) + `,` + key(`"kid":"k2","kid":"k3","x":`+otherX) + `]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := VerifyReceipt(receipt, []byte(tc.jwks), now)
			if !errors.Is(err, ErrInvalidJWKS) || c != nil {
				t.Fatalf("got %v, want %v", err, ErrInvalidJWKS)
			}
		})
	}
	// Members no JWK reader interprets are ignored, whatever their case.
	extra := `{"keys":[` + key(`"kid":`+kid+`,"x":`+x+`,"use":"sig","ext":true,"Ext":false,"meta":{"ID":1,"id":2}`) + `],"next":null}`
	if _, err := VerifyReceipt(receipt, []byte(extra), now); err != nil {
		t.Errorf("JWKS with unknown members: %v", err)
	}
	if _, err := VerifyReceipt(receipt, jwks, now); err != nil {
		t.Errorf("the published JWKS: %v", err)
	}
	// jwk.Parse reads a bare JWK as a set of one.
	if _, err := VerifyReceipt(receipt, []byte(key(`"kid":`+kid+`,"x":`+x)), now); err != nil {
		t.Errorf("a bare JWK: %v", err)
	}
}

// The keyring remembers rows it found good by their whole contents, the
// sealed half included: a row of the same organization, kid, purpose and
// public key whose sealed half is another seed is checked, and refused,
// however often the good one was seen.
func TestCheckedRowsAreRememberedWithTheirSealedHalf(t *testing.T) {
	master, err := secrets.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, _ := NewKeyring(master)
	tenantID := store.NewTenantID()
	row := func(seed []byte, public ed25519.PublicKey) store.SigningKey {
		sealed, err := master.Seal(seed, receiptBinding(tenantID, "k1"))
		if err != nil {
			t.Fatal(err)
		}
		return store.SigningKey{KID: "k1", Purpose: store.PurposeReceipt, Algorithm: ReceiptAlgorithm,
			PublicKey: public, SealedPrivate: sealed, Status: store.KeyActive}
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	good := row(priv.Seed(), pub)
	for range 2 {
		if got, err := kr.publicHalf(tenantID, good); err != nil || !pub.Equal(got) {
			t.Fatalf("the good row: %x, %v", got, err)
		}
	}
	if _, err := kr.publicHalf(tenantID, row(other.Seed(), pub)); err == nil {
		t.Fatal("a row sealing another seed under the good row's kid and public key was trusted")
	}
}

// A key made but not yet installed holds its private half only sealed,
// and prints as its kid.
func TestReceiptKeyPrintsNoKeyMaterial(t *testing.T) {
	master, err := secrets.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, _ := NewKeyring(master)
	const tenant = "00000000-0000-4000-8000-000000000001"
	nk, err := kr.NewReceiptKey(tenant)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := master.Open(nk.sealed, receiptBinding(tenant, nk.KID()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey), nk.public) {
		t.Fatal("the sealed half is not the key's")
	}
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "key", nk)
	wrapped := struct{ k ReceiptKey }{*nk}
	checkNoKeyMaterial(t, seed,
		fmt.Sprintf("%v %+v %#v %s %x %q %d", nk, nk, nk, nk, nk, nk, nk),
		fmt.Sprintf("%v %+v %#v", *nk, *nk, wrapped),
		buf.String(), string(nk.PublicJWK()))
	if got, want := fmt.Sprintf("%v %+v %#v", nk, nk, nk), strings.Repeat("ReceiptKey("+nk.KID()+") ", 3); got+" " != want {
		t.Fatalf("printed %q, want %q", got, want)
	}
}
