package identity_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/agentsigna/agentsigna/internal/identity"
)

func jwkJSON(t *testing.T, raw any, kid string) map[string]any {
	t.Helper()
	k, err := jwk.Import(raw)
	if err != nil {
		t.Fatal(err)
	}
	if kid != "" {
		_ = k.Set(jwk.KeyIDKey, kid)
	}
	b, _ := json.Marshal(k)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func with(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestParseAgentJWK(t *testing.T) {
	ed := newEd25519(t)
	p256 := newP256(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	edPub := jwkJSON(t, ed.Public(), "agent-key-1")
	ecPub := jwkJSON(t, &p256.PublicKey, "agent-key-2")

	for name, m := range map[string]map[string]any{
		"Ed25519":                  edPub,
		"P-256":                    ecPub,
		"Ed25519 with alg and use": with(edPub, "alg", "EdDSA", "use", "sig"),
		"P-256 with alg, key_ops":  with(ecPub, "alg", "ES256", "key_ops", []string{"verify"}),
		"as WebCrypto exports it":  with(ecPub, "ext", true, "key_ops", []string{"verify"}),
	} {
		b, _ := json.Marshal(m)
		k, err := identity.ParseAgentJWK(b)
		if err != nil {
			t.Errorf("%s refused: %v", name, err)
			continue
		}
		if kid, _ := k.KeyID(); kid != m["kid"] {
			t.Errorf("%s: kid %q", name, kid)
		}
	}

	offCurve := with(ecPub, "y", ecPub["x"])
	for _, tc := range []struct {
		name string
		jwk  any
	}{
		{"Ed25519 private key", jwkJSON(t, ed, "k")},
		{"P-256 private key", jwkJSON(t, p256, "k")},
		{"public key plus d", with(edPub, "d", b64(ed.Seed()))},
		{"RSA public key", jwkJSON(t, &rsaKey.PublicKey, "k")},
		{"symmetric key", map[string]any{"kty": "oct", "k": b64([]byte("0123456789abcdef")), "kid": "k"}},
		{"P-384", jwkJSON(t, &p384.PublicKey, "k")},
		{"X25519", with(edPub, "crv", "X25519")},
		{"Ed448", with(edPub, "crv", "Ed448")},
		{"no kid", with(edPub, "kid", nil)},
		{"empty kid", with(edPub, "kid", "")},
		{"kid with a space", with(edPub, "kid", "my key")},
		{"kid too long", with(edPub, "kid", strings.Repeat("k", 129))},
		{"jku member", with(edPub, "x5u", "https://attacker.example/")},
		{"alg of another key type", with(edPub, "alg", "ES256")},
		{"alg HS256", with(ecPub, "alg", "HS256")},
		{"use enc", with(edPub, "use", "enc")},
		{"key_ops sign", with(edPub, "key_ops", []string{"sign", "verify"})},
		{"short x", with(edPub, "x", b64(make([]byte, 31)))},
		// Ed25519 points of small order: under them a signature verifies
		// for anyone (crypto/ed25519 checks without the cofactor).
		{"Ed25519 identity point", with(edPub, "x", b64(mustHex(t, "0100000000000000000000000000000000000000000000000000000000000000")))},
		{"Ed25519 all-zero x (order 4)", with(edPub, "x", b64(make([]byte, 32)))},
		{"Ed25519 point of order 2", with(edPub, "x", b64(mustHex(t, "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")))},
		{"Ed25519 point of order 8", with(edPub, "x", b64(mustHex(t, "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")))},
		{"Ed25519 identity, not canonical", with(edPub, "x", b64(mustHex(t, "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")))},
		{"point off the curve", offCurve},
		{"no x", with(edPub, "x", nil)},
		{"a JWKS", map[string]any{"keys": []any{edPub}}},
		{"not JSON", "{"},
		{"array", []any{edPub}},
		{"null", nil},
		{"two objects", "two"},
		// Past the size bound by whitespace alone, so only the bound
		// refuses it.
		{"huge", "{" + strings.Repeat(" ", 5000) + string(func() []byte { b, _ := json.Marshal(edPub); return b }())[1:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b []byte
			switch v := tc.jwk.(type) {
			case string:
				b = []byte(v)
				if v == "two" {
					one, _ := json.Marshal(edPub)
					b = append(append(one, ' '), one...)
				}
			default:
				b, _ = json.Marshal(v)
			}
			k, err := identity.ParseAgentJWK(b)
			if !errors.Is(err, identity.ErrInvalidAgentKey) || k != nil {
				t.Fatalf("got %v, %v", k, err)
			}
			if strings.Contains(err.Error(), b64(ed.Seed())) {
				t.Fatalf("error repeats the private key: %v", err)
			}
		})
	}
}

// Keys from the stdlib round-trip: a registered key verifies what the
// private half signs (guards against a parser that mangles x or y).
func TestParsedAgentKeyIsTheSameKey(t *testing.T) {
	ed := newEd25519(t)
	k, _ := publicJWK(t, ed.Public(), "k1")
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		t.Fatal(err)
	}
	if !ed.Public().(ed25519.PublicKey).Equal(raw) {
		t.Fatal("registered key differs from the agent's")
	}
	ec := newP256(t)
	k, _ = publicJWK(t, &ec.PublicKey, "k2")
	if err := jwk.Export(k, &raw); err != nil {
		t.Fatal(err)
	}
	if !ec.PublicKey.Equal(raw) {
		t.Fatal("registered key differs from the agent's")
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A public JWK registered without a kid gets its RFC 7638 thumbprint
// (RFC 8037 §A.3's vector, not the library's own answer); a kid given is
// kept; what is not one JSON object, or not a JWK, is refused.
func TestRegistrableJWK(t *testing.T) {
	const x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	kid, public, err := identity.RegistrableJWK([]byte(`{"kty":"OKP","crv":"Ed25519","x":"` + x + `"}`))
	if err != nil || kid != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Fatalf("kid-less key: kid %q, %v", kid, err)
	}
	if k, err := identity.ParseAgentJWK([]byte(public)); err != nil {
		t.Fatalf("stored JWK %s: %v", public, err)
	} else if got, _ := k.KeyID(); got != kid {
		t.Fatalf("stored JWK's kid %q, returned %q", got, kid)
	}
	if kid, _, err := identity.RegistrableJWK([]byte(`{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"ed-1"}`)); err != nil || kid != "ed-1" {
		t.Fatalf("kid given: %q, %v", kid, err)
	}
	for name, raw := range map[string]string{
		"array":                 `[]`,
		"null":                  `null`,
		"not JSON":              `-----BEGIN PUBLIC KEY-----`,
		"kid-less, not a JWK":   `{"kty":"OKP","crv":"Ed25519","x":"!!"}`,
		"kid-less, private":     `{"kty":"OKP","crv":"Ed25519","x":"` + x + `","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}`,
		"kid-less, no key type": `{"x":"` + x + `"}`,
		"kid given, not a JWK":  `{"kty":"OKP","crv":"Ed25519","x":"!!","kid":"k"}`,
	} {
		if _, _, err := identity.RegistrableJWK([]byte(raw)); !errors.Is(err, identity.ErrInvalidAgentKey) {
			t.Errorf("%s: %v, want ErrInvalidAgentKey", name, err)
		}
	}
}
