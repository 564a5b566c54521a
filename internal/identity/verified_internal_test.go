package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"
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
	token, exp, err := ti.Issue("agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "8c2b7f0e-3c4d-4e5f-8a9b-0c1d2e3f4a5b", now)
	if err != nil {
		t.Fatal(err)
	}
	first, err := ti.Verify(token, now)
	if err != nil {
		t.Fatal(err)
	}
	if ti.verified.len() != 1 {
		t.Fatalf("%d tokens remembered after one verification", ti.verified.len())
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
	if ti.verified.len() != 1 {
		t.Fatalf("%d tokens remembered: a refused one was kept", ti.verified.len())
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
