package verify

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

func TestVerifyCheckpoint(t *testing.T) {
	key := newTestKey(t, testOrigin, 1)
	tr := newTestTree(t, 5)
	root := tr.root(5)
	b64 := base64.StdEncoding.EncodeToString(root)
	signed := key.sign(t, 5, root)

	cp, err := VerifyCheckpoint(signed, key.vkey)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Origin() != testOrigin || cp.Size() != 5 || !bytes.Equal(cp.Hash(), root) || !bytes.Equal(cp.Note(), signed) {
		t.Fatalf("checkpoint %v", cp)
	}
	cp.Hash()[0] ^= 1 // a copy: the checkpoint stays intact
	if !bytes.Equal(cp.Hash(), root) {
		t.Fatal("Hash() exposes the checkpoint's root")
	}
	// The same note opens with the public libraries directly.
	v, _ := note.NewVerifier(key.vkey)
	if _, err := note.Open(signed, note.VerifierList(v)); err != nil {
		t.Fatalf("note.Open: %v", err)
	}
	if lc, _, _, err := log.ParseCheckpoint(signed, testOrigin, v); err != nil || lc.Size != 5 || !bytes.Equal(lc.Hash, root) {
		t.Fatalf("log.ParseCheckpoint: %v", err)
	}

	witness := newTestKey(t, "witness.example/w1", 3)
	other := newTestKey(t, "agentsigna.test/t/other", 2)
	sameName := newTestKey(t, testOrigin, 4) // same name, another key (rotation)

	accepted := map[string][]byte{
		"extra signature by an unknown key": key.signText(t, testOrigin+"\n5\n"+b64+"\n", witness.signer),
		"extension lines are ignored":       key.signText(t, testOrigin+"\n5\n"+b64+"\nextension one\nextension two\n"),
		"empty tree":                        key.sign(t, 0, tr.root(0)),
		"also signed by a rotated key":      key.signText(t, testOrigin+"\n5\n"+b64+"\n", sameName.signer),
	}
	for name, msg := range accepted {
		t.Run(name, func(t *testing.T) {
			cp, err := VerifyCheckpoint(msg, key.vkey)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
				t.Fatalf("note.Open: %v", err)
			}
			if cp.Origin() != testOrigin {
				t.Fatalf("origin %q", cp.Origin())
			}
		})
	}

	badSig := bytes.Clone(signed)
	badSig[len(badSig)-10] ^= 1 // inside the base64 signature
	// A second signature line by the key: note.Open verifies the first
	// and skips the rest, where c2sp.org/signed-note says each MUST
	// verify; found by review.
	sigLine := signed[bytes.LastIndex(signed, []byte("\n\n"))+2:]
	badSigLine := badSig[bytes.LastIndex(badSig, []byte("\n\n"))+2:]
	goodThenBad := append(bytes.Clone(signed), badSigLine...)
	signedTwice := append(bytes.Clone(signed), sigLine...)
	nonCanonicalRoot := []byte(b64)
	nonCanonicalRoot[42] = nextBase64Char(nonCanonicalRoot[42]) // same bytes, other padding bits
	if decoded, _ := base64.StdEncoding.DecodeString(string(nonCanonicalRoot)); !bytes.Equal(decoded, root) {
		t.Fatal("test setup: non-canonical root decodes differently")
	}
	for _, tc := range []struct {
		name   string
		msg    []byte
		vkey   string
		target error
	}{
		{"garbage", []byte("hello"), key.vkey, ErrInvalidCheckpoint},
		{"empty", nil, key.vkey, ErrInvalidCheckpoint},
		{"unparseable key", signed, "not a key", ErrInvalidKey},
		{"wrong key", signed, other.vkey, ErrInvalidCheckpoint},
		{"same name, another key", signed, sameName.vkey, ErrInvalidCheckpoint},
		{"no signature by the key", witness.sign(t, 5, root), key.vkey, ErrInvalidCheckpoint},
		{"no signature at all", []byte(testOrigin + "\n5\n" + b64 + "\n\n"), key.vkey, ErrInvalidCheckpoint},
		{"key name is not the origin", other.signText(t, testOrigin+"\n5\n"+b64+"\n"), other.vkey, ErrInvalidCheckpoint},
		{"tampered size", bytes.Replace(signed, []byte("\n5\n"), []byte("\n6\n"), 1), key.vkey, ErrInvalidCheckpoint},
		{"tampered root", bytes.Replace(signed, []byte(b64[:10]), []byte("AAAAAAAAAA"), 1), key.vkey, ErrInvalidCheckpoint},
		{"bad signature bytes", badSig, key.vkey, ErrInvalidCheckpoint},
		{"a good signature, then a bad one by the same key", goodThenBad, key.vkey, ErrInvalidCheckpoint},
		{"the same signature twice", signedTwice, key.vkey, ErrInvalidCheckpoint},
		{"size not a number", key.signText(t, testOrigin+"\nfive\n"+b64+"\n"), key.vkey, ErrInvalidCheckpoint},
		{"size with leading zero", key.signText(t, testOrigin+"\n05\n"+b64+"\n"), key.vkey, ErrInvalidCheckpoint},
		{"size with sign", key.signText(t, testOrigin+"\n+5\n"+b64+"\n"), key.vkey, ErrInvalidCheckpoint},
		{"size overflows", key.signText(t, testOrigin+"\n18446744073709551616\n"+b64+"\n"), key.vkey, ErrInvalidCheckpoint},
		{"root of 31 bytes", key.sign(t, 5, root[:31]), key.vkey, ErrInvalidCheckpoint},
		{"root of 33 bytes", key.sign(t, 5, append(bytes.Clone(root), 0)), key.vkey, ErrInvalidCheckpoint},
		{"root not base64", key.signText(t, testOrigin+"\n5\n!!\n"), key.vkey, ErrInvalidCheckpoint},
		{"root non-canonical base64", key.signText(t, testOrigin+"\n5\n"+string(nonCanonicalRoot)+"\n"), key.vkey, ErrInvalidCheckpoint},
		{"size 0 with a non-empty root", key.sign(t, 0, root), key.vkey, ErrInvalidCheckpoint},
		{"too few lines", key.signText(t, testOrigin+"\n5\n"), key.vkey, ErrInvalidCheckpoint},
		{"empty extension line", key.signText(t, testOrigin+"\n5\n"+b64+"\n\next\n"), key.vkey, ErrInvalidCheckpoint},
		{"too big", key.signText(t, testOrigin+"\n5\n"+b64+"\n"+strings.Repeat("x", MaxCheckpointSize)+"\n"), key.vkey, ErrInvalidCheckpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp, err := VerifyCheckpoint(tc.msg, tc.vkey)
			if !errors.Is(err, tc.target) || cp != nil {
				t.Fatalf("VerifyCheckpoint = %v, %v; want %v", cp, err, tc.target)
			}
		})
	}
}

func nextBase64Char(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	i := strings.IndexByte(alphabet, c)
	return alphabet[i^1] // flips a padding bit of a 32-byte value's last char
}

// The example of c2sp.org/signed-note. The spec publishes no public key for
// it, so it cannot verify positively; it must parse (its name and key ID
// are read from the signature line), and a key with the same name and ID
// but different key material must be told the signature is invalid.
func TestC2SPSignedNoteExample(t *testing.T) {
	msg, err := os.ReadFile("testdata/c2sp-signed-note-example.txt")
	if err != nil {
		t.Fatal(err)
	}
	_, err = note.Open(msg, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		t.Fatalf("note.Open = %v, want UnverifiedNoteError", err)
	}
	n := unverified.Note
	if !strings.HasPrefix(n.Text, "Ognuno sta solo sul cuor della terra\n") || !strings.HasSuffix(n.Text, "ed è subito sera.\n") ||
		len(n.UnverifiedSigs) != 1 || n.UnverifiedSigs[0].Name != "quasimodo.example/salvatore" {
		t.Fatalf("parsed note %+v", n)
	}
	impostor := fixedIDVerifier{name: n.UnverifiedSigs[0].Name, hash: n.UnverifiedSigs[0].Hash}
	var invalid *note.InvalidSignatureError
	if _, err := note.Open(msg, note.VerifierList(impostor)); !errors.As(err, &invalid) {
		t.Fatalf("note.Open with an impostor key = %v, want InvalidSignatureError", err)
	}
	// Through our code path: a key of that name (another key ID) finds no
	// signature, and the text is no checkpoint anyway.
	k := newTestKey(t, "quasimodo.example/salvatore", 9)
	if _, err := VerifyCheckpoint(msg, k.vkey); !errors.Is(err, ErrInvalidCheckpoint) {
		t.Fatalf("VerifyCheckpoint = %v", err)
	}
}

type fixedIDVerifier struct {
	name string
	hash uint32
}

func (v fixedIDVerifier) Name() string            { return v.name }
func (v fixedIDVerifier) KeyHash() uint32         { return v.hash }
func (v fixedIDVerifier) Verify(_, _ []byte) bool { return false }

// The published example key of golang.org/x/mod/sumdb/note, the format
// c2sp.org/signed-note specifies: its documented note verifies, and a
// checkpoint signed with its published private key (Ed25519 is
// deterministic, so the golden file is reproducible) verifies with
// VerifyCheckpoint.
func TestPublishedNoteKey(t *testing.T) {
	const (
		skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
		vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
		doc  = "If you think cryptography is the answer to your problem,\n" +
			"then you don't know what your problem is.\n" +
			"\n" +
			"— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
	)
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open([]byte(doc), note.VerifierList(v)); err != nil {
		t.Fatalf("documented note: %v", err)
	}
	golden, err := os.ReadFile("testdata/peterneumann-checkpoint.txt")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := VerifyCheckpoint(golden, vkey)
	if err != nil {
		t.Fatal(err)
	}
	tr := rfc6962Tree(t)
	if cp.Origin() != "PeterNeumann" || cp.Size() != 8 || !bytes.Equal(cp.Hash(), tr.root(8)) {
		t.Fatalf("golden checkpoint %v", cp)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	again, err := note.Sign(&note.Note{Text: "PeterNeumann\n8\n" + base64.StdEncoding.EncodeToString(tr.root(8)) + "\n"}, signer)
	if err != nil || !bytes.Equal(again, golden) {
		t.Fatalf("re-signing the golden checkpoint gives\n%s", again)
	}
}
