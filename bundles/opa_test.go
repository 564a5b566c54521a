package bundles

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These tests run the real OPA CLI, v1.22.3 as pinned by the module's tool
// directive (`go get -tool github.com/open-policy-agent/opa@v1.22.3`), so that
// what a security team's `opa build --signing-key` produces is what we accept.

// opaCLI returns the path of the opa tool binary, building it on first use.
func opaCLI(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the opa CLI (go tool opa); skipped with -short")
	}
	cmd := exec.Command("go", "tool", "-n", "opa")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go tool -n opa: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go tool -n opa: %v", err)
	}
	bin := strings.TrimSpace(string(out))
	if _, err := os.Stat(bin); err != nil {
		// Not built yet: `go tool opa` builds it.
		if out, err := exec.Command("go", "tool", "opa", "version").CombinedOutput(); err != nil {
			t.Fatalf("go tool opa version: %v\n%s", err, out)
		}
	}
	return bin
}

// opa runs the opa CLI in dir.
func opa(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(opaCLI(t), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opa %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// writeKeyPair writes a private key PEM to dir and returns its path and the
// public key PEM.
func writeKeyPair(t *testing.T, dir, name string, priv crypto.Signer) (string, []byte) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// policyRepo writes a small organization policy repository to a new
// directory: what a security team keeps in Git.
func policyRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		".manifest": `{"roots": ["tenant"], "rego_version": 1}`,
		"tenant/decision.rego": `package tenant

decision := {"allow": allow}

default allow := false

allow if {
	input.action.type == "payment.send"
	to_number(input.action.amount.value) <= data.tenant.limits.EUR
}
`,
		"tenant/data.json": `{"limits": {"EUR": 1000}}`,
		"README.md":        "# policies\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// signedBundle builds and signs the repository with the real opa CLI and
// returns the bundle's bytes and the verification key.
func signedBundle(t *testing.T, alg string, priv crypto.Signer) ([]byte, VerificationKey) {
	t.Helper()
	repo := policyRepo(t)
	keys := t.TempDir()
	keyFile, pubPEM := writeKeyPair(t, keys, "signing.pem", priv)
	out := filepath.Join(keys, "bundle.tar.gz")
	opa(t, repo, "build", "-b", ".", "--revision", "git-4f2a9c1", "--signing-key", keyFile, "--signing-alg", alg, "-o", out)
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	vk, err := ParseVerificationKey(DefaultKeyID, alg, pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	return raw, vk
}

func TestOPASignedBundleAccepted(t *testing.T) {
	for _, tc := range []struct {
		alg  string
		priv func(t *testing.T) crypto.Signer
	}{
		{"RS256", func(t *testing.T) crypto.Signer { return rsaKey(t) }},
		{"PS384", func(t *testing.T) crypto.Signer { return rsaKey(t) }},
		{"ES256", func(t *testing.T) crypto.Signer {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			raw, vk := signedBundle(t, tc.alg, tc.priv(t))
			b := mustRead(t, raw, ReadOptions{Keys: []VerificationKey{vk}})
			if b.Revision != "git-4f2a9c1" || b.SignedBy != DefaultKeyID {
				t.Errorf("revision %q signed by %q", b.Revision, b.SignedBy)
			}
			p := mustCompile(t, b)
			v, err := p.Evaluate(context.Background(), payment(t))
			if err != nil || !v.Allow {
				t.Errorf("verdict %+v, %v; want allow", v, err)
			}
		})
	}
}

func TestOPASignedBundleTampered(t *testing.T) {
	raw, vk := signedBundle(t, "RS256", rsaKey(t))
	keys := ReadOptions{Keys: []VerificationKey{vk}}
	mustRead(t, raw, keys)
	entries := untar(t, raw)

	// edit returns the bundle re-packed after f changed its entries.
	edit := func(f func([]entry) []entry) []byte {
		cp := append([]entry(nil), entries...)
		return tarGz(t, f(cp)...)
	}
	find := func(es []entry, name string) int {
		for i, e := range es {
			if e.hdr.Name == name {
				return i
			}
		}
		t.Fatalf("%s not in the bundle", name)
		return -1
	}
	otherKey, _ := signedBundle(t, "RS256", rsaKey(t))

	for _, tc := range []struct {
		name string
		raw  []byte
		opts ReadOptions
		want error
	}{
		{"one byte of a policy changed", edit(func(es []entry) []entry {
			i := find(es, "/tenant/decision.rego")
			es[i].content = strings.Replace(es[i].content, "<=", ">=", 1)
			return es
		}), keys, ErrSignature},
		{"one byte of the data changed", edit(func(es []entry) []entry {
			i := find(es, "/data.json")
			es[i].content = strings.Replace(es[i].content, "1000", "9000", 1)
			return es
		}), keys, ErrSignature},
		{"revision changed", edit(func(es []entry) []entry {
			i := find(es, "/.manifest")
			es[i].content = strings.Replace(es[i].content, "git-4f2a9c1", "git-4f2a9c2", 1)
			return es
		}), keys, ErrSignature},
		{"file added", edit(func(es []entry) []entry {
			return append(es, file("/tenant/extra.rego", "package tenant.extra\n\nx := 1\n"))
		}), keys, ErrSignature},
		{"file removed", edit(func(es []entry) []entry {
			i := find(es, "/data.json")
			return append(es[:i], es[i+1:]...)
		}), keys, ErrSignature},
		{"signature removed", edit(func(es []entry) []entry {
			i := find(es, "/.signatures.json")
			return append(es[:i], es[i+1:]...)
		}), keys, ErrUnsigned},
		{"signature from another bundle", edit(func(es []entry) []entry {
			i := find(es, "/.signatures.json")
			es[i].content = untar(t, otherKey)[find(untar(t, otherKey), "/.signatures.json")].content
			return es
		}), keys, ErrSignature},
		{"signed by another key", otherKey, keys, ErrSignature},
		{"HMAC signature keyed with the public key", edit(func(es []entry) []entry {
			i := find(es, "/.signatures.json")
			es[i].content = forgeHMAC(t, es[i].content, vk.PEM())
			return es
		}), keys, ErrSignature},
		{"signed but no key given", raw, ReadOptions{}, ErrSignedWithoutKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(tc.raw, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}

	// Unsigned bundles are refused once a key is registered.
	if _, err := Read(okBundle(t), keys); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned bundle: %v", err)
	}
	// A key registered for RS256 does not verify a PS256 signature: the
	// registered algorithm decides, not the signature's header.
	rsaPriv := rsaKey(t)
	ps, _ := signedBundle(t, "PS256", rsaPriv)
	pub, _ := x509.MarshalPKIXPublicKey(rsaPriv.Public())
	rs, err := ParseVerificationKey(DefaultKeyID, "RS256", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Read(ps, ReadOptions{Keys: []VerificationKey{rs}}); !errors.Is(err, ErrSignature) {
		t.Errorf("PS256 bundle under an RS256 key: %v", err)
	}
}

// TestOPASignedBundleEveryByte flips each byte of the compressed stream
// (after the gzip header, whose time and OS fields carry no content). Each
// flip must be refused, as a broken archive or a bad signature, unless it
// leaves every file byte for byte as signed: deflate has a little slack (a
// flip in a Huffman table can encode the same output), and the content,
// which is what the signature covers, is then untouched. The Digest still
// differs, so storage would see a second bundle for the revision
// (CheckUpload: ErrRevisionConflict).
func TestOPASignedBundleEveryByte(t *testing.T) {
	raw, vk := signedBundle(t, "ES256", func() crypto.Signer {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return k
	}())
	keys := ReadOptions{Keys: []VerificationKey{vk}}
	want := mustRead(t, raw, keys).Files
	same := 0
	for i := 10; i < len(raw); i++ {
		bad := append([]byte(nil), raw...)
		bad[i] ^= 0xff
		b, err := Read(bad, keys)
		if err == nil {
			if !sameFiles(b.Files, want) || b.Digest == mustRead(t, raw, keys).Digest {
				t.Fatalf("byte %d of %d flipped: accepted with other content", i, len(raw))
			}
			same++
			continue
		}
		if !errors.Is(err, ErrInvalidBundle) {
			t.Fatalf("byte %d of %d flipped: err = %v", i, len(raw), err)
		}
	}
	t.Logf("%d flips of %d refused, %d left the content unchanged", len(raw)-10-same, len(raw)-10, same)
}

func sameFiles(a, b []File) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Path != b[i].Path || string(a[i].Content) != string(b[i].Content) {
			return false
		}
	}
	return true
}

// forgeHMAC re-signs the signatures file's JWT with HS256, keyed with the
// public key's PEM: the classic algorithm-confusion forgery.
func forgeHMAC(t *testing.T, signatures string, key []byte) string {
	t.Helper()
	var sc struct {
		Signatures []string `json:"signatures"`
	}
	if err := json.Unmarshal([]byte(signatures), &sc); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(sc.Signatures[0], ".")
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"default","typ":"JWT"}`))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(hdr + "." + parts[1]))
	sc.Signatures[0] = hdr + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	out, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// The example organization repository builds with opa build, and the result
// passes intake and compiles.
func TestOPABuildsExampleRepository(t *testing.T) {
	out := filepath.Join(t.TempDir(), "acme.tar.gz")
	keyFile, pubPEM := writeKeyPair(t, t.TempDir(), "signing.pem", rsaKey(t))
	opa(t, filepath.Join("..", "policies", "examples", "acme"), "build", "-b", ".", "--ignore", "*_test.rego",
		"--revision", "acme-2025.03", "--signing-key", keyFile, "-o", out)
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	vk, err := ParseVerificationKey(DefaultKeyID, "", pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	p := mustCompile(t, mustRead(t, raw, ReadOptions{Keys: []VerificationKey{vk}}))
	if p.Revision() != "acme-2025.03" {
		t.Errorf("revision %q", p.Revision())
	}
	// And opa test passes on it, as its README says.
	opa(t, filepath.Join("..", "policies", "examples", "acme"), "test", ".")
}
