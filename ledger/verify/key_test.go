package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// noteKey is the note verifier key of name for the raw 32-byte Ed25519
// public key pub, with its key id (c2sp.org/signed-note).
func noteKey(name string, pub []byte) (vkey string, id []byte) {
	key := append([]byte{noteAlgEd25519}, pub...)
	h := sha256.Sum256(append([]byte(name+"\n"), key...))
	return fmt.Sprintf("%s+%08x+%s", name, binary.BigEndian.Uint32(h[:4]), base64.StdEncoding.EncodeToString(key)), h[:4]
}

// smallOrderKeys are Ed25519 public keys crypto/ed25519 accepts and no
// verifier may trust.
var smallOrderKeys = map[string][]byte{
	// The identity: R = identity, S = 0 verifies on any message.
	"identity": append([]byte{1}, make([]byte, 31)...),
	// y = 0, a point of order 4 (what a zeroed buffer gives).
	"all zero": make([]byte, 32),
	// y = -1, the point of order 2.
	"order 2": append([]byte{0xec}, append(bytes.Repeat([]byte{0xff}, 30), 0x7f)...),
	// y = p + 1: the identity, not canonically encoded.
	"identity, non-canonical": append([]byte{0xee}, append(bytes.Repeat([]byte{0xff}, 30), 0x7f)...),
}

// A log key of small order would let anyone sign checkpoints of any size
// and root in the log's name; found by review. Every verifier reaches
// the key through VerifyCheckpoint (inclusion, consistency, tlog-proof,
// audit exports), so refusing it there refuses it everywhere.
func TestSmallOrderLogKeyIsRefused(t *testing.T) {
	// A checkpoint nobody signed: R = identity, S = 0.
	vkey, id := noteKey(testOrigin, smallOrderKeys["identity"])
	forged := make([]byte, 64)
	forged[0] = 1
	root := make([]byte, HashSize)
	text := fmt.Sprintf("%s\n%d\n%s\n", testOrigin, 1<<40, base64.StdEncoding.EncodeToString(root))
	msg := []byte(text + "\n\u2014 " + testOrigin + " " + base64.StdEncoding.EncodeToString(append(id, forged...)) + "\n")
	// The control: the public libraries accept the forgery.
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Fatalf("test setup: the forgery does not open under the identity key: %v", err)
	}
	if cp, err := VerifyCheckpoint(msg, vkey); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("VerifyCheckpoint of a forged checkpoint under the identity key = %v, %v; want ErrInvalidKey", cp, err)
	}

	for name, pub := range smallOrderKeys {
		t.Run(name, func(t *testing.T) {
			vkey, _ := noteKey(testOrigin, pub)
			if _, err := note.NewVerifier(vkey); err != nil {
				t.Fatalf("test setup: note.NewVerifier refuses it already: %v", err)
			}
			if _, err := NewVerifier(vkey); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("NewVerifier = %v, want ErrInvalidKey", err)
			}
			if UsableEd25519(pub) {
				t.Fatal("UsableEd25519 = true")
			}
		})
	}

	// Real keys are accepted, among them one whose base64 holds a "+",
	// the separator of the key's fields.
	key := newTestKey(t, testOrigin, 1)
	plus := false
	for seed := byte(1); !plus; seed++ {
		k := newTestKey(t, testOrigin, seed)
		if _, err := NewVerifier(k.vkey); err != nil {
			t.Fatalf("NewVerifier(%s) = %v", k.vkey, err)
		}
		plus = strings.Count(k.vkey, "+") > 2
	}
	tr := newTestTree(t, 3)
	if _, err := VerifyCheckpoint(key.sign(t, 3, tr.root(3)), key.vkey); err != nil {
		t.Fatal(err)
	}
	if _, err := NewVerifier("not a key"); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("NewVerifier(garbage) = %v", err)
	}
}
