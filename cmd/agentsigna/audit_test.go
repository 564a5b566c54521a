package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
)

// An export holding a receipt verifies with `audit verify`; a receipt
// whose key is not in the export's JWKS fails it.
func TestAuditVerifyExport(t *testing.T) {
	ctx := context.Background()
	// Keys as the service makes them: each in its organization's log.
	s, acme, kr, l, rk := acmeLedger(t)
	lg := l.TenantLog(acme.ID, "acme")
	sign := func(kr *signing.Keyring, tenant, slug string) string {
		rs, err := rk.Signer(ctx, decision.Organization{ID: tenant, Slug: slug})
		if err != nil {
			t.Fatal(err)
		}
		return testReceipt(t, rs, "1")
	}
	good := sign(kr, acme.ID, "acme")
	for _, e := range []ledger.Entry{
		{Kind: "decision", Subject: "dec_1", Record: []byte(`{"decision_id":"dec_1"}`)},
		{Kind: "receipt", Subject: "rct_1", Record: []byte(good)},
	} {
		if _, err := l.Append(ctx, lg, e); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	export := func(name string) string {
		p := filepath.Join(dir, name)
		writeExport(t, l, lg, 0, p)
		return p
	}
	vkey, _ := l.VerifierKey(ctx, lg)
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runAudit(ctx, args, &out, &errOut, envOf(nil))
		return out.String(), err
	}
	if out, err := run("verify", export("good.tar.gz"), "--log-key", vkey); err != nil || !strings.Contains(out, "OK: entries 0..3") ||
		!strings.Contains(out, "receipt=1") || !strings.Contains(out, "receipt_key.created=1") {
		t.Fatalf("good export: %q, %v", out, err)
	}
	// --jwks pins the published key set: the export's own copy is not
	// signed by the log, so receipts are checked against the pinned one.
	other := storetest.CreateTenant(t, s, "other")
	_ = sign(kr, other.ID, "other") // gives the other organization a receipt key
	published := func(tenant string) string {
		var jwks []byte
		if err := s.InTenantTx(ctx, tenant, func(ctx context.Context, tx store.TenantTx) error {
			var err error
			jwks, err = kr.JWKS(ctx, tx.Keys(), tenant, store.PurposeReceipt)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, tenant+".jwks.json")
		if err := os.WriteFile(p, jwks, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var stderr bytes.Buffer
	if err := runAudit(ctx, []string{"verify", filepath.Join(dir, "good.tar.gz"), "--log-key", vkey, "--jwks", published(acme.ID)}, io.Discard, &stderr, envOf(nil)); err != nil || !strings.Contains(stderr.String(), "against the pinned JWKS") {
		t.Fatalf("good export, the published JWKS pinned: %q, %v", stderr.String(), err)
	}
	if _, err := run("verify", filepath.Join(dir, "good.tar.gz"), "--log-key", vkey, "--jwks", published(other.ID)); err == nil || !strings.Contains(err.Error(), "entry 2: record") {
		t.Fatalf("receipts whose key the pinned JWKS lacks: %v", err)
	}
	// A receipt signed by a key the organization never published.
	forged := sign(kr, other.ID, "other")
	if _, err := l.Append(ctx, lg, ledger.Entry{Kind: "receipt", Subject: "rct_1", Record: []byte(forged)}); err != nil {
		t.Fatal(err)
	}
	if _, err := run("verify", export("forged.tar.gz"), "--log-key", vkey); err == nil || !strings.Contains(err.Error(), "entry 3: record") {
		t.Fatalf("forged receipt: %v", err)
	}
	if _, err := run("verify", filepath.Join(dir, "good.tar.gz")); err == nil {
		t.Fatal("verified without a pinned key")
	}
}

// A receipt key the log never introduced — put in the store behind the
// service's back, by someone holding the master key — is published in the
// JWKS, so its receipts verify against it; audit verify refuses them all
// the same. An export starting after a key's entry says so instead.
func TestAuditVerifyKeysTheLogIntroduced(t *testing.T) {
	ctx := context.Background()
	s, acme, kr, l, rk := acmeLedger(t)
	lg := l.TenantLog(acme.ID, "acme")
	org := decision.Organization{ID: acme.ID, Slug: "acme"}
	receipt := func(rs *signing.ReceiptSigner, id string) ledger.Entry {
		return ledger.Entry{Kind: "receipt", Subject: "rct_" + id, Record: []byte(testReceipt(t, rs, id))}
	}
	logged, err := rk.Signer(ctx, org) // entry 0: receipt_key.created
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, lg, receipt(logged, "1")); err != nil { // entry 1
		t.Fatal(err)
	}
	vkey, _ := l.VerifierKey(ctx, lg)
	dir := t.TempDir()
	run := func(name string, from uint64) (string, error) {
		p := filepath.Join(dir, name)
		writeExport(t, l, lg, from, p)
		var out, errOut bytes.Buffer
		err := runAudit(ctx, []string{"verify", p, "--log-key", vkey}, &out, &errOut, envOf(nil))
		return out.String() + errOut.String(), err
	}
	if out, err := run("logged.tar.gz", 0); err != nil || !strings.Contains(out, "against the keys the log introduced") {
		t.Fatalf("a receipt of a logged key: %q, %v", out, err)
	}
	// From entry 1 on, the key's entry is not in the export.
	if out, err := run("partial.tar.gz", 1); err != nil || !strings.Contains(out, "1 receipts are signed with keys this export does not introduce (it starts at entry 1)") ||
		strings.Contains(out, "chain link") {
		t.Fatalf("an export after the key's entry: %q, %v", out, err)
	}

	// The unlogged key: installed in place of the logged one, directly.
	var unlogged *signing.ReceiptSigner
	if err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		nk, err := kr.NewReceiptKey(acme.ID)
		if err != nil {
			return err
		}
		if err := kr.InstallReceiptKey(ctx, tx.Keys(), nk, []string{logged.KID()}); err != nil {
			return err
		}
		unlogged, err = kr.ReceiptSigner(ctx, tx.Keys(), acme.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, lg, receipt(unlogged, "2")); err != nil { // entry 2
		t.Fatal(err)
	}
	if out, err := run("unlogged.tar.gz", 0); err == nil || !strings.Contains(err.Error(), "entry 2: record: receipt signed with key "+strconv.Quote(unlogged.KID())+", which no receipt key entry before it introduced") {
		t.Fatalf("a receipt of a key the log never introduced: %q, %v", out, err)
	}
	// From an even index, the link into the first entry cannot be shown:
	// it says so.
	if out, err := run("even.tar.gz", 2); err != nil ||
		!strings.Contains(out, "note: the chain link from entry 1 into entry 2 was not checked") {
		t.Fatalf("an export from an even index: %q, %v", out, err)
	}

	// Entries that name the key but carry another's public key: as it is
	// (another kid), and relabelled with the named kid (whose thumbprint
	// it then is not).
	other := publicJWKOf(t, s, kr, acme.ID, logged.KID())
	keyEntry := func(jwk []byte) ledger.Entry {
		rec, err := json.Marshal(map[string]any{"event": "receipt_key_rotated", "kid": unlogged.KID(),
			"public_jwk": json.RawMessage(jwk), "retired_kids": []string{}})
		if err != nil {
			t.Fatal(err)
		}
		return ledger.Entry{Kind: decision.KindReceiptKeyRotated, Subject: unlogged.KID(), Record: rec}
	}
	relabelled := bytes.Replace(other, []byte(logged.KID()), []byte(unlogged.KID()), 1)
	for _, e := range []ledger.Entry{keyEntry(other), keyEntry(relabelled)} {
		if _, err := l.Append(ctx, lg, e); err != nil { // entries 3, 4
			t.Fatal(err)
		}
	}
	if out, err := run("mislabelled.tar.gz", 3); err == nil || !strings.Contains(err.Error(), "entry 3: record: a receipt key entry that does not name its Ed25519 key") {
		t.Fatalf("a key entry whose key has another kid: %q, %v", out, err)
	}
	if out, err := run("relabelled.tar.gz", 4); err == nil || !strings.Contains(err.Error(), "entry 4: record: receipt key entry for "+unlogged.KID()+": the kid is not its key's thumbprint") {
		t.Fatalf("a key entry relabelled with another kid: %q, %v", out, err)
	}
	// Its key introduced properly, twice (entries 5 and 6); after a
	// receipt it signed (entries 7 and 8: an export starting after entry 0
	// that holds both says so); and an entry that names no key (9).
	real := publicJWKOf(t, s, kr, acme.ID, unlogged.KID())
	for _, e := range []ledger.Entry{keyEntry(real), keyEntry(real), receipt(unlogged, "4"), keyEntry(real),
		{Kind: decision.KindReceiptKeyCreated, Subject: "k", Record: []byte(`{"kid":"other"}`)}} {
		if _, err := l.Append(ctx, lg, e); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := run("twice.tar.gz", 5); err == nil || !strings.Contains(err.Error(), "entry 6: record: receipt key "+strconv.Quote(unlogged.KID())+" introduced twice") {
		t.Fatalf("a key introduced twice: %q, %v", out, err)
	}
	if out, err := run("after.tar.gz", 7); err == nil || !strings.Contains(err.Error(), "entry 8: record: receipt key "+strconv.Quote(unlogged.KID())+" is introduced after the receipt of entry 7 it signed") {
		t.Fatalf("a key introduced after a receipt it signed: %q, %v", out, err)
	}
	if out, err := run("nameless.tar.gz", 9); err == nil || !strings.Contains(err.Error(), "entry 9: record: a receipt key entry that does not name its Ed25519 key") {
		t.Fatalf("a key entry naming no key: %q, %v", out, err)
	}
}

// A published key set that gives a logged kid another key (someone's
// own) verifies receipts that key signed under that kid; audit verify,
// given that JWKS pinned, refuses them: they do not verify under the key
// the log introduced as that kid.
func TestAuditVerifyPinnedJWKSAgainstTheLog(t *testing.T) {
	ctx := context.Background()
	l, lg, _, _, rs := acmeSigned(t) // entry 0: the key
	genuine := testReceipt(t, rs, "1")
	// The same header and claims, signed by another key.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	header, payload, _ := strings.Cut(genuine, ".")
	payload, _, _ = strings.Cut(payload, ".")
	input := header + "." + payload
	forged := input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(input)))
	for _, e := range []ledger.Entry{{Kind: "receipt", Subject: "rct_1", Record: []byte(forged)}} { // entry 1
		if _, err := l.Append(ctx, lg, e); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	set := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `","kid":"` + rs.KID() + `","alg":"EdDSA","use":"sig"}]}`
	if err := os.WriteFile(jwks, []byte(set), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = auditWholeLog(t, l, lg, "--jwks", jwks)
	if err == nil || !strings.Contains(err.Error(), "entry 1: record: receipt is signed with another key than the log introduced as "+strconv.Quote(rs.KID())) {
		t.Fatalf("a receipt the pinned JWKS vouches for under a logged kid: %v", err)
	}
}

// publicJWKOf is the JWKS's entry for kid.
func publicJWKOf(t *testing.T, s *sqlite.Store, kr *signing.Keyring, tenantID, kid string) []byte {
	t.Helper()
	var jwks []byte
	if err := s.InTenantReadTx(context.Background(), tenantID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		jwks, err = kr.JWKS(ctx, tx.Keys(), tenantID, store.PurposeReceipt)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if bytes.Contains(k, []byte(`"kid":"`+kid+`"`)) {
			return k
		}
	}
	t.Fatalf("no key %s in %s", kid, jwks)
	return nil
}

// acmeStore is an embedded store in a new directory holding organization
// acme, closed when the test ends.
func acmeStore(t *testing.T) (*sqlite.Store, store.Tenant) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, storetest.CreateTenant(t, s, "acme")
}

// acmeLedger is acmeStore with a key ring under a new master key, a
// ledger over both (closed when the test ends), and the receipt keys the
// service makes through them.
func acmeLedger(t *testing.T) (*sqlite.Store, store.Tenant, *signing.Keyring, *ledger.Ledger, *decision.ReceiptKeys) {
	t.Helper()
	s, acme := acmeStore(t)
	master, err := secrets.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := signing.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.New(ledger.Config{Tenants: s, Platform: s, Keys: kr, Origin: "agentsigna.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	rk, err := decision.NewReceiptKeys(s, l, kr)
	if err != nil {
		t.Fatal(err)
	}
	return s, acme, kr, l, rk
}

// A server keeps signing with its cached key for up to a minute after a
// rotation elsewhere: a receipt of the retired key, logged after the
// rotation, passes the audit (the key was introduced, and stays
// published).
func TestAuditVerifyReceiptOfARetiredKey(t *testing.T) {
	ctx := context.Background()
	l, lg, org, rk, old := acmeSigned(t)              // entry 0: the key
	if _, _, err := rk.Rotate(ctx, org); err != nil { // entry 1
		t.Fatal(err)
	}
	jws := testReceipt(t, old, "1")
	if _, err := l.Append(ctx, lg, ledger.Entry{Kind: "receipt", Subject: "rct_1", Record: []byte(jws)}); err != nil { // entry 2
		t.Fatal(err)
	}
	if out, err := auditWholeLog(t, l, lg); err != nil || !strings.Contains(out, "receipt=1 receipt_key.created=1 receipt_key.rotated=1") {
		t.Fatalf("a receipt of a retired, logged key: %q, %v", out, err)
	}
}

// writeExport writes lg's export of entries from on, to its newest
// checkpoint, to the file path.
func writeExport(t *testing.T, l *ledger.Ledger, lg ledger.Log, from uint64, path string) {
	t.Helper()
	var buf bytes.Buffer
	if err := l.Export(context.Background(), lg, from, 0, &buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// testReceipt is a receipt rs signs for decision dec_<id>, receipt
// rct_<id>, of acme's agent agt_x.
func testReceipt(t *testing.T, rs *signing.ReceiptSigner, id string) string {
	t.Helper()
	jws, err := rs.Sign(signing.ReceiptClaims{
		Issuer: "http://127.0.0.1:8080/t/acme", Subject: "agt_x", ID: "rct_" + id, DecisionID: "dec_" + id,
		Outcome: signing.OutcomeAllow, Action: json.RawMessage(`{"type":"report.generate"}`),
		Agent: signing.ReceiptAgent{ID: "agt_x", Sponsor: "usr_s", RiskTier: "low"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return jws
}

// A receipt entry must name its receipt or its decision: one logged under
// another's subject fails the audit.
func TestAuditVerifyReceiptUnderAnotherSubject(t *testing.T) {
	ctx := context.Background()
	l, lg, _, _, rs := acmeSigned(t)                                                                                                       // entry 0: the key
	if _, err := l.Append(ctx, lg, ledger.Entry{Kind: "receipt", Subject: "rct_2", Record: []byte(testReceipt(t, rs, "1"))}); err != nil { // entry 1
		t.Fatal(err)
	}
	if _, err := auditWholeLog(t, l, lg); err == nil || !strings.Contains(err.Error(), "entry 1: record: receipt does not name the entry's subject") {
		t.Fatalf("a receipt logged under another subject: %v", err)
	}
}

// auditWholeLog runs audit verify, with extra arguments, on lg's export
// from entry 0, pinned to the log's key, and returns what it printed on
// standard output.
func auditWholeLog(t *testing.T, l *ledger.Ledger, lg ledger.Log, extra ...string) (string, error) {
	t.Helper()
	export := filepath.Join(t.TempDir(), "export.tar.gz")
	writeExport(t, l, lg, 0, export)
	vkey, err := l.VerifierKey(context.Background(), lg)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = runAudit(context.Background(), append([]string{"verify", export, "--log-key", vkey}, extra...), &out, io.Discard, envOf(nil))
	return out.String(), err
}

// acmeSigned is acmeLedger's log of acme, whose first receipt key (entry
// 0) its receipt keys made, and that key's signer.
func acmeSigned(t *testing.T) (*ledger.Ledger, ledger.Log, decision.Organization, *decision.ReceiptKeys, *signing.ReceiptSigner) {
	t.Helper()
	_, acme, _, l, rk := acmeLedger(t)
	org := decision.Organization{ID: acme.ID, Slug: "acme"}
	rs, err := rk.Signer(context.Background(), org)
	if err != nil {
		t.Fatal(err)
	}
	return l, l.TenantLog(acme.ID, "acme"), org, rk, rs
}
