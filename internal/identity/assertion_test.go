package identity_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/store"
)

const tokenEndpoint = "https://agentsigna.test/v1/oauth/token"

// agents is a Lookup over a fixed directory that counts its calls.
type agents struct {
	byID    map[string]identity.AgentInfo
	lookups int
	outage  error
}

func (a *agents) lookup(agentID, _ string) (identity.AgentInfo, error) {
	a.lookups++
	if a.outage != nil {
		return identity.AgentInfo{}, a.outage
	}
	info, ok := a.byID[agentID]
	if !ok {
		return identity.AgentInfo{}, fmt.Errorf("agent %s: %w", agentID, store.ErrNotFound)
	}
	return info, nil
}

type assertionFixture struct {
	now      time.Time
	ed       ed25519.PrivateKey // agt_ed's key, kid "ed-1"
	ec       any                // agt_ec's *ecdsa.PrivateKey, kid "ec-1"
	other    ed25519.PrivateKey // a key registered to nobody
	dir      *agents
	edPublic []byte // agt_ed's registered JWK
}

func newAssertionFixture(t testing.TB) *assertionFixture {
	f := &assertionFixture{now: time.Now().Truncate(time.Second), ed: newEd25519(t), other: newEd25519(t)}
	ec := newP256(t)
	f.ec = ec
	edKey, edRaw := publicJWK(t, f.ed.Public(), "ed-1")
	f.edPublic = edRaw
	ecKey, _ := publicJWK(t, &ec.PublicKey, "ec-1")
	twoA, _ := publicJWK(t, newEd25519(t).Public(), "two-a")
	twoB, _ := publicJWK(t, f.ed.Public(), "two-b")
	f.dir = &agents{byID: map[string]identity.AgentInfo{
		"agt_ed":        {ID: "agt_ed", Status: identity.AgentActive, Keys: []jwk.Key{edKey}},
		"agt_ec":        {ID: "agt_ec", Status: identity.AgentActive, Keys: []jwk.Key{ecKey}},
		"agt_two":       {ID: "agt_two", Status: identity.AgentActive, Keys: []jwk.Key{twoA, twoB}},
		"agt_suspended": {ID: "agt_suspended", Status: "suspended", Keys: []jwk.Key{edKey}},
		"agt_revoked":   {ID: "agt_revoked", Status: "revoked", Keys: []jwk.Key{edKey}},
	}}
	return f
}

func (f *assertionFixture) opts() identity.AssertionOptions {
	return identity.AssertionOptions{Audience: tokenEndpoint, Now: f.now, Lookup: f.dir.lookup}
}

// claims are valid claims for agent, with overrides (nil deletes).
func (f *assertionFixture) claims(agent string, kv ...any) map[string]any {
	c := map[string]any{
		"iss": agent, "sub": agent, "aud": tokenEndpoint,
		"iat": f.now.Unix(), "exp": f.now.Add(time.Minute).Unix(), "jti": "jti-" + fmt.Sprint(time.Now().UnixNano()),
	}
	return with(c, kv...)
}

func hdr(alg, kid string, kv ...any) map[string]any {
	h := map[string]any{"alg": alg}
	if kid != "" {
		h["kid"] = kid
	}
	return with(h, kv...)
}

func TestVerifyClientAssertionAccepts(t *testing.T) {
	f := newAssertionFixture(t)
	for _, tc := range []struct {
		name, agent, kid string
		assertion        string
	}{
		{"Ed25519", "agt_ed", "ed-1", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed"), f.ed)},
		{"P-256", "agt_ec", "ec-1", forge(t, hdr("ES256", "ec-1"), f.claims("agt_ec"), f.ec)},
		{"no kid, one key", "agt_ed", "ed-1", forge(t, hdr("EdDSA", ""), f.claims("agt_ed"), f.ed)},
		{"kid picks the second key", "agt_two", "two-b", forge(t, hdr("EdDSA", "two-b"), f.claims("agt_two"), f.ed)},
		{"typ JWT", "agt_ed", "ed-1", forge(t, hdr("EdDSA", "ed-1", "typ", "JWT"), f.claims("agt_ed"), f.ed)},
		{"typ client-authentication+jwt", "agt_ed", "ed-1", forge(t, hdr("EdDSA", "ed-1", "typ", "client-authentication+jwt"), f.claims("agt_ed"), f.ed)},
		{"aud array of the one audience", "agt_ed", "ed-1", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "aud", []string{tokenEndpoint}), f.ed)},
		{"exp exactly 5 minutes ahead", "agt_ed", "ed-1", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "exp", f.now.Add(5*time.Minute).Unix()), f.ed)},
		{"iat and nbf within the skew", "agt_ed", "ed-1", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "iat", f.now.Add(20*time.Second).Unix(), "nbf", f.now.Add(20*time.Second).Unix()), f.ed)},
		{"fractional NumericDate", "agt_ed", "ed-1", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "exp", float64(f.now.Unix())+60.5), f.ed)},
		{"jti of 256 bytes", "agt_ed", "ed-1", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "jti", strings.Repeat("j", 256)), f.ed)},
		{"no iat", "agt_ed", "ed-1", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "iat", nil), f.ed)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := identity.VerifyClientAssertion(tc.assertion, f.opts())
			if err != nil {
				t.Fatal(err)
			}
			if c.AgentID != tc.agent || c.KeyID != tc.kid || len(c.JTISHA256) != sha256.Size || !c.Expiry.After(f.now) {
				t.Fatalf("claims %+v", c)
			}
		})
	}
}

// An agent uses whatever JOSE library it likes: one signed with go-jose
// (with its own header conventions) verifies too.
func TestVerifyClientAssertionFromAnotherLibrary(t *testing.T) {
	f := newAssertionFixture(t)
	for _, tc := range []struct {
		agent, kid string
		alg        jose.SignatureAlgorithm
		key        any
	}{{"agt_ed", "ed-1", jose.EdDSA, f.ed}, {"agt_ec", "ec-1", jose.ES256, f.ec}} {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: tc.alg, Key: tc.key},
			(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", tc.kid))
		if err != nil {
			t.Fatal(err)
		}
		payload := fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":[%q],"exp":%d,"jti":"go-jose-1"}`,
			tc.agent, tc.agent, tokenEndpoint, f.now.Add(2*time.Minute).Unix())
		obj, err := signer.Sign([]byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		compact, err := obj.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		c, err := identity.VerifyClientAssertion(compact, f.opts())
		if err != nil || c.AgentID != tc.agent {
			t.Fatalf("%s: %+v, %v", tc.alg, c, err)
		}
		want := sha256.Sum256([]byte("go-jose-1"))
		if string(c.JTISHA256) != string(want[:]) {
			t.Errorf("jti digest is not SHA-256(jti)")
		}
	}
}

func TestVerifyClientAssertionRejects(t *testing.T) {
	f := newAssertionFixture(t)
	edPub := []byte(f.ed.Public().(ed25519.PublicKey))
	valid := forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed"), f.ed)
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + b64([]byte(`{"iss":"agt_ed","sub":"agt_ed","aud":"`+tokenEndpoint+`","exp":`+fmt.Sprint(f.now.Add(time.Minute).Unix())+`,"jti":"x"}`)) + "." + parts[2]
	attackerJWK := jwkJSON(t, f.other.Public(), "ed-1")

	for _, tc := range []struct {
		name      string
		assertion string
		want      error
		noLookup  bool // refused before the agent is looked up
	}{
		{"unknown agent", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_nobody"), f.ed), identity.ErrUnknownAgent, false},
		{"suspended agent", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_suspended"), f.ed), identity.ErrAgentNotActive, false},
		{"revoked agent", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_revoked"), f.ed), identity.ErrAgentNotActive, false},
		{"wrong key under the agent's kid", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed"), f.other), identity.ErrAssertionSignature, false},
		{"wrong key, no kid", forge(t, hdr("EdDSA", ""), f.claims("agt_ed"), f.other), identity.ErrAssertionSignature, false},
		{"attacker's key in a jwk header", forge(t, hdr("EdDSA", "ed-1", "jwk", attackerJWK), f.claims("agt_ed"), f.other), identity.ErrAssertionSignature, false},
		{"kid not registered", forge(t, hdr("EdDSA", "ed-9"), f.claims("agt_ed"), f.ed), identity.ErrUnknownKey, false},
		{"kid of another agent's key", forge(t, hdr("ES256", "ec-1"), f.claims("agt_ed"), f.ec), identity.ErrUnknownKey, false},
		{"no kid, two keys", forge(t, hdr("EdDSA", ""), f.claims("agt_two"), f.ed), identity.ErrUnknownKey, false},
		{"tampered claims", tampered, identity.ErrAssertionSignature, false},
		{"alg none", forge(t, hdr("none", "ed-1"), f.claims("agt_ed"), nil), identity.ErrAssertionAlgorithm, true},
		{"alg none, no signature part", strings.TrimSuffix(forge(t, hdr("none", "ed-1"), f.claims("agt_ed"), nil), "."), identity.ErrAssertionMalformed, true},
		{"HS256 keyed with the agent's public key", forge(t, hdr("HS256", "ed-1"), f.claims("agt_ed"), edPub), identity.ErrAssertionAlgorithm, true},
		{"HS256 keyed with the registered JWK", forge(t, hdr("HS256", "ed-1"), f.claims("agt_ed"), f.edPublic), identity.ErrAssertionAlgorithm, true},
		{"RS256", forge(t, hdr("RS256", "ed-1"), f.claims("agt_ed"), f.ed), identity.ErrAssertionAlgorithm, true},
		{"ES384", forge(t, hdr("ES384", "ec-1"), f.claims("agt_ec"), f.ec), identity.ErrAssertionAlgorithm, true},
		{"alg Ed25519", forge(t, hdr("Ed25519", "ed-1"), f.claims("agt_ed"), f.ed), identity.ErrAssertionAlgorithm, true},
		{"ES256 header on an Ed25519 key", forge(t, hdr("ES256", "ed-1"), f.claims("agt_ed"), f.ec), identity.ErrAssertionAlgorithm, false},
		{"EdDSA header on a P-256 key", forge(t, hdr("EdDSA", "ec-1"), f.claims("agt_ec"), f.ed), identity.ErrAssertionAlgorithm, false},
		{"typ at+jwt", forge(t, hdr("EdDSA", "ed-1", "typ", "at+jwt"), f.claims("agt_ed"), f.ed), identity.ErrAssertionType, true},
		{"typ of a receipt", forge(t, hdr("EdDSA", "ed-1", "typ", "agentsigna-receipt+jwt"), f.claims("agt_ed"), f.ed), identity.ErrAssertionType, true},
		{"expired", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "exp", f.now.Add(-time.Second).Unix()), f.ed), identity.ErrAssertionExpired, true},
		{"exp is now", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "exp", f.now.Unix()), f.ed), identity.ErrAssertionExpired, true},
		{"exp too far ahead", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "exp", f.now.Add(6*time.Minute).Unix()), f.ed), identity.ErrAssertionLifetime, true},
		{"exp a year ahead", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "exp", f.now.AddDate(1, 0, 0).Unix()), f.ed), identity.ErrAssertionLifetime, true},
		{"no exp", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "exp", nil), f.ed), identity.ErrAssertionMalformed, true},
		{"exp a string", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "exp", "tomorrow"), f.ed), identity.ErrAssertionMalformed, true},
		// A NumericDate is a JSON number (RFC 7519 §2), not a string of one.
		{"exp a string of digits", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "exp", fmt.Sprint(f.now.Add(time.Minute).Unix())), f.ed), identity.ErrAssertionMalformed, true},
		{"iat a string of digits", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "iat", fmt.Sprint(f.now.Unix())), f.ed), identity.ErrAssertionMalformed, true},
		{"no jti", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "jti", nil), f.ed), identity.ErrAssertionJTI, true},
		{"empty jti", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "jti", ""), f.ed), identity.ErrAssertionJTI, true},
		{"jti of 257 bytes", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "jti", strings.Repeat("j", 257)), f.ed), identity.ErrAssertionJTI, true},
		{"wrong aud", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "aud", "https://agentsigna.test/"), f.ed), identity.ErrAssertionAudience, true},
		{"aud with a trailing slash", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "aud", tokenEndpoint+"/"), f.ed), identity.ErrAssertionAudience, true},
		{"aud of the access tokens", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "aud", identity.AccessTokenAudience), f.ed), identity.ErrAssertionAudience, true},
		{"no aud", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "aud", nil), f.ed), identity.ErrAssertionAudience, true},
		// Signed for another server too, which could replay it here.
		{"aud array naming another audience too", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "aud", []string{"https://other.example", tokenEndpoint}), f.ed), identity.ErrAssertionAudience, true},
		{"aud array naming this endpoint twice", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "aud", []string{tokenEndpoint, tokenEndpoint}), f.ed), identity.ErrAssertionAudience, true},
		{"empty aud array", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "aud", []string{}), f.ed), identity.ErrAssertionAudience, true},
		{"iss is not sub", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "iss", "agt_two"), f.ed), identity.ErrAssertionSubject, true},
		{"no iss", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "iss", nil), f.ed), identity.ErrAssertionSubject, true},
		{"empty iss and sub", forge(t, hdr("EdDSA", "ed-1"), f.claims("", "iss", ""), f.ed), identity.ErrAssertionSubject, true},
		{"iss and sub of 257 bytes", forge(t, hdr("EdDSA", "ed-1"), f.claims(strings.Repeat("a", 257)), f.ed), identity.ErrAssertionSubject, true},
		{"iat in the future", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "iat", f.now.Add(2*time.Minute).Unix()), f.ed), identity.ErrAssertionNotYetValid, true},
		{"nbf in the future", forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "nbf", f.now.Add(2*time.Minute).Unix()), f.ed), identity.ErrAssertionNotYetValid, true},
		{"crit header", forge(t, hdr("EdDSA", "ed-1", "crit", []string{"exp"}), f.claims("agt_ed"), f.ed), identity.ErrAssertionMalformed, true},
		{"claims not JSON", forge(t, hdr("EdDSA", "ed-1"), []byte("hi"), f.ed), identity.ErrAssertionMalformed, true},
		{"JSON serialization", fmt.Sprintf(`{"protected":%q,"payload":%q,"signature":%q}`, parts[0], parts[1], parts[2]), identity.ErrAssertionMalformed, true},
		{"not a JWS", "client-secret", identity.ErrAssertionMalformed, true},
		{"huge", strings.Repeat("a", 9000) + ".b.c", identity.ErrAssertionMalformed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.dir.lookups = 0
			c, err := identity.VerifyClientAssertion(tc.assertion, f.opts())
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if c.AgentID != "" || c.JTISHA256 != nil {
				t.Errorf("claims returned with an error: %+v", c)
			}
			if tc.noLookup && f.dir.lookups != 0 {
				t.Errorf("agent looked up before a stateless refusal")
			}
			if code, _ := identity.OAuthError(err); code != identity.OAuthInvalidClient {
				t.Errorf("OAuth code %q, want invalid_client", code)
			}
		})
	}
}

// RFC 7515 §4: header parameter names are case-sensitive, and jwx or
// go-jose read {"Alg":"EdDSA"} as a header without alg, which RFC 7515
// §4.1.1 requires. A reader that folds case (encoding/json v1) reads it as
// alg: such a header, and one with a duplicate, has two readings, and is
// refused before any lookup. Members not read here are ignored.
func TestVerifyClientAssertionReadsHeaderByExactName(t *testing.T) {
	f := newAssertionFixture(t)
	claims := f.claims("agt_ed")
	for _, tc := range []struct{ name, header string }{
		{"Alg, no alg", `{"Alg":"EdDSA","kid":"ed-1"}`},
		{"ALG none beside alg", `{"alg":"EdDSA","ALG":"none","kid":"ed-1"}`},
		{"KID, no kid", `{"alg":"EdDSA","KID":"ed-1"}`},
		{"Kid beside kid", `{"alg":"EdDSA","kid":"ed-1","Kid":"ed-9"}`},
		{"kid with a Kelvin sign", `{"alg":"EdDSA","\u212Aid":"ed-1"}`},
		{"Ki_d", `{"alg":"EdDSA","Ki_d":"ed-1"}`},
		{"Typ", `{"alg":"EdDSA","kid":"ed-1","Typ":"JWT"}`},
		{"TYP at+jwt beside typ JWT", `{"alg":"EdDSA","kid":"ed-1","typ":"JWT","TYP":"at+jwt"}`},
		{"Crit", `{"alg":"EdDSA","kid":"ed-1","Crit":["exp"]}`},
		{"B64", `{"alg":"EdDSA","kid":"ed-1","B64":false}`},
		{"alg twice", `{"alg":"EdDSA","alg":"EdDSA","kid":"ed-1"}`},
		{"kid twice", `{"alg":"EdDSA","kid":"ed-1","kid":"ed-9"}`},
		{"kid twice, one escaped", `{"alg":"EdDSA","kid":"ed-1","\u006bid":"ed-1"}`},
		{"a duplicate in a member not read", `{"alg":"EdDSA","kid":"ed-1","x":{"a":1,"a":2}}`},
		{"crit null", `{"alg":"EdDSA","kid":"ed-1","crit":null}`},
		{"two objects", `{"alg":"EdDSA","kid":"ed-1"}{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.dir.lookups = 0
			c, err := identity.VerifyClientAssertion(forge(t, []byte(tc.header), claims, f.ed), f.opts())
			if !errors.Is(err, identity.ErrAssertionMalformed) {
				t.Fatalf("got %+v, %v, want %v", c, err, identity.ErrAssertionMalformed)
			}
			if f.dir.lookups != 0 {
				t.Errorf("agent looked up")
			}
		})
	}
	// Exact names, escaped or not, and members not read, in any case.
	for _, header := range []string{
		`{"alg":"EdDSA","kid":"ed-1","typ":"JWT"}`,
		`{"\u0061lg":"EdDSA","ki\u0064":"ed-1"}`,
		`{"typ":"JWT","kid":"ed-1","alg":"EdDSA","cty":"JWT","x-request":{"ID":1,"id":2},"type":null,"kid2":"ed-9"}`,
	} {
		if c, err := identity.VerifyClientAssertion(forge(t, []byte(header), f.claims("agt_ed"), f.ed), f.opts()); err != nil || c.KeyID != "ed-1" {
			t.Errorf("header %s: %+v, %v", header, c, err)
		}
	}
}

// RFC 7519 §4: claim names are case-sensitive. Claims with "SUB" for sub,
// "EXP" beside exp, or jti twice, read one way to a JOSE library and
// another to encoding/json v1: they are refused before any lookup, even
// under the agent's key. Claims not read here are ignored.
func TestVerifyClientAssertionReadsClaimsByExactName(t *testing.T) {
	f := newAssertionFixture(t)
	// claims writes valid claims for agt_ed, members rewritten by kv
	// (old, new, …), each old once in them.
	claims := func(kv ...string) []byte {
		t.Helper()
		c := fmt.Sprintf(`{"iss":"agt_ed","sub":"agt_ed","aud":%q,"iat":%d,"exp":%d,"jti":"j-%d"}`,
			tokenEndpoint, f.now.Unix(), f.now.Add(time.Minute).Unix(), time.Now().UnixNano())
		for i := 0; i < len(kv); i += 2 {
			if strings.Count(c, kv[i]) != 1 {
				t.Fatalf("%s is not once in %s", kv[i], c)
			}
			c = strings.Replace(c, kv[i], kv[i+1], 1)
		}
		return []byte(c)
	}
	far := fmt.Sprint(f.now.AddDate(1, 0, 0).Unix())
	for _, tc := range []struct {
		name   string
		claims []byte
	}{
		{"ISS", claims(`"iss":`, `"ISS":`)},
		{"SUB", claims(`"sub":`, `"SUB":`)},
		{"Sub beside sub", claims(`"sub":"agt_ed"`, `"sub":"agt_ed","Sub":"agt_two"`)},
		{"sub with a long s", claims(`"sub":`, `"\u017Fub":`)},
		{"Aud", claims(`"aud":`, `"Aud":`)},
		{"AUD beside aud", claims(`"aud":`, `"AUD":"https://other.example","aud":`)},
		{"EXP", claims(`"exp":`, `"EXP":`)},
		{"EXP a year ahead after exp", claims(`,"jti"`, `,"EXP":`+far+`,"jti"`)},
		{"Iat", claims(`"iat":`, `"Iat":`)},
		{"NBF", claims(`"iat":`, `"NBF":1,"iat":`)},
		{"JTI", claims(`"jti":`, `"JTI":`)},
		{"J-TI beside jti", claims(`"jti":`, `"J-TI":"other","jti":`)},
		{"jti twice", claims(`"jti":`, `"jti":"other","jti":`)},
		{"sub twice", claims(`"sub":"agt_ed"`, `"sub":"agt_ed","sub":"agt_ed"`)},
		{"exp twice", claims(`,"jti"`, `,"exp":`+far+`,"jti"`)},
		{"a duplicate in a claim not read", claims(`"jti":`, `"cnf":{"jkt":"a","jkt":"b"},"jti":`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.dir.lookups = 0
			c, err := identity.VerifyClientAssertion(forge(t, hdr("EdDSA", "ed-1"), tc.claims, f.ed), f.opts())
			if !errors.Is(err, identity.ErrAssertionMalformed) {
				t.Fatalf("got %+v, %v, want %v", c, err, identity.ErrAssertionMalformed)
			}
			if f.dir.lookups != 0 {
				t.Errorf("agent looked up")
			}
		})
	}
	// Exact names, escaped or not, and claims not read, in any case.
	for _, c := range [][]byte{
		claims(),
		claims(`"sub":`, `"\u0073ub":`, `"jti":`, `"j\u0074i":`),
		claims(`"jti":`, `"scope":"a","Scope":"b","x-data":{"ID":1,"id":2},"subject":"agt_two","jti":`),
	} {
		if v, err := identity.VerifyClientAssertion(forge(t, hdr("EdDSA", "ed-1"), c, f.ed), f.opts()); err != nil || v.AgentID != "agt_ed" {
			t.Errorf("claims %s: %+v, %v", c, v, err)
		}
	}
}

func BenchmarkVerifyClientAssertion(b *testing.B) {
	f := newAssertionFixture(b)
	assertion := forge(b, hdr("EdDSA", "ed-1", "typ", "JWT"), f.claims("agt_ed"), f.ed)
	opts := f.opts()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := identity.VerifyClientAssertion(assertion, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func TestReplayedAssertionIsRefused(t *testing.T) {
	f := newAssertionFixture(t)
	// What the token endpoint does: verify, then remember the jti's hash
	// (there in the store's assertion_jtis; here a map).
	seen := map[string]bool{}
	authenticate := func(assertion string) error {
		c, err := identity.VerifyClientAssertion(assertion, f.opts())
		if err != nil {
			return err
		}
		k := c.AgentID + string(c.JTISHA256)
		if seen[k] {
			return identity.ErrReplay
		}
		seen[k] = true
		return nil
	}
	first := forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "jti", "once"), f.ed)
	if err := authenticate(first); err != nil {
		t.Fatal(err)
	}
	err := authenticate(first)
	if !errors.Is(err, identity.ErrReplay) || !errors.Is(err, identity.ErrInvalidAssertion) {
		t.Fatalf("replay: %v", err)
	}
	if code, desc := identity.OAuthError(err); code != identity.OAuthInvalidClient || !strings.Contains(desc, "already been used") {
		t.Errorf("replay maps to %q %q", code, desc)
	}
	// The same jti in a new assertion (re-signed, new exp) is still a replay.
	again := forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "jti", "once", "exp", f.now.Add(4*time.Minute).Unix()), f.ed)
	if err := authenticate(again); !errors.Is(err, identity.ErrReplay) {
		t.Fatalf("re-signed replay: %v", err)
	}
	// Another agent may use the same jti string: replay is per agent.
	if err := authenticate(forge(t, hdr("ES256", "ec-1"), f.claims("agt_ec", "jti", "once"), f.ec)); err != nil {
		t.Fatalf("another agent's jti: %v", err)
	}
}

func TestVerifyClientAssertionLookupOutageIsNotTheClientsFault(t *testing.T) {
	f := newAssertionFixture(t)
	f.dir.outage = errors.New("database on fire")
	_, err := identity.VerifyClientAssertion(forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed"), f.ed), f.opts())
	if err == nil || errors.Is(err, identity.ErrInvalidAssertion) {
		t.Fatalf("outage reported as %v", err)
	}
	if code, desc := identity.OAuthError(err); code != identity.OAuthServerError || strings.Contains(desc, "fire") {
		t.Errorf("outage maps to %q %q", code, desc)
	}
	// A Lookup that answers ErrUnknownAgent itself is an unknown agent.
	f.dir.outage = identity.ErrUnknownAgent
	_, err = identity.VerifyClientAssertion(forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed"), f.ed), f.opts())
	if !errors.Is(err, identity.ErrUnknownAgent) {
		t.Fatalf("got %v", err)
	}
}

func TestAssertionOptionsAreValidated(t *testing.T) {
	f := newAssertionFixture(t)
	a := forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed"), f.ed)
	for name, o := range map[string]identity.AssertionOptions{
		"no audience":       {Lookup: f.dir.lookup},
		"no lookup":         {Audience: tokenEndpoint},
		"negative lifetime": {Audience: tokenEndpoint, Lookup: f.dir.lookup, MaxLifetime: -time.Second},
	} {
		if _, err := identity.VerifyClientAssertion(a, o); err == nil || errors.Is(err, identity.ErrInvalidAssertion) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Defaults: now and 5 minutes.
	o := identity.AssertionOptions{Audience: tokenEndpoint, Lookup: f.dir.lookup}
	late := forge(t, hdr("EdDSA", "ed-1"), f.claims("agt_ed", "exp", time.Now().Add(10*time.Minute).Unix()), f.ed)
	if _, err := identity.VerifyClientAssertion(late, o); !errors.Is(err, identity.ErrAssertionLifetime) {
		t.Errorf("default lifetime: %v", err)
	}
	o.MaxLifetime = 15 * time.Minute
	if _, err := identity.VerifyClientAssertion(late, o); err != nil {
		t.Errorf("longer lifetime: %v", err)
	}
}

func TestOAuthErrorDescriptionsAreSafe(t *testing.T) {
	// Every refusal before the signature has verified reads alike, so the
	// endpoint is no oracle for which agent ids exist: an assertion for an
	// existing agent that fails a check of its own must not read
	// otherwise than one naming nobody.
	_, unknown := identity.OAuthError(fmt.Errorf("agent agt_secret: %w", identity.ErrUnknownAgent))
	for _, err := range []error{
		identity.ErrAgentNotActive, identity.ErrUnknownKey, identity.ErrAssertionSignature,
		identity.ErrAssertionMalformed, identity.ErrAssertionAlgorithm, identity.ErrAssertionType,
		identity.ErrAssertionSubject, identity.ErrAssertionClientID, identity.ErrAssertionAudience, identity.ErrAssertionExpired,
		identity.ErrAssertionLifetime, identity.ErrAssertionNotYetValid, identity.ErrAssertionJTI,
	} {
		if _, d := identity.OAuthError(err); d != unknown {
			t.Errorf("%v reads %q, unknown agent reads %q", err, d, unknown)
		}
	}
	if strings.Contains(unknown, "agt_secret") {
		t.Errorf("description repeats the error: %q", unknown)
	}
	for _, err := range []error{identity.ErrTokenExpired, identity.ErrTokenSignature, identity.ErrInvalidToken} {
		if code, _ := identity.OAuthError(err); code != identity.OAuthInvalidToken {
			t.Errorf("%v maps to %q", err, code)
		}
	}
}

// A Lookup that hands back an Ed25519 key of small order (the server's
// skips stored ones, see TestStoredWeakAgentKey) gets no assertion
// through with a signature anyone can make: with the identity point as
// key, R = the identity and S = 0 verify for every message under
// crypto/ed25519's cofactorless check.
func TestAssertionUnderASmallOrderKeyIsRefused(t *testing.T) {
	f := newAssertionFixture(t)
	identityPoint := make([]byte, 32)
	identityPoint[0] = 1
	k, err := jwk.Import(ed25519.PublicKey(identityPoint))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Set(jwk.KeyIDKey, "weak"); err != nil {
		t.Fatal(err)
	}
	f.dir.byID["agt_weak"] = identity.AgentInfo{ID: "agt_weak", Status: identity.AgentActive, Keys: []jwk.Key{k}}
	h, _ := json.Marshal(hdr("EdDSA", "weak"))
	c, _ := json.Marshal(f.claims("agt_weak"))
	input := b64(h) + "." + b64(c)
	forged := append(append([]byte(nil), identityPoint...), make([]byte, 32)...) // R ‖ S, S = 0
	if !ed25519.Verify(identityPoint, []byte(input), forged) {
		t.Fatal("the forgery does not verify under crypto/ed25519: the test proves nothing")
	}
	_, err = identity.VerifyClientAssertion(input+"."+b64(forged), f.opts())
	if !errors.Is(err, identity.ErrUnknownKey) {
		t.Fatalf("a forged assertion under a small-order key: %v, want ErrUnknownKey", err)
	}
}
