package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

func TestVerifyReceiptAndRotate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, sqlite.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	acme := storetest.CreateTenant(t, s, "acme")
	// The same master key the CLI will load from the data dir.
	master, _, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	kr, _ := signing.NewKeyring(master)
	l, _ := ledger.New(ledger.Config{Tenants: s, Platform: s, Keys: kr, Origin: "agentsigna.test"})
	lg := l.TenantLog(acme.ID, "acme")
	var jws string
	var jwks []byte
	err = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		rs, err := kr.ReceiptSigner(ctx, tx.Keys(), acme.ID)
		if err != nil {
			return err
		}
		jws, err = rs.Sign(signing.ReceiptClaims{Issuer: "http://127.0.0.1:8080/t/acme", Subject: "agt_x", ID: "rct_1", DecisionID: "dec_1",
			Outcome: signing.OutcomeAllow, Action: json.RawMessage(`{"type":"report.generate"}`), Agent: signing.ReceiptAgent{ID: "agt_x", Sponsor: "s", RiskTier: "low"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.Append(ctx, lg, ledger.Entry{Kind: "receipt", Subject: "rct_1", Record: []byte(jws)})
	if err != nil {
		t.Fatal(err)
	}
	proof, _ := l.InclusionProof(ctx, lg, a.Index, 0)
	vkey, _ := l.VerifierKey(ctx, lg)
	l.Close()
	_ = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		jwks, err = signing.JWKS(ctx, tx.Keys(), store.PurposeReceipt)
		return err
	})
	s.Close()
	write := func(name string, b []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	jwksFile, entryFile := write("jwks.json", jwks), write("entry", a.Entry)
	proofFile := write("p.tlog-proof", verify.Proof{Index: a.Index, Hashes: proof.Hashes, Checkpoint: proof.Checkpoint.Note}.Marshal())
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runVerify(ctx, append([]string{"receipt"}, args...), &out, &errOut, envOf(nil))
		return out.String(), err
	}
	if out, err := run(jws, "--jwks", jwksFile, "--tlog-proof", proofFile, "--entry", entryFile, "--log-key", vkey); err != nil || !strings.Contains(out, "logged as entry 0") {
		t.Fatalf("receipt with proof: %q, %v", out, err)
	}
	if _, err := run(jws, "--jwks", jwksFile, "--at", time.Now().Add(time.Hour).Format(time.RFC3339)); err == nil {
		t.Fatal("expired receipt accepted")
	}
	tampered := jws[:len(jws)-4] + "AAAA"
	if _, err := run(tampered, "--jwks", jwksFile); err == nil {
		t.Fatal("tampered receipt accepted")
	}
	other := write("other-entry", []byte(strings.Replace(string(a.Entry), `"kind":"receipt"`, `"kind":"decision"`, 1)))
	if _, err := run(jws, "--jwks", jwksFile, "--tlog-proof", proofFile, "--entry", other, "--log-key", vkey); err == nil {
		t.Fatal("a proof for another entry accepted")
	}

	// Rotation: a new key, the old one stays published, old receipts verify.
	var out, errOut bytes.Buffer
	if err := runKeys(ctx, []string{"rotate", "--tenant", "acme", "--data-dir", dir}, &out, &errOut, envOf(nil)); err != nil || !strings.Contains(out.String(), "new receipt key") {
		t.Fatalf("rotate: %q %q, %v", out.String(), errOut.String(), err)
	}
	s, _ = sqlite.Open(ctx, sqlite.Config{DataDir: dir})
	defer s.Close()
	_ = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		jwks, err = signing.JWKS(ctx, tx.Keys(), store.PurposeReceipt)
		return err
	})
	var set struct{ Keys []map[string]any }
	if json.Unmarshal(jwks, &set); len(set.Keys) != 2 {
		t.Fatalf("after rotation the JWKS has %d keys", len(set.Keys))
	}
	if _, err := run(jws, "--jwks", write("jwks2.json", jwks)); err != nil {
		t.Fatalf("old receipt after rotation: %v", err)
	}
}
