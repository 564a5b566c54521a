package signing

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/agentsigna/agentsigna/internal/jose"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// publicJWK is the only shape a published key takes (RFC 7517 §4, RFC 8037
// §2). It has no field for a private member, so none can be published.
type publicJWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

type publicJWKS struct {
	Keys []publicJWK `json:"keys"`
}

// JWKS returns the JSON Web Key Set (RFC 7517 §5) of every key of purpose
// held by organization tenantID — active first, then retired, which stay
// for verification — with public members only. It never creates a key: an
// organization without one gets {"keys":[]}. Each key's public half is
// published only once its sealed private half is seen to derive it
// (publicHalf): a row whose halves disagree fails the set.
func (k *Keyring) JWKS(ctx context.Context, keys store.KeyTx, tenantID string, purpose store.KeyPurpose) ([]byte, error) {
	if purpose != store.PurposeReceipt && purpose != store.PurposeToken {
		return nil, fmt.Errorf("signing: %q keys are not JSON Web Keys", purpose)
	}
	ks, err := keys.SigningKeys(ctx, purpose)
	if err != nil {
		return nil, err
	}
	set := publicJWKS{Keys: make([]publicJWK, 0, len(ks))}
	for _, status := range []store.KeyStatus{store.KeyActive, store.KeyRetired} {
		for _, key := range ks {
			if key.Status != status {
				continue
			}
			// Refuse rather than publish something verifiers would misread,
			// or a key the service never held.
			pub, err := k.publicHalf(tenantID, key)
			if err != nil {
				return nil, err
			}
			set.Keys = append(set.Keys, publicJWK{
				Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub),
				Kid: key.KID, Alg: ReceiptAlgorithm, Use: "sig",
			})
		}
	}
	return json.Marshal(set)
}

// publicHalf returns the public half of organization tenantID's receipt or
// token key once the key's sealed private half, opened under the binding
// of its organization, kid and purpose, derives it. The public column is
// outside that binding: without this, anyone who could add a row — with a
// public key of their own, or of small order, and junk for the sealed half
// — would have it published or trusted to verify, and sign receipts or
// tokens without the master key. A row found good is remembered by its
// contents, so each is opened once; a bad one fails at every use.
func (k *Keyring) publicHalf(tenantID string, key store.SigningKey) (ed25519.PublicKey, error) {
	if key.Algorithm != ReceiptAlgorithm || len(key.PublicKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("signing: key %s is not an Ed25519 JWS key", key.KID)
	}
	sealed := sha256.Sum256(key.SealedPrivate)
	checked := strings.Join([]string{tenantID, string(key.Purpose), key.KID, string(key.PublicKey), string(sealed[:])}, "\x00")
	if _, ok := k.checked.Load(checked); ok {
		return bytes.Clone(key.PublicKey), nil
	}
	priv, err := k.openJWSKey(tenantID, key)
	if err != nil {
		return nil, err
	}
	clear(priv)
	k.checked.Store(checked, struct{}{})
	return bytes.Clone(key.PublicKey), nil
}

// openJWSKey opens organization tenantID's receipt or token key row: its
// sealed private half, under the binding of its organization, kid and
// purpose, must be an Ed25519 seed whose public key is the row's public
// column, which is outside that binding (the key is refused otherwise:
// what is published or trusted to verify would not be what signs).
func (k *Keyring) openJWSKey(tenantID string, key store.SigningKey) (ed25519.PrivateKey, error) {
	var binding secrets.Binding
	switch key.Purpose {
	case store.PurposeReceipt:
		binding = receiptBinding(tenantID, key.KID)
	case store.PurposeToken:
		binding = tokenBinding(tenantID, key.KID)
	default:
		return nil, fmt.Errorf("signing: %q keys are not JSON Web Keys", key.Purpose)
	}
	seed, err := k.master.Open(key.SealedPrivate, binding)
	if err != nil {
		return nil, fmt.Errorf("signing: open %s key %s: %w", key.Purpose, key.KID, err)
	}
	defer clear(seed)
	if len(seed) != ed25519.SeedSize || key.Algorithm != ReceiptAlgorithm {
		return nil, fmt.Errorf("signing: %s key %s is not an Ed25519 key", key.Purpose, key.KID)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if !bytes.Equal(priv.Public().(ed25519.PublicKey), key.PublicKey) {
		clear(priv)
		return nil, fmt.Errorf("signing: %s key %s: public half does not match", key.Purpose, key.KID)
	}
	return priv, nil
}

// Errors of VerifyReceipt. Each wraps ErrInvalidReceipt; messages never
// contain the receipt or key material.
var (
	ErrInvalidReceipt = errors.New("invalid receipt")
	// ErrReceiptMalformed: not one compact JWS, an unsupported header
	// (crit, b64), a header or claims with a duplicate member or a case
	// variant of a member's name, claims that do not decode or lack a
	// required claim.
	ErrReceiptMalformed = fmt.Errorf("%w: malformed", ErrInvalidReceipt)
	// ErrReceiptAlgorithm: alg is not EdDSA (none, HS256, RS256, ES256…).
	ErrReceiptAlgorithm = fmt.Errorf("%w: algorithm not accepted", ErrInvalidReceipt)
	// ErrReceiptType: typ is not exactly ReceiptType.
	ErrReceiptType = fmt.Errorf("%w: not a receipt (typ)", ErrInvalidReceipt)
	// ErrReceiptUnknownKey: no kid, or no Ed25519 signature key with that kid in the JWKS.
	ErrReceiptUnknownKey = fmt.Errorf("%w: unknown key", ErrInvalidReceipt)
	// ErrReceiptSignature: the signature does not verify with the kid's key.
	ErrReceiptSignature = fmt.Errorf("%w: bad signature", ErrInvalidReceipt)
	// ErrReceiptExpired: now is past exp (beyond ReceiptSkew).
	ErrReceiptExpired = fmt.Errorf("%w: expired", ErrInvalidReceipt)
	// ErrReceiptNotYetValid: now is before nbf (beyond ReceiptSkew).
	ErrReceiptNotYetValid = fmt.Errorf("%w: not yet valid", ErrInvalidReceipt)
	// ErrReceiptActionDigest: action_sha256 is not the digest of action.
	ErrReceiptActionDigest = fmt.Errorf("%w: action_sha256 does not match action", ErrInvalidReceipt)
	// ErrInvalidJWKS: the key set given to verify with is not a JWKS,
	// has a duplicate member or a case variant of a JWK member's name, or
	// holds a private or symmetric key.
	ErrInvalidJWKS = errors.New("invalid JWKS")
)

// ReceiptSkew is the clock difference tolerated on exp and nbf: receipts are
// checked by other machines than the one that signed them.
const ReceiptSkew = 30 * time.Second

// maxReceiptSize bounds what VerifyReceipt parses: an action is at most a
// 64 KiB request, base64url grows it by a third.
const maxReceiptSize = 256 << 10

// VerifyReceipt checks a compact receipt against a JWKS alone — the way an
// auditor or a downstream system does, offline: alg EdDSA only, typ exactly
// ReceiptType, the signature by the JWKS key its kid names (active or
// retired), nbf and exp at now with ReceiptSkew, and action_sha256 against
// action. It returns the claims; checking iss, tenant, sub and what the
// action says is the caller's business. Header, claims and JWKS are read
// by exact member name, as JOSE libraries read them; one that another
// reader could read otherwise (a duplicate member, "KID" for kid) is refused.
func VerifyReceipt(compact string, jwks []byte, now time.Time) (*ReceiptClaims, error) {
	// The header first: its alg is checked before any key is read.
	hdr, err := checkReceiptHeader(compact)
	if err != nil {
		return nil, err
	}
	v, err := NewReceiptVerifier(jwks)
	if err != nil {
		return nil, err
	}
	return v.verify(compact, hdr, now)
}

// ReceiptVerifier is VerifyReceipt with its JWKS read once: for checking
// many receipts against one key set (an export's).
type ReceiptVerifier struct{ set jwk.Set }

// NewReceiptVerifier reads a JWKS as VerifyReceipt does: ErrInvalidJWKS
// for one VerifyReceipt would refuse.
func NewReceiptVerifier(jwks []byte) (*ReceiptVerifier, error) {
	// jwx's key probe reads "KTY" as kty, and jwx keeps the last of two
	// "x" and the first of two "keys", where go-jose and encoding/json read
	// otherwise or refuse: a JWKS with a duplicate, or a case variant of a
	// member they read, has no one reading.
	if err := jose.Check(jwks, jwksMembers); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidJWKS, err)
	}
	// A set, or a key: not both. jwk.Parse reads the "keys" of a document
	// that is also a JWK, and a reader taking it for one key reads
	// another (found by review: the victim's key on top, an attacker's of
	// the same kid in "keys").
	var top map[string]jsontext.Value
	if err := jsonv2.Unmarshal(jwks, &top); err != nil {
		return nil, ErrInvalidJWKS
	}
	if _, isSet := top["keys"]; isSet {
		for name := range jwkMembers {
			if _, ok := top[name]; ok {
				return nil, fmt.Errorf("%w: both a key set and a key's member %q", ErrInvalidJWKS, name)
			}
		}
	}
	set, err := jwk.Parse(jwks)
	if err != nil {
		return nil, ErrInvalidJWKS
	}
	// A published key set holds public keys only (DESIGN §3). One with a
	// private or symmetric key, under any kid, has leaked what lets anyone
	// sign: the auditor is told, not shown a receipt that verifies.
	// Two keys under one kid are read differently too: jwx takes the
	// first, go-jose hands back both and tries each, so a receipt's
	// verdict would hang on the library and the keys' order.
	kids := make(map[string]bool, set.Len())
	for i := range set.Len() {
		k, _ := set.Key(i)
		if private, err := jwk.IsPrivateKey(k); err != nil || private {
			return nil, fmt.Errorf("%w: it holds a private or secret key", ErrInvalidJWKS)
		}
		if kid, ok := k.KeyID(); ok {
			if kids[kid] {
				return nil, fmt.Errorf("%w: two keys have kid %q", ErrInvalidJWKS, kid)
			}
			kids[kid] = true
		}
	}
	return &ReceiptVerifier{set: set}, nil
}

// Verify is VerifyReceipt against the verifier's JWKS.
func (v *ReceiptVerifier) Verify(compact string, now time.Time) (*ReceiptClaims, error) {
	hdr, err := checkReceiptHeader(compact)
	if err != nil {
		return nil, err
	}
	return v.verify(compact, hdr, now)
}

// verify is Verify of a receipt whose header checkReceiptHeader passed.
func (v *ReceiptVerifier) verify(compact string, hdr jose.Header, now time.Time) (*ReceiptClaims, error) {
	pub, err := v.PublicKey(hdr.Kid)
	if err != nil {
		return nil, err
	}
	// jwx re-reads the header; WithAlgorithmMatch makes it refuse any alg
	// but the one checked above, whatever it reads.
	payload, err := jws.Verify([]byte(compact), jws.WithCompact(),
		jws.WithKey(jwa.EdDSA(), pub), jws.WithAlgorithmMatch(true))
	if err != nil {
		return nil, ErrReceiptSignature
	}
	var c ReceiptClaims
	if err := c.UnmarshalJSON(payload); err != nil {
		return nil, fmt.Errorf("%w: claims do not decode", ErrReceiptMalformed)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReceiptMalformed, err)
	}
	if now.Add(ReceiptSkew).Before(c.NotBefore) {
		return nil, ErrReceiptNotYetValid
	}
	if !now.Add(-ReceiptSkew).Before(c.Expiry) {
		return nil, ErrReceiptExpired
	}
	digest, err := ActionDigest(c.Action)
	if err != nil || digest != c.ActionSHA256 {
		return nil, ErrReceiptActionDigest
	}
	return &c, nil
}

// ReceiptKID returns the kid a receipt names, once its protected header
// passes the checks VerifyReceipt makes of it (alg, typ, a kid). It does
// not verify the signature.
func ReceiptKID(compact string) (string, error) {
	hdr, err := checkReceiptHeader(compact)
	if err != nil {
		return "", err
	}
	return hdr.Kid, nil
}

// checkReceiptHeader reads a receipt's protected header (RFC 7515 §7.1)
// without trusting it, and checks alg, typ and kid before any key is
// touched: alg first is what defeats "none" and HMAC-with-the-public-key
// confusion. Each part must be spelled canonically (jose.SplitCompact):
// jwx decodes leniently, and would verify a padded, standard-alphabet or
// trailing-bit variant of a receipt as the same receipt under another
// SHA-256, the digest its ledger entry names.
func checkReceiptHeader(compact string) (jose.Header, error) {
	if len(compact) > maxReceiptSize {
		return jose.Header{}, fmt.Errorf("%w: larger than %d bytes", ErrReceiptMalformed, maxReceiptSize)
	}
	hdr, _, err := jose.SplitCompact(compact)
	switch {
	case err != nil:
		return hdr, fmt.Errorf("%w: %v", ErrReceiptMalformed, err)
	case hdr.Alg != ReceiptAlgorithm:
		return hdr, ErrReceiptAlgorithm
	case hdr.Typ != ReceiptType:
		return hdr, ErrReceiptType
	case hdr.Kid == "":
		return hdr, fmt.Errorf("%w: no kid", ErrReceiptUnknownKey)
	}
	return hdr, nil
}

// jwkMembers are the names a JOSE library reads in a JWK (RFC 7517 §4,
// and RFC 8037 §2 for an OKP key).
var jwkMembers = jose.Members{
	"kty": nil, "use": nil, "key_ops": nil, "alg": nil, "kid": nil,
	"x5u": nil, "x5c": nil, "x5t": nil, "x5t#S256": nil, "crv": nil, "x": nil, "d": nil,
}

// jwksMembers are those of a JWKS (RFC 7517 §5), or of a bare JWK, which
// jwk.Parse reads as a set of one.
var jwksMembers = func() jose.Members {
	m := jose.Members{"keys": jwkMembers}
	maps.Copy(m, jwkMembers)
	return m
}()

// PublicKey is the key the set gives kid, as Verify takes it: only an
// Ed25519 public key meant for EdDSA signatures.
func (v *ReceiptVerifier) PublicKey(kid string) (ed25519.PublicKey, error) {
	key, ok := v.set.LookupKeyID(kid)
	if !ok {
		return nil, ErrReceiptUnknownKey
	}
	if alg, ok := key.Algorithm(); ok && alg.String() != ReceiptAlgorithm {
		return nil, fmt.Errorf("%w: key is not for %s", ErrReceiptUnknownKey, ReceiptAlgorithm)
	}
	if use, ok := key.KeyUsage(); ok && use != string(jwk.ForSignature) {
		return nil, fmt.Errorf("%w: key is not for signatures", ErrReceiptUnknownKey)
	}
	if ops, ok := key.KeyOps(); ok && !slices.Contains(ops, jwk.KeyOpVerify) {
		return nil, fmt.Errorf("%w: key's key_ops do not include verify", ErrReceiptUnknownKey)
	}
	var raw any
	if err := jwk.Export(key, &raw); err != nil {
		return nil, fmt.Errorf("%w: key does not decode", ErrReceiptUnknownKey)
	}
	pub, ok := raw.(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: key is not an Ed25519 public key", ErrReceiptUnknownKey)
	}
	// The service publishes none such, but a JWKS handed to an auditor
	// may hold one: under a small-order key anyone signs any receipt.
	if !verify.UsableEd25519(pub) {
		return nil, fmt.Errorf("%w: key is of small order or not canonical: it verifies signatures nobody made", ErrReceiptUnknownKey)
	}
	return pub, nil
}
