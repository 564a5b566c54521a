package bundles

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	opabundle "github.com/open-policy-agent/opa/v1/bundle"
)

// minRSABits is the smallest RSA modulus accepted for bundle signatures
// (NIST SP 800-57: 2048 bits until 2030).
const minRSABits = 2048

// DefaultKeyID is the key id `opa build --signing-key` writes into the
// signature's header when none is given (its --verification-key-id default).
const DefaultKeyID = "default"

// VerificationKey is an organization's registered bundle verification key:
// a public key and the one algorithm signatures under it must use. Build one
// with ParseVerificationKey; the zero value is unusable.
type VerificationKey struct {
	id        string
	algorithm string
	pem       string // canonical PKIX "PUBLIC KEY" PEM of the parsed key
}

// ID is the key id a signature names in its "kid" header.
func (k VerificationKey) ID() string { return k.id }

// Algorithm is the JWS algorithm signatures under this key must use.
func (k VerificationKey) Algorithm() string { return k.algorithm }

// PEM is the canonical PEM of the public key (what to store).
func (k VerificationKey) PEM() []byte { return []byte(k.pem) }

// algorithmsFor lists the JWS algorithms OPA verifies bundles with, by key
// kind. HMAC (HS*) is absent on purpose: a shared secret registered with us
// would let anyone who reads it sign bundles. OPA has no EdDSA for bundles.
func algorithmsFor(pub any) ([]string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits; at least %d are required", ErrVerificationKey, k.N.BitLen(), minRSABits)
		}
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}, nil
		case elliptic.P384():
			return []string{"ES384"}, nil
		case elliptic.P521():
			return []string{"ES512"}, nil
		}
		return nil, fmt.Errorf("%w: unsupported elliptic curve", ErrVerificationKey)
	case ed25519.PublicKey:
		return nil, fmt.Errorf("%w: Ed25519 key: OPA bundle signatures support RSA (RS*, PS*) and ECDSA (ES*) keys only", ErrVerificationKey)
	}
	return nil, fmt.Errorf("%w: unsupported public key type %T", ErrVerificationKey, pub)
}

// ParseVerificationKey checks a PEM public key offered for bundle
// verification. id is the key id signatures will name (DefaultKeyID is what
// `opa build` uses). algorithm is one of RS256…RS512, PS256…PS512 for RSA
// keys, or ES256/ES384/ES512 for P-256/P-384/P-521 keys; empty picks RS256
// for RSA and the curve's ES algorithm for ECDSA, as OPA's default is RS256.
//
// It refuses, with ErrVerificationKey: anything but exactly one PEM block of
// type "PUBLIC KEY" or "RSA PUBLIC KEY" (a private key is refused by name: it
// must never be handed to the server), HMAC algorithms, RSA keys under 2048
// bits, and an algorithm that does not fit the key.
func ParseVerificationKey(id, algorithm string, pemBytes []byte) (VerificationKey, error) {
	if id == "" || len(id) > 128 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return VerificationKey{}, fmt.Errorf("%w: key id must be 1 to 128 printable ASCII characters without spaces", ErrVerificationKey)
	}
	if strings.HasPrefix(strings.ToUpper(algorithm), "HS") {
		return VerificationKey{}, fmt.Errorf("%w: %s is an HMAC algorithm; bundle signatures must use a public key (RS*, PS*, ES*)", ErrVerificationKey, algorithm)
	}
	block, rest := pem.Decode(pemBytes)
	if block == nil {
		return VerificationKey{}, fmt.Errorf("%w: not a PEM-encoded public key", ErrVerificationKey)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return VerificationKey{}, fmt.Errorf("%w: more than one PEM block; give exactly one public key", ErrVerificationKey)
	}
	var pub any
	var err error
	switch {
	case block.Type == "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case block.Type == "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case strings.Contains(block.Type, "PRIVATE KEY"):
		return VerificationKey{}, fmt.Errorf("%w: this is a private key (%s); register only the public key, e.g. openssl pkey -in key.pem -pubout", ErrVerificationKey, block.Type)
	default:
		return VerificationKey{}, fmt.Errorf("%w: PEM block %q is not a public key", ErrVerificationKey, block.Type)
	}
	if err != nil {
		return VerificationKey{}, fmt.Errorf("%w: %s does not parse", ErrVerificationKey, block.Type)
	}
	algs, err := algorithmsFor(pub)
	if err != nil {
		return VerificationKey{}, err
	}
	if algorithm == "" {
		algorithm = algs[0]
	}
	fits := false
	for _, a := range algs {
		fits = fits || a == algorithm
	}
	if !fits {
		return VerificationKey{}, fmt.Errorf("%w: algorithm %q does not fit this key (use one of %s)", ErrVerificationKey, algorithm, strings.Join(algs, ", "))
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return VerificationKey{}, fmt.Errorf("%w: %v", ErrVerificationKey, err)
	}
	return VerificationKey{
		id:        id,
		algorithm: algorithm,
		pem:       string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	}, nil
}

// verificationConfig is OPA's view of keys: the key a signature's kid
// names, with the algorithm we registered (never the one the signature
// claims: OPA verifies with the configured algorithm).
func verificationConfig(keys []VerificationKey) *opabundle.VerificationConfig {
	m := make(map[string]*opabundle.KeyConfig, len(keys))
	for _, k := range keys {
		m[k.id] = &opabundle.KeyConfig{Key: k.pem, Algorithm: k.algorithm}
	}
	return opabundle.NewVerificationConfig(m, "", "", nil)
}
