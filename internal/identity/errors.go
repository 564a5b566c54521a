package identity

import (
	"errors"
	"fmt"
)

// ErrInvalidAssertion: the client assertion does not authenticate the agent.
// Every assertion error below wraps it; OAuthError maps it to invalid_client.
var ErrInvalidAssertion = errors.New("invalid client assertion")

// Why each assertion was refused. Messages name the check, never the
// assertion, a key or a jti.
var (
	ErrAssertionMalformed   = fmt.Errorf("%w: malformed, or no exp", ErrInvalidAssertion)
	ErrAssertionAlgorithm   = fmt.Errorf("%w: alg must be EdDSA or ES256 and match the key", ErrInvalidAssertion)
	ErrAssertionType        = fmt.Errorf("%w: typ is another kind of token", ErrInvalidAssertion)
	ErrUnknownAgent         = fmt.Errorf("%w: unknown agent", ErrInvalidAssertion)
	ErrAgentNotActive       = fmt.Errorf("%w: agent is not active", ErrInvalidAssertion)
	ErrUnknownKey           = fmt.Errorf("%w: no registered key of the agent matches", ErrInvalidAssertion)
	ErrAssertionSignature   = fmt.Errorf("%w: bad signature", ErrInvalidAssertion)
	ErrAssertionSubject     = fmt.Errorf("%w: iss and sub must both be the agent id", ErrInvalidAssertion)
	ErrAssertionClientID    = fmt.Errorf("%w: client_id is not the assertion's agent", ErrInvalidAssertion)
	ErrAssertionAudience    = fmt.Errorf("%w: aud is not the token endpoint alone", ErrInvalidAssertion)
	ErrAssertionExpired     = fmt.Errorf("%w: expired", ErrInvalidAssertion)
	ErrAssertionLifetime    = fmt.Errorf("%w: exp too far ahead", ErrInvalidAssertion)
	ErrAssertionNotYetValid = fmt.Errorf("%w: iat or nbf in the future", ErrInvalidAssertion)
	ErrAssertionJTI         = fmt.Errorf("%w: jti missing or longer than 256 bytes", ErrInvalidAssertion)
	// ErrReplay: this agent's jti was used before (the caller remembers it).
	ErrReplay = fmt.Errorf("%w: jti already used", ErrInvalidAssertion)
)

// ErrInvalidToken: the bearer token is not a valid agent access token.
// Every token error below wraps it; OAuthError maps it to invalid_token
// (RFC 6750 §3.1).
var ErrInvalidToken = errors.New("invalid access token")

// Why each access token was refused.
var (
	ErrTokenMalformed   = fmt.Errorf("%w: malformed", ErrInvalidToken)
	ErrTokenAlgorithm   = fmt.Errorf("%w: alg must be EdDSA", ErrInvalidToken)
	ErrTokenType        = fmt.Errorf("%w: typ is not at+jwt", ErrInvalidToken)
	ErrTokenKey         = fmt.Errorf("%w: kid names no token key", ErrInvalidToken)
	ErrTokenSignature   = fmt.Errorf("%w: bad signature", ErrInvalidToken)
	ErrTokenIssuer      = fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	ErrTokenAudience    = fmt.Errorf("%w: aud is not "+AccessTokenAudience, ErrInvalidToken)
	ErrTokenExpired     = fmt.Errorf("%w: expired", ErrInvalidToken)
	ErrTokenNotYetValid = fmt.Errorf("%w: not yet valid", ErrInvalidToken)
	ErrTokenClaims      = fmt.Errorf("%w: missing or wrong sub, tenant, client_id, agent_kid, jti or token_use", ErrInvalidToken)
)

// ErrInvalidAgentKey: a JWK offered for registration is refused.
var ErrInvalidAgentKey = errors.New("invalid agent key")

// OAuth 2.0 error codes this package produces (RFC 6749 §5.2, RFC 6750 §3.1).
const (
	OAuthInvalidClient = "invalid_client"
	OAuthInvalidToken  = "invalid_token"
	OAuthServerError   = "server_error"
)

// assertionRefused is what a client is told of every refused client
// assertion but a replay. Until the signature has verified under the
// agent's key the sender is anonymous: one description for every check
// (shape, alg, aud, times, agent, key, signature) keeps the answer from
// saying which agent ids exist, what state they are in, or how far an
// assertion crafted for one got. The answer's time still differs: an
// existing agent's keys are read and a signature checked, and the refusal
// is filed in its organization's log, so a sender timing many requests
// can tell a live agent id from an unknown one (ids carry 80 random bits:
// this confirms a leaked id, it finds none). The caller's ledger names the
// reason, for the organization's auditors.
const assertionRefused = "client authentication failed"

// OAuthError maps an error of this package to an OAuth error code and a
// description safe to send to the client.
//
// Every client assertion failure is invalid_client: with private_key_jwt the
// assertion is client authentication, and RFC 7523 §3.2 requires that code
// for it (invalid_grant is for the JWT-bearer authorization grant of RFC 7523
// §3.1, which AgentSigna does not offer). Token failures are invalid_token.
// Anything else — a store outage during Lookup, a misconfiguration — is
// server_error with no detail: it is not the client's fault.
func OAuthError(err error) (code, description string) {
	switch {
	case errors.Is(err, ErrReplay):
		// Only the holder of the agent's key can make an assertion whose
		// jti is remembered: the signature verified before the replay check.
		return OAuthInvalidClient, "client_assertion jti has already been used"
	case errors.Is(err, ErrInvalidAssertion):
		return OAuthInvalidClient, assertionRefused
	case errors.Is(err, ErrInvalidToken):
		return OAuthInvalidToken, "the access token is invalid or expired"
	}
	return OAuthServerError, "internal error"
}
