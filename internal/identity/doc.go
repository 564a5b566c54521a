// Package identity owns how an agent proves who it is on the tenant plane
// (DESIGN §1): it validates the public JWKs agents register (RFC 7517),
// verifies their private_key_jwt client assertions (RFC 7521, RFC 7523 §3),
// and issues and verifies the 5-minute access tokens (RFC 9068) that the
// token endpoint hands out. Tenant users, passwords, TOTP and refresh tokens
// join it later.
//
// It must never:
//   - accept a private key from an agent, or a key other than Ed25519 or P-256;
//   - let a JWS choose its own algorithm: alg is checked against a fixed list
//     (EdDSA, ES256) before any key is looked up, so "none", HMAC and RSA
//     never reach a verifier;
//   - take a key from a header (jwk, jku, x5u…): only the agent's registered
//     keys, or the plane's own token key, verify anything;
//   - read a header or claims set otherwise than a JOSE library does: member
//     names are compared exactly (RFC 7515 §4, RFC 7519 §4), and one that
//     differs from a member read only by case, '_' or '-', or a duplicate,
//     makes the JWS malformed;
//   - keep a jti, assertion or token in the clear: replay memory gets the
//     SHA-256 of the jti only (DESIGN §2);
//   - put a token, an assertion or key material in an error or a log;
//   - decide tenant authorization: Verify returns the token's tenant and the
//     caller compares it with the organization the request is addressed to.
//
// Its verifiers do no I/O of their own: agents are reached through
// AssertionOptions.Lookup, and the caller remembers each assertion's
// AssertionClaims.JTISHA256 (the store's assertion_jtis) to refuse replays
// with ErrReplay. Agents registers and changes agents through the store and
// the organization's ledger: every change is logged with the transaction
// that makes it (the CLI uses it now, the management API will), and each
// key row names the entry that records it. KeyLog trusts a stored key only
// once that entry, proven under the log's signature, records the key: a
// key row the organization's database role adds verifies nothing, nor
// does one that names no entry until an operator adopts it (Adopt; the
// embedded store's file excepted: see KeyLog).
package identity
