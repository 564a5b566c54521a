package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"
	"unsafe"
)

func newTestIssuer(t *testing.T) *TokenIssuer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ti, err := NewTokenIssuer(key, "tok-1", "https://agentsigna.test")
	if err != nil {
		t.Fatal(err)
	}
	return ti
}

// A remembered token still expires, is still refused before its time,
// and a token differing by one byte is verified afresh and refused.
func TestVerifiedTokensRecheckTimes(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	token, exp, err := ti.Issue("agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "agentkid-1", "8c2b7f0e-3c4d-4e5f-8a9b-0c1d2e3f4a5b", now)
	if err != nil {
		t.Fatal(err)
	}
	first, err := ti.Verify(token, now)
	if err != nil {
		t.Fatal(err)
	}
	if ti.verifier.verified.len() != 1 {
		t.Fatalf("%d tokens remembered after one verification", ti.verifier.verified.len())
	}
	again, err := ti.Verify(token, now.Add(time.Minute))
	if err != nil || again != first {
		t.Fatalf("remembered token: %+v, %v; want %+v", again, err, first)
	}
	if _, err := ti.Verify(token, exp); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("remembered token at its exp: %v", err)
	}
	if _, err := ti.Verify(token, now.Add(-time.Hour)); !errors.Is(err, ErrTokenNotYetValid) {
		t.Fatalf("remembered token an hour before its iat: %v", err)
	}
	// A signature character changed (not the last: its low bits are
	// padding): another string, verified from scratch, refused, and not
	// remembered.
	i := len(token) - 10
	swap := byte('A')
	if token[i] == 'A' {
		swap = 'B'
	}
	tampered := token[:i] + string(swap) + token[i+1:]
	if _, err := ti.Verify(tampered, now); err == nil {
		t.Fatal("a tampered token verified")
	}
	if ti.verifier.verified.len() != 1 {
		t.Fatalf("%d tokens remembered: a refused one was kept", ti.verifier.verified.len())
	}
	// Another issuer's cache is its own: the token is not accepted there.
	if _, err := newTestIssuer(t).Verify(token, now); err == nil {
		t.Fatal("another key accepted the token")
	}
}

func TestVerifiedTokensBounded(t *testing.T) {
	var c verifiedTokens
	now := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	for i := range maxVerifiedTokens + 500 {
		exp := now.Add(time.Minute)
		if i%2 == 0 {
			exp = now.Add(-time.Second) // already expired: swept first
		}
		c.put(fmt.Sprint("token-", i), verifiedToken{claims: AccessClaims{Expiry: exp}}, now)
		if c.len() > maxVerifiedTokens {
			t.Fatalf("%d tokens remembered, bound %d", c.len(), maxVerifiedTokens)
		}
	}
	if _, ok := c.get(fmt.Sprint("token-", maxVerifiedTokens+499)); !ok {
		t.Fatal("the newest token was not remembered")
	}
}

// Verify may be given a string backed by a buffer its caller reuses (as
// fasthttp does with request headers). Rewriting that buffer with another
// token must not make the other token match the first one's entry.
func TestVerifiedTokensDoNotAliasTheCallersBuffer(t *testing.T) {
	ti := newTestIssuer(t)
	now := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	const tenant = "8c2b7f0e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
	a, _, err := ti.Issue("agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "agentkid-1", tenant, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := ti.Issue("agt_bbbbbbbbbbbbbbbbbbbbbbbbbb", "agentkid-1", tenant, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("tokens of %d and %d bytes: the test needs equal lengths", len(a), len(b))
	}
	buf := []byte(a)
	aliased := unsafe.String(&buf[0], len(buf)) // what a pooled request buffer gives
	if c, err := ti.Verify(aliased, now); err != nil || c.Subject != "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa" {
		t.Fatalf("agent a: %+v, %v", c, err)
	}
	// The next request on the same buffer: agent b's token. Other tokens
	// verified meanwhile make the cache grow, which rehashes its keys.
	copy(buf, b)
	for i := range 100 {
		other, _, err := ti.Issue(fmt.Sprintf("agt_%026d", i), "agentkid-1", tenant, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ti.Verify(other, now); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := ti.Verify(aliased, now); err != nil || c.Subject != "agt_bbbbbbbbbbbbbbbbbbbbbbbbbb" {
		t.Fatalf("agent b's token on a reused buffer authenticated %q (%v)", c.Subject, err)
	}
	// And a forgery of the same length on that buffer is verified, and refused.
	forged := []byte(b)
	i := len(forged) - 10
	forged[i] ^= 'A' ^ 'B'
	copy(buf, forged)
	if c, err := ti.Verify(aliased, now); err == nil {
		t.Fatalf("a forged token on a reused buffer authenticated %q", c.Subject)
	}
}
