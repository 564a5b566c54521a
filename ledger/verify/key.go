package verify

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"

	"filippo.io/edwards25519"
	"golang.org/x/mod/sumdb/note"
)

// noteAlgEd25519 is c2sp.org/signed-note's signature type of an Ed25519
// key: the first byte of the key after the name and key id.
const noteAlgEd25519 = 0x01

// NewVerifier parses a note verifier key, "<name>+<hex key id>+<base64 key>",
// as note.NewVerifier does, and refuses (ErrInvalidKey) an Ed25519 key that
// UsableEd25519 refuses: under the identity key, for one, the signature
// R = identity, S = 0 verifies on any text, so anyone could sign
// checkpoints of any size and root in the name of a log pinned to it.
// note.NewVerifier accepts such keys, as crypto/ed25519 does.
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	// note.NewVerifier has checked the form: a name (no "+"), a hex key
	// id, and the standard base64 of the signature type and the key,
	// which may hold "+" itself.
	fields := strings.SplitN(vkey, "+", 3)
	key, err := base64.StdEncoding.DecodeString(fields[2])
	if err != nil || len(key) == 0 || key[0] != noteAlgEd25519 || !UsableEd25519(key[1:]) {
		return nil, fmt.Errorf("%w: key %s+%08x is not a usable Ed25519 public key (a small-order or non-canonical point)", ErrInvalidKey, v.Name(), v.KeyHash())
	}
	return v, nil
}

// UsableEd25519 reports whether pub is the canonical encoding of a curve
// point outside the small-order subgroup. crypto/ed25519 verifies without
// the cofactor: under a small-order key (the identity, the all-zero x a
// zeroed buffer gives, …) signatures verify for anyone, with no private
// key (R = the key's multiple, S = 0). libsodium refuses the same keys;
// so does every key AgentSigna trusts, from an agent's JWK to a log key
// or a JWKS an auditor is handed.
func UsableEd25519(pub ed25519.PublicKey) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	p, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil || !bytes.Equal(p.Bytes(), pub) {
		return false // not a point, or not its canonical encoding
	}
	return new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 0
}
