package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/gofiber/fiber/v2"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/time/rate"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
	"github.com/agentsigna/agentsigna/policies"
	"github.com/agentsigna/agentsigna/server"
)

const testPublicURL = "http://agentsigna.test"

type agentEnv struct {
	auth   *server.AgentAuth
	store  store.Backend
	master *secrets.MasterKey // another replica's keyring opens the same keys
	app    *fiber.App
	tenant *server.Plane // the plane app belongs to
	ledger *ledger.Ledger
	// registry registers and changes agents as the CLI does: each key
	// names its ledger entry.
	registry *identity.Agents
	orgs     map[string]store.Tenant
	agents   map[string]testAgent // by org slug
	cps      map[string]string    // verified counterparty id by org slug
}

type testAgent struct {
	id  string
	key jwk.Key // private
}

// newAgentEnv serves two organizations' agents; configure adjusts the
// agent authenticator's configuration.
func newAgentEnv(t *testing.T, configure ...func(*server.AgentAuthConfig)) *agentEnv {
	t.Helper()
	return newAgentEnvOn(t, server.Config{}, configure...)
}

// newAgentEnvOn is newAgentEnv on planes built from cfg (its logger and
// readiness checks are filled in).
func newAgentEnvOn(t *testing.T, planesCfg server.Config, configure ...func(*server.AgentAuthConfig)) *agentEnv {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	master, _ := secrets.GenerateMasterKey()
	kr, _ := signing.NewKeyring(master)
	l, _ := ledger.New(ledger.Config{Tenants: s, Platform: s, Keys: kr, Origin: "agentsigna.test"})
	t.Cleanup(l.Close)
	engine := bundles.NewEngine()
	ev, err := decision.NewEvaluator(ctx, engine, decision.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pol := decision.NewPolicies(s, l, engine, decision.PoliciesOptions{})
	svc, err := decision.NewService(decision.Config{Tenants: s, Ledger: l, Keyring: kr, Evaluator: ev, Policies: pol, PublicURL: testPublicURL})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.AgentAuthConfig{Tenants: s, Ledger: l, Keys: kr, PublicURL: testPublicURL}
	for _, c := range configure {
		c(&cfg)
	}
	auth, err := server.NewAgentAuth(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = auth.Close(context.Background()) }) // before the ledger's
	if planesCfg.Logger == nil {
		planesCfg.Logger = slog.New(slog.DiscardHandler)
	}
	planesCfg.TenantReady, planesCfg.PlatformReady = s.Ping, s.Ping
	planes, err := server.New(planesCfg)
	if err != nil {
		t.Fatal(err)
	}
	auth.MountTokenEndpoint(planes.Tenant)
	server.MountDecisions(planes.Tenant, auth, svc, l)
	server.MountJWKS(planes.Tenant, s, kr)
	server.MountLedger(planes.Tenant, l, auth.LogAccess)
	registry, err := identity.NewAgents(l, s)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := decision.NewCounterparties(l)
	if err != nil {
		t.Fatal(err)
	}
	e := &agentEnv{auth: auth, store: s, master: master, app: planes.Tenant.App(), tenant: planes.Tenant, ledger: l, registry: registry,
		orgs: map[string]store.Tenant{}, agents: map[string]testAgent{}, cps: map[string]string{}}
	raw, err := bundles.PackFS(policies.ExampleACME(), bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, slug := range []string{"acme", "beta"} {
		tn := storetest.CreateTenant(t, s, slug)
		e.orgs[slug] = tn
		org := decision.Organization{ID: tn.ID, Slug: slug}
		b, err := pol.Upload(ctx, org, raw, "usr_author")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pol.Activate(ctx, org, b.Revision, "usr_a", "usr_b", false); err != nil {
			t.Fatal(err)
		}
		key, kid, pubJSON := newAgentJWK(t, "")
		ag, err := e.registry.Register(ctx, store.TenantRef{ID: tn.ID, Slug: slug},
			store.Agent{Name: slug + " payer", Sponsor: "usr_sponsor", RiskTier: store.RiskLow},
			store.AgentKey{KID: kid, PublicJWK: pubJSON})
		if err != nil {
			t.Fatal(err)
		}
		e.agents[slug] = testAgent{id: ag.ID, key: key}
		cp, err := cps.Add(ctx, org, store.Counterparty{Name: "Vendor", Status: store.CounterpartyVerified})
		if err != nil {
			t.Fatal(err)
		}
		e.cps[slug] = cp.ID
	}
	return e
}

// assertion signs an RFC 7523 client assertion; mutate adjusts the claims.
func (e *agentEnv) assertion(t *testing.T, a testAgent, mutate func(b *jwt.Builder)) string {
	t.Helper()
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	b := jwt.NewBuilder().Issuer(a.id).Subject(a.id).Audience([]string{testPublicURL + "/v1/oauth/token"}).
		Expiration(time.Now().Add(2 * time.Minute)).IssuedAt(time.Now()).JwtID(hex.EncodeToString(jti))
	if mutate != nil {
		mutate(b)
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.EdDSA(), a.key))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// newAgentJWK is a fresh Ed25519 agent key under kid (its RFC 7638
// thumbprint when ""): the private JWK, the kid and the public JWK as
// registered.
func newAgentJWK(t *testing.T, kid string) (jwk.Key, string, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := jwk.Import(priv)
	pub, _ := key.PublicKey()
	if kid == "" {
		tp, _ := pub.Thumbprint(0x5) // crypto.SHA256
		kid = base64.RawURLEncoding.EncodeToString(tp)
	}
	_ = key.Set(jwk.KeyIDKey, kid)
	_ = pub.Set(jwk.KeyIDKey, kid)
	pubJSON, err := json.Marshal(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key, kid, string(pubJSON)
}

func (e *agentEnv) do(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := e.app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// get sends GET path with tok as the bearer token ("" for none).
func (e *agentEnv) get(t *testing.T, tok, path string) (int, http.Header, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return e.do(t, req)
}

// refusesConfigs checks that NewAgentAuth refuses each configuration bad
// makes of a good one, naming what it checks in the error.
func (e *agentEnv) refusesConfigs(t *testing.T, bad ...func(*server.AgentAuthConfig)) {
	t.Helper()
	kr, _ := signing.NewKeyring(e.master)
	for _, b := range bad {
		cfg := server.AgentAuthConfig{Tenants: e.store, Ledger: e.ledger, Keys: kr, PublicURL: testPublicURL}
		b(&cfg)
		if a, err := server.NewAgentAuth(cfg); err == nil {
			_ = a.Close(context.Background())
			t.Errorf("NewAgentAuth accepted %+v", cfg)
		}
	}
}

func (e *agentEnv) tokenRequest(t *testing.T, assertion string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	req := httptest.NewRequest(http.MethodPost, "/v1/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, _, body := e.do(t, req)
	var out map[string]any
	_ = json.Unmarshal(body, &out)
	return status, out
}

func (e *agentEnv) token(t *testing.T, slug string) string {
	t.Helper()
	status, out := e.tokenRequest(t, e.assertion(t, e.agents[slug], nil))
	if status != 200 || out["token_type"] != "Bearer" {
		t.Fatalf("token for %s: %d %v", slug, status, out)
	}
	return out["access_token"].(string)
}

func (e *agentEnv) decide(t *testing.T, token, body string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/decisions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return e.do(t, req)
}

func payment(cp, value string) string {
	return fmt.Sprintf(`{"action":{"type":"payment.send","resource":"invoice:INV-1","counterparty":%q,"amount":{"value":%q,"currency":"EUR"}},"reason":"pay"}`, cp, value)
}

func TestTokenEndpointRefusals(t *testing.T) {
	e := newAgentEnv(t)
	acme := e.agents["acme"]
	replayed := e.assertion(t, acme, nil)
	if status, _ := e.tokenRequest(t, replayed); status != 200 {
		t.Fatalf("first use: %d", status)
	}
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := jwk.Import(otherPriv)
	for _, tc := range []struct {
		name      string
		assertion string
	}{
		{"replayed jti", replayed},
		{"wrong audience", e.assertion(t, acme, func(b *jwt.Builder) { b.Audience([]string{"http://evil.test/v1/oauth/token"}) })},
		{"expired", e.assertion(t, acme, func(b *jwt.Builder) { b.Expiration(time.Now().Add(-time.Minute)) })},
		{"lifetime too long", e.assertion(t, acme, func(b *jwt.Builder) { b.Expiration(time.Now().Add(time.Hour)) })},
		{"iss is not sub", e.assertion(t, acme, func(b *jwt.Builder) { b.Issuer(e.agents["beta"].id) })},
		{"signed by another key", e.assertion(t, testAgent{id: acme.id, key: otherKey}, nil)},
		{"unknown agent", e.assertion(t, testAgent{id: store.NewID(store.PrefixAgent), key: acme.key}, nil)},
		{"alg none", unsignedJWS(acme.id)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := e.tokenRequest(t, tc.assertion)
			if status != 400 || out["error"] != "invalid_client" {
				t.Fatalf("%d %v", status, out)
			}
		})
	}
	// A suspended agent gets no token, and its live token stops working.
	tok := e.token(t, "acme")
	status, _, body := e.decide(t, tok, payment(e.cps["acme"], "1.00"), nil)
	var allowed struct {
		DecisionID string `json:"decision_id"`
		Receipt    string `json:"receipt"`
	}
	if err := json.Unmarshal(body, &allowed); status != 200 || err != nil || allowed.Receipt == "" {
		t.Fatalf("an allow before the suspension: %d %s", status, body)
	}
	err := e.store.InTenantTx(context.Background(), e.orgs["acme"].ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Agents().SetStatus(ctx, acme.id, store.AgentSuspended)
	})
	if err != nil {
		t.Fatal(err)
	}
	if status, out := e.tokenRequest(t, e.assertion(t, acme, nil)); status != 400 || out["error"] != "invalid_client" {
		t.Fatalf("suspended agent: %d %v", status, out)
	}
	status, _, body = e.decide(t, tok, payment(e.cps["acme"], "1.00"), nil)
	if status != 200 || !strings.Contains(string(body), `"outcome":"deny"`) || !strings.Contains(string(body), "agent_not_active") {
		t.Fatalf("suspended agent's decision: %d %s", status, body)
	}
	// It reads none of its decisions (no earlier allow's receipt leaves).
	var denied struct {
		DecisionID string `json:"decision_id"`
	}
	_ = json.Unmarshal(body, &denied)
	for _, path := range []string{"/v1/decisions/" + allowed.DecisionID, "/v1/decisions/" + allowed.DecisionID + "/tlog-proof", "/v1/decisions/" + denied.DecisionID,
		"/v1/ledger/checkpoint", "/v1/ledger/proofs/consistency?first=1&second=2", "/v1/ledger/entries/0"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if status, hdr, body := e.do(t, req); status != 401 || strings.Contains(string(body), "eyJ") || !strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("suspended agent reads %s: %d %v %s", path, status, hdr, body)
		}
	}
	// Every issue and refusal is in a ledger: the organization's (issues,
	// and refusals naming its agent) or the platform's (unknown agent).
	ctx := context.Background()
	acmeLog, _ := e.ledger.LatestCheckpoint(ctx, e.ledger.TenantLog(e.orgs["acme"].ID, "acme"))
	platformLog, _ := e.ledger.LatestCheckpoint(ctx, e.ledger.PlatformLog())
	if platformLog.Size < 1 || acmeLog.Size < 8 {
		t.Fatalf("ledger sizes: acme %d, platform %d", acmeLog.Size, platformLog.Size)
	}
	// Wrong grant (an unknown parameter beside it is ignored) and content
	// type.
	req := httptest.NewRequest(http.MethodPost, "/v1/oauth/token", strings.NewReader("grant_type=password&username=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if status, _, body := e.do(t, req); status != 400 || !strings.Contains(string(body), `"error":"unsupported_grant_type"`) {
		t.Fatalf("password grant: %d %s", status, body)
	}
	req = httptest.NewRequest(http.MethodPost, "/v1/oauth/token", strings.NewReader(`{"grant_type":"client_credentials"}`))
	req.Header.Set("Content-Type", "application/json")
	if status, _, _ := e.do(t, req); status != 415 {
		t.Fatalf("JSON to the token endpoint: %d", status)
	}
}

func unsignedJWS(agentID string) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims, _ := json.Marshal(map[string]any{"iss": agentID, "sub": agentID, "aud": testPublicURL + "/v1/oauth/token",
		"exp": time.Now().Add(time.Minute).Unix(), "jti": "x1"})
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(claims) + "."
}

// A suspended organization's agents are refused decisions at once, with a
// token issued before the suspension, and get no new token; another
// organization's are served; and they are served again once it is active.
func TestSuspendedOrganizationIsRefused(t *testing.T) {
	e := newAgentEnv(t)
	acmeToken, betaToken := e.token(t, "acme"), e.token(t, "beta")
	decide := func(token, org string) int {
		t.Helper()
		status, _, _ := e.decide(t, token, payment(e.cps[org], "1.00"), nil)
		return status
	}
	setStatus := func(status store.TenantStatus) {
		t.Helper()
		err := e.store.InPlatformTx(context.Background(), func(ctx context.Context, tx store.PlatformTx) error {
			return tx.SetTenantStatus(ctx, e.orgs["acme"].ID, status)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := decide(acmeToken, "acme"); got != 200 {
		t.Fatalf("acme before the suspension: %d", got)
	}
	setStatus(store.TenantSuspended)
	status, hdr, body := e.decide(t, acmeToken, payment(e.cps["acme"], "1.00"), nil)
	if status != 401 || hdr.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("suspended acme's decision: %d %s %s", status, hdr.Get("Content-Type"), body)
	}
	if status, out := e.tokenRequest(t, e.assertion(t, e.agents["acme"], nil)); status != 400 || out["error"] != "invalid_client" {
		t.Fatalf("suspended acme's agent asks for a token: %d %v", status, out)
	}
	if got := decide(betaToken, "beta"); got != 200 {
		t.Fatalf("beta while acme is suspended: %d", got)
	}
	setStatus(store.TenantActive)
	if got := decide(acmeToken, "acme"); got != 200 {
		t.Fatalf("acme active again: %d", got)
	}
}

func TestDecisionsEndToEnd(t *testing.T) {
	e := newAgentEnv(t)
	tok := e.token(t, "acme")

	// Allow, with a receipt that verifies with the JWKS alone, through a
	// second JOSE implementation (go-jose).
	status, _, body := e.decide(t, tok, payment(e.cps["acme"], "100.00"), map[string]string{"Idempotency-Key": "k1"})
	var resp struct {
		DecisionID string          `json:"decision_id"`
		Outcome    string          `json:"outcome"`
		Reasons    []string        `json:"reasons"`
		Receipt    string          `json:"receipt"`
		Case       *map[string]any `json:"case"`
		Ledger     struct {
			Index          uint64   `json:"index"`
			LeafHash       []byte   `json:"leaf_hash"`
			Checkpoint     string   `json:"checkpoint"`
			InclusionProof [][]byte `json:"inclusion_proof"`
		} `json:"ledger"`
	}
	if status != 200 || json.Unmarshal(body, &resp) != nil || resp.Outcome != "allow" || resp.Receipt == "" || resp.Case != nil {
		t.Fatalf("allow: %d %s", status, body)
	}
	_, _, jwksBody := e.do(t, httptest.NewRequest(http.MethodGet, "/t/acme/.well-known/jwks.json", nil))
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwksBody, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks %s: %v", jwksBody, err)
	}
	parsed, err := jose.ParseSigned(resp.Receipt, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := parsed.Verify(set.Keys[0])
	if err != nil {
		t.Fatalf("receipt does not verify with go-jose and the JWKS: %v", err)
	}
	if !bytes.Contains(payload, []byte(resp.DecisionID)) {
		t.Fatalf("receipt payload %s", payload)
	}
	// The decision's inclusion proof against the checkpoint given.
	vkey, _ := e.ledger.VerifierKey(context.Background(), e.ledger.TenantLog(e.orgs["acme"].ID, "acme"))
	v, _ := note.NewVerifier(vkey)
	n, err := note.Open([]byte(resp.Ledger.Checkpoint), note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	var size uint64
	fmt.Sscan(lines[1], &size)
	root, _ := base64.StdEncoding.DecodeString(lines[2])
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, resp.Ledger.Index, size, resp.Ledger.LeafHash, resp.Ledger.InclusionProof, root); err != nil {
		t.Fatalf("inclusion proof: %v", err)
	}

	// The decision's tlog-proof bundle verifies offline with the log key.
	req0 := httptest.NewRequest(http.MethodGet, "/v1/decisions/"+resp.DecisionID+"/tlog-proof", nil)
	req0.Header.Set("Authorization", "Bearer "+tok)
	status, hdr0, bundle := e.do(t, req0)
	if status != 200 || hdr0.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("tlog-proof: %d %s", status, bundle)
	}
	if _, index, err := verify.VerifyProof(bundle, vkey, resp.Ledger.LeafHash); err != nil || index != resp.Ledger.Index {
		t.Fatalf("tlog-proof does not verify: %d, %v", index, err)
	}
	// Its extra line is the decision's entry itself: the leaf the proof
	// proves, naming the decision.
	bundled, err := verify.ParseProof(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if entry, err := verify.ParseEntry(bundled.Extra); err != nil || !bytes.Equal(verify.LeafHash(bundled.Extra), resp.Ledger.LeafHash) ||
		entry.Kind != "decision" || entry.Subject != resp.DecisionID || entry.Index != resp.Ledger.Index {
		t.Fatalf("the bundle's entry: %+v, %v; leaf hash %x, want %x", entry, err, verify.LeafHash(bundled.Extra), resp.Ledger.LeafHash)
	}

	// Idempotent replay, and the same key with another body.
	status, _, again := e.decide(t, tok, payment(e.cps["acme"], "100.00"), map[string]string{"Idempotency-Key": "k1"})
	if status != 200 || !bytes.Equal(again, body) {
		t.Fatalf("replay: %d, same body %v", status, bytes.Equal(again, body))
	}
	if status, _, _ := e.decide(t, tok, payment(e.cps["acme"], "101.00"), map[string]string{"Idempotency-Key": "k1"}); status != 422 {
		t.Fatalf("key reused with another body: %d", status)
	}

	// Escalate with a case; the case is the agent's own.
	status, _, body = e.decide(t, tok, payment(e.cps["acme"], "1500.00"), nil)
	var esc struct {
		Outcome string `json:"outcome"`
		Case    struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"case"`
	}
	if status != 200 || json.Unmarshal(body, &esc) != nil || esc.Outcome != "escalate" || esc.Case.Status != "pending" {
		t.Fatalf("escalate: %d %s", status, body)
	}
	get := func(token, path string) int {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		status, _, _ := e.do(t, req)
		return status
	}
	if s := get(tok, "/v1/cases/"+esc.Case.ID); s != 200 {
		t.Fatalf("own case: %d", s)
	}
	if s := get(tok, "/v1/cases/"+esc.Case.ID+"?wait=1ms"); s != 200 {
		t.Fatalf("own case, long poll: %d", s)
	}
	if s := get(tok, "/v1/cases/"+esc.Case.ID+"?wait=1h"); s != 400 {
		t.Fatalf("wait beyond 30s: %d", s)
	}

	// Deny: an action the policy gives no authority for.
	status, _, body = e.decide(t, tok, `{"action":{"type":"report.archive"}}`, nil)
	if status != 200 || !strings.Contains(string(body), `"outcome":"deny"`) || !strings.Contains(string(body), "no_authority") {
		t.Fatalf("deny: %d %s", status, body)
	}

	// Another organization's agent: its token never reaches acme's data,
	// whatever headers it sends.
	betaTok := e.token(t, "beta")
	if s := get(betaTok, "/v1/decisions/"+resp.DecisionID); s != 404 {
		t.Fatalf("beta reads acme's decision: %d", s)
	}
	if s := get(betaTok, "/v1/decisions/"+resp.DecisionID+"/tlog-proof"); s != 404 {
		t.Fatalf("beta reads acme's tlog-proof: %d", s)
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/cases/"+esc.Case.ID, nil)
	req.Header.Set("Authorization", "Bearer "+betaTok)
	req.Header.Set("X-Tenant", "acme")
	req.Header.Set("X-Forwarded-Host", "acme.agentsigna.test")
	if status, _, _ := e.do(t, req); status != 404 {
		t.Fatalf("beta reads acme's case with forged headers: %d", status)
	}
	// beta's counterparty id is unknown in acme.
	if status, _, _ := e.decide(t, tok, payment(e.cps["beta"], "10.00"), nil); status != 400 {
		t.Fatalf("another organization's counterparty: %d", status)
	}

	// A token signed with the agent's own key (its client assertion) is not
	// an access token; no token, a garbage token: 401.
	assertionAsToken := e.assertion(t, e.agents["acme"], nil)
	for _, bad := range []string{assertionAsToken, "", "x.y.z"} {
		status, hdr, _ := e.decide(t, bad, payment(e.cps["acme"], "1.00"), nil)
		if status != 401 || hdr.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("token %q: %d", bad, status)
		}
	}
	// An access token of acme with its tenant claim swapped to beta's id
	// (re-signed with the agent's key) does not verify under beta's key.
	forged := forgeTenant(t, tok, e.orgs["beta"].ID, e.agents["acme"].key)
	if status, _, _ := e.decide(t, forged, payment(e.cps["beta"], "1.00"), nil); status != 401 {
		t.Fatalf("forged tenant claim: %d", status)
	}

	// Boundary: unknown field, deep nesting, wrong content type. (The 70 KiB
	// body's 413 is answered by fasthttp before any handler, which app.Test
	// reports as an error: it is checked on a live listener in
	// boundary_test.go and through the real binary in tests/.)
	for _, tc := range []struct {
		body, ctype string
		status      int
	}{
		{`{"action":{"type":"report.generate","extra":1}}`, "application/json", 400},
		{`{"action":{"type":"report.generate","params":{"a":{"b":{"c":{"d":{"e":1}}}}}}}`, "application/json", 400},
		{`{"action":{"type":"report.generate"}}`, "text/plain", 415},
		{`{"action":{"type":"Bad Type"}}`, "application/json", 400},
		{`{"action":{"type":"payment.send","amount":{"value":"1e3","currency":"EUR"}}}`, "application/json", 400},
	} {
		req := httptest.NewRequest(http.MethodPost, "/v1/decisions", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ctype)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := e.app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%.60s (%s): %d, want %d", tc.body, tc.ctype, resp.StatusCode, tc.status)
		}
	}
}

// forgeTenant rewrites the tenant claim of token and signs it with key.
func forgeTenant(t *testing.T, token, tenantID string, key jwk.Key) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	_ = json.Unmarshal(payload, &claims)
	claims["tenant"] = tenantID
	b, _ := json.Marshal(claims)
	hdrs := jws.NewHeaders()
	_ = hdrs.Set("typ", "at+jwt")
	signed, err := jws.Sign(b, jws.WithKey(jwa.EdDSA(), key, jws.WithProtectedHeaders(hdrs)))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// What an agent or a verifier reads of an organization — its receipt
// keys, a decision, a case, a decision's tlog-proof — is served while a
// transaction holds the organization's store for writing and its log's
// lock, as a ledger batch does while it commits: on the embedded store
// such a transaction holds the file's one writing connection, and reads
// that queued for it waited for every batch.
func TestReadsAreServedWhileTheWriterIsHeld(t *testing.T) {
	e := newAgentEnv(t)
	tok := e.token(t, "acme")
	status, _, body := e.decide(t, tok, payment(e.cps["acme"], "100.00"), nil)
	var allowed struct {
		DecisionID string `json:"decision_id"`
	}
	if status != 200 || json.Unmarshal(body, &allowed) != nil {
		t.Fatalf("allow: %d %s", status, body)
	}
	status, _, body = e.decide(t, tok, payment(e.cps["acme"], "1500.00"), nil)
	var esc struct {
		Case struct {
			ID string `json:"id"`
		} `json:"case"`
	}
	if status != 200 || json.Unmarshal(body, &esc) != nil || esc.Case.ID == "" {
		t.Fatalf("escalate: %d %s", status, body)
	}

	defer storetest.HoldWriter(t, e.store, e.orgs["acme"].ID)()
	for _, path := range []string{
		"/t/acme/.well-known/jwks.json",
		"/v1/decisions/" + allowed.DecisionID,
		"/v1/decisions/" + allowed.DecisionID + "/tlog-proof",
		"/v1/cases/" + esc.Case.ID,
	} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := e.app.Test(req, 5000)
		if err != nil {
			t.Errorf("GET %s while the writer is held: %v", path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s while the writer is held: %d", path, resp.StatusCode)
		}
	}
}

// escalatedCaseServed is an agent env whose acme agent (token tok) has an
// escalation pending as case caseID, and a loopback listener for its
// tenant plane to serve.
func escalatedCaseServed(t *testing.T, configure ...func(*server.AgentAuthConfig)) (e *agentEnv, tok, caseID string, ln net.Listener) {
	t.Helper()
	e = newAgentEnv(t, configure...)
	tok = e.token(t, "acme")
	status, _, body := e.decide(t, tok, payment(e.cps["acme"], "5000.00"), nil)
	var escalated struct {
		Case struct{ ID string } `json:"case"`
	}
	if err := json.Unmarshal(body, &escalated); status != 200 || err != nil || escalated.Case.ID == "" {
		t.Fatalf("escalation: %d %s", status, body)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return e, tok, escalated.Case.ID, ln
}

// TestCaseLongPolls: an agent's long polls are bounded (the next one is
// 429), and stopping the server waits for none of them: each is answered
// with its case as it stands, and Shutdown returns well before the polls'
// 30 s.
func TestCaseLongPolls(t *testing.T) {
	e, tok, caseID, ln := escalatedCaseServed(t)
	served := make(chan error, 1)
	go func() { served <- e.tenant.Serve(ln) }()
	poll := func() (int, []byte, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/v1/cases/"+caseID+"?wait=30s", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	type answer struct {
		status int
		body   []byte
		err    error
	}
	// One poll more than the bound, all at once. None that gets a place
	// ends before shutdown (30 s), so whichever reaches its wait last is
	// refused, and first answered, however the nine arrive.
	answers := make(chan answer, decision.DefaultMaxCaseWaits+1)
	for range decision.DefaultMaxCaseWaits + 1 {
		go func() {
			status, body, err := poll()
			answers <- answer{status, body, err}
		}()
	}
	if a := <-answers; a.status != 429 || !strings.Contains(string(a.body), "too-many-requests") || a.err != nil {
		t.Fatalf("a poll beyond the bound: %d %s %v", a.status, a.body, a.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.tenant.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with long polls open: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for range decision.DefaultMaxCaseWaits {
		a := <-answers
		if a.err != nil || a.status != 200 || !strings.Contains(string(a.body), `"status":"pending"`) {
			t.Fatalf("a poll open at shutdown: %d %s %v", a.status, a.body, a.err)
		}
	}
}

// TestCaseLongPollOfAGoneClient: a long poll whose client has closed its
// connection ends, and frees its place among the agent's bounded polls:
// an agent whose client crashed mid-poll is not refused (429) for the
// rest of the polls' 30 s.
func TestCaseLongPollOfAGoneClient(t *testing.T) {
	e, tok, caseID, ln := escalatedCaseServed(t)
	go e.tenant.Serve(ln)
	t.Cleanup(func() { e.tenant.Shutdown(context.Background()) })
	path := "/v1/cases/" + caseID
	poll := func(wait string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+path+"?wait="+wait, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// One poll more than the bound, sent at once on connections of our
	// own: the one refused (429) shows the other eight hold every place.
	conns := make([]net.Conn, decision.DefaultMaxCaseWaits+1)
	for i := range conns {
		var err error
		if conns[i], err = net.Dial("tcp", ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conns[i], "GET %s?wait=30s HTTP/1.1\r\nHost: agentsigna.test\r\nAuthorization: Bearer %s\r\n\r\n", path, tok)
	}
	refused := make(chan int, len(conns))
	for i, c := range conns {
		go func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if line, _ := bufio.NewReader(c).ReadString('\n'); strings.HasPrefix(line, "HTTP/1.1 429 ") {
				refused <- i
			}
		}()
	}
	var holding []net.Conn
	select {
	case i := <-refused:
		holding = append(conns[:i:i], conns[i+1:]...)
	case <-time.After(10 * time.Second):
		t.Fatal("no poll refused beyond the bound")
	}
	// Their clients leave without a word.
	for _, c := range holding {
		c.Close()
	}
	// Within a few checks of the connections, the agent polls again.
	got := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = poll("100ms"); got == 200 {
			return
		}
	}
	t.Fatalf("a poll after the clients left: %d, want 200", got)
}

// An agent past its decision rate is answered 429 with Retry-After before
// its request reaches the policy or the ledger; the bound is the agent's,
// whatever token it holds, and slows no other agent and none of its reads.
func TestAgentDecisionRate(t *testing.T) {
	e := newAgentEnvOn(t, server.Config{AgentDecisionRate: rate.Every(time.Hour), AgentDecisionBurst: 2})
	ctx := context.Background()
	acmeLog := e.ledger.TenantLog(e.orgs["acme"].ID, "acme")
	tok := e.token(t, "acme")
	var first string
	for i := range 2 {
		status, _, body := e.decide(t, tok, payment(e.cps["acme"], "1.00"), nil)
		if status != 200 {
			t.Fatalf("decision %d of the burst of 2: %d %s", i+1, status, body)
		}
		if i == 0 {
			var out struct {
				DecisionID string `json:"decision_id"`
			}
			_ = json.Unmarshal(body, &out)
			first = out.DecisionID
		}
	}
	before, err := e.ledger.LatestCheckpoint(ctx, acmeLog)
	if err != nil {
		t.Fatal(err)
	}
	refused := func(name, tok, body string) {
		t.Helper()
		status, hdr, resp := e.decide(t, tok, body, nil)
		if status != 429 || hdr.Get("Content-Type") != "application/problem+json" ||
			!strings.Contains(string(resp), server.ProblemTypeBase+"too-many-requests") {
			t.Fatalf("%s: %d %s %s, want a 429 problem", name, status, hdr.Get("Content-Type"), resp)
		}
		// One token an hour: the next is due in (almost) an hour.
		if secs, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || secs < 3590 || secs > 3600 {
			t.Errorf("%s: Retry-After %q, want about 3600 seconds", name, hdr.Get("Retry-After"))
		}
	}
	refused("past the burst", tok, payment(e.cps["acme"], "1.00"))
	// Refused before the body is parsed: a malformed one is not a 400.
	refused("a malformed body", tok, `{"action":`)
	// Another token of the same agent spends the same bucket.
	refused("with a new token", e.token(t, "acme"), payment(e.cps["acme"], "1.00"))
	after, err := e.ledger.LatestCheckpoint(ctx, acmeLog)
	if err != nil {
		t.Fatal(err)
	}
	// The new token's issue is the only entry since.
	if after.Size != before.Size+1 {
		t.Errorf("acme's log grew from %d to %d entries over refused decisions and one token", before.Size, after.Size)
	}
	if status, _, body := e.decide(t, e.token(t, "beta"), payment(e.cps["beta"], "1.00"), nil); status != 200 {
		t.Errorf("beta's agent, after acme's spent its bucket: %d %s", status, body)
	}
	req := httptest.NewRequest(http.MethodGet, "/v1/decisions/"+first, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if status, _, body := e.do(t, req); status != 200 {
		t.Errorf("acme's agent reading its decision while over its rate: %d %s", status, body)
	}
	// Authentication comes first: no token is still 401, not 429.
	if status, _, _ := e.decide(t, "", payment(e.cps["acme"], "1.00"), nil); status != 401 {
		t.Errorf("no token: %d, want 401", status)
	}
}

// An agent past its token rate is answered 429 slow_down with Retry-After,
// and the refusal is recorded. Only an assertion the agent signed, and
// not used before, spends its bucket: forgeries naming it and replays of
// a used one do not. One refused because the bucket was empty is not
// spent either (its jti is not written): it is good once the agent may
// ask again.
func TestAgentTokenRate(t *testing.T) {
	var clock atomic.Int64 // seconds added to the real time
	now := func() time.Time { return time.Now().Add(time.Duration(clock.Load()) * time.Second) }
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) {
		c.Now, c.TokenRate, c.TokenBurst = now, rate.Every(time.Minute), 2
	})
	acme := e.agents["acme"]
	acmeLog := e.ledger.TenantLog(e.orgs["acme"].ID, "acme")
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	forger, _ := jwk.Import(otherPriv)
	for range 5 {
		if status, out := e.tokenRequest(t, e.assertion(t, testAgent{id: acme.id, key: forger}, nil)); status != 400 || out["error"] != "invalid_client" {
			t.Fatalf("a forged assertion: %d %v", status, out)
		}
	}
	used := e.assertion(t, acme, nil)
	if status, out := e.tokenRequest(t, used); status != 200 {
		t.Fatalf("token 1 of a burst of 2, after 5 forgeries: %d %v", status, out)
	}
	for range 5 {
		if status, out := e.tokenRequest(t, used); status != 400 || out["error"] != "invalid_client" {
			t.Fatalf("a replayed assertion: %d %v", status, out)
		}
	}
	if status, out := e.tokenRequest(t, e.assertion(t, acme, nil)); status != 200 {
		t.Fatalf("token 2 of a burst of 2, after 5 replays: %d %v", status, out)
	}
	from := logSize(t, e.ledger, acmeLog)
	held := e.assertion(t, acme, nil)
	form := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion": {held}}
	req := httptest.NewRequest(http.MethodPost, "/v1/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, hdr, body := e.do(t, req)
	var out map[string]any
	_ = json.Unmarshal(body, &out)
	if status != 429 || out["error"] != "slow_down" || out["access_token"] != nil || len(out) != 2 {
		t.Fatalf("past the burst: %d %s", status, body)
	}
	if hdr.Get("Cache-Control") != "no-store" || hdr.Get("Pragma") != "no-cache" || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Errorf("past the burst, headers %v", hdr)
	}
	if secs, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || secs < 59 || secs > 60 {
		t.Errorf("Retry-After %q, want about 60 seconds", hdr.Get("Retry-After"))
	}
	if got := kindsFrom(t, e.ledger, acmeLog, from); got["auth.token_refused"] != 1 || len(got) != 1 {
		t.Fatalf("acme's log after the refusal: %v, want one auth.token_refused", got)
	}
	if _, rec := entryAt(t, e.ledger, acmeLog, from); !strings.Contains(string(rec), `"reason":"rate_limited"`) || !strings.Contains(string(rec), acme.id) {
		t.Errorf("refusal record %s", rec)
	}
	// A used assertion replayed while its agent is past its bound is a
	// replay, answered and recorded as one, not as rate_limited (found by
	// review); the held one, never used, stays good.
	from = logSize(t, e.ledger, acmeLog)
	if status, out := e.tokenRequest(t, used); status != 400 || out["error"] != "invalid_client" {
		t.Fatalf("a replay past the burst: %d %v, want 400 invalid_client", status, out)
	}
	if _, rec := entryAt(t, e.ledger, acmeLog, from); !strings.Contains(string(rec), `"reason":"replayed_jti"`) {
		t.Errorf("a replay past the burst is recorded as %s, want reason replayed_jti", rec)
	}
	if status, out := e.tokenRequest(t, e.assertion(t, e.agents["beta"], nil)); status != 200 {
		t.Errorf("beta's agent, after acme's spent its bucket: %d %v", status, out)
	}
	// Waiting as told is enough, and the refused assertion is good then.
	clock.Add(60)
	if status, out := e.tokenRequest(t, held); status != 200 {
		t.Fatalf("the refused assertion, a minute on: %d %v", status, out)
	}

	e.refusesConfigs(t,
		func(c *server.AgentAuthConfig) { c.TokenRate = -1 },
		func(c *server.AgentAuthConfig) { c.TokenRate = rate.Limit(math.NaN()) },
		func(c *server.AgentAuthConfig) { c.TokenBurst = -1 },
		func(c *server.AgentAuthConfig) { c.TokenBurst = server.MaxAgentBurst + 1 },
	)
}

// Two requests of one agent pass the bound's check with one token left:
// the one that takes it second, its jti written by then, is refused 429
// slow_down all the same, and recorded, and its assertion is spent (the
// client signs a new one when told to retry).
func TestAgentTokenTakenMeanwhile(t *testing.T) {
	var clock atomic.Int64 // seconds added to the real time
	now := func() time.Time { return time.Now().Add(time.Duration(clock.Load()) * time.Second) }
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) { c.Now, c.TokenRate, c.TokenBurst = now, rate.Every(time.Minute), 1 })
	acme := e.agents["acme"]
	acmeLog := e.ledger.TenantLog(e.orgs["acme"].ID, "acme")
	from := logSize(t, e.ledger, acmeLog)
	first, second := e.assertion(t, acme, nil), e.assertion(t, acme, nil)
	var hooked atomic.Bool
	var secondStatus int
	server.SetAfterJTI(e.auth, func() {
		// The first request, its jti written, waits for the second to
		// pass the check, write its jti and take the token.
		if hooked.CompareAndSwap(false, true) {
			secondStatus, _ = e.tokenRequest(t, second)
		}
	})
	status, out := e.tokenRequest(t, first)
	if secondStatus != 200 {
		t.Fatalf("the request that took the token: %d", secondStatus)
	}
	if status != 429 || out["error"] != "slow_down" || out["access_token"] != nil {
		t.Fatalf("the request whose token was taken meanwhile: %d %v", status, out)
	}
	kinds := kindsFrom(t, e.ledger, acmeLog, from)
	if kinds["auth.token_issued"] != 1 || kinds["auth.token_refused"] != 1 {
		t.Fatalf("acme's log: %v, want one token issued and one refusal", kinds)
	}
	// Its jti was written: the assertion is spent, once the bucket has
	// a token again.
	server.SetAfterJTI(e.auth, nil)
	clock.Add(60)
	if status, out := e.tokenRequest(t, first); status != 400 || out["error"] != "invalid_client" {
		t.Fatalf("the refused assertion again: %d %v", status, out)
	}
}

// An access token is good only while the agent key it was issued under
// is: a rotation (here not through this authenticator) ends the tokens of
// the key it retired within a second, on every route; a token of the new
// key works.
func TestRotationEndsTheRetiredKeysTokens(t *testing.T) {
	var clock atomic.Int64 // seconds added to the real time
	now := func() time.Time { return time.Now().Add(time.Duration(clock.Load()) * time.Second) }
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) { c.Now = now })
	acme := e.agents["acme"]
	old := e.token(t, "acme")
	status, _, body := e.decide(t, old, payment(e.cps["acme"], "1.00"), nil)
	var out struct {
		DecisionID string `json:"decision_id"`
	}
	if err := json.Unmarshal(body, &out); status != 200 || err != nil {
		t.Fatalf("before the rotation: %d %s", status, body)
	}
	oldKID, _ := acme.key.KeyID()
	newKey, _, pubJSON := newAgentJWK(t, "acme-key-2")
	org := store.TenantRef{ID: e.orgs["acme"].ID, Slug: "acme"}
	retired, err := e.registry.RotateKey(context.Background(), org, store.AgentKey{AgentID: acme.id, KID: "acme-key-2", PublicJWK: pubJSON})
	if err != nil || len(retired) != 1 || retired[0] != oldKID {
		t.Fatalf("rotate: retired %v, %v", retired, err)
	}
	clock.Add(1)
	if status, hdr, body := e.decide(t, old, payment(e.cps["acme"], "1.00"), nil); status != 401 ||
		!strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`) || strings.Contains(string(body), "decision_id") {
		t.Fatalf("a decision with the retired key's token: %d %v %s", status, hdr, body)
	}
	for _, path := range []string{"/v1/decisions/" + out.DecisionID, "/v1/decisions/" + out.DecisionID + "/tlog-proof"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+old)
		if status, _, body := e.do(t, req); status != 401 {
			t.Fatalf("%s with the retired key's token: %d %s", path, status, body)
		}
	}
	// The retired key gets no new token; the new key does, and it works.
	if status, out := e.tokenRequest(t, e.assertion(t, acme, nil)); status != 400 || out["error"] != "invalid_client" {
		t.Fatalf("an assertion of the retired key: %d %v", status, out)
	}
	status, tok := e.tokenRequest(t, e.assertion(t, testAgent{id: acme.id, key: newKey}, nil))
	if status != 200 {
		t.Fatalf("the new key's token: %d %v", status, tok)
	}
	if status, _, body := e.decide(t, tok["access_token"].(string), payment(e.cps["acme"], "1.00"), nil); status != 200 {
		t.Fatalf("a decision with the new key's token: %d %s", status, body)
	}
}

// A long poll is the token's as long as it lasts: the token expiring, or
// its agent key retired by a rotation, ends the poll with 401, as the same
// request made afresh would be refused, not 30 s later with the case.
func TestLongPollEndsWithItsToken(t *testing.T) {
	for _, ending := range []string{"key rotated", "token expired"} {
		t.Run(ending, func(t *testing.T) {
			var clock atomic.Int64 // seconds added to the real time
			// Once armed, the authenticator's third reading of the clock
			// is the poll's first check: Require reads it twice (the
			// token's times, its key's status), then the open poll asks.
			var armed atomic.Bool
			var reads atomic.Int32
			polling := make(chan struct{})
			now := func() time.Time {
				if armed.Load() && reads.Add(1) == 3 {
					close(polling)
				}
				return time.Now().Add(time.Duration(clock.Load()) * time.Second)
			}
			e, tok, caseID, ln := escalatedCaseServed(t, func(c *server.AgentAuthConfig) { c.Now = now })
			go func() { _ = e.tenant.Serve(ln) }()
			t.Cleanup(func() { _ = e.tenant.Shutdown(context.Background()) })
			type answer struct {
				status int
				hdr    http.Header
				body   []byte
				took   time.Duration
				err    error
			}
			answers := make(chan answer, 1)
			armed.Store(true)
			go func() {
				req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/v1/cases/"+caseID+"?wait=30s", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				start := time.Now()
				resp, err := (&http.Client{Timeout: 40 * time.Second}).Do(req)
				if err != nil {
					answers <- answer{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				answers <- answer{resp.StatusCode, resp.Header, b, time.Since(start), err}
			}()
			select {
			case <-polling:
			case <-time.After(10 * time.Second):
				t.Fatal("the poll never asked whether its token still holds")
			}
			switch ending {
			case "key rotated":
				acme := e.agents["acme"]
				_, _, pubJSON := newAgentJWK(t, "acme-key-2")
				org := store.TenantRef{ID: e.orgs["acme"].ID, Slug: "acme"}
				if _, err := e.registry.RotateKey(context.Background(), org, store.AgentKey{AgentID: acme.id, KID: "acme-key-2", PublicJWK: pubJSON}); err != nil {
					t.Fatal(err)
				}
			case "token expired":
				clock.Add(int64(identity.AccessTokenLifetime / time.Second))
			}
			a := <-answers
			// At least one poll interval: a 401 from Require itself (the
			// token ended before the poll opened) comes at once.
			if a.err != nil || a.status != 401 || !strings.Contains(a.hdr.Get("WWW-Authenticate"), `error="invalid_token"`) ||
				strings.Contains(string(a.body), "pending") || a.took < decision.DefaultCasePollInterval || a.took > 10*time.Second {
				t.Fatalf("the poll after its token ended: %d %v %s after %v, %v", a.status, a.hdr, a.body, a.took, a.err)
			}
		})
	}
}

// The agent read routes' refusals of a request's own form: a receipt's
// proof for a decision without a receipt, an entry that is neither, and a
// wait that is no duration in range.
func TestAgentReadRefusals(t *testing.T) {
	e := newAgentEnv(t)
	tok := e.token(t, "acme")
	ids := map[string]string{}
	for name, amount := range map[string]string{"allowed": "1.00", "escalated": "5000.00"} {
		status, _, body := e.decide(t, tok, payment(e.cps["acme"], amount), nil)
		var out struct {
			DecisionID string `json:"decision_id"`
			Case       *struct{ ID string }
		}
		if err := json.Unmarshal(body, &out); status != 200 || err != nil {
			t.Fatalf("%s: %d %s", name, status, body)
		}
		ids[name] = out.DecisionID
		if out.Case != nil {
			ids["case"] = out.Case.ID
		}
	}
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/v1/decisions/" + ids["allowed"] + "/tlog-proof?entry=receipt", 200},
		{"/v1/decisions/" + ids["escalated"] + "/tlog-proof?entry=receipt", 404}, // no receipt (yet)
		{"/v1/decisions/" + ids["allowed"] + "/tlog-proof?entry=case", 400},
		{"/v1/cases/" + ids["case"] + "?wait=0s", 200},
		{"/v1/cases/" + ids["case"] + "?wait=-1s", 400},
		{"/v1/cases/" + ids["case"] + "?wait=soon", 400},
		{"/v1/cases/" + ids["case"] + "?wait=31s", 400},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		status, hdr, body := e.do(t, req)
		if status != tc.status || status != 200 && hdr.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s %s, want %d", tc.path, status, hdr.Get("Content-Type"), body, tc.status)
		}
	}
}

// An agent key stored before registration refused it (an Ed25519 point of
// small order, under which anyone's signature verifies) verifies nothing,
// and does not lock its agent out: the agent's own key still gets tokens,
// and an assertion forged under the weak key is the client's error
// (invalid_client), not the server's.
func TestStoredWeakAgentKey(t *testing.T) {
	var logs server.LockedBuffer
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	a := e.agents["acme"]
	identityPoint := make([]byte, 32)
	identityPoint[0] = 1
	weak := `{"kty":"OKP","crv":"Ed25519","kid":"weak","x":"` + base64.RawURLEncoding.EncodeToString(identityPoint) + `"}`
	// Registered, and logged, by an older build, whose rules let it in.
	rec, _ := json.Marshal(map[string]any{"event": "agent_key_rotated", "agent_id": a.id, "key_id": "weak",
		"public_jwk": json.RawMessage(weak), "retired_key_ids": []string{}})
	_, err := e.ledger.AppendAllAndChange(context.Background(), e.ledger.TenantLog(e.orgs["acme"].ID, "acme"),
		[]ledger.Entry{{Kind: identity.KindAgentKeyRotated, Subject: a.id, Record: rec}},
		func(ctx context.Context, tx store.TenantTx, index uint64) error {
			_, err := tx.Agents().AddKey(ctx, store.AgentKey{AgentID: a.id, KID: "weak", PublicJWK: weak, LedgerIndex: &index})
			return err
		})
	if err != nil {
		t.Fatal(err)
	}
	if status, out := e.tokenRequest(t, e.assertion(t, a, nil)); status != 200 || out["access_token"] == nil {
		t.Fatalf("the agent's own key: %d %v", status, out)
	}
	header, _ := json.Marshal(map[string]string{"alg": "EdDSA", "kid": "weak", "typ": "JWT"})
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	claims, _ := json.Marshal(map[string]any{"iss": a.id, "sub": a.id, "aud": testPublicURL + "/v1/oauth/token",
		"exp": time.Now().Add(time.Minute).Unix(), "jti": hex.EncodeToString(jti)})
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims)
	forged := append(append([]byte(nil), identityPoint...), make([]byte, 32)...) // R = the identity, S = 0
	if !ed25519.Verify(identityPoint, []byte(input), forged) {
		t.Fatal("the forgery does not verify under crypto/ed25519: the test proves nothing")
	}
	status, out := e.tokenRequest(t, input+"."+base64.RawURLEncoding.EncodeToString(forged))
	if status == 200 || status >= 500 || out["error"] != "invalid_client" {
		t.Fatalf("an assertion forged under the stored weak key: %d %v, want invalid_client", status, out)
	}
	// Reported once, however often someone names the agent.
	if n := strings.Count(logs.String(), "no longer accepted"); n != 1 {
		t.Fatalf("the weak key reported %d times, want once:\n%s", n, logs.String())
	}
}

// An agent key row written behind the service's back — the organization's
// database role may insert into agent_keys — authenticates nothing, even
// naming the agent's own registration entry: the entry records another
// key. The agent's own key still gets tokens, and the planted row is
// reported once, however often it is tried.
func TestPlantedAgentKeyIsRefused(t *testing.T) {
	var logs server.LockedBuffer
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	a := e.agents["acme"]
	ctx := context.Background()
	org := e.orgs["acme"]
	var registered store.AgentKey
	planted, _, pubJSON := newAgentJWK(t, "planted")
	err := e.store.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		keys, err := tx.Agents().Keys(ctx, a.id)
		if err != nil || len(keys) != 1 || keys[0].LedgerIndex == nil {
			return fmt.Errorf("the agent's keys: %+v, %v", keys, err)
		}
		registered = keys[0]
		_, err = tx.Agents().AddKey(ctx, store.AgentKey{AgentID: a.id, KID: "planted", PublicJWK: pubJSON, LedgerIndex: registered.LedgerIndex})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	insider := testAgent{id: a.id, key: planted}
	for range 3 {
		status, out := e.tokenRequest(t, e.assertion(t, insider, nil))
		if status != 400 || out["error"] != "invalid_client" || out["access_token"] != nil {
			t.Fatalf("an assertion under the planted key: %d %v, want 400 invalid_client", status, out)
		}
	}
	if status, out := e.tokenRequest(t, e.assertion(t, a, nil)); status != 200 || out["access_token"] == nil {
		t.Fatalf("the agent's own key: %d %v", status, out)
	}
	if n := strings.Count(logs.String(), "not one the organization's log records"); n != 1 {
		t.Fatalf("the planted key reported %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "kid=planted") {
		t.Fatalf("the report does not name the key:\n%s", logs.String())
	}
}

// A ghost agent — its row, its key and its directory entry written behind
// the service's back by whoever writes the SQLite files, all naming no
// ledger entry as rows from before agents were logged do — is issued no
// token: nothing tells it from a real agent of then, until an operator
// adopts it (ledger adopt), after which its key is trusted as its
// agent.adopted entry records it. (Found by review: a ghost agent planted
// so got a token and an allow.)
func TestGhostAgentIsRefusedUntilAdopted(t *testing.T) {
	var logs server.LockedBuffer
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	ctx := context.Background()
	org := e.orgs["acme"]
	const ghostID = "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	key, _, pubJSON := newAgentJWK(t, "ghost-key")
	tenantFile := e.store.(*sqlite.Store).TenantFile(org.ID)
	sqlitetest.Plant(t, tenantFile,
		`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
		SELECT tenant_id, '`+ghostID+`', 'ghost', 'usr_ghost', 'low', 'active', created_at, updated_at FROM agents LIMIT 1`,
		`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
		SELECT tenant_id, '`+ghostID+`', 'ghost-key', '`+pubJSON+`', 'active', created_at FROM agent_keys LIMIT 1`)
	sqlitetest.Plant(t, filepath.Join(filepath.Dir(filepath.Dir(tenantFile)), "platform.db"),
		`INSERT INTO agent_directory (agent_id, tenant_id, created_at) VALUES ('`+ghostID+`', '`+org.ID+`', '2026-01-01T00:00:00Z')`)
	ghost := testAgent{id: ghostID, key: key}
	for range 2 {
		status, out := e.tokenRequest(t, e.assertion(t, ghost, nil))
		if status != 400 || out["error"] != "invalid_client" || out["access_token"] != nil {
			t.Fatalf("the ghost agent: %d %v, want 400 invalid_client", status, out)
		}
	}
	if n := strings.Count(logs.String(), "kid=ghost-key"); n != 1 || !strings.Contains(logs.String(), "names no ledger entry") {
		t.Fatalf("the ghost's key reported %d times, want once, naming no entry:\n%s", n, logs.String())
	}

	adopter, err := decision.NewAdopter(e.ledger, e.store)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := adopter.Plan(ctx, decision.Organization{ID: org.ID, Slug: org.Slug})
	if err != nil || len(plan.Agents) != 1 || plan.Agents[0].Agent == nil || plan.Agents[0].Agent.ID != ghostID {
		t.Fatalf("plan: %+v, %v", plan, err)
	}
	if _, err := adopter.Adopt(ctx, decision.Organization{ID: org.ID, Slug: org.Slug}, plan.Digest(), func(string, uint64, error) {}); err != nil {
		t.Fatal(err)
	}
	if status, out := e.tokenRequest(t, e.assertion(t, ghost, nil)); status != 200 || out["access_token"] == nil {
		t.Fatalf("the agent adopted: %d %v, want a token", status, out)
	}
}
