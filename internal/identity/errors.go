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
	ErrAssertionAudience    = fmt.Errorf("%w: aud does not contain the token endpoint", ErrInvalidAssertion)
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
	ErrTokenKey         = fmt.Errorf("%w: kid is not the token key", ErrInvalidToken)
	ErrTokenSignature   = fmt.Errorf("%w: bad signature", ErrInvalidToken)
	ErrTokenIssuer      = fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	ErrTokenAudience    = fmt.Errorf("%w: aud is not "+AccessTokenAudience, ErrInvalidToken)
	ErrTokenExpired     = fmt.Errorf("%w: expired", ErrInvalidToken)
	ErrTokenNotYetValid = fmt.Errorf("%w: not yet valid", ErrInvalidToken)
	ErrTokenClaims      = fmt.Errorf("%w: missing or wrong sub, tenant, client_id, jti or token_use", ErrInvalidToken)
)

// ErrInvalidAgentKey: a JWK offered for registration is refused.
var ErrInvalidAgentKey = errors.New("invalid agent key")

// OAuth 2.0 error codes this package produces (RFC 6749 §5.2, RFC 6750 §3.1).
const (
	OAuthInvalidClient = "invalid_client"
	OAuthInvalidToken  = "invalid_token"
	OAuthServerError   = "server_error"
)

// oauthDescriptions are what a client may be told. The refusals that depend
// on the agent's record (unknown, suspended, wrong key, bad signature) share
// one description, so the endpoint does not reveal which agent ids exist or
// what state they are in.
var oauthDescriptions = []struct {
	err  error
	desc string
}{
	{ErrUnknownAgent, "client authentication failed"},
	{ErrAgentNotActive, "client authentication failed"},
	{ErrUnknownKey, "client authentication failed"},
	{ErrAssertionSignature, "client authentication failed"},
	{ErrAssertionMalformed, "client_assertion must be a compact JWS whose claims include iss, sub, aud, exp and jti (RFC 7523 §3)"},
	{ErrAssertionAlgorithm, "client_assertion alg must be EdDSA or ES256, matching the registered key"},
	{ErrAssertionType, "client_assertion typ must be absent, JWT or client-authentication+jwt"},
	{ErrAssertionSubject, "client_assertion iss and sub must both be the agent id"},
	{ErrAssertionAudience, "client_assertion aud must contain the token endpoint URL"},
	{ErrAssertionExpired, "client_assertion has expired"},
	{ErrAssertionLifetime, "client_assertion exp is too far in the future"},
	{ErrAssertionNotYetValid, "client_assertion iat or nbf is in the future"},
	{ErrAssertionJTI, "client_assertion jti must be 1 to 256 bytes"},
	{ErrReplay, "client_assertion jti has already been used"},
}

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
	case errors.Is(err, ErrInvalidAssertion):
		for _, d := range oauthDescriptions {
			if errors.Is(err, d.err) {
				return OAuthInvalidClient, d.desc
			}
		}
		return OAuthInvalidClient, "client authentication failed"
	case errors.Is(err, ErrInvalidToken):
		return OAuthInvalidToken, "the access token is invalid or expired"
	}
	return OAuthServerError, "internal error"
}
