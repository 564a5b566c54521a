package bundles

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

// signFiles signs files as OPA's bundle signer does (RS256, a SHA-256 of
// each file's bytes in the claims), with header and extra claims given as
// raw JSON: a hand-made signature can say what OPA's signer never would.
func signFiles(t *testing.T, priv *rsa.PrivateKey, header, extraClaims string, files map[string]string) string {
	t.Helper()
	var list []map[string]string
	for name, content := range files {
		sum := sha256.Sum256([]byte(content))
		list = append(list, map[string]string{"name": name, "hash": hex.EncodeToString(sum[:]), "algorithm": "SHA-256"})
	}
	listJSON, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	claims := `{"files":` + string(listJSON) + extraClaims + `}`
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	d := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

// A bundle signature whose header or claims could be read two ways is
// refused: OPA picks the verifying key by the first of two kids, and
// encoding/json read the last, so a bundle signed with one key was
// recorded (SignedBy, the ledger's policy.upload entry) as signed by
// another. Found by review.
func TestSignatureReadOneWay(t *testing.T) {
	signer, other := rsaKey(t), rsaKey(t)
	key := func(id string, k *rsa.PrivateKey) VerificationKey {
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		vk, err := ParseVerificationKey(id, "RS256", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		if err != nil {
			t.Fatal(err)
		}
		return vk
	}
	keys := []VerificationKey{key("ci", signer), key("release-officer", other)}
	files := map[string]string{".manifest": okManifest, "tenant/policy.rego": allowAll}
	bundle := func(jws string) []byte {
		sigs, err := json.Marshal(map[string]any{"signatures": []string{jws}})
		if err != nil {
			t.Fatal(err)
		}
		return tarGz(t, file(".manifest", okManifest), file("tenant/policy.rego", allowAll), file(signaturesFile, string(sigs)))
	}

	signedBy := func(raw []byte) (string, error) {
		b, err := Read(raw, ReadOptions{Keys: keys})
		if err != nil {
			return "", err
		}
		return b.SignedBy, nil
	}
	if by, err := signedBy(bundle(signFiles(t, signer, `{"alg":"RS256","kid":"ci"}`, "", files))); err != nil || by != "ci" {
		t.Fatalf("a well-formed signature: SignedBy %q, %v", by, err)
	}
	// Claims of one's own (opa build --claims-file) that OPA's reader
	// does not take for its own are no ambiguity.
	if by, err := signedBy(bundle(signFiles(t, signer, `{"alg":"RS256","kid":"ci"}`, `,"key-id":"release-officer","Iss_":"ci-pipeline"`, files))); err != nil || by != "ci" {
		t.Fatalf("a signature with claims of its own: SignedBy %q, %v", by, err)
	}
	// Not three parts: refused before anything reads its members.
	if _, err := Read(bundle("eyJhbGciOiJSUzI1NiJ9.e30"), ReadOptions{Keys: keys}); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "not a compact JWS") {
		t.Errorf("a signature of two parts: %v, want ErrSignature saying it is not a compact JWS", err)
	}
	for _, tc := range []struct{ name, header, claims string }{
		{"two kids", `{"alg":"RS256","kid":"ci","kid":"release-officer"}`, ""},
		{"a kid in another case", `{"alg":"RS256","kid":"ci","KID":"release-officer"}`, ""},
		{"two algs", `{"alg":"RS256","alg":"none","kid":"ci"}`, ""},
		{"two keyid claims", `{"alg":"RS256"}`, `,"keyid":"ci","keyid":"release-officer"`},
		{"a keyid claim in another case", `{"alg":"RS256"}`, `,"keyid":"ci","KeyID":"release-officer"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(bundle(signFiles(t, signer, tc.header, tc.claims, files)), ReadOptions{Keys: keys})
			if !errors.Is(err, ErrSignature) {
				t.Fatalf("err = %v, want ErrSignature", err)
			}
		})
	}
}
