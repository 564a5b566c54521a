package jose

import (
	"bytes"
	"crypto/ed25519"

	"filippo.io/edwards25519"
)

// UsableEd25519 reports whether pub is the canonical encoding of a curve
// point outside the small-order subgroup. crypto/ed25519 verifies without
// the cofactor: under a small-order key (the identity, the all-zero x a
// zeroed buffer gives, …) signatures verify for anyone, with no private
// key (R = the key's multiple, S = 0). libsodium refuses the same keys;
// so does every key this service trusts, from an agent's JWK to a JWKS
// an auditor is handed.
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
