package store

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The hand-written checks accept exactly what the regular expressions they
// replace accept.
func TestNameChecksMatchTheirPatterns(t *testing.T) {
	var (
		tenantID   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
		actionType = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,4}$`)
		kind       = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)
	)
	r := rand.New(rand.NewPCG(1, 2))
	random := func(alphabet string, n int) string {
		var b strings.Builder
		for range n {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	check := func(s string) {
		t.Helper()
		if got, want := isTenantID(s), tenantID.MatchString(s); got != want {
			t.Errorf("isTenantID(%q) = %v, the pattern says %v", s, got, want)
		}
		if got, want := IsDottedName(s, 2, 5), actionType.MatchString(s); got != want {
			t.Errorf("IsDottedName(%q, 2, 5) = %v, the pattern says %v", s, got, want)
		}
		if got, want := IsDottedName(s, 1, 0), kind.MatchString(s); got != want {
			t.Errorf("IsDottedName(%q, 1, 0) = %v, the pattern says %v", s, got, want)
		}
	}
	for _, s := range []string{
		"", ".", "a", "a.", ".a", "a.b", "a..b", "a.b.c.d.e", "a.b.c.d.e.f", "payment.send", "Payment.send",
		"a1_.b_2", "1a.b", "_a.b", "a.b_", "a.b.", "a-b.c", "a.b\n", "a.b\x00", "é.b", "a.bé",
		NewTenantID(), strings.ToUpper(NewTenantID()), "{" + NewTenantID() + "}", NewTenantID() + "\n",
		"00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-00000000000g",
		"00000000-0000-0000-00000000-00000000", "00000000000000000000000000000000----",
		NewTenantID() + "a", NewTenantID() + "-", NewTenantID()[:35], "-" + NewTenantID(),
	} {
		check(s)
	}
	for range 20000 {
		check(random("ab09_.Z-é", r.IntN(24)))
		check(random("ab.", r.IntN(16)))
	}
	// A valid id with one byte changed, at every place.
	for range 2000 {
		b := []byte(NewTenantID())
		b[r.IntN(len(b))] = "0af-gA.\x00"[r.IntN(8)]
		check(string(b))
	}
}

// compactJWS accepts exactly what this pattern accepts: three base64url
// parts, the header and signature non-empty, the payload possibly empty
// (RFC 7797 detached content).
func TestCompactJWSMatchesItsPattern(t *testing.T) {
	pattern := regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$`)
	r := rand.New(rand.NewPCG(3, 4))
	check := func(s string) {
		t.Helper()
		if got, want := compactJWS(s), pattern.MatchString(s); got != want {
			t.Errorf("compactJWS(%q) = %v, the pattern says %v", s, got, want)
		}
	}
	for _, s := range []string{
		"", ".", "..", "a.b.c", "a..c", ".b.c", "a.b.", "a.b", "a.b.c.d", "eyJ.eyJ.sig", "a.b.c\n",
		"a+b.c.d", "a/b.c.d", "a=.b.c", "a.b.c=", "a b.c.d", "a.b.\x00", "é.b.c", "a.b.\xff",
		"AZaz09-_.AZaz09-_.AZaz09-_",
	} {
		check(s)
	}
	alphabet := "aZ09-_.+/= \x00\x80\xff"
	for range 50000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		check(b.String())
	}
}

func BenchmarkCompactJWS(b *testing.B) {
	jws := strings.Repeat("eyJhbGciOiJFZERTQSJ9", 20) + "." + strings.Repeat("eyJhY3Rpb24iOnsi", 50) + "." + strings.Repeat("c2lnbmF0dXJl", 8)
	for b.Loop() {
		if !compactJWS(jws) {
			b.Fatal("not a JWS")
		}
	}
}
