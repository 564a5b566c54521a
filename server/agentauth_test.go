package server_test

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/server"
)

// countingTenants counts what the agent authenticator asks of the store.
type countingTenants struct {
	store.TenantStore
	resolves atomic.Int64 // ResolveAgent: the directory
	txs      atomic.Int64 // InTenantTx and InTenantReadTx: an organization's data
}

func (c *countingTenants) ResolveAgent(ctx context.Context, agentID string) (store.TenantRef, error) {
	c.resolves.Add(1)
	return c.TenantStore.ResolveAgent(ctx, agentID)
}

func (c *countingTenants) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	c.txs.Add(1)
	return c.TenantStore.InTenantTx(ctx, tenantID, fn)
}

func (c *countingTenants) InTenantReadTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	c.txs.Add(1)
	return c.TenantStore.InTenantReadTx(ctx, tenantID, fn)
}

// postToken sends form to the token endpoint and returns the raw answer.
func (e *agentEnv) postToken(t *testing.T, form url.Values) (int, http.Header, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(t, req)
}

func assertionForm(assertion string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
}

// attackerKey is a key no agent registered.
func attackerKey(t *testing.T) jwk.Key {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, err := jwk.Import(priv)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// forgeries are assertions an anonymous sender can make for any agent id,
// each refused before a signature verifies under the agent's key.
func forgeries(t *testing.T, e *agentEnv) []struct {
	name   string
	reason string // what the organization's ledger records
	make   func(agentID string) string
} {
	key := attackerKey(t)
	signed := func(mutate func(*jwt.Builder)) func(string) string {
		return func(id string) string { return e.assertion(t, testAgent{id: id, key: key}, mutate) }
	}
	// typed is a well-formed assertion under another kind of token's typ.
	typed := func(typ string) func(string) string {
		return func(id string) string {
			claims, _ := json.Marshal(map[string]any{"iss": id, "sub": id, "aud": testPublicURL + "/v1/oauth/token",
				"exp": time.Now().Add(time.Minute).Unix(), "jti": "typed-1"})
			hdrs := jws.NewHeaders()
			_ = hdrs.Set(jws.TypeKey, typ)
			out, err := jws.Sign(claims, jws.WithKey(jwa.EdDSA(), key, jws.WithProtectedHeaders(hdrs)))
			if err != nil {
				t.Fatal(err)
			}
			return string(out)
		}
	}
	// malformed has claims naming the agent under a header that is no JSON.
	malformed := func(id string) string {
		enc := base64.RawURLEncoding.EncodeToString
		claims, _ := json.Marshal(map[string]any{"iss": id, "sub": id, "aud": testPublicURL + "/v1/oauth/token",
			"exp": time.Now().Add(time.Minute).Unix(), "jti": "malformed-1"})
		return enc([]byte(`{"alg":"EdDSA"`)) + "." + enc(claims) + ".AAAA"
	}
	return []struct {
		name   string
		reason string
		make   func(agentID string) string
	}{
		{"alg none", "bad_algorithm", unsignedJWS},
		{"wrong audience", "wrong_audience", signed(func(b *jwt.Builder) { b.Audience([]string{"http://evil.test/v1/oauth/token"}) })},
		{"expired", "expired", signed(func(b *jwt.Builder) { b.Expiration(time.Now().Add(-time.Minute)) })},
		{"lifetime too long", "lifetime_too_long", signed(func(b *jwt.Builder) { b.Expiration(time.Now().Add(time.Hour)) })},
		{"iss is not sub", "iss_sub_mismatch", signed(func(b *jwt.Builder) { b.Issuer("agt_someone_else") })},
		{"no jti", "bad_jti", signed(func(b *jwt.Builder) { b.JwtID("") })},
		{"access token's typ", "bad_type", typed("at+jwt")},
		{"iat in the future", "not_yet_valid", signed(func(b *jwt.Builder) { b.IssuedAt(time.Now().Add(time.Minute)) })},
		{"nbf in the future", "not_yet_valid", signed(func(b *jwt.Builder) { b.NotBefore(time.Now().Add(time.Minute)) })},
		{"malformed JWS", "malformed", malformed},
		{"signed by another key", "bad_signature", signed(nil)},
	}
}

// An anonymous sender learns nothing of which agent ids exist: the same
// forged assertion naming an existing agent and one naming nobody gets
// the same answer, byte for byte. The refusal is still filed where it
// was: the organization's log for its agent, the platform's for nobody.
func TestTokenRefusalsDoNotRevealWhichAgentsExist(t *testing.T) {
	e := newAgentEnv(t)
	ctx := context.Background()
	acme := e.agents["acme"]
	acmeLog, platformLog := e.ledger.TenantLog(e.orgs["acme"].ID, "acme"), e.ledger.PlatformLog()
	for _, tc := range forgeries(t, e) {
		t.Run(tc.name, func(t *testing.T) {
			acmeFrom, platformFrom := logSize(t, e.ledger, acmeLog), logSize(t, e.ledger, platformLog)
			knownStatus, knownHdr, known := e.postToken(t, assertionForm(tc.make(acme.id)))
			unknownStatus, unknownHdr, unknown := e.postToken(t, assertionForm(tc.make(store.NewID(store.PrefixAgent))))
			if knownStatus != 400 || unknownStatus != 400 {
				t.Fatalf("statuses %d and %d, want 400", knownStatus, unknownStatus)
			}
			if string(known) != string(unknown) {
				t.Errorf("existing agent: %s\nno such agent: %s", known, unknown)
			}
			if knownHdr.Get("WWW-Authenticate") != unknownHdr.Get("WWW-Authenticate") {
				t.Errorf("WWW-Authenticate %q and %q", knownHdr.Get("WWW-Authenticate"), unknownHdr.Get("WWW-Authenticate"))
			}
			var out map[string]string
			if err := json.Unmarshal(known, &out); err != nil || out["error"] != "invalid_client" {
				t.Fatalf("%s: %v", known, err)
			}
			// Filed: one entry in acme's log naming the reason, one in the
			// platform's.
			if got := kindsFrom(t, e.ledger, acmeLog, acmeFrom); got["auth.token_refused"] != 1 || len(got) != 1 {
				t.Fatalf("acme's log gained %v", got)
			}
			_, rec := entryAt(t, e.ledger, acmeLog, acmeFrom)
			var r map[string]string
			if err := json.Unmarshal(rec, &r); err != nil || r["reason"] != tc.reason || r["claimed_agent"] != acme.id {
				t.Errorf("acme's refusal %s, want reason %s", rec, tc.reason)
			}
			if got := kindsFrom(t, e.ledger, platformLog, platformFrom); got["auth.token_refused"] != 1 || len(got) != 1 {
				t.Fatalf("the platform's log gained %v", got)
			}
		})
	}
	// A suspended agent's own, well-signed assertion reads as nobody's too.
	_, _, nobody := e.postToken(t, assertionForm(e.assertion(t, testAgent{id: store.NewID(store.PrefixAgent), key: acme.key}, nil)))
	err := e.store.InTenantTx(ctx, e.orgs["acme"].ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Agents().SetStatus(ctx, acme.id, store.AgentSuspended)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, suspended := e.postToken(t, assertionForm(e.assertion(t, acme, nil))); string(suspended) != string(nobody) {
		t.Errorf("suspended agent: %s\nno such agent: %s", suspended, nobody)
	}
}

// The organization a refusal is filed in is read from the assertion
// before it verifies, as the verifier will read it: an assertion whose
// sub reads two ways (a duplicate, a name a case-insensitive reader takes
// for sub) is malformed, and filed with the platform, never in the
// organization of one of its readings (found by review). Each is signed
// by acme's own key.
func TestAmbiguousSubjectIsFiledWithThePlatform(t *testing.T) {
	e := newAgentEnv(t)
	acme, beta := e.agents["acme"], e.agents["beta"]
	acmeLog, betaLog, platformLog := e.ledger.TenantLog(e.orgs["acme"].ID, "acme"), e.ledger.TenantLog(e.orgs["beta"].ID, "beta"), e.ledger.PlatformLog()
	aud, exp := testPublicURL+"/v1/oauth/token", time.Now().Add(time.Minute).Unix()
	for _, tc := range []struct{ name, claims string }{
		{"sub twice", fmt.Sprintf(`{"iss":%q,"sub":%q,"sub":%q,"aud":%q,"exp":%d,"jti":"ambiguous-1"}`, acme.id, acme.id, beta.id, aud, exp)},
		{"sub and Sub", fmt.Sprintf(`{"iss":%q,"sub":%q,"Sub":%q,"aud":%q,"exp":%d,"jti":"ambiguous-2"}`, acme.id, acme.id, beta.id, aud, exp)},
		{"SUB alone", fmt.Sprintf(`{"iss":%q,"SUB":%q,"aud":%q,"exp":%d,"jti":"ambiguous-3"}`, acme.id, beta.id, aud, exp)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acmeFrom, betaFrom, platformFrom := logSize(t, e.ledger, acmeLog), logSize(t, e.ledger, betaLog), logSize(t, e.ledger, platformLog)
			signed, err := jws.Sign([]byte(tc.claims), jws.WithKey(jwa.EdDSA(), acme.key))
			if err != nil {
				t.Fatal(err)
			}
			if status, out := e.tokenRequest(t, string(signed)); status != 400 || out["error"] != "invalid_client" {
				t.Fatalf("%d %v, want 400 invalid_client", status, out)
			}
			if got := kindsFrom(t, e.ledger, platformLog, platformFrom); got["auth.token_refused"] != 1 || len(got) != 1 {
				t.Fatalf("the platform's log gained %v", got)
			}
			_, rec := entryAt(t, e.ledger, platformLog, platformFrom)
			var r map[string]string
			if err := json.Unmarshal(rec, &r); err != nil || r["reason"] != "malformed" {
				t.Errorf("the platform's refusal %s, want reason malformed", rec)
			}
			if got := kindsFrom(t, e.ledger, acmeLog, acmeFrom); len(got) != 0 {
				t.Errorf("acme's log gained %v", got)
			}
			if got := kindsFrom(t, e.ledger, betaLog, betaFrom); len(got) != 0 {
				t.Errorf("beta's log gained %v", got)
			}
		})
	}
}

// An assertion that fails a check of its own (shape, alg, aud, times,
// iss = sub, jti) is refused before the agent or its keys are read: junk
// opens no transaction in any organization. Only the directory is asked
// once, to file the refusal in the claimed agent's organization's log.
func TestStructurallyBadAssertionsReadNoAgent(t *testing.T) {
	var counts *countingTenants
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) {
		counts = &countingTenants{TenantStore: c.Tenants}
		c.Tenants = counts
	})
	acme := e.agents["acme"]
	for _, tc := range forgeries(t, e) {
		for _, who := range []struct{ name, id string }{{"existing agent", acme.id}, {"no such agent", store.NewID(store.PrefixAgent)}} {
			t.Run(tc.name+", "+who.name, func(t *testing.T) {
				txs, resolves := counts.txs.Load(), counts.resolves.Load()
				if status, _, body := e.postToken(t, assertionForm(tc.make(who.id))); status != 400 {
					t.Fatalf("%d %s", status, body)
				}
				gotTxs, gotResolves := counts.txs.Load()-txs, counts.resolves.Load()-resolves
				if tc.reason == "bad_signature" {
					// The control: a well-formed assertion is checked
					// against the agent's keys, which takes a read.
					if who.id == acme.id && gotTxs != 1 {
						t.Errorf("%d transactions to read the agent's keys, want 1", gotTxs)
					}
					return
				}
				if gotTxs != 0 || gotResolves > 1 {
					t.Errorf("%d transactions and %d directory reads, want none and at most one", gotTxs, gotResolves)
				}
			})
		}
	}
	// Not even a JWS.
	txs, resolves := counts.txs.Load(), counts.resolves.Load()
	if status, _, _ := e.postToken(t, assertionForm("client-secret")); status != 400 {
		t.Fatalf("junk: %d", status)
	}
	if gotTxs, gotResolves := counts.txs.Load()-txs, counts.resolves.Load()-resolves; gotTxs != 0 || gotResolves > 1 {
		t.Errorf("junk: %d transactions and %d directory reads", gotTxs, gotResolves)
	}
}

// tokenKeyCount is how many token keys tenantID has (active or not).
func (e *agentEnv) tokenKeyCount(t *testing.T, tenantID string) int {
	t.Helper()
	var n int
	err := e.store.InTenantReadTx(context.Background(), tenantID, func(ctx context.Context, tx store.TenantTx) error {
		ks, err := tx.Keys().SigningKeys(ctx, store.PurposeToken)
		n = len(ks)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// forgeAccessToken makes a token shaped like an access token of tenantID,
// under kid, signed by a key that is no organization's.
func forgeAccessToken(t *testing.T, tenantID, kid string) string {
	t.Helper()
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{"iss": testPublicURL, "aud": "agentsigna-tenant", "sub": "agt_x", "client_id": "agt_x",
		"tenant": tenantID, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": kid, "token_use": "agent"})
	hdrs := jws.NewHeaders()
	_ = hdrs.Set(jws.TypeKey, "at+jwt")
	_ = hdrs.Set(jws.KeyIDKey, kid)
	signed, err := jws.Sign(claims, jws.WithKey(jwa.EdDSA(), attackerKey(t), jws.WithProtectedHeaders(hdrs)))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// A token presented on an agent route never makes the service write: a
// forged one naming an organization that has no token key yet (its id is
// public, in receipts) is refused and leaves it without one. Its agent's
// first token then works at once.
func TestForgedTokenCreatesNoTokenKey(t *testing.T) {
	e := newAgentEnv(t)
	beta := e.orgs["beta"].ID
	enc := base64.RawURLEncoding.EncodeToString
	unsigned := enc([]byte(`{"alg":"EdDSA","typ":"at+jwt","kid":"x"}`)) + "." + enc([]byte(`{"tenant":"`+beta+`"}`)) + ".AAAA"
	for _, forged := range []string{unsigned, forgeAccessToken(t, beta, "tok-1"), forgeAccessToken(t, beta, "")} {
		status, hdr, body := e.decide(t, forged, payment(e.cps["beta"], "1.00"), nil)
		if status != 401 || hdr.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("forged token: %d %s", status, body)
		}
	}
	if n := e.tokenKeyCount(t, beta); n != 0 {
		t.Fatalf("forged tokens left beta with %d token keys", n)
	}
	if status, _, body := e.decide(t, e.token(t, "beta"), payment(e.cps["beta"], "1.00"), nil); status != 200 {
		t.Fatalf("beta's first token: %d %s", status, body)
	}
}

// racingReplica is a replica whose first use of an organization's token
// key raced another's: on PostgreSQL (READ COMMITTED) neither transaction
// sees the key the other is inserting, so each tries to make one, and the
// store refuses the second. Its write transactions' first look at the
// token keys sees none (blindTx).
type racingReplica struct{ store.TenantStore }

func (r racingReplica) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	return r.TenantStore.InTenantTx(ctx, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		return fn(ctx, blindTx{tx, new(bool)})
	})
}

// blindTx is a transaction whose first look at the token keys came before
// another's token key committed (PostgreSQL, READ COMMITTED): it sees none
// then, and the committed ones afterwards.
type blindTx struct {
	store.TenantTx
	looked *bool
}

func (b blindTx) Keys() store.KeyTx { return blindKeys{b.TenantTx.Keys(), b.looked} }

type blindKeys struct {
	store.KeyTx
	looked *bool
}

func (b blindKeys) SigningKeys(ctx context.Context, purpose store.KeyPurpose) ([]store.SigningKey, error) {
	if purpose == store.PurposeToken && !*b.looked {
		*b.looked = true
		return nil, nil
	}
	return b.KeyTx.SigningKeys(ctx, purpose)
}

// whoami asks mountWhoAmI's route with token as the Bearer access token.
func (e *agentEnv) whoami(t *testing.T, token string) (int, http.Header, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/v1/test/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return e.do(t, req)
}

// mountWhoAmI adds an agent route that answers the authenticated agent's id.
func mountWhoAmI(app *fiber.App, auth *server.AgentAuth) {
	app.Get("/v1/test/whoami", auth.Require, func(c *fiber.Ctx) error {
		a, _ := server.AgentFrom(c)
		return c.SendString(a.ID + " " + a.Tenant.ID)
	})
}

// Two replicas (two keyrings, one store) give an organization's agents
// their first tokens at the same time, each having looked for a token key
// before the other's committed: one key is made, the other replica takes
// it, and each accepts the other's tokens.
func TestReplicasVerifyEachOthersTokens(t *testing.T) {
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) { c.Tenants = racingReplica{c.Tenants} })
	mountWhoAmI(e.app, e.auth)
	kr, err := signing.NewKeyring(e.master)
	if err != nil {
		t.Fatal(err)
	}
	other, err := server.NewAgentAuth(server.AgentAuthConfig{Tenants: racingReplica{e.store}, Ledger: e.ledger, Keys: kr, PublicURL: testPublicURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close(context.Background()) })
	planes, err := server.New(server.Config{Logger: slog.New(slog.DiscardHandler), TenantReady: e.store.Ping, PlatformReady: e.store.Ping})
	if err != nil {
		t.Fatal(err)
	}
	other.MountTokenEndpoint(planes.Tenant)
	mountWhoAmI(planes.Tenant.App(), other)
	replicas := []*agentEnv{e, {app: planes.Tenant.App()}}

	acme := e.agents["acme"]
	tokens := make([]string, len(replicas))
	var wg sync.WaitGroup
	for i, r := range replicas {
		assertion := e.assertion(t, acme, nil)
		wg.Go(func() {
			status, _, body := r.postToken(t, assertionForm(assertion))
			var out struct {
				AccessToken string `json:"access_token"`
			}
			if status != 200 || json.Unmarshal(body, &out) != nil {
				t.Errorf("replica %d's token: %d %s", i, status, body)
			}
			tokens[i] = out.AccessToken
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if n := e.tokenKeyCount(t, e.orgs["acme"].ID); n != 1 {
		t.Fatalf("acme has %d token keys after the race, want 1", n)
	}
	for i, r := range replicas {
		for j, tok := range tokens {
			if status, _, body := r.whoami(t, tok); status != 200 || string(body) != acme.id+" "+e.orgs["acme"].ID {
				t.Errorf("replica %d with replica %d's token: %d %s", i, j, status, body)
			}
		}
	}
	// A replica that issued nothing reads the organization's token key
	// from the store when a token first names it.
	verifier, err := server.NewAgentAuth(server.AgentAuthConfig{Tenants: e.store, Ledger: e.ledger, Keys: kr, PublicURL: testPublicURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = verifier.Close(context.Background()) })
	third, err := server.New(server.Config{Logger: slog.New(slog.DiscardHandler), TenantReady: e.store.Ping, PlatformReady: e.store.Ping})
	if err != nil {
		t.Fatal(err)
	}
	mountWhoAmI(third.Tenant.App(), verifier)
	for j, tok := range tokens {
		if status, _, body := (&agentEnv{app: third.Tenant.App()}).whoami(t, tok); status != 200 || string(body) != acme.id+" "+e.orgs["acme"].ID {
			t.Errorf("a replica that issued nothing, with replica %d's token: %d %s", j, status, body)
		}
	}
}

// firstTokenRace is a racingReplica that holds each token request, once
// its assertion's jti is remembered, until n requests have got that far:
// then all of them want the organization's token key before any has it.
type firstTokenRace struct {
	store.TenantStore
	all   chan struct{} // closed when n have arrived
	n     int
	count atomic.Int64
}

func newFirstTokenRace(s store.TenantStore, n int) *firstTokenRace {
	return &firstTokenRace{TenantStore: s, all: make(chan struct{}), n: n}
}

func (r *firstTokenRace) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	var remembered bool
	err := r.TenantStore.InTenantTx(ctx, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		return fn(ctx, jtiSpyTx{blindTx{tx, new(bool)}, &remembered})
	})
	if remembered {
		// After the commit: the held requests keep no transaction open.
		if r.count.Add(1) == int64(r.n) {
			close(r.all)
		}
		select {
		case <-r.all:
		case <-time.After(time.Minute): // a request failed before: fail, not hang
			return errors.New("fewer token requests than expected remembered their jti")
		}
	}
	return err
}

// jtiSpyTx notes that its transaction remembers an assertion's jti.
type jtiSpyTx struct {
	blindTx
	remembered *bool
}

func (s jtiSpyTx) AssertionJTIs() store.JTITx { *s.remembered = true; return s.blindTx.AssertionJTIs() }

// An organization gets one token key, however many of its agents' first
// token requests arrive at once, each having looked for the key before
// any committed (as on PostgreSQL): the store refuses the others' keys.
func TestConcurrentFirstTokensMakeOneTokenKey(t *testing.T) {
	const n = 8
	var race *firstTokenRace
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) {
		race = newFirstTokenRace(c.Tenants, n)
		c.Tenants = race
	})
	beta := e.agents["beta"]
	assertions := make([]string, n)
	for i := range assertions {
		assertions[i] = e.assertion(t, beta, nil)
	}
	var wg sync.WaitGroup
	for _, a := range assertions {
		wg.Go(func() {
			if status, out := e.tokenRequest(t, a); status != 200 {
				t.Errorf("first token: %d %v", status, out)
			}
		})
	}
	wg.Wait()
	if n := e.tokenKeyCount(t, e.orgs["beta"].ID); n != 1 {
		t.Fatalf("%d concurrent first tokens left beta with %d token keys, want 1", len(assertions), n)
	}
}

// A token under a kid the organization does not have costs no store read
// once its key is known: the store keeps one active token key, so the kid
// is forged. An organization whose key is not known (none yet, here) has it
// read at most once a second, so tokens naming it cannot turn every request
// into a store read either.
func TestForgedTokenKidsAreReadAtMostOncePerSecond(t *testing.T) {
	clk := &clock{t: time.Now()}
	var counts *countingTenants
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) {
		counts = &countingTenants{TenantStore: c.Tenants}
		c.Tenants, c.Now = counts, clk.now
	})
	mountWhoAmI(e.app, e.auth)
	acmeID, betaID := e.orgs["acme"].ID, e.orgs["beta"].ID
	clk.set(time.Now())
	tok := e.token(t, "acme")
	whoami := func(token string) int {
		t.Helper()
		status, _, _ := e.whoami(t, token)
		return status
	}
	reads := func() int64 { return counts.txs.Load() }
	// The first use reads the status of the agent key the token was
	// issued under; the next, within the second, do not.
	if s := whoami(tok); s != 200 {
		t.Fatalf("acme's token: %d", s)
	}

	from := reads()
	for i := range 20 {
		if s := whoami(forgeAccessToken(t, acmeID, fmt.Sprint("kid-", i))); s != 401 {
			t.Fatalf("forged kid: %d", s)
		}
		if s := whoami(tok); s != 200 {
			t.Fatalf("acme's token among forged ones: %d", s)
		}
	}
	if got := reads() - from; got != 0 {
		t.Fatalf("20 forged kids of an organization whose key is known: %d reads, want none", got)
	}

	from = reads()
	for i := range 5 {
		if s := whoami(forgeAccessToken(t, betaID, fmt.Sprint("beta-", i))); s != 401 {
			t.Fatalf("a token of beta, which has no token key: %d", s)
		}
	}
	if got := reads() - from; got != 1 {
		t.Fatalf("5 tokens of beta within a second: %d reads, want 1", got)
	}
	clk.add(time.Second)
	from = reads()
	whoami(forgeAccessToken(t, betaID, "later"))
	if got := reads() - from; got != 1 {
		t.Fatalf("a second later: %d reads, want 1", got)
	}
}

// failingReads is a store whose read transactions fail while fail is set;
// reads counts them.
type failingReads struct {
	store.TenantStore
	fail  atomic.Bool
	reads atomic.Int64
}

func (f *failingReads) InTenantReadTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	f.reads.Add(1)
	if f.fail.Load() {
		return errors.New("connection refused")
	}
	return f.TenantStore.InTenantReadTx(ctx, tenantID, fn)
}

// While the store fails, a known key still verifies (for the second its
// agent key's status is trusted) and a forged kid is still refused (no
// read). For an organization whose key was never read,
// the once-a-second bound holds and a failed read counts: the request that
// meets the failure, and one within the second, are told of an outage, not
// that the token is invalid.
func TestTokensWhileTheStoreFails(t *testing.T) {
	clk := &clock{t: time.Now()}
	var fr *failingReads
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) {
		fr = &failingReads{TenantStore: c.Tenants}
		c.Tenants, c.Now = fr, clk.now
	})
	mountWhoAmI(e.app, e.auth)
	acmeID, betaID := e.orgs["acme"].ID, e.orgs["beta"].ID
	tok := e.token(t, "acme")
	whoami := func(token string) int {
		t.Helper()
		status, _, _ := e.whoami(t, token)
		return status
	}
	if s := whoami(tok); s != 200 { // reads its agent key's status
		t.Fatalf("acme's token: %d", s)
	}
	fr.fail.Store(true)

	from := fr.reads.Load()
	if s := whoami(forgeAccessToken(t, acmeID, "kid-1")); s != 401 {
		t.Fatalf("forged kid, the store failing: %d, want 401", s)
	}
	if s := whoami(tok); s != 200 {
		t.Fatalf("acme's token, the store failing: %d", s)
	}
	if got := fr.reads.Load() - from; got != 0 {
		t.Fatalf("acme's key is known: %d reads, want none", got)
	}

	// beta's keys were never read: nothing says its tokens are invalid.
	from = fr.reads.Load()
	for i := range 2 {
		if s := whoami(forgeAccessToken(t, betaID, fmt.Sprint("beta-", i))); s != 500 {
			t.Fatalf("beta's token %d, the store failing: %d, want 500", i, s)
		}
	}
	if got := fr.reads.Load() - from; got != 1 {
		t.Fatalf("two tokens of beta within a second, the store failing: %d reads, want 1", got)
	}
	// A second on, the agent key's status is due to be read again: an
	// outage, not an invalid token.
	clk.add(time.Second)
	if s := whoami(tok); s != 500 {
		t.Fatalf("acme's token a second on, the store failing: %d, want 500", s)
	}
	fr.fail.Store(false)
	if s := whoami(forgeAccessToken(t, betaID, "beta-later")); s != 401 {
		t.Fatalf("beta's forged token, the store back: %d, want 401", s)
	}
	if s := whoami(tok); s != 200 {
		t.Fatalf("acme's token, the store back: %d", s)
	}
}

// A store that cannot say which organization a token names is an outage
// (503), not an invalid token: the client keeps its token. An organization
// the store does not have is the token's fault (401).
func TestRequireWhileTheDirectoryFails(t *testing.T) {
	var fd *failingDirectory
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) {
		fd = &failingDirectory{TenantStore: c.Tenants}
		c.Tenants = fd
	})
	mountWhoAmI(e.app, e.auth)
	tok := e.token(t, "acme")
	whoami := func(token string) (int, http.Header) {
		t.Helper()
		status, h, _ := e.whoami(t, token)
		return status, h
	}
	fd.err = fmt.Errorf("%w: connection refused", store.ErrUnavailable)
	if s, h := whoami(tok); s != 503 || h.Get("WWW-Authenticate") != "" {
		t.Fatalf("acme's token, the directory failing: %d (WWW-Authenticate %q), want 503 without a challenge", s, h.Get("WWW-Authenticate"))
	}
	// A token request refused for its form cannot be filed where its
	// assertion's agent belongs: an outage, not an unrecorded 400.
	badGrant := assertionForm(e.assertion(t, e.agents["acme"], nil))
	badGrant.Set("grant_type", "password")
	if s, _, body := e.postToken(t, badGrant); s != 503 {
		t.Fatalf("a refused token request, the directory failing: %d %s, want 503", s, body)
	}
	fd.err = fmt.Errorf("%w: tenant", store.ErrNotFound)
	if s, h := whoami(tok); s != 401 || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("a token naming an organization the store does not have: %d (WWW-Authenticate %q), want 401 invalid_token", s, h.Get("WWW-Authenticate"))
	}
	fd.err = nil
	if s, _ := whoami(tok); s != 200 {
		t.Fatalf("acme's token, the directory back: %d", s)
	}
}

// failingDirectory fails ResolveTenantID and ResolveAgent with err, when
// set.
type failingDirectory struct {
	store.TenantStore
	err error
}

func (f *failingDirectory) ResolveTenantID(ctx context.Context, id string) (store.TenantRef, error) {
	if f.err != nil {
		return store.TenantRef{}, f.err
	}
	return f.TenantStore.ResolveTenantID(ctx, id)
}

func (f *failingDirectory) ResolveAgent(ctx context.Context, agentID string) (store.TenantRef, error) {
	if f.err != nil {
		return store.TenantRef{}, f.err
	}
	return f.TenantStore.ResolveAgent(ctx, agentID)
}

// client_id, when sent, must name the agent the assertion authenticates
// (RFC 7521 §4.2): acme's agent cannot present itself as beta's. The
// refusal reads like any other and is filed in acme's log.
func TestTokenEndpointRefusesAnotherClientID(t *testing.T) {
	e := newAgentEnv(t)
	acme, beta := e.agents["acme"], e.agents["beta"]
	acmeLog := e.ledger.TenantLog(e.orgs["acme"].ID, "acme")
	_, _, generic := e.postToken(t, assertionForm(unsignedJWS(store.NewID(store.PrefixAgent))))

	from := logSize(t, e.ledger, acmeLog)
	assertion := e.assertion(t, acme, nil)
	form := assertionForm(assertion)
	form.Set("client_id", beta.id)
	status, _, body := e.postToken(t, form)
	if status != 400 || string(body) != string(generic) {
		t.Fatalf("client_id of another agent: %d %s, want 400 %s", status, body, generic)
	}
	if _, rec := entryAt(t, e.ledger, acmeLog, from); !strings.Contains(string(rec), `"reason":"client_id_mismatch"`) {
		t.Errorf("acme's log: %s", rec)
	}
	// The same assertion with its own client_id: the refusal did not use
	// up its jti.
	form.Set("client_id", acme.id)
	if status, _, body := e.postToken(t, form); status != 200 || !strings.Contains(string(body), `"access_token"`) {
		t.Fatalf("client_id of the assertion's agent: %d %s", status, body)
	}
	// RFC 6749 §3.2: a parameter sent without a value is as if omitted.
	form = assertionForm(e.assertion(t, acme, nil))
	form.Set("client_id", "")
	if status, _, body := e.postToken(t, form); status != 200 || !strings.Contains(string(body), `"access_token"`) {
		t.Fatalf("empty client_id: %d %s", status, body)
	}
}

// RFC 6749 §3.2: the token endpoint ignores parameters it does not know,
// which a client's OAuth library may add, and treats one sent without a
// value as omitted; it still refuses any parameter sent twice, known or
// not.
func TestTokenEndpointIgnoresUnknownParameters(t *testing.T) {
	e := newAgentEnv(t)
	acme := e.agents["acme"]
	post := func(f url.Values) (int, map[string]any) {
		status, _, body := e.postToken(t, f)
		var out map[string]any
		_ = json.Unmarshal(body, &out)
		return status, out
	}
	for name, edit := range map[string]func(url.Values){
		"resource (RFC 8707)":    func(f url.Values) { f.Set("resource", "https://pay.example") },
		"audience and username":  func(f url.Values) { f.Set("audience", "x"); f.Set("username", "x") },
		"an empty scope":         func(f url.Values) { f.Set("scope", "") },
		"an empty client_secret": func(f url.Values) { f.Set("client_secret", "") },
	} {
		t.Run(name, func(t *testing.T) {
			f := assertionForm(e.assertion(t, acme, nil))
			edit(f)
			status, out := post(f)
			if status != 200 || out["access_token"] == nil {
				t.Fatalf("%d %v", status, out)
			}
		})
	}
	// RFC 8707 §2: resource may be repeated, one per target; a parameter
	// the endpoint reads may not.
	f := assertionForm(e.assertion(t, acme, nil))
	f["resource"] = []string{"https://a.example", "https://b.example"}
	if status, out := post(f); status != 200 || out["access_token"] == nil {
		t.Errorf("two resource parameters: %d %v", status, out)
	}
	for _, k := range []string{"grant_type", "client_assertion_type", "client_assertion", "client_id", "scope", "client_secret"} {
		f := assertionForm(e.assertion(t, acme, nil))
		v := cmp.Or(f.Get(k), "x") // the same value twice, or "x" twice
		f[k] = []string{v, v}
		if status, out := post(f); status != 400 || out["error"] != "invalid_request" {
			t.Errorf("%s twice: %d %v", k, status, out)
		}
	}
}

// The token endpoint's answers, a token or a refusal, are never cached
// (RFC 6749 §5.1: Cache-Control no-store and Pragma no-cache), and it
// refuses a client with 400 invalid_client, never 401: the client
// authenticated with an assertion in the body, not an Authorization
// header, so there is no scheme to challenge (RFC 6749 §5.2), and a 401
// without WWW-Authenticate is no valid answer (RFC 9110 §15.5.2).
func TestTokenEndpointHeaders(t *testing.T) {
	e := newAgentEnv(t)
	acme := e.agents["acme"]
	badGrant := assertionForm(e.assertion(t, acme, nil))
	badGrant.Set("grant_type", "password")
	withSecret := assertionForm(e.assertion(t, acme, nil))
	withSecret.Set("client_secret", "a-secret")
	replayed := assertionForm(e.assertion(t, acme, nil))
	if status, _, body := e.postToken(t, replayed); status != 200 {
		t.Fatalf("first use: %d %s", status, body)
	}
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		error  string // the OAuth error code; "" for a token
		basic  bool   // send Authorization: Basic too
	}{
		{"token", assertionForm(e.assertion(t, acme, nil)), 200, "", false},
		{"forged assertion", assertionForm(unsignedJWS(acme.id)), 400, "invalid_client", false},
		{"replayed assertion", replayed, 400, "invalid_client", false},
		{"no assertion", url.Values{"grant_type": {"client_credentials"}}, 400, "invalid_client", false},
		{"another grant", badGrant, 400, "unsupported_grant_type", false},
		{"repeated parameter", url.Values{"grant_type": {"client_credentials", "client_credentials"}}, 400, "invalid_request", false},
		{"no grant_type", url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion": {e.assertion(t, acme, nil)}}, 400, "invalid_request", false},
		{"an empty grant_type", url.Values{"grant_type": {""}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion": {e.assertion(t, acme, nil)}}, 400, "invalid_request", false},
		{"a client secret besides the assertion", withSecret, 400, "invalid_request", false},
		{"another assertion type", url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:saml2-bearer"},
			"client_assertion": {e.assertion(t, acme, nil)}}, 400, "invalid_client", false},
		// RFC 6749 §2.3: one client authentication method per request; no
		// Authorization-header scheme is supported.
		{"basic besides the assertion", assertionForm(e.assertion(t, acme, nil)), 400, "invalid_request", true},
		{"basic alone", url.Values{"grant_type": {"client_credentials"}}, 400, "invalid_request", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/v1/oauth/token", strings.NewReader(tc.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.basic {
				req.SetBasicAuth("agt_someone", "a-secret")
			}
			status, hdr, body := e.do(t, req)
			if status != tc.status {
				t.Fatalf("%d %s, want %d", status, body, tc.status)
			}
			var out map[string]any
			if hdr.Get("Content-Type") != "application/json" || json.Unmarshal(body, &out) != nil {
				t.Fatalf("Content-Type %q: %s", hdr.Get("Content-Type"), body)
			}
			if got, _ := out["error"].(string); got != tc.error {
				t.Errorf("error %q, want %q (%s)", got, tc.error, body)
			}
			if hdr.Get("Cache-Control") != "no-store" || hdr.Get("Pragma") != "no-cache" {
				t.Errorf("Cache-Control %q, Pragma %q", hdr.Get("Cache-Control"), hdr.Get("Pragma"))
			}
			if v, ok := hdr["Www-Authenticate"]; ok {
				t.Errorf("WWW-Authenticate %q", v)
			}
		})
	}
}

// expires_in is the lifetime of the token issued (RFC 6749 §5.1): its exp
// less the service clock's now, not the wall clock's, which a service
// clock ahead of it would stretch.
func TestTokenExpiresInIsTheIssuedLifetime(t *testing.T) {
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) {
		c.Now = func() time.Time { return time.Now().Add(time.Minute) }
	})
	status, out := e.tokenRequest(t, e.assertion(t, e.agents["acme"], nil))
	if status != 200 {
		t.Fatalf("%d %v", status, out)
	}
	if got, want := out["expires_in"], float64(identity.AccessTokenLifetime/time.Second); got != want {
		t.Errorf("expires_in %v, want %v", got, want)
	}
}

// A request refused for its form is a ledger entry too, naming the
// reason: in the log of the organization whose agent its assertion
// names, else in the platform's.
func TestTokenFormRefusalsAreRecorded(t *testing.T) {
	e := newAgentEnv(t)
	acme := e.agents["acme"]
	acmeLog, platformLog := e.ledger.TenantLog(e.orgs["acme"].ID, "acme"), e.ledger.PlatformLog()
	with := func(edit func(url.Values)) string {
		f := assertionForm(e.assertion(t, acme, nil))
		edit(f)
		return f.Encode()
	}
	for _, tc := range []struct {
		name, body, contentType, authorization string
		reason                                 string
		inAcme                                 bool // else in the platform's log
	}{
		{"another content type", with(func(url.Values) {}), "text/plain", "", "unsupported_media_type", false},
		{"a malformed form", "grant_type=%zz", "", "", "malformed_form", false},
		{"an Authorization header", with(func(url.Values) {}), "", "Basic YWdlbnQ6c2VjcmV0", "authorization_header", true},
		{"a client secret", with(func(f url.Values) { f.Set("client_secret", "x") }), "", "", "client_secret", true},
		{"no grant_type", with(func(f url.Values) { f.Del("grant_type") }), "", "", "no_grant_type", true},
		{"a repeated parameter", with(func(f url.Values) { f.Add("grant_type", "client_credentials") }), "", "", "repeated_parameter", true},
		{"another grant", with(func(f url.Values) { f.Set("grant_type", "password") }), "", "", "unsupported_grant_type", true},
		{"another assertion type", with(func(f url.Values) {
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
		}), "", "", "no_client_assertion", true},
		{"no assertion", "grant_type=client_credentials", "", "", "no_client_assertion", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acmeFrom, platformFrom := logSize(t, e.ledger, acmeLog), logSize(t, e.ledger, platformLog)
			req := httptest.NewRequest(http.MethodPost, "/v1/oauth/token", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", cmp.Or(tc.contentType, "application/x-www-form-urlencoded"))
			if tc.authorization != "" {
				req.Header.Set("Authorization", tc.authorization)
			}
			if status, _, body := e.do(t, req); status < 400 {
				t.Fatalf("%d %s", status, body)
			}
			lg, from, other, otherFrom := platformLog, platformFrom, acmeLog, acmeFrom
			if tc.inAcme {
				lg, from, other, otherFrom = acmeLog, acmeFrom, platformLog, platformFrom
			}
			if got := kindsFrom(t, e.ledger, lg, from); got["auth.token_refused"] != 1 || len(got) != 1 {
				t.Fatalf("the log gained %v, want one refusal", got)
			}
			if got := kindsFrom(t, e.ledger, other, otherFrom); len(got) != 0 {
				t.Fatalf("the other log gained %v", got)
			}
			_, rec := entryAt(t, e.ledger, lg, from)
			var r map[string]string
			if err := json.Unmarshal(rec, &r); err != nil || r["reason"] != tc.reason {
				t.Errorf("refusal %s, want reason %s", rec, tc.reason)
			}
		})
	}
}

// Agent routes' 401s challenge as RFC 6750 §3 says: without a token, the
// scheme alone; with a token that does not authenticate, invalid_token —
// also when the route refuses the token's agent after Require let it in.
func TestAgentRoutesChallenge(t *testing.T) {
	e := newAgentEnv(t)
	e.app.Get("/v1/test/refuse", e.auth.Require, func(*fiber.Ctx) error {
		return server.Problem(server.ErrUnauthorized, "The access token is invalid or expired.")
	})
	tok := e.token(t, "acme")
	// acme's token with its tenant claim swapped, re-signed by another key.
	swapped := forgeTenant(t, tok, e.orgs["beta"].ID, e.agents["acme"].key)
	for _, tc := range []struct {
		name, path, authorization, want string
	}{
		{"no Authorization", "/v1/decisions/dec_x", "", "Bearer"},
		{"another scheme", "/v1/decisions/dec_x", "Basic YWdlbnQ6c2VjcmV0", "Bearer"},
		{"garbage token", "/v1/decisions/dec_x", "Bearer x.y.z", `Bearer error="invalid_token"`},
		{"unsigned token", "/v1/decisions/dec_x", "Bearer " + unsignedJWS(e.agents["acme"].id), `Bearer error="invalid_token"`},
		{"tenant claim swapped", "/v1/decisions/dec_x", "Bearer " + swapped, `Bearer error="invalid_token"`},
		{"forged kid", "/v1/decisions/dec_x", "Bearer " + forgeAccessToken(t, e.orgs["acme"].ID, "tok-x"), `Bearer error="invalid_token"`},
		{"no such organization", "/v1/decisions/dec_x", "Bearer " + forgeTenant(t, tok, "8a2b6f64-7c0e-4a53-9d55-2f1c9a0b7e41", e.agents["acme"].key), `Bearer error="invalid_token"`},
		{"route refuses the agent", "/v1/test/refuse", "Bearer " + tok, `Bearer error="invalid_token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			if tc.authorization != "" {
				req.Header.Set("Authorization", tc.authorization)
			}
			status, hdr, body := e.do(t, req)
			if status != 401 || hdr.Get("WWW-Authenticate") != tc.want {
				t.Fatalf("%d WWW-Authenticate %q, want 401 %q (%s)", status, hdr.Get("WWW-Authenticate"), tc.want, body)
			}
		})
	}
}

// A key the agent's rotation retired gets no token: the store keeps
// retired keys (for the record), and only the endpoint's reading of the
// active ones stops a leaked, rotated-out key. The refusal is logged in the
// organization's log; the new key is taken.
func TestRetiredAgentKeyGetsNoToken(t *testing.T) {
	e := newAgentEnv(t)
	ctx := context.Background()
	acme := e.agents["acme"]
	ref := store.TenantRef{ID: e.orgs["acme"].ID, Slug: "acme"}
	if status, out := e.tokenRequest(t, e.assertion(t, acme, nil)); status != 200 {
		t.Fatalf("the first key before rotation: %d %v", status, out)
	}
	priv := attackerKey(t) // a fresh key, now the agent's own
	pub, _ := priv.PublicKey()
	tp, _ := pub.Thumbprint(crypto.SHA256)
	kid := base64.RawURLEncoding.EncodeToString(tp)
	_ = priv.Set(jwk.KeyIDKey, kid)
	_ = pub.Set(jwk.KeyIDKey, kid)
	pubJSON, _ := json.Marshal(pub)
	agents, err := identity.NewAgents(e.ledger, e.store)
	if err != nil {
		t.Fatal(err)
	}
	retired, err := agents.RotateKey(ctx, ref, store.AgentKey{AgentID: acme.id, KID: kid, PublicJWK: string(pubJSON)})
	if err != nil || len(retired) != 1 {
		t.Fatalf("rotate: %v, %v", retired, err)
	}
	acmeLog := e.ledger.TenantLog(ref.ID, "acme")
	from := logSize(t, e.ledger, acmeLog)
	status, out := e.tokenRequest(t, e.assertion(t, acme, nil))
	if status != 400 || out["error"] != "invalid_client" {
		t.Fatalf("the retired key: %d %v, want 400 invalid_client", status, out)
	}
	if _, rec := entryAt(t, e.ledger, acmeLog, from); !strings.Contains(string(rec), `"reason":"unknown_key"`) {
		t.Errorf("acme's log after the refusal: %s", rec)
	}
	if status, out := e.tokenRequest(t, e.assertion(t, testAgent{id: acme.id, key: priv}, nil)); status != 200 || out["access_token"] == nil {
		t.Fatalf("the new key: %d %v", status, out)
	}
}

// slowTenants is a store whose write transactions end late: after fn, the
// clock moves on by lag, as a write that waited would find it.
type slowTenants struct {
	store.TenantStore
	clk *clock
	lag time.Duration
}

func (s *slowTenants) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	err := s.TenantStore.InTenantTx(ctx, tenantID, fn)
	s.clk.add(s.lag)
	return err
}

// An assertion that expires while its jti is being written gets no token:
// by then the sweeper may have pruned the row of its first use, and the
// write proves nothing against a replay (found by review).
func TestAssertionExpiredDuringItsJTIWrite(t *testing.T) {
	clk := &clock{t: time.Now()}
	var slow *slowTenants
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) {
		slow = &slowTenants{TenantStore: c.Tenants, clk: clk}
		c.Tenants, c.Now = slow, clk.now
	})
	clk.set(time.Now())
	if status, out := e.tokenRequest(t, e.assertion(t, e.agents["acme"], nil)); status != 200 {
		t.Fatalf("a prompt write: %d %v", status, out)
	}
	slow.lag = identity.DefaultAssertionLifetime + time.Minute
	status, out := e.tokenRequest(t, e.assertion(t, e.agents["acme"], nil))
	if status != 400 || out["error"] != identity.OAuthInvalidClient || out["access_token"] != nil {
		t.Fatalf("an assertion that expired during its write: %d %v, want 400 invalid_client", status, out)
	}
}

// What the boundary refuses at the token endpoint, before the endpoint
// runs (a repeated credential, a compressed or oversized body, another
// method), is answered as RFC 6749 §5.2 says, as the endpoint's own
// refusals are: JSON with "error" invalid_request, not a problem, and
// never cached. Elsewhere the same refusal stays a problem.
func TestTokenEndpointBoundaryRefusalsAreOAuth(t *testing.T) {
	e := newAgentEnv(t)
	form := assertionForm(e.assertion(t, e.agents["acme"], nil)).Encode()
	post := func(path, body string, hdr http.Header) *http.Request {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, vs := range hdr {
			req.Header[k] = vs
		}
		return req
	}
	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
		says   string
	}{
		{"two Authorization headers", post("/v1/oauth/token", form, http.Header{"Authorization": {"Bearer a", "Bearer b"}}), 400, "Authorization"},
		{"a compressed body", post("/v1/oauth/token", form, http.Header{"Content-Encoding": {"gzip"}}), 415, "Content-Encoding"},
		{"GET", httptest.NewRequest(http.MethodGet, "/v1/oauth/token", nil), 405, ""},
		// fasthttp refuses it before any middleware (the error handler's
		// path), and only on a live listener.
		{"a body past the limit", post("/v1/oauth/token", form+"&pad="+strings.Repeat("a", 70<<10), nil), 413, ""},
	} {
		var status int
		var hdr http.Header
		var body []byte
		if tc.status == 413 {
			// A fresh env: app.Test and a live listener must not share an app.
			resp, b := rawDo(t, serve(t, newAgentEnv(t).tenant), tc.req)
			status, hdr, body = resp.StatusCode, resp.Header, b
		} else {
			status, hdr, body = e.do(t, tc.req)
		}
		var out map[string]any
		if err := json.Unmarshal(body, &out); err != nil || status != tc.status || out["error"] != "invalid_request" || out["type"] != nil {
			t.Errorf("%s: %d %s", tc.name, status, body)
			continue
		}
		if desc, _ := out["error_description"].(string); !strings.Contains(desc, tc.says) || len(out) != 2 {
			t.Errorf("%s: %s, want a description naming %q and nothing else", tc.name, body, tc.says)
		}
		if hdr.Get("Content-Type") != "application/json" || hdr.Get("Cache-Control") != "no-store" || hdr.Get("Pragma") != "no-cache" || hdr.Get("X-Request-Id") == "" {
			t.Errorf("%s: headers %v", tc.name, hdr)
		}
	}
	req := post("/v1/decisions", `{}`, http.Header{"Authorization": {"Bearer a", "Bearer b"}})
	req.Header.Set("Content-Type", "application/json")
	if status, hdr, body := e.do(t, req); status != 400 || hdr.Get("Content-Type") != "application/problem+json" {
		t.Errorf("the same refusal elsewhere: %d %v %s", status, hdr, body)
	}
}
