package identity_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/agentsigna/agentsigna/internal/identity"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// forge builds a compact JWS by hand so that a test can put in it what no
// well-behaved library would. header and claims are marshaled, but for a
// []byte, taken as it is. key decides the signature: an Ed25519 or ECDSA
// private key signs, []byte is an HMAC-SHA256 key, nil signs nothing.
func forge(t testing.TB, header any, claims any, key any) string {
	t.Helper()
	var err error
	h, ok := header.([]byte)
	if !ok {
		if h, err = json.Marshal(header); err != nil {
			t.Fatal(err)
		}
	}
	p, ok := claims.([]byte)
	if !ok {
		if p, err = json.Marshal(claims); err != nil {
			t.Fatal(err)
		}
	}
	input := b64(h) + "." + b64(p)
	var sig []byte
	switch k := key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(input))
	case *ecdsa.PrivateKey:
		// JWS ES256 is r ‖ s, 32 bytes each (RFC 7518 §3.4), not DER.
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	case []byte:
		m := hmac.New(sha256.New, k)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case nil:
	default:
		t.Fatalf("forge: key %T", key)
	}
	return input + "." + b64(sig)
}

// publicJWK returns pub as a registered agent key would be stored.
func publicJWK(t testing.TB, pub any, kid string) (jwk.Key, []byte) {
	t.Helper()
	k, err := jwk.Import(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := identity.ParseAgentJWK(raw)
	if err != nil {
		t.Fatalf("registering %s: %v", raw, err)
	}
	return parsed, raw
}

func newEd25519(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func newP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}
