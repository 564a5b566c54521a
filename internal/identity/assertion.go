package identity

import (
	"bytes"
	"crypto/sha256"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/agentsigna/agentsigna/internal/jose"
	"github.com/agentsigna/agentsigna/internal/store"
)

// SPEC: RFC 7523 §3 (JWT format and processing requirements) used as
// private_key_jwt client authentication (RFC 7521 §4.2,
// client_assertion_type urn:ietf:params:oauth:client-assertion-type:jwt-bearer).

// DefaultAssertionLifetime is the default for AssertionOptions.MaxLifetime:
// how far ahead of now an assertion's exp may be, and so how long a jti is
// remembered.
const DefaultAssertionLifetime = 5 * time.Minute

// AgentActive is the only AgentInfo.Status that may authenticate.
const AgentActive = "active"

const maxJTILen = 256

// AgentInfo is what VerifyClientAssertion needs to know of an agent.
type AgentInfo struct {
	ID     string
	Status string    // AgentActive, or anything else (suspended, revoked…) to refuse
	Keys   []jwk.Key // its registered public keys, as ParseAgentJWK returned them
}

// AssertionOptions configure one VerifyClientAssertion call.
type AssertionOptions struct {
	// Audience is the token endpoint URL; aud must contain it exactly.
	Audience string
	// Now is the verification time; zero means time.Now().
	Now time.Time
	// MaxLifetime bounds exp − now; zero means DefaultAssertionLifetime.
	MaxLifetime time.Duration
	// ClientID is the request's client_id, "" when it sent none. When
	// present it must name the client the assertion authenticates (RFC
	// 7521 §4.2): iss = sub = ClientID.
	ClientID string
	// Lookup returns the agent named by the assertion's sub, with its keys;
	// kid is the header's kid ("" when absent), a hint for a store that
	// loads one key. It returns ErrUnknownAgent (or store.ErrNotFound) for
	// an agent that does not exist; any other error is an outage, reported
	// as such and not as a client failure.
	Lookup func(agentID, kid string) (AgentInfo, error)
}

func (o AssertionOptions) valid() (AssertionOptions, error) {
	switch {
	case o.Audience == "":
		return o, errors.New("identity: AssertionOptions.Audience (the token endpoint URL) is required")
	case o.Lookup == nil:
		return o, errors.New("identity: AssertionOptions.Lookup is required")
	case o.MaxLifetime < 0:
		return o, errors.New("identity: AssertionOptions.MaxLifetime is negative")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.MaxLifetime == 0 {
		o.MaxLifetime = DefaultAssertionLifetime
	}
	return o, nil
}

// AssertionClaims is what a verified assertion establishes.
type AssertionClaims struct {
	AgentID string
	KeyID   string // the kid of the agent key that verified it
	// JTISHA256 is the SHA-256 of the jti: what the caller remembers to
	// refuse replays (DESIGN §2 stores jtis as SHA-256 only).
	// The jti itself is not kept (DESIGN §2).
	JTISHA256 []byte
	Expiry    time.Time // remember the jti until then
}

// assertionClaims are the registered claims RFC 7523 §3 requires or allows.
type assertionClaims struct {
	Iss *string     `json:"iss"`
	Sub *string     `json:"sub"`
	Aud audience    `json:"aud"`
	Exp numericDate `json:"exp"`
	Iat numericDate `json:"iat"`
	Nbf numericDate `json:"nbf"`
	JTI *string     `json:"jti"`
}

// assertionClaimMembers are the names assertionClaims reads.
var assertionClaimMembers = jose.Flat("iss", "sub", "aud", "exp", "iat", "nbf", "jti")

// VerifyClientAssertion authenticates an agent by its client assertion
// (RFC 7523 §3): a compact JWS, alg EdDSA or ES256 fitting the key (checked
// before any lookup), signed by one of the agent's registered keys (the
// header's kid picks it; without kid, an agent with exactly one key uses
// it); iss = sub = agent id (= opts.ClientID, if set); aud containing opts.Audience; exp after now
// and at most MaxLifetime (plus ClockSkew) ahead; iat and nbf, if present,
// not beyond ClockSkew in the future; jti of 1 to 256 bytes. Header and
// claim names are read exactly (RFC 7515 §4, RFC 7519 §4): a duplicate
// member, or one whose name only folds to one read ("SUB", "Kid"), is
// ErrAssertionMalformed.
//
// It does not check replay: the caller remembers JTISHA256, per agent (a
// jti is unique per issuer, RFC 7519 §4.1.7), until Expiry and
// refuses a second use with ErrReplay. Errors wrap
// ErrInvalidAssertion (see OAuthError), except configuration and Lookup
// outages.
func VerifyClientAssertion(assertion string, opts AssertionOptions) (AssertionClaims, error) {
	opts, err := opts.valid()
	if err != nil {
		return AssertionClaims{}, err
	}
	hdr, payload, err := splitJWS(assertion)
	if err != nil {
		return AssertionClaims{}, ErrAssertionMalformed
	}
	// Before anything else: "none", HS*, RS* and friends go no further.
	var alg jwa.SignatureAlgorithm
	switch hdr.Alg {
	case "EdDSA":
		alg = jwa.EdDSA()
	case "ES256":
		alg = jwa.ES256()
	default:
		return AssertionClaims{}, ErrAssertionAlgorithm
	}
	// Explicit typing (RFC 8725 §3.11): an access token or a receipt is not
	// a client assertion, even when it carries the right claims.
	if hdr.Typ != "" && !mediaTypeIs(hdr.Typ, "JWT") && !mediaTypeIs(hdr.Typ, "client-authentication+jwt") {
		return AssertionClaims{}, ErrAssertionType
	}
	// Claim names are case-sensitive (RFC 7519 §4): a duplicate, or a case
	// variant of a claim read here ("SUB", "Aud"), would be read by one
	// reader and not another. Other claims are ignored, and jsonv2 matches
	// names exactly.
	if err := jose.Check(payload, assertionClaimMembers); err != nil {
		return AssertionClaims{}, ErrAssertionMalformed
	}
	var c assertionClaims
	if err := jsonv2.Unmarshal(payload, &c); err != nil {
		return AssertionClaims{}, ErrAssertionMalformed
	}
	// The stateless checks come before the lookup, so that junk costs no
	// store read; they read unverified claims, which can only get the
	// assertion refused — acceptance needs the signature below.
	agentID, err := c.check(opts)
	if err != nil {
		return AssertionClaims{}, err
	}
	agent, err := opts.Lookup(agentID, hdr.Kid)
	switch {
	case errors.Is(err, ErrUnknownAgent) || errors.Is(err, store.ErrNotFound):
		return AssertionClaims{}, ErrUnknownAgent
	case err != nil:
		return AssertionClaims{}, fmt.Errorf("identity: looking up the agent: %w", err)
	case agent.ID != agentID:
		return AssertionClaims{}, ErrUnknownAgent
	case agent.Status != AgentActive:
		return AssertionClaims{}, ErrAgentNotActive
	}
	key, kid, err := selectAgentKey(agent.Keys, hdr.Kid, hdr.Alg)
	if err != nil {
		return AssertionClaims{}, err
	}
	verified, err := jws.Verify([]byte(assertion), jws.WithCompact(),
		jws.WithKey(alg, key), jws.WithAlgorithmMatch(true))
	if err != nil {
		return AssertionClaims{}, ErrAssertionSignature
	}
	// The claims checked above are the ones the signature covers.
	if !bytes.Equal(verified, payload) {
		return AssertionClaims{}, ErrAssertionMalformed
	}
	sum := sha256.Sum256([]byte(*c.JTI))
	return AssertionClaims{AgentID: agentID, KeyID: kid, JTISHA256: sum[:], Expiry: c.Exp.Time}, nil
}

// check applies RFC 7523 §3's claim rules and returns the agent id.
func (c *assertionClaims) check(opts AssertionOptions) (string, error) {
	// §3 items 1-2: the client is both issuer and subject.
	if c.Iss == nil || c.Sub == nil || *c.Iss == "" || *c.Iss != *c.Sub || len(*c.Sub) > 256 {
		return "", ErrAssertionSubject
	}
	if opts.ClientID != "" && opts.ClientID != *c.Sub {
		return "", ErrAssertionClientID
	}
	if !c.Exp.set {
		return "", ErrAssertionMalformed
	}
	if !c.Aud.is(opts.Audience) {
		return "", ErrAssertionAudience
	}
	if !c.Exp.After(opts.Now) {
		return "", ErrAssertionExpired
	}
	// Skew here too: an agent whose clock runs a little ahead and that asks
	// for the full lifetime must not be refused.
	if c.Exp.After(opts.Now.Add(opts.MaxLifetime + ClockSkew)) {
		return "", ErrAssertionLifetime
	}
	horizon := opts.Now.Add(ClockSkew)
	if (c.Iat.set && c.Iat.After(horizon)) || (c.Nbf.set && c.Nbf.After(horizon)) {
		return "", ErrAssertionNotYetValid
	}
	if c.JTI == nil || len(*c.JTI) == 0 || len(*c.JTI) > maxJTILen {
		return "", ErrAssertionJTI
	}
	return *c.Sub, nil
}

// selectAgentKey picks the registered key kid names (the only one, when kid
// is empty) and returns it as a raw public key, if it fits alg.
func selectAgentKey(keys []jwk.Key, kid, alg string) (raw any, keyID string, err error) {
	var chosen jwk.Key
	switch {
	case kid != "":
		for _, k := range keys {
			if id, ok := k.KeyID(); ok && id == kid {
				chosen = k
				break
			}
		}
	case len(keys) == 1:
		chosen = keys[0]
	}
	if chosen == nil {
		return nil, "", ErrUnknownKey
	}
	raw, keyAlg, err := checkAgentKey(chosen)
	if err != nil {
		return nil, "", fmt.Errorf("%w (%v)", ErrUnknownKey, err)
	}
	if keyAlg != alg {
		return nil, "", ErrAssertionAlgorithm
	}
	keyID, _ = chosen.KeyID()
	return raw, keyID, nil
}
