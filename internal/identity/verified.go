package identity

import (
	"crypto/sha256"
	"sync"
	"time"
)

// maxVerifiedTokens bounds the tokens an issuer remembers as verified. An
// agent uses one token for many requests during its 5 minutes; an entry
// is a few hundred bytes.
const maxVerifiedTokens = 4096

// verifiedTokens remembers access tokens whose signature and claims have
// checked out, by the SHA-256 of their exact compact serialization, so that
// a token used for many requests costs one Ed25519 verification instead of
// one each. Only the time-dependent checks are run again on a hit: the same
// bytes under the same key always verify the same way.
//
// The key is a digest, never the caller's string: an HTTP server may hand
// Verify a string backed by a request buffer it reuses, and a map key
// aliasing it would turn into the next request's token — a token that
// would then match another agent's entry without being verified.
type verifiedTokens struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	claims AccessClaims
	nbf    time.Time // zero: none
}

// checkTime is the part of Verify that depends on now.
func (v verifiedToken) checkTime(now time.Time) (AccessClaims, error) {
	if !now.Before(v.claims.Expiry) {
		return AccessClaims{}, ErrTokenExpired
	}
	horizon := now.Add(ClockSkew)
	if v.claims.IssuedAt.After(horizon) || (!v.nbf.IsZero() && v.nbf.After(horizon)) {
		return AccessClaims{}, ErrTokenNotYetValid
	}
	return v.claims, nil
}

func (c *verifiedTokens) get(token string) (verifiedToken, bool) {
	key := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[key]
	return v, ok
}

// put remembers a verified token. When full, it forgets the expired ones,
// and if that is not enough, every other one: a forgotten token is only
// verified again.
func (c *verifiedTokens) put(token string, v verifiedToken, now time.Time) {
	key := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[sha256.Size]byte]verifiedToken)
	}
	if len(c.m) >= maxVerifiedTokens {
		for t, e := range c.m {
			if !now.Before(e.claims.Expiry) {
				delete(c.m, t)
			}
		}
		for t := range c.m {
			if len(c.m) < maxVerifiedTokens*3/4 {
				break
			}
			delete(c.m, t)
		}
	}
	c.m[key] = v
}

func (c *verifiedTokens) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
