package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	s, err := sqlite.Open(ctx, sqlite.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acme := storetest.CreateTenant(t, s, "acme")
	master, _ := secrets.GenerateMasterKey()
	kr, _ := signing.NewKeyring(master)
	l, err := ledger.New(ledger.Config{Tenants: s, Platform: s, Keys: kr, Origin: "agentsigna.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lg := l.TenantLog(acme.ID, "acme")

	sign := func(kr *signing.Keyring, tenant string) string {
		var jws string
		err := s.InTenantTx(ctx, tenant, func(ctx context.Context, tx store.TenantTx) error {
			rs, err := firstReceiptSigner(ctx, kr, tx.Keys(), tenant)
			if err != nil {
				return err
			}
			jws, err = rs.Sign(signing.ReceiptClaims{
				Issuer: "http://127.0.0.1:8080/t/acme", Subject: "agt_x", ID: "rct_1", Tenant: tenant, DecisionID: "dec_1",
				Outcome: signing.OutcomeAllow, Action: json.RawMessage(`{"type":"report.generate"}`),
				Agent: signing.ReceiptAgent{ID: "agt_x", Sponsor: "usr_s", RiskTier: "low"},
			})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return jws
	}
	good := sign(kr, acme.ID)
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
		var buf bytes.Buffer
		if err := l.Export(ctx, lg, 0, 0, &buf); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vkey, _ := l.VerifierKey(ctx, lg)
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runAudit(ctx, args, &out, &errOut, envOf(nil))
		return out.String(), err
	}
	if out, err := run("verify", export("good.tar.gz"), "--log-key", vkey); err != nil || !strings.Contains(out, "OK: entries 0..2") || !strings.Contains(out, "receipt=1") {
		t.Fatalf("good export: %q, %v", out, err)
	}
	// --jwks pins the published key set: the export's own copy is not
	// signed by the log, so receipts are checked against the pinned one.
	other := storetest.CreateTenant(t, s, "other")
	_ = sign(kr, other.ID) // gives the other organization a receipt key
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
	if _, err := run("verify", filepath.Join(dir, "good.tar.gz"), "--log-key", vkey, "--jwks", published(other.ID)); err == nil || !strings.Contains(err.Error(), "entry 1: record") {
		t.Fatalf("receipts whose key the pinned JWKS lacks: %v", err)
	}
	// A receipt signed by a key the organization never published.
	forged := sign(kr, other.ID)
	if _, err := l.Append(ctx, lg, ledger.Entry{Kind: "receipt", Subject: "rct_1", Record: []byte(forged)}); err != nil {
		t.Fatal(err)
	}
	if _, err := run("verify", export("forged.tar.gz"), "--log-key", vkey); err == nil || !strings.Contains(err.Error(), "entry 2: record") {
		t.Fatalf("forged receipt: %v", err)
	}
	if _, err := run("verify", filepath.Join(dir, "good.tar.gz")); err == nil {
		t.Fatal("verified without a pinned key")
	}
}
