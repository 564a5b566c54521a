package identity_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/agentsigna/agentsigna/internal/identity"
)

const tenantIssuer = "https://agentsigna.test"

func newIssuer(t *testing.T, key ed25519.PrivateKey, kid, iss string) *identity.TokenIssuer {
	t.Helper()
	ti, err := identity.NewTokenIssuer(key, kid, iss)
	if err != nil {
		t.Fatal(err)
	}
	return ti
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAccessTokenRoundTrip(t *testing.T) {
	key := newEd25519(t)
	ti := newIssuer(t, key, "tok-1", tenantIssuer)
	now := time.Now().Truncate(time.Second)
	token, exp, err := ti.Issue("agt_1", "agentkid-1", "tenant-a", now)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(5 * time.Minute)) {
		t.Errorf("exp %v, want now + 5 minutes", exp)
	}
	parts := strings.Split(token, ".")
	h := decodeSegment(t, parts[0])
	if fmt.Sprint(h) != fmt.Sprint(map[string]any{"alg": "EdDSA", "kid": "tok-1", "typ": "at+jwt"}) {
		t.Errorf("header %v", h)
	}
	// RFC 9068 §2.2's required claims, plus tenant, token_use and the
	// agent key's kid.
	c := decodeSegment(t, parts[1])
	var names []string
	for n := range c {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"agent_kid", "aud", "client_id", "exp", "iat", "iss", "jti", "sub", "tenant", "token_use"}; !slices.Equal(names, want) {
		t.Errorf("claims %v, want %v", names, want)
	}
	if c["aud"] != "agentsigna-tenant" || c["sub"] != "agt_1" || c["client_id"] != "agt_1" || c["tenant"] != "tenant-a" ||
		c["iss"] != tenantIssuer || c["token_use"] != "agent" || c["agent_kid"] != "agentkid-1" {
		t.Errorf("claims %v", c)
	}

	got, err := ti.Verify(token, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// The caller compares Tenant with the organization in the URL.
	if got.Tenant != "tenant-a" || got.Subject != "agt_1" || got.AgentKeyID != "agentkid-1" || got.Issuer != tenantIssuer || !got.Expiry.Equal(exp) || got.JTI == "" {
		t.Errorf("verified %+v", got)
	}
	// Two tokens never share a jti.
	other, _, _ := ti.Issue("agt_1", "agentkid-1", "tenant-a", now)
	if o, _ := ti.Verify(other, now); o.JTI == got.JTI {
		t.Error("jti repeated")
	}
	// Standard: another library verifies it with the public key alone.
	sig, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sig.Verify(key.Public()); err != nil {
		t.Fatalf("go-jose: %v", err)
	}
}

// The attacks a malicious agent (or a neighbour plane) would try.
func TestAccessTokenRefuses(t *testing.T) {
	key := newEd25519(t)
	ti := newIssuer(t, key, "tok-1", tenantIssuer)
	agentKey := newEd25519(t)
	now := time.Now().Truncate(time.Second)
	good := func(kv ...any) map[string]any {
		return with(map[string]any{
			"iss": tenantIssuer, "aud": "agentsigna-tenant", "sub": "agt_1", "client_id": "agt_1",
			"tenant": "tenant-a", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
			"jti": "j1", "token_use": "agent", "agent_kid": "agentkid-1",
		}, kv...)
	}
	at := func(kv ...any) map[string]any { return hdr("EdDSA", "tok-1", append([]any{"typ", "at+jwt"}, kv...)...) }
	platform, _, _ := newIssuer(t, newEd25519(t), "tok-platform", "https://agentsigna.test:8081").Issue("agt_1", "agentkid-1", "tenant-a", now)
	otherKeySameKID, _, _ := newIssuer(t, newEd25519(t), "tok-1", tenantIssuer).Issue("agt_1", "agentkid-1", "tenant-a", now)
	valid, _, _ := ti.Issue("agt_1", "agentkid-1", "tenant-a", now)
	parts := strings.Split(valid, ".")

	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"the agent's own client assertion", forge(t, hdr("EdDSA", "ed-1"), map[string]any{
			"iss": "agt_1", "sub": "agt_1", "aud": tokenEndpoint, "exp": now.Add(time.Minute).Unix(), "jti": "a"}, agentKey), identity.ErrTokenType},
		{"an assertion dressed as an access token", forge(t, at(), good(), agentKey), identity.ErrTokenSignature},
		{"signed by the agent under its own kid", forge(t, hdr("EdDSA", "ed-1", "typ", "at+jwt"), good(), agentKey), identity.ErrTokenKey},
		{"another issuer's token", platform, identity.ErrTokenKey},
		{"another key under our kid", otherKeySameKID, identity.ErrTokenSignature},
		{"platform audience", forge(t, at(), good("aud", "agentsigna-platform"), key), identity.ErrTokenAudience},
		{"audience array", forge(t, at(), good("aud", []string{"agentsigna-tenant"}), key), identity.ErrTokenAudience},
		{"audience array with both planes", forge(t, at(), good("aud", []string{"agentsigna-platform", "agentsigna-tenant"}), key), identity.ErrTokenAudience},
		{"no audience", forge(t, at(), good("aud", nil), key), identity.ErrTokenAudience},
		{"forged iss", forge(t, at(), good("iss", "https://agentsigna.test:8081"), key), identity.ErrTokenIssuer},
		{"alg none", forge(t, at("alg", "none"), good(), nil), identity.ErrTokenAlgorithm},
		{"HS256 keyed with the public key", forge(t, at("alg", "HS256"), good(), []byte(key.Public().(ed25519.PublicKey))), identity.ErrTokenAlgorithm},
		{"ES256", forge(t, at("alg", "ES256"), good(), newP256(t)), identity.ErrTokenAlgorithm},
		{"kid of another key", forge(t, at("kid", "tok-0"), good(), key), identity.ErrTokenKey},
		{"no kid", forge(t, at("kid", nil), good(), key), identity.ErrTokenKey},
		{"typ JWT", forge(t, hdr("EdDSA", "tok-1", "typ", "JWT"), good(), key), identity.ErrTokenType},
		{"typ of a receipt", forge(t, hdr("EdDSA", "tok-1", "typ", "agentsigna-receipt+jwt"), good(), key), identity.ErrTokenType},
		{"no typ", forge(t, hdr("EdDSA", "tok-1"), good(), key), identity.ErrTokenType},
		{"expired", forge(t, at(), good("exp", now.Add(-time.Second).Unix()), key), identity.ErrTokenExpired},
		{"exp is now", forge(t, at(), good("exp", now.Unix()), key), identity.ErrTokenExpired},
		{"issued in the future", forge(t, at(), good("iat", now.Add(time.Minute).Unix(), "exp", now.Add(6*time.Minute).Unix()), key), identity.ErrTokenNotYetValid},
		{"nbf in the future", forge(t, at(), good("nbf", now.Add(time.Minute).Unix()), key), identity.ErrTokenNotYetValid},
		{"no tenant", forge(t, at(), good("tenant", nil), key), identity.ErrTokenClaims},
		{"no sub", forge(t, at(), good("sub", nil, "client_id", nil), key), identity.ErrTokenClaims},
		{"client_id is another agent", forge(t, at(), good("client_id", "agt_2"), key), identity.ErrTokenClaims},
		{"a user token", forge(t, at(), good("token_use", "user"), key), identity.ErrTokenClaims},
		{"no exp", forge(t, at(), good("exp", nil), key), identity.ErrTokenClaims},
		{"no jti", forge(t, at(), good("jti", nil), key), identity.ErrTokenClaims},
		{"an empty jti", forge(t, at(), good("jti", ""), key), identity.ErrTokenClaims},
		{"no iat", forge(t, at(), good("iat", nil), key), identity.ErrTokenClaims},
		// Issued by an earlier version, or forged: bound to no agent key.
		{"no agent_kid", forge(t, at(), good("agent_kid", nil), key), identity.ErrTokenClaims},
		{"an empty agent_kid", forge(t, at(), good("agent_kid", ""), key), identity.ErrTokenClaims},
		{"agent_kid not a string", forge(t, at(), good("agent_kid", 7), key), identity.ErrTokenMalformed},
		{"tampered tenant", parts[0] + "." + b64([]byte(strings.Replace(string(mustDecode(t, parts[1])), "tenant-a", "tenant-b", 1))) + "." + parts[2], identity.ErrTokenSignature},
		{"crit header", forge(t, at("crit", []string{"tenant"}), good(), key), identity.ErrTokenMalformed},
		{"not a JWS", "Bearer", identity.ErrTokenMalformed},
		// The valid token spelled otherwise: one token has one string.
		{"signature padded", valid + "==", identity.ErrTokenMalformed},
		// The signature's last character carries 2 bits and 4 zero bits
		// (A, Q, g or w); the next character sets one of those.
		{"signature with trailing bits", valid[:len(valid)-1] + string(valid[len(valid)-1]+1), identity.ErrTokenMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ti.Verify(tc.token, now)
			if !errors.Is(err, tc.want) || !errors.Is(err, identity.ErrInvalidToken) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if c != (identity.AccessClaims{}) {
				t.Errorf("claims returned with an error: %+v", c)
			}
		})
	}

	// The controls.
	if _, err := ti.Verify(forge(t, at("typ", "application/at+jwt"), good(), key), now); err != nil {
		t.Errorf("RFC 9068 §4 allows typ application/at+jwt: %v", err)
	}
	if _, err := ti.Verify(forge(t, at(), good("iat", now.Add(20*time.Second).Unix()), key), now); err != nil {
		t.Errorf("iat within the skew: %v", err)
	}
	if c, err := ti.Verify(valid, now); err != nil || c.Tenant != "tenant-a" {
		t.Errorf("valid token: %+v %v", c, err)
	}
}

// RFC 7515 §4: header parameter names are case-sensitive. A token whose
// header has "Alg" for alg, "KID" beside or for kid, or a duplicate, reads
// one way to a JOSE library and another to encoding/json v1: it is
// refused as malformed, even under our own key.
func TestAccessTokenReadsHeaderByExactName(t *testing.T) {
	key := newEd25519(t)
	ti := newIssuer(t, key, "tok-1", tenantIssuer)
	now := time.Now().Truncate(time.Second)
	valid, _, _ := ti.Issue("agt_1", "agentkid-1", "tenant-a", now)
	claims := mustDecode(t, strings.Split(valid, ".")[1])
	for _, tc := range []struct{ name, header string }{
		{"Alg, no alg", `{"Alg":"EdDSA","kid":"tok-1","typ":"at+jwt"}`},
		{"KID, no kid", `{"alg":"EdDSA","KID":"tok-1","typ":"at+jwt"}`},
		{"KID beside kid", `{"alg":"EdDSA","kid":"tok-1","KID":"tok-0","typ":"at+jwt"}`},
		{"Typ, no typ", `{"alg":"EdDSA","kid":"tok-1","Typ":"at+jwt"}`},
		{"Typ beside typ JWT", `{"alg":"EdDSA","kid":"tok-1","typ":"JWT","Typ":"at+jwt"}`},
		{"CRIT", `{"alg":"EdDSA","kid":"tok-1","typ":"at+jwt","CRIT":["tenant"]}`},
		{"typ twice", `{"alg":"EdDSA","kid":"tok-1","typ":"at+jwt","typ":"at+jwt"}`},
		{"kid twice", `{"alg":"EdDSA","kid":"tok-0","kid":"tok-1","typ":"at+jwt"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ti.Verify(forge(t, []byte(tc.header), claims, key), now)
			if !errors.Is(err, identity.ErrTokenMalformed) {
				t.Fatalf("got %+v, %v, want %v", c, err, identity.ErrTokenMalformed)
			}
		})
	}
	for _, header := range []string{
		`{"alg":"EdDSA","kid":"tok-1","typ":"at+jwt"}`,
		`{"typ":"at+jwt","\u006bid":"tok-1","alg":"EdDSA","Cty":"JWT","kid-2":"tok-0"}`,
	} {
		if c, err := ti.Verify(forge(t, []byte(header), claims, key), now); err != nil || c.Tenant != "tenant-a" {
			t.Errorf("header %s: %+v, %v", header, c, err)
		}
	}
}

// RFC 7519 §4: claim names are case-sensitive. Claims with "TENANT"
// beside tenant, "SUB" for sub or jti twice read one way to a JOSE library
// and another to encoding/json v1: they are refused as malformed, even
// under our own key. Claims not read are ignored.
func TestAccessTokenReadsClaimsByExactName(t *testing.T) {
	key := newEd25519(t)
	ti := newIssuer(t, key, "tok-1", tenantIssuer)
	now := time.Now().Truncate(time.Second)
	valid, _, _ := ti.Issue("agt_1", "agentkid-1", "tenant-a", now)
	good := string(mustDecode(t, strings.Split(valid, ".")[1]))
	// claims are good's, members rewritten by kv (old, new, …), each old
	// once in them.
	claims := func(kv ...string) []byte {
		t.Helper()
		c := good
		for i := 0; i < len(kv); i += 2 {
			if strings.Count(c, kv[i]) != 1 {
				t.Fatalf("%s is not once in %s", kv[i], c)
			}
			c = strings.Replace(c, kv[i], kv[i+1], 1)
		}
		return []byte(c)
	}
	far := fmt.Sprint(now.AddDate(1, 0, 0).Unix())
	header := hdr("EdDSA", "tok-1", "typ", "at+jwt")
	for _, tc := range []struct {
		name   string
		claims []byte
	}{
		{"Iss", claims(`"iss":`, `"Iss":`)},
		{"Aud", claims(`"aud":`, `"Aud":`)},
		{"SUB", claims(`"sub":`, `"SUB":`)},
		{"Sub beside sub", claims(`"sub":"agt_1"`, `"sub":"agt_1","Sub":"agt_2"`)},
		{"Client-ID", claims(`"client_id":`, `"Client-ID":`)},
		{"TENANT beside tenant", claims(`"tenant":"tenant-a"`, `"tenant":"tenant-a","TENANT":"tenant-b"`)},
		{"Tenant", claims(`"tenant":`, `"Tenant":`)},
		{"EXP", claims(`"exp":`, `"EXP":`)},
		{"EXP a year ahead after exp", claims(`"jti":`, `"EXP":`+far+`,"jti":`)},
		{"IAT", claims(`"iat":`, `"IAT":`)},
		{"Nbf", claims(`"jti":`, `"Nbf":`+far+`,"jti":`)},
		{"JTI", claims(`"jti":`, `"JTI":`)},
		{"Token_Use", claims(`"token_use":`, `"Token_Use":`)},
		{"tenant twice", claims(`"tenant":"tenant-a"`, `"tenant":"tenant-b","tenant":"tenant-a"`)},
		{"jti twice", claims(`"jti":`, `"jti":"j0","jti":`)},
		{"a duplicate in a claim not read", claims(`"jti":`, `"cnf":{"jkt":"a","jkt":"b"},"jti":`)},
		// Exact names, but a value of another type: the decode refuses it.
		{"tenant a number", claims(`"tenant":"tenant-a"`, `"tenant":5`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ti.Verify(forge(t, header, tc.claims, key), now)
			if !errors.Is(err, identity.ErrTokenMalformed) {
				t.Fatalf("got %+v, %v, want %v", c, err, identity.ErrTokenMalformed)
			}
		})
	}
	// Exact names, escaped or not, and claims not read, in any case.
	for _, c := range [][]byte{
		claims(),
		claims(`"tenant":`, `"t\u0065nant":`, `"client_id":`, `"client\u005fid":`),
		claims(`"jti":`, `"scope":"a","Scope":"b","x-data":{"ID":1,"id":2},"tenants":"tenant-b","jti":`),
	} {
		if v, err := ti.Verify(forge(t, header, c, key), now); err != nil || v.Tenant != "tenant-a" || v.Subject != "agt_1" {
			t.Errorf("claims %s: %+v, %v", c, v, err)
		}
	}
}

func mustDecode(t *testing.T, seg string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewTokenIssuerRefuses(t *testing.T) {
	key := newEd25519(t)
	for name, build := range map[string]func() (*identity.TokenIssuer, error){
		"nil signer":  func() (*identity.TokenIssuer, error) { return identity.NewTokenIssuer(nil, "k", tenantIssuer) },
		"P-256 key":   func() (*identity.TokenIssuer, error) { return identity.NewTokenIssuer(newP256(t), "k", tenantIssuer) },
		"no kid":      func() (*identity.TokenIssuer, error) { return identity.NewTokenIssuer(key, "", tenantIssuer) },
		"no issuer":   func() (*identity.TokenIssuer, error) { return identity.NewTokenIssuer(key, "k", "") },
		"kid a space": func() (*identity.TokenIssuer, error) { return identity.NewTokenIssuer(key, "a b", tenantIssuer) },
	} {
		if ti, err := build(); err == nil || ti != nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ti := newIssuer(t, key, "k", tenantIssuer)
	if _, _, err := ti.Issue("", "agentkid-1", "tenant-a", time.Now()); err == nil {
		t.Error("token without an agent")
	}
	if _, _, err := ti.Issue("agt_1", "", "tenant-a", time.Now()); err == nil {
		t.Error("issued a token bound to no agent key")
	}
	if _, _, err := ti.Issue("agt_1", "agentkid-1", "", time.Now()); err == nil {
		t.Error("token without a tenant")
	}
}

func TestTokenIssuerPrintsNoKeyMaterial(t *testing.T) {
	key := newEd25519(t)
	ti := newIssuer(t, key, "tok-1", tenantIssuer)
	seed := key.Seed()
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "issuer", ti)
	wrapped := struct{ ti identity.TokenIssuer }{*ti}
	out := fmt.Sprintf("%v %+v %#v %s %x %d | %v %+v %#v | %s", ti, ti, ti, ti, ti, ti, *ti, *ti, wrapped, buf.String())
	for _, form := range []string{hex.EncodeToString(seed), b64(seed), base64.StdEncoding.EncodeToString(seed[:30]),
		strings.Trim(fmt.Sprint(seed[:8]), "[]")} {
		if strings.Contains(out, form) {
			t.Fatalf("key material printed: %s", out)
		}
	}
}

func BenchmarkAccessTokenVerify(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	ti, _ := identity.NewTokenIssuer(key, "tok-1", tenantIssuer)
	now := time.Now()
	token, _, err := ti.Issue("agt_1", "agentkid-1", "tenant-a", now)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ti.Verify(token, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAccessTokenVerifyUncached is a token's first verification:
// what a verifier that does not remember it (a fresh one, or a token
// forgotten) pays, signature and claims included.
func BenchmarkAccessTokenVerifyUncached(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	ti, _ := identity.NewTokenIssuer(key, "tok-1", tenantIssuer)
	keys := map[string]ed25519.PublicKey{"tok-1": ti.PublicKey()}
	now := time.Now()
	token, _, err := ti.Issue("agt_1", "agentkid-1", "tenant-a", now)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		tv, err := identity.NewTokenVerifier(keys, tenantIssuer)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tv.Verify(token, now); err != nil {
			b.Fatal(err)
		}
	}
}

// A verifier given several keys picks one by the token's kid, and a kid
// it does not hold, or the wrong key under a kid it holds, is refused.
func TestTokenVerifierPicksTheKeyByKid(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	keyA, keyB := newEd25519(t), newEd25519(t)
	a, b := newIssuer(t, keyA, "tok-a", tenantIssuer), newIssuer(t, keyB, "tok-b", tenantIssuer)
	both, err := identity.NewTokenVerifier(map[string]ed25519.PublicKey{"tok-a": a.PublicKey(), "tok-b": b.PublicKey()}, tenantIssuer)
	if err != nil {
		t.Fatal(err)
	}
	onlyA, err := identity.NewTokenVerifier(map[string]ed25519.PublicKey{"tok-a": a.PublicKey()}, tenantIssuer)
	if err != nil {
		t.Fatal(err)
	}
	tokA, _, _ := a.Issue("agt_1", "agentkid-1", "tenant-a", now)
	tokB, _, _ := b.Issue("agt_2", "agentkid-1", "tenant-a", now)
	for _, tc := range []struct {
		tok  string
		want string
	}{{tokA, "agt_1"}, {tokB, "agt_2"}} {
		if c, err := both.Verify(tc.tok, now); err != nil || c.Subject != tc.want {
			t.Errorf("verifier of both keys: %+v, %v", c, err)
		}
	}
	if _, err := onlyA.Verify(tokB, now); !errors.Is(err, identity.ErrTokenKey) {
		t.Errorf("a kid the verifier does not hold: %v", err)
	}
	bUnderA, _, _ := newIssuer(t, keyB, "tok-a", tenantIssuer).Issue("agt_2", "agentkid-1", "tenant-a", now)
	if _, err := both.Verify(bUnderA, now); !errors.Is(err, identity.ErrTokenSignature) {
		t.Errorf("key b under kid tok-a: %v", err)
	}
	for name, keys := range map[string]map[string]ed25519.PublicKey{
		"no key":           {},
		"empty kid":        {"": a.PublicKey()},
		"short key":        {"tok-a": a.PublicKey()[:31]},
		"kid with a space": {"tok a": a.PublicKey()},
	} {
		if _, err := identity.NewTokenVerifier(keys, tenantIssuer); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := identity.NewTokenVerifier(map[string]ed25519.PublicKey{"tok-a": a.PublicKey()}, ""); err == nil {
		t.Error("no issuer: accepted")
	}
}
