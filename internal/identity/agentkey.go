package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/agentsigna/agentsigna/ledger/verify"
)

// maxJWKSize bounds a registered key: a P-256 JWK is about 200 bytes.
const maxJWKSize = 4 << 10

// maxKIDLen bounds a key id (the store's limit for key ids, too).
const maxKIDLen = 128

// Members a registered agent key may carry (RFC 7517 §4, RFC 7518 §6.2.1,
// RFC 8037 §2). "ext" is what WebCrypto adds when it exports a key.
var publicJWKMembers = []string{"kty", "crv", "x", "y", "kid", "alg", "use", "key_ops", "ext"}

// Private members of every key type (RFC 7518 §6.2.2, §6.3.2, §6.4.1;
// RFC 8037 §2): their presence means someone is about to hand us a secret.
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// ParseAgentJWK validates a public JWK offered for an agent and returns it:
// an Ed25519 key (kty OKP, crv Ed25519) or a P-256 key (kty EC, crv P-256),
// with a kid, public members only. alg, use and key_ops, when present, must
// say EdDSA/ES256, "sig" and "verify". Refused keys are ErrInvalidAgentKey;
// a key carrying private members is refused without any of it being kept.
func ParseAgentJWK(b []byte) (jwk.Key, error) {
	if len(b) > maxJWKSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidAgentKey, maxJWKSize)
	}
	var members map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&members); err != nil || members == nil || dec.More() {
		return nil, fmt.Errorf("%w: not one JSON object", ErrInvalidAgentKey)
	}
	for name := range members {
		if slices.Contains(privateJWKMembers, name) {
			return nil, fmt.Errorf("%w: contains private key material (%q); register the public key only", ErrInvalidAgentKey, name)
		}
		if !slices.Contains(publicJWKMembers, name) {
			return nil, fmt.Errorf("%w: unsupported member %q", ErrInvalidAgentKey, name)
		}
	}
	key, err := jwk.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: not a JWK", ErrInvalidAgentKey)
	}
	if _, _, err := checkAgentKey(key); err != nil {
		return nil, err
	}
	return key, nil
}

// checkAgentKey accepts an Ed25519 or P-256 public key with a kid and
// returns the raw public key and the JWS alg it verifies. It guards keys
// registered before a rule changed, and keys a Lookup builds itself.
func checkAgentKey(key jwk.Key) (raw any, alg string, err error) {
	if key == nil {
		return nil, "", fmt.Errorf("%w: no key", ErrInvalidAgentKey)
	}
	kid, ok := key.KeyID()
	if !ok || !validKID(kid) {
		return nil, "", fmt.Errorf("%w: kid is required (1 to %d visible ASCII characters)", ErrInvalidAgentKey, maxKIDLen)
	}
	if private, err := jwk.IsPrivateKey(key); err != nil || private {
		return nil, "", fmt.Errorf("%w: not a public key of an asymmetric pair", ErrInvalidAgentKey)
	}
	if err := jwk.Export(key, &raw); err != nil {
		return nil, "", fmt.Errorf("%w: key does not decode", ErrInvalidAgentKey)
	}
	switch pub := raw.(type) {
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return nil, "", fmt.Errorf("%w: Ed25519 x must be 32 bytes", ErrInvalidAgentKey)
		}
		if !verify.UsableEd25519(pub) {
			return nil, "", fmt.Errorf("%w: Ed25519 x is not a point of a usable key (small order, or not canonical)", ErrInvalidAgentKey)
		}
		alg = "EdDSA"
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, "", fmt.Errorf("%w: EC keys must be on P-256", ErrInvalidAgentKey)
		}
		// ECDH() refuses a point that is not on the curve.
		if _, err := pub.ECDH(); err != nil {
			return nil, "", fmt.Errorf("%w: P-256 point is not on the curve", ErrInvalidAgentKey)
		}
		alg = "ES256"
	default:
		return nil, "", fmt.Errorf("%w: only Ed25519 (OKP) and P-256 (EC) keys are accepted", ErrInvalidAgentKey)
	}
	if a, ok := key.Algorithm(); ok && a.String() != alg {
		return nil, "", fmt.Errorf("%w: alg %q does not fit a %s key", ErrInvalidAgentKey, a.String(), alg)
	}
	if use, ok := key.KeyUsage(); ok && use != string(jwk.ForSignature) {
		return nil, "", fmt.Errorf("%w: use must be \"sig\"", ErrInvalidAgentKey)
	}
	if ops, ok := key.KeyOps(); ok {
		for _, op := range ops {
			if op != jwk.KeyOpVerify {
				return nil, "", fmt.Errorf("%w: key_ops may only say \"verify\"", ErrInvalidAgentKey)
			}
		}
	}
	return raw, alg, nil
}

func validKID(kid string) bool {
	if kid == "" || len(kid) > maxKIDLen {
		return false
	}
	for i := 0; i < len(kid); i++ {
		if kid[i] < 0x21 || kid[i] > 0x7e {
			return false
		}
	}
	return true
}

// RegistrableJWK validates a public JWK offered for an agent and returns
// its kid and the JSON to store. A JWK without a kid gets its RFC 7638
// thumbprint; ParseAgentJWK then refuses anything but a public
// Ed25519 or P-256 key (private members included) before it is kept.
func RegistrableJWK(raw []byte) (kid, public string, err error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return "", "", fmt.Errorf("%w: not a JSON object", ErrInvalidAgentKey)
	}
	if _, ok := members["kid"]; !ok {
		key, err := jwk.ParseKey(raw)
		if err != nil {
			return "", "", fmt.Errorf("%w: not a JWK", ErrInvalidAgentKey)
		}
		tp, err := key.Thumbprint(crypto.SHA256)
		if err != nil {
			return "", "", fmt.Errorf("%w: no thumbprint", ErrInvalidAgentKey)
		}
		members["kid"], _ = json.Marshal(base64.RawURLEncoding.EncodeToString(tp))
		if raw, err = json.Marshal(members); err != nil {
			return "", "", err
		}
	}
	key, err := ParseAgentJWK(raw)
	if err != nil {
		return "", "", err
	}
	kid, _ = key.KeyID()
	out, err := json.Marshal(key)
	if err != nil {
		return "", "", err
	}
	return kid, string(out), nil
}

// GenerateAgentKey makes an Ed25519 key pair for an agent and returns its
// kid (the RFC 7638 thumbprint), the public JWK to register and the private
// JWK for the agent alone.
func GenerateAgentKey() (kid, public string, private []byte, err error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", nil, fmt.Errorf("generate agent key: %w", err)
	}
	privJWK, err := jwk.Import(priv)
	if err != nil {
		return "", "", nil, fmt.Errorf("agent key as JWK: %w", err)
	}
	pubJWK, err := jwk.PublicKeyOf(privJWK)
	if err != nil {
		return "", "", nil, fmt.Errorf("agent public key: %w", err)
	}
	tp, err := pubJWK.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", "", nil, fmt.Errorf("agent key thumbprint: %w", err)
	}
	kid = base64.RawURLEncoding.EncodeToString(tp)
	for _, k := range []jwk.Key{privJWK, pubJWK} {
		if err := k.Set(jwk.KeyIDKey, kid); err != nil {
			return "", "", nil, err
		}
		if err := k.Set(jwk.AlgorithmKey, jwa.EdDSA()); err != nil {
			return "", "", nil, err
		}
	}
	pub, err := json.Marshal(pubJWK)
	if err != nil {
		return "", "", nil, err
	}
	if private, err = json.Marshal(privJWK); err != nil {
		return "", "", nil, err
	}
	// The same check as a key brought by the user: nothing private is stored.
	if _, err := ParseAgentJWK(pub); err != nil {
		return "", "", nil, err
	}
	return kid, string(pub), private, nil
}
