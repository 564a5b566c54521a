package identity

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/agentsigna/agentsigna/internal/jose"
)

// SPEC: RFC 9068 (JWT profile for OAuth 2.0 access tokens), DESIGN §1.
const (
	// AccessTokenType is the typ header of access tokens (RFC 9068 §2.1).
	AccessTokenType = "at+jwt"
	// AccessTokenAudience is the aud of tenant-plane tokens. The platform
	// plane's tokens carry another, so neither plane accepts the other's.
	AccessTokenAudience = "agentsigna-tenant"
	// AccessTokenLifetime is exp − iat of an agent access token.
	AccessTokenLifetime = 5 * time.Minute
	// TokenUseAgent is the token_use of agent tokens: a user token of the
	// same plane is not an agent token.
	TokenUseAgent = "agent"
)

// TokenIssuer issues and verifies the tenant plane's agent access tokens
// with one Ed25519 key. It never prints its key: every fmt verb and slog
// show the kid.
type TokenIssuer struct {
	// Behind a pointer so that a reflective printer shows an address.
	key    *tokenKey
	pub    ed25519.PublicKey
	kid    string
	issuer string
	// verifier verifies under this issuer's key alone.
	verifier *TokenVerifier
}

type tokenKey struct{ signer crypto.Signer }

// NewTokenIssuer returns an issuer signing with signer (an Ed25519 key:
// ed25519.PrivateKey or a crypto.Signer whose Public is an
// ed25519.PublicKey), naming it kid, with iss = issuer (the tenant plane's
// issuer URL).
func NewTokenIssuer(signer crypto.Signer, kid, issuer string) (*TokenIssuer, error) {
	if signer == nil {
		return nil, errors.New("identity: token signer is required")
	}
	pub, ok := signer.Public().(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("identity: token signer must be an Ed25519 key")
	}
	if !validKID(kid) || issuer == "" {
		return nil, errors.New("identity: token kid and issuer are required")
	}
	v, err := NewTokenVerifier(map[string]ed25519.PublicKey{kid: pub}, issuer)
	if err != nil {
		return nil, err
	}
	return &TokenIssuer{key: &tokenKey{signer}, pub: pub, kid: kid, issuer: issuer, verifier: v}, nil
}

// TokenVerifier verifies the tenant plane's agent access tokens under a set
// of token keys, by kid: an organization's active one (the store keeps
// one). The token's kid picks the key. Safe for concurrent use.
type TokenVerifier struct {
	keys   map[string]ed25519.PublicKey // by kid; never changed
	issuer string
	// verified remembers the tokens Verify accepted (verified.go).
	verified *verifiedTokens
}

// NewTokenVerifier returns a verifier accepting tokens with iss = issuer
// signed by one of keys (kid → Ed25519 public key; at least one).
func NewTokenVerifier(keys map[string]ed25519.PublicKey, issuer string) (*TokenVerifier, error) {
	if len(keys) == 0 || issuer == "" {
		return nil, errors.New("identity: a token verifier needs a key and an issuer")
	}
	own := make(map[string]ed25519.PublicKey, len(keys))
	for kid, pub := range keys {
		if !validKID(kid) || len(pub) != ed25519.PublicKeySize {
			return nil, errors.New("identity: token keys need a kid and an Ed25519 public key")
		}
		own[kid] = bytes.Clone(pub)
	}
	return &TokenVerifier{keys: own, issuer: issuer, verified: &verifiedTokens{}}, nil
}

// accessClaimsJSON is the wire form (RFC 9068 §2.2 requires iss, exp, aud,
// sub, client_id, iat and jti).
type accessClaimsJSON struct {
	Iss      string `json:"iss"`
	Aud      string `json:"aud"`
	Sub      string `json:"sub"`
	ClientID string `json:"client_id"`
	Tenant   string `json:"tenant"`
	Iat      int64  `json:"iat"`
	Exp      int64  `json:"exp"`
	JTI      string `json:"jti"`
	TokenUse string `json:"token_use"`
	// AgentKID is the kid of the agent key whose client assertion the
	// token was issued for: the token is good only while that key is.
	AgentKID string       `json:"agent_kid"`
	Nbf      *numericDate `json:"nbf,omitempty"` // never issued; checked if present
}

// verifiedClaimsJSON is what Verify reads: the wire form, with iat and exp
// re-declared to tell a missing claim from zero, and aud to see its JSON
// type: only the string we issue is accepted.
type verifiedClaimsJSON struct {
	accessClaimsJSON
	Aud jsontext.Value `json:"aud"`
	Iat *numericDate   `json:"iat"`
	Exp *numericDate   `json:"exp"`
}

// accessClaimMembers are the names verifiedClaimsJSON reads.
var accessClaimMembers = jose.Flat("iss", "aud", "sub", "client_id", "tenant", "iat", "exp", "jti", "token_use", "agent_kid", "nbf")

// AccessClaims are a verified agent access token's claims.
type AccessClaims struct {
	Issuer  string
	Subject string // the agent id (also client_id)
	Tenant  string // the organization the token was issued in
	// AgentKeyID is the kid of the agent key the token was issued under:
	// the caller MUST refuse the token once that key is no longer the
	// agent's active key (a rotation retires it).
	AgentKeyID string
	JTI        string
	IssuedAt   time.Time
	Expiry     time.Time
}

// Issue returns a signed access token for agentID in tenantID, issued
// under the agent's key agentKID (the one its client assertion verified
// under), valid from now for AccessTokenLifetime, and its expiry.
func (ti *TokenIssuer) Issue(agentID, agentKID, tenantID string, now time.Time) (token string, exp time.Time, err error) {
	if agentID == "" || tenantID == "" || !validKID(agentKID) {
		return "", time.Time{}, errors.New("identity: a token needs an agent, its key and a tenant")
	}
	var jti [16]byte
	if _, err := io.ReadFull(rand.Reader, jti[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("identity: token id: %w", err)
	}
	iat := now.Truncate(time.Second)
	exp = iat.Add(AccessTokenLifetime)
	payload, err := json.Marshal(accessClaimsJSON{
		Iss: ti.issuer, Aud: AccessTokenAudience, Sub: agentID, ClientID: agentID, Tenant: tenantID,
		Iat: iat.Unix(), Exp: exp.Unix(), JTI: base64.RawURLEncoding.EncodeToString(jti[:]), TokenUse: TokenUseAgent,
		AgentKID: agentKID,
	})
	if err != nil {
		return "", time.Time{}, err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, ti.kid); err != nil {
		return "", time.Time{}, err
	}
	if err := hdr.Set(jws.TypeKey, AccessTokenType); err != nil {
		return "", time.Time{}, err
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.EdDSA(), ti.key.signer, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("identity: sign access token: %w", err)
	}
	return string(out), exp, nil
}

// Verify is TokenVerifier.Verify under this issuer's key alone.
func (ti *TokenIssuer) Verify(token string, now time.Time) (AccessClaims, error) {
	return ti.verifier.Verify(token, now)
}

// Verify checks an agent access token: alg EdDSA, typ at+jwt (RFC 9068
// §4), a kid naming one of the verifier's keys and that key's signature,
// iss the verifier's issuer, aud exactly AccessTokenAudience, token_use
// agent, sub = client_id, tenant, agent_kid and jti present, now before exp, iat (and
// nbf) not beyond ClockSkew ahead. A kid it does not hold is ErrTokenKey.
// Header and claim names are read exactly: a duplicate member, or one
// whose name only folds to one read ("TENANT", "Kid"), is
// ErrTokenMalformed.
//
// It does not know which organization the request addresses: the caller
// MUST compare AccessClaims.Tenant with it and refuse a mismatch, or a
// token from one organization would read another's data.
//
// A token verified once is remembered (up to maxVerifiedTokens): using it
// again re-checks only its times.
func (tv *TokenVerifier) Verify(token string, now time.Time) (AccessClaims, error) {
	if v, ok := tv.verified.get(token); ok {
		return v.checkTime(now)
	}
	hdr, _, err := splitJWS(token)
	if err != nil {
		return AccessClaims{}, ErrTokenMalformed
	}
	if hdr.Alg != "EdDSA" {
		return AccessClaims{}, ErrTokenAlgorithm
	}
	if !mediaTypeIs(hdr.Typ, AccessTokenType) {
		return AccessClaims{}, ErrTokenType
	}
	pub, ok := tv.keys[hdr.Kid]
	if !ok {
		return AccessClaims{}, ErrTokenKey
	}
	payload, err := jws.Verify([]byte(token), jws.WithCompact(),
		jws.WithKey(jwa.EdDSA(), pub), jws.WithAlgorithmMatch(true))
	if err != nil {
		return AccessClaims{}, ErrTokenSignature
	}
	// Claim names are case-sensitive (RFC 7519 §4): a duplicate, or a case
	// variant of a claim read here ("TENANT"), would be read by one reader
	// and not another. Other claims are ignored, and jsonv2 matches names
	// exactly.
	if err := jose.Check(payload, accessClaimMembers); err != nil {
		return AccessClaims{}, ErrTokenMalformed
	}
	var c verifiedClaimsJSON
	if err := jsonv2.Unmarshal(payload, &c); err != nil {
		return AccessClaims{}, ErrTokenMalformed
	}
	if c.Iss != tv.issuer {
		return AccessClaims{}, ErrTokenIssuer
	}
	if string(c.Aud) != `"`+AccessTokenAudience+`"` {
		return AccessClaims{}, ErrTokenAudience
	}
	if c.Sub == "" || c.ClientID != c.Sub || c.Tenant == "" || c.JTI == "" || c.TokenUse != TokenUseAgent ||
		!validKID(c.AgentKID) || c.Iat == nil || c.Exp == nil {
		return AccessClaims{}, ErrTokenClaims
	}
	v := verifiedToken{claims: AccessClaims{
		Issuer: c.Iss, Subject: c.Sub, Tenant: c.Tenant, AgentKeyID: c.AgentKID, JTI: c.JTI,
		IssuedAt: c.Iat.Time, Expiry: c.Exp.Time,
	}}
	if c.Nbf != nil {
		v.nbf = c.Nbf.Time
	}
	claims, err := v.checkTime(now)
	if err != nil {
		return AccessClaims{}, err
	}
	tv.verified.put(token, v, now)
	return claims, nil
}

// KID is the key id the issuer signs with.
func (ti *TokenIssuer) KID() string { return ti.kid }

// PublicKey is the issuer's verification key.
func (ti *TokenIssuer) PublicKey() ed25519.PublicKey { return ti.pub }

// String names the issuer by kid and iss only.
func (ti *TokenIssuer) String() string { return "TokenIssuer(" + ti.kid + ", " + ti.issuer + ")" }

// GoString is String, for %#v.
func (ti *TokenIssuer) GoString() string { return ti.String() }

// Format prints String for every verb and flag.
func (ti *TokenIssuer) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, ti.String()) }

// LogValue implements slog.LogValuer.
func (ti *TokenIssuer) LogValue() slog.Value { return slog.StringValue(ti.String()) }
