package bundles

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func pemOf(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParseVerificationKey(t *testing.T) {
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024) //nolint:gosec // testing that it is refused
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)

	pkix := func(pub any) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf(t, "PUBLIC KEY", der)
	}
	pkcs8 := func(priv any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf(t, "PRIVATE KEY", der)
	}

	for _, tc := range []struct {
		name    string
		id, alg string
		pem     []byte
		wantAlg string
		wantErr string // "" for success
	}{
		{"RSA defaults to RS256", "default", "", pkix(&rsa2048.PublicKey), "RS256", ""},
		{"RSA PKCS#1 public key", "k1", "PS512", pemOf(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsa2048.PublicKey)), "PS512", ""},
		{"P-256 defaults to ES256", "default", "", pkix(&p256.PublicKey), "ES256", ""},
		{"P-384 with ES384", "default", "ES384", pkix(&p384.PublicKey), "ES384", ""},
		{"P-256 with ES384", "default", "ES384", pkix(&p256.PublicKey), "", "does not fit"},
		{"RSA with ES256", "default", "ES256", pkix(&rsa2048.PublicKey), "", "does not fit"},
		{"HS256 refused", "default", "HS256", pkix(&rsa2048.PublicKey), "", "HMAC"},
		{"HS512 lower case refused", "default", "hs512", []byte("a shared secret"), "", "HMAC"},
		{"none refused", "default", "none", pkix(&rsa2048.PublicKey), "", "does not fit"},
		{"a secret, not PEM", "default", "", []byte("correct horse battery staple"), "", "not a PEM"},
		{"RSA private key refused", "default", "", pkcs8(rsa2048), "", "private key"},
		{"PKCS#1 private key refused", "default", "", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048)), "", "private key"},
		{"EC private key refused", "default", "", func() []byte { d, _ := x509.MarshalECPrivateKey(p256); return pemOf(t, "EC PRIVATE KEY", d) }(), "", "private key"},
		{"certificate refused", "default", "", pemOf(t, "CERTIFICATE", []byte{0x30, 0x00}), "", "not a public key"},
		{"two keys refused", "default", "", append(pkix(&p256.PublicKey), pkix(&p384.PublicKey)...), "", "more than one"},
		{"garbage DER", "default", "", pemOf(t, "PUBLIC KEY", []byte("nope")), "", "does not parse"},
		{"short RSA key", "default", "", pkix(&rsa1024.PublicKey), "", "1024 bits"},
		{"Ed25519 key", "default", "", pkix(edPub), "", "Ed25519"},
		{"Ed25519 private key", "default", "", pkcs8(edPriv), "", "private key"},
		{"empty id", "", "", pkix(&p256.PublicKey), "", "key id"},
		{"id with a space", "my key", "", pkix(&p256.PublicKey), "", "key id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseVerificationKey(tc.id, tc.alg, tc.pem)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrVerificationKey) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrVerificationKey mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.ID() != tc.id || k.Algorithm() != tc.wantAlg || !strings.HasPrefix(string(k.PEM()), "-----BEGIN PUBLIC KEY-----") {
				t.Errorf("key = %q %q %q", k.ID(), k.Algorithm(), k.PEM())
			}
		})
	}
}

func TestReadOptionsRejectZeroKeyAndDuplicates(t *testing.T) {
	if _, err := Read(okBundle(t), ReadOptions{Keys: []VerificationKey{{}}}); err == nil {
		t.Error("zero VerificationKey accepted")
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&p256.PublicKey)
	k, err := ParseVerificationKey("default", "", pemOf(t, "PUBLIC KEY", der))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Read(okBundle(t), ReadOptions{Keys: []VerificationKey{k, k}}); !errors.Is(err, ErrVerificationKey) {
		t.Errorf("duplicate key id: %v", err)
	}
	if _, err := Read(okBundle(t), ReadOptions{Limits: Limits{MaxCompressedBytes: -1}}); err == nil {
		t.Error("negative limit accepted")
	}
}
