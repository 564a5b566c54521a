package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
	"github.com/agentsigna/agentsigna/server"
)

type ledgerEnv struct {
	store  *sqlite.Store
	planes *server.Planes
	ledger *ledger.Ledger
	access server.LogAccess // the tenant plane's
	acme   store.Tenant
	beta   store.Tenant
	vkey   string
}

// testLogAccess is the explicit test hook: the header names the
// organization whose log to read. Production wires DenyLogAccess until the
// identity plane exists.
func testLogAccess(l *ledger.Ledger, s store.TenantStore) server.LogAccess {
	return func(c *fiber.Ctx, _ server.LogRead) (server.LogGrant, error) {
		slug := c.Get("X-Test-Tenant")
		if slug == "" {
			return server.LogGrant{}, server.Problem(server.ErrUnauthorized, "test hook: no tenant")
		}
		ref, err := s.ResolveTenant(c.UserContext(), slug)
		if err != nil {
			return server.LogGrant{}, err
		}
		return server.LogGrant{Log: l.TenantLog(ref.ID, ref.Slug)}, nil
	}
}

func newLedgerEnv(t *testing.T, access func(*ledger.Ledger, store.TenantStore) server.LogAccess) *ledgerEnv {
	return newLedgerEnvOver(t, access, nil)
}

// newLedgerEnvOver is newLedgerEnv with the ledger reading and writing
// organizations' data through wrap(store) (nil: the store itself).
func newLedgerEnvOver(t *testing.T, access func(*ledger.Ledger, store.TenantStore) server.LogAccess, wrap func(store.Backend) store.TenantStore) *ledgerEnv {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	master, _ := secrets.GenerateMasterKey()
	kr, _ := signing.NewKeyring(master)
	var tenants store.TenantStore = s
	if wrap != nil {
		tenants = wrap(s)
	}
	l, err := ledger.New(ledger.Config{Tenants: tenants, Platform: s, Keys: kr, Origin: "agentsigna.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	e := &ledgerEnv{store: s, ledger: l, access: access(l, s)}
	e.planes = e.newPlanes(t, server.Config{})
	server.MountLogKeys(e.planes.Tenant, l, s)
	server.MountJWKS(e.planes.Tenant, s, kr)
	server.MountLedger(e.planes.Platform, l, func(*fiber.Ctx, server.LogRead) (server.LogGrant, error) {
		return server.LogGrant{Log: l.PlatformLog()}, nil
	})
	e.acme, e.beta = storetest.CreateTenant(t, s, "acme"), storetest.CreateTenant(t, s, "beta")
	if e.vkey, err = l.InitLog(context.Background(), l.TenantLog(e.acme.ID, "acme")); err != nil {
		t.Fatal(err)
	}
	return e
}

// newPlanes builds planes from cfg (logger and readiness filled in) with
// the ledger's read side on the tenant plane.
func (e *ledgerEnv) newPlanes(t *testing.T, cfg server.Config) *server.Planes {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.TenantReady, cfg.PlatformReady = e.store.Ping, e.store.Ping
	planes, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	server.MountLedger(planes.Tenant, e.ledger, e.access)
	return planes
}

func (e *ledgerEnv) get(t *testing.T, app *fiber.App, path, tenant string) (int, http.Header, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if tenant != "" {
		req.Header.Set("X-Test-Tenant", tenant)
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

func (e *ledgerEnv) append(t *testing.T, tenant store.Tenant, n int) {
	t.Helper()
	for i := range n {
		rec := fmt.Sprintf(`{"n":%d}`, i)
		if i%2 == 1 {
			rec = "eyJhbGciOiJFZERTQSJ9.e30.c2ln" // not JSON: served as a string
		}
		if _, err := e.ledger.Append(context.Background(), e.ledger.TenantLog(tenant.ID, tenant.Slug), ledger.Entry{Kind: "test", Subject: fmt.Sprint(i), Record: []byte(rec)}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLedgerRoutesClosedByDefault(t *testing.T) {
	e := newLedgerEnv(t, func(*ledger.Ledger, store.TenantStore) server.LogAccess { return server.DenyLogAccess })
	e.append(t, e.acme, 3)
	for _, path := range []string{
		"/v1/ledger/checkpoint", "/v1/ledger/tile/0/000.p/3", "/v1/ledger/tile/entries/000.p/3", "/v1/ledger/entries/0",
		"/v1/ledger/proofs/inclusion?index=0", "/v1/ledger/proofs/consistency?first=1&second=3",
	} {
		status, hdr, body := e.get(t, e.planes.Tenant.App(), path, "acme")
		if status != http.StatusUnauthorized || hdr.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s %s", path, status, hdr.Get("Content-Type"), body)
		}
	}
	// The verifier key stays public.
	status, _, body := e.get(t, e.planes.Tenant.App(), "/t/acme/.well-known/log-key", "")
	if status != 200 || strings.TrimSpace(string(body)) != e.vkey {
		t.Fatalf("log key: %d %q", status, body)
	}
}

func TestLedgerRoutes(t *testing.T) {
	e := newLedgerEnv(t, testLogAccess)
	e.append(t, e.acme, 300)
	e.append(t, e.beta, 2)
	app := e.planes.Tenant.App()

	status, hdr, body := e.get(t, app, "/v1/ledger/checkpoint", "acme")
	if status != 200 || hdr.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("checkpoint: %d %s", status, hdr.Get("Content-Type"))
	}
	v, _ := note.NewVerifier(e.vkey)
	if _, err := note.Open(body, note.VerifierList(v)); err != nil {
		t.Fatalf("served checkpoint does not verify with x/mod/sumdb/note: %v", err)
	}
	cp, err := verify.VerifyCheckpoint(body, e.vkey)
	if err != nil || cp.Size() != 300 || cp.Origin() != "agentsigna.test/t/acme" {
		t.Fatalf("checkpoint %v, %v", cp, err)
	}

	// Entries, with JSON records embedded and others as strings.
	for i, wantRecord := range map[int]string{4: `{"n":4}`, 5: `"eyJhbGciOiJFZERTQSJ9.e30.c2ln"`} {
		status, _, body = e.get(t, app, fmt.Sprintf("/v1/ledger/entries/%d", i), "acme")
		var got struct {
			Index    uint64          `json:"index"`
			Entry    []byte          `json:"entry"`
			LeafHash []byte          `json:"leaf_hash"`
			Record   json.RawMessage `json:"record"`
		}
		if status != 200 || json.Unmarshal(body, &got) != nil {
			t.Fatalf("entry %d: %d %s", i, status, body)
		}
		parsed, err := verify.ParseEntry(got.Entry)
		if err != nil || parsed.Index != uint64(i) || string(got.Record) != wantRecord ||
			string(verify.LeafHash(got.Entry)) != string(got.LeafHash) {
			t.Fatalf("entry %d: %+v %s, %v", i, parsed, got.Record, err)
		}
		// The proof the route serves verifies with our verifier and with
		// transparency-dev/merkle directly.
		status, _, body = e.get(t, app, fmt.Sprintf("/v1/ledger/proofs/inclusion?index=%d", i), "acme")
		ip, err := verify.ParseInclusionJSON(body)
		if status != 200 || err != nil {
			t.Fatalf("inclusion %d: %d %s %v", i, status, body, err)
		}
		if _, err := ip.Verify(e.vkey, got.LeafHash); err != nil {
			t.Fatalf("inclusion %d: %v", i, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), cp.Size(), got.LeafHash, ip.Hashes, cp.Hash()); err != nil {
			t.Fatalf("inclusion %d with transparency-dev/merkle: %v", i, err)
		}
		lh := base64.URLEncoding.EncodeToString(got.LeafHash)
		lh = strings.NewReplacer("-", "%2B", "_", "%2F", "=", "%3D").Replace(lh) // standard base64, URL-escaped
		status, _, body = e.get(t, app, "/v1/ledger/proofs/inclusion?leaf_hash="+lh+"&tree_size=300", "acme")
		if byHash, err := verify.ParseInclusionJSON(body); status != 200 || err != nil || byHash.Index != uint64(i) {
			t.Fatalf("inclusion by leaf hash: %d %s", status, body)
		}
	}

	status, _, body = e.get(t, app, "/v1/ledger/proofs/consistency?first=10&second=300", "acme")
	cj, err := verify.ParseConsistencyJSON(body)
	if status != 200 || err != nil {
		t.Fatalf("consistency: %d %s", status, body)
	}
	status, _, old := e.get(t, app, "/v1/ledger/proofs/inclusion?index=0&tree_size=10", "acme")
	oldProof, _ := verify.ParseInclusionJSON(old)
	older, err := verify.VerifyCheckpoint([]byte(oldProof.Checkpoint), e.vkey)
	if status != 200 || err != nil {
		t.Fatal(err)
	}
	if _, err := cj.Verify(e.vkey, older); err != nil {
		t.Fatalf("consistency 10→300: %v", err)
	}

	// Tiles through the routes, read by a tlog-tiles client.
	fetch := func(ctx context.Context, path string) ([]byte, error) {
		status, hdr, body := e.get(t, app, "/v1/ledger/"+path, "acme")
		if status != 200 || hdr.Get("Content-Type") != "application/octet-stream" {
			return nil, fmt.Errorf("%s: %d", path, status)
		}
		return body, nil
	}
	for _, index := range []uint64{0, 255, 256, 299} {
		hashes, err := verify.InclusionProofFromTiles(context.Background(), cp, index, fetch)
		if err != nil {
			t.Fatalf("proof of %d from served tiles: %v", index, err)
		}
		entry, _ := e.ledger.Entry(context.Background(), e.ledger.TenantLog(e.acme.ID, "acme"), index)
		if err := verify.VerifyInclusion(cp, index, entry.LeafHash, hashes); err != nil {
			t.Fatalf("proof of %d from tiles: %v", index, err)
		}
	}

	// A public tlog-tiles client (tessera's) reading the same routes builds
	// the same proofs.
	tfetch := func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		return fetch(ctx, layout.TilePath(level, index, p))
	}
	pb, err := client.NewProofBuilder(context.Background(), cp.Size(), tfetch)
	if err != nil {
		t.Fatal(err)
	}
	for _, index := range []uint64{0, 7, 255, 256, 299} {
		theirs, err := pb.InclusionProof(context.Background(), index)
		if err != nil {
			t.Fatal(err)
		}
		ours, err := e.ledger.InclusionProof(context.Background(), e.ledger.TenantLog(e.acme.ID, "acme"), index, 300)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(theirs) != fmt.Sprint(ours.Hashes) {
			t.Fatalf("index %d: tessera's proof from our tiles differs from ours", index)
		}
	}
	theirs, err := pb.ConsistencyProof(context.Background(), 10, 300)
	if err != nil || fmt.Sprint(theirs) != fmt.Sprint(cj.Hashes) {
		t.Fatalf("tessera's consistency proof 10→300 differs: %v", err)
	}

	// The export verifies offline with the pinned key.
	status, hdr, body = e.get(t, app, "/v1/ledger/export?from=10", "acme")
	if status != 200 || hdr.Get("Content-Type") != "application/gzip" {
		t.Fatalf("export: %d %s", status, hdr.Get("Content-Type"))
	}
	if rep, err := verify.VerifyExport(bytes.NewReader(body), e.vkey, verify.ExportOptions{}); err != nil || rep.From != 10 || rep.To != 300 {
		t.Fatalf("served export: %+v, %v", rep, err)
	}

	// Refusals.
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/v1/ledger/entries/300", 404},
		{"/v1/ledger/entries/-1", 400},
		{"/v1/ledger/entries/abc", 400},
		// One spelling of each number (found by review: these were read
		// as 0, 12 and 10).
		{"/v1/ledger/entries/00", 400},
		{"/v1/ledger/entries/+1", 400},
		{"/v1/ledger/proofs/consistency?first=012&second=300", 400},
		{"/v1/ledger/proofs/inclusion?index=01&tree_size=300", 400},
		{"/v1/ledger/proofs/inclusion?index=1&tree_size=%20300", 400},
		{"/v1/ledger/export?from=%2010", 400},
		{"/v1/ledger/proofs/inclusion?index=0&tree_size=300", 200},
		{"/v1/ledger/proofs/inclusion?index=300", 400},
		{"/v1/ledger/proofs/inclusion?index=1&tree_size=299000", 404},
		{"/v1/ledger/proofs/inclusion?index=1&leaf_hash=AAAA", 400},
		{"/v1/ledger/proofs/inclusion", 400},
		{"/v1/ledger/proofs/inclusion?leaf_hash=not-base64!", 400},
		{"/v1/ledger/proofs/inclusion?leaf_hash=" + strings.Repeat("A", 43) + "%3D", 404},
		{"/v1/ledger/proofs/consistency?first=0&second=300", 400},
		{"/v1/ledger/proofs/consistency?first=300&second=10", 400},
		{"/v1/ledger/proofs/consistency?first=11&second=2000", 404},
		{"/v1/ledger/tile/0/000", 200},
		{"/v1/ledger/tile/0/001.p/44", 200},
		{"/v1/ledger/tile/0/001.p/45", 404},
		{"/v1/ledger/tile/0/001", 404},
		{"/v1/ledger/tile/0/002.p/1", 404},
		{"/v1/ledger/tile/0/2", 404},
		{"/v1/ledger/tile/1/000.p/1", 200},
		{"/v1/ledger/tile/entries/000", 200},
		{"/v1/ledger/tile/entries/001.p/44", 200},
		{"/v1/ledger/tile/entries/001", 404},
		{"/v1/ledger/tile/entries/x001/000", 404},
		{"/v1/ledger/tile/../../etc/passwd", 404},
		{"/v1/ledger/export?to=299000", 404},
		{"/v1/ledger/export?from=301", 400},
		{"/v1/ledger/export?from=-1", 400},
	} {
		status, hdr, body := e.get(t, app, tc.path, "acme")
		if status != tc.status {
			t.Errorf("%s: %d, want %d (%s)", tc.path, status, tc.status, body)
		}
		if status >= 400 && hdr.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: error as %s", tc.path, hdr.Get("Content-Type"))
		}
	}

	// Each organization reads its own log only: beta's checkpoint is beta's.
	_, _, body = e.get(t, app, "/v1/ledger/checkpoint", "beta")
	if _, err := verify.VerifyCheckpoint(body, e.vkey); err == nil {
		t.Fatal("acme's key verifies beta's checkpoint")
	}
	if status, _, _ := e.get(t, app, "/v1/ledger/entries/5", "beta"); status != 404 {
		t.Fatalf("beta reads acme's entry 5: %d", status)
	}

	// The platform plane serves the platform's own log; it is empty.
	if status, _, _ := e.get(t, e.planes.Platform.App(), "/v1/ledger/checkpoint", ""); status != 404 {
		t.Fatalf("platform checkpoint of an empty log: %d", status)
	}
	// Unknown organization's key.
	if status, _, _ := e.get(t, app, "/t/nobody/.well-known/log-key", ""); status != 404 {
		t.Fatalf("unknown org key: %d", status)
	}
	if status, _, _ := e.get(t, app, "/t/beta/.well-known/log-key", ""); status != 200 {
		t.Fatalf("beta key: %d", status)
	}
	// The receipt JWKS is public; an organization without receipts has an
	// empty set; private members never appear.
	status, hdr, body = e.get(t, app, "/t/acme/.well-known/jwks.json", "")
	if status != 200 || hdr.Get("Content-Type") != "application/jwk-set+json" || strings.TrimSpace(string(body)) != `{"keys":[]}` {
		t.Fatalf("jwks: %d %s %s", status, hdr.Get("Content-Type"), body)
	}
	if status, _, _ := e.get(t, app, "/t/nobody/.well-known/jwks.json", ""); status != 404 {
		t.Fatalf("unknown org jwks: %d", status)
	}
}

// The entry route serves the record byte for byte, as it was written —
// by RFC 8785, which escapes neither <, > and & nor U+2028, or by
// encoding/json, which escapes them — so that hashing the served record
// gives the entry's digest.
func TestLedgerEntryServesTheRecordItDigests(t *testing.T) {
	e := newLedgerEnv(t, testLogAccess)
	// Written by encoding/json, as most records are: <, > and & escaped.
	v1, _ := json.Marshal(map[string]string{"claimed_agent": "R&D <ops> \u2028"})
	for i, rec := range []string{"{\"memo\":\"R&D <ops> \u2028 \u2029 end\"}", string(v1)} {
		if _, err := e.ledger.Append(context.Background(), e.ledger.TenantLog(e.acme.ID, e.acme.Slug), ledger.Entry{Kind: "test", Subject: "memo", Record: []byte(rec)}); err != nil {
			t.Fatal(err)
		}
		status, hdr, body := e.get(t, e.planes.Tenant.App(), fmt.Sprintf("/v1/ledger/entries/%d", i), "acme")
		var got struct {
			Entry  []byte          `json:"entry"`
			Record json.RawMessage `json:"record"`
		}
		if status != 200 || hdr.Get("Content-Type") != "application/json" || json.Unmarshal(body, &got) != nil {
			t.Fatalf("entry: %d %s %s", status, hdr.Get("Content-Type"), body)
		}
		parsed, err := verify.ParseEntry(got.Entry)
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(got.Record); string(got.Record) != rec || !bytes.Equal(sum[:], parsed.Digest) {
			t.Fatalf("served record %s, want %s: its SHA-256 is not the entry's digest", got.Record, rec)
		}
	}
}

// Full tiles and entry bundles never change (c2sp.org/tlog-tiles: their
// caching SHOULD be long-lived): a client may keep them a year, privately
// and per credential. Partial ones, the checkpoint and refusals are not
// kept at all.
func TestLedgerTileCaching(t *testing.T) {
	e := newLedgerEnv(t, testLogAccess)
	e.append(t, e.acme, 300)
	app := e.planes.Tenant.App()
	for _, tc := range []struct {
		path         string
		status       int
		cacheControl string
	}{
		{"/v1/ledger/tile/0/000", 200, "private, max-age=31536000, immutable"},
		{"/v1/ledger/tile/entries/000", 200, "private, max-age=31536000, immutable"},
		{"/v1/ledger/tile/0/001.p/44", 200, "no-store"},
		{"/v1/ledger/tile/1/000.p/1", 200, "no-store"},
		{"/v1/ledger/tile/entries/001.p/44", 200, "no-store"},
		{"/v1/ledger/tile/0/001", 404, "no-store"},
		{"/v1/ledger/tile/entries/001", 404, "no-store"},
		{"/v1/ledger/checkpoint", 200, "no-store"},
	} {
		status, hdr, _ := e.get(t, app, tc.path, "acme")
		if status != tc.status || hdr.Get("Cache-Control") != tc.cacheControl {
			t.Errorf("%s: %d Cache-Control %q, want %d %q", tc.path, status, hdr.Get("Cache-Control"), tc.status, tc.cacheControl)
		}
		if vary := strings.Join(hdr.Values("Vary"), ","); tc.status == 200 && tc.cacheControl != "no-store" &&
			(!strings.Contains(vary, "Authorization") || !strings.Contains(vary, "Cookie")) {
			t.Errorf("%s: Vary %q: a cache would give one caller's log to another", tc.path, vary)
		}
	}
}

// An export may start at the first entry, index 0, said explicitly.
func TestLedgerExportFromZero(t *testing.T) {
	e := newLedgerEnv(t, testLogAccess)
	e.append(t, e.acme, 5)
	for _, path := range []string{"/v1/ledger/export?from=0", "/v1/ledger/export?from=0&to=5"} {
		status, _, body := e.get(t, e.planes.Tenant.App(), path, "acme")
		if status != 200 {
			t.Fatalf("%s: %d %s", path, status, body)
		}
		if rep, err := verify.VerifyExport(bytes.NewReader(body), e.vkey, verify.ExportOptions{}); err != nil || rep.From != 0 || rep.To != 5 {
			t.Fatalf("%s: %+v, %v", path, rep, err)
		}
	}
	// 0 is a first index, not a size: to=0 and tree_size=0 stay refused.
	for _, path := range []string{"/v1/ledger/export?from=x", "/v1/ledger/export?to=0", "/v1/ledger/proofs/inclusion?index=0&tree_size=0"} {
		if status, _, body := e.get(t, e.planes.Tenant.App(), path, "acme"); status != 400 {
			t.Fatalf("%s: %d %s", path, status, body)
		}
	}
}
