package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
)

// A log cut back to an earlier batch checks on its own like a log that
// never grew; against a checkpoint kept from before it fails, as does a
// log that then grew again otherwise (a fork).
func TestLedgerVerifyKeptCheckpoint(t *testing.T) {
	ctx := context.Background()
	dir, acme, tenantFile, _ := acmeDataDir(t)

	// appendBatches appends each batch of records in one transaction and
	// returns the newest checkpoint, through the ledger `ledger verify`
	// opens; appendAll appends one batch per record.
	appendBatches := func(batches ...[]string) []byte {
		t.Helper()
		backend, l := openServeLedger(t, ctx, dir)
		defer backend.Close()
		defer l.Close()
		lg := l.TenantLog(acme.ID, "acme")
		for _, records := range batches {
			var entries []ledger.Entry
			for _, r := range records {
				entries = append(entries, ledger.Entry{Kind: "test", Subject: r, Record: []byte(`{"r":"` + r + `"}`)})
			}
			if _, err := l.AppendAll(ctx, lg, entries); err != nil {
				t.Fatal(err)
			}
		}
		cp, err := l.LatestCheckpoint(ctx, lg)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Note
	}
	appendAll := func(records ...string) []byte {
		var batches [][]string
		for _, r := range records {
			batches = append(batches, []string{r})
		}
		return appendBatches(batches...)
	}
	verifyLog := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runLedger(ctx, append([]string{"verify", "--data-dir", dir}, args...), &out, &errOut, envOf(nil))
		return out.String(), err
	}
	keep := func(cp []byte) string {
		p := filepath.Join(t.TempDir(), "checkpoint")
		if err := os.WriteFile(p, cp, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	appendAll("a", "b")
	keptNote := appendAll("c", "d") // size 4
	kept := keep(keptNote)
	if out, err := verifyLog("--tenant", "acme", "--checkpoint", kept); err != nil || !strings.Contains(out, "acme: OK: 4 entries") {
		t.Fatalf("the log that extends the kept checkpoint: %q, %v", out, err)
	}
	// Kept with witnesses' cosignatures, past 64 KiB.
	if out, err := verifyLog("--tenant", "acme", "--checkpoint", keep(withCosignatures(keptNote))); err != nil || !strings.Contains(out, "acme: OK: 4 entries") {
		t.Fatalf("a kept checkpoint carrying cosignatures: %q, %v", out, err)
	}

	// Cut back to size 2: the entries and checkpoints of the last two
	// batches deleted. On its own the log checks.
	sqlitetest.Tamper(t, tenantFile,
		fmt.Sprintf(`DELETE FROM ledger_entries WHERE tenant_id = '%s' AND idx >= 2`, acme.ID),
		fmt.Sprintf(`DELETE FROM ledger_checkpoints WHERE tenant_id = '%s' AND size > 2`, acme.ID))
	if out, err := verifyLog("--tenant", "acme"); err != nil || !strings.Contains(out, "acme: OK: 2 entries") {
		t.Fatalf("the cut log, on its own: %q, %v", out, err)
	}
	if out, err := verifyLog("--tenant", "acme", "--checkpoint", kept); err == nil || !strings.Contains(out, "fewer than the kept checkpoint's 4") {
		t.Fatalf("the cut log against the kept checkpoint: %q, %v", out, err)
	}

	// Grown again to size 4 with other entries: a fork of the kept tree.
	appendAll("x", "y")
	if out, err := verifyLog("--tenant", "acme"); err != nil || !strings.Contains(out, "acme: OK: 4 entries") {
		t.Fatalf("the forked log, on its own: %q, %v", out, err)
	}
	if out, err := verifyLog("--tenant", "acme", "--checkpoint", kept); err == nil || !strings.Contains(out, "does not extend the kept checkpoint") {
		t.Fatalf("the forked log against the kept checkpoint: %q, %v", out, err)
	}

	// A checkpoint another key signed is no kept checkpoint of this log.
	signer, _, err := note.GenerateKey(rand.Reader, "127.0.0.1:8080/t/acme")
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := note.NewSigner(signer)
	forged, err := note.Sign(&note.Note{Text: "127.0.0.1:8080/t/acme\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, s2)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := verifyLog("--tenant", "acme", "--checkpoint", keep(forged)); err == nil || !strings.Contains(out, "the kept checkpoint") {
		t.Fatalf("a kept checkpoint by another key: %q, %v", out, err)
	}
	if _, err := verifyLog("--checkpoint", kept); !errors.Is(err, errUsage) {
		t.Fatalf("--checkpoint without a log: %v", err)
	}
	// Both flags together named no log: the command checked nothing,
	// printed nothing and exited 0 (found by review).
	if out, err := verifyLog("--tenant", "acme", "--platform"); !errors.Is(err, errUsage) || out != "" {
		t.Fatalf("--tenant with --platform: %q, %v", out, err)
	}

	// Cut back to size 2 again and grown in one batch to 5: no signed
	// checkpoint of the kept size is left to compare with.
	sqlitetest.Tamper(t, tenantFile,
		fmt.Sprintf(`DELETE FROM ledger_entries WHERE tenant_id = '%s' AND idx >= 2`, acme.ID),
		fmt.Sprintf(`DELETE FROM ledger_checkpoints WHERE tenant_id = '%s' AND size > 2`, acme.ID))
	appendBatches([]string{"p", "q", "r"})
	if out, err := verifyLog("--tenant", "acme"); err != nil || !strings.Contains(out, "acme: OK: 5 entries") {
		t.Fatalf("the log regrown in one batch, on its own: %q, %v", out, err)
	}
	if out, err := verifyLog("--tenant", "acme", "--checkpoint", kept); err == nil || !strings.Contains(out, "no signed checkpoint of the kept size 4") {
		t.Fatalf("the log regrown in one batch against the kept checkpoint: %q, %v", out, err)
	}

	// Every entry, checkpoint and the log's key deleted: on its own an
	// empty log, against a kept checkpoint a deleted one.
	sqlitetest.Tamper(t, tenantFile,
		fmt.Sprintf(`DELETE FROM ledger_entries WHERE tenant_id = '%s'`, acme.ID),
		fmt.Sprintf(`DELETE FROM ledger_nodes WHERE tenant_id = '%s'`, acme.ID),
		fmt.Sprintf(`DELETE FROM ledger_checkpoints WHERE tenant_id = '%s'`, acme.ID),
		fmt.Sprintf(`DELETE FROM signing_keys WHERE tenant_id = '%s' AND purpose = 'log'`, acme.ID))
	if out, err := verifyLog("--tenant", "acme"); err != nil || !strings.Contains(out, "acme: empty") {
		t.Fatalf("the emptied log, on its own: %q, %v", out, err)
	}
	if out, err := verifyLog("--tenant", "acme", "--checkpoint", kept); err == nil || !strings.Contains(out, "acme: FAILED: the log has no key and no entries") {
		t.Fatalf("the emptied log against the kept checkpoint: %q, %v", out, err)
	}
}

// openServeLedger opens the embedded store in dir and its ledger as serve
// does, through serve's own flags and code (openStore, openLedger). The
// caller closes both, the ledger first.
func openServeLedger(t *testing.T, ctx context.Context, dir string) (store.Backend, *ledger.Ledger) {
	t.Helper()
	fs := newFlagSet("test", io.Discard)
	var sf storeFlags
	var lf ledgerFlags
	sf.register(fs)
	lf.register(fs)
	if err := parse(fs, []string{"--data-dir", dir}, envOf(nil)); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	backend, err := openStore(ctx, &sf, envOf(nil), log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := openLedger(ctx, &sf, &lf, backend, envOf(nil), log)
	if err != nil {
		backend.Close()
		t.Fatal(err)
	}
	return backend, l
}

// ledger verify holds an organization's receipt keys to its log: each key
// stored, active or retired, was introduced by an entry with that public
// key, each key an entry introduced is still stored, and a key is retired
// exactly when an entry retired it. A key put in the store behind the
// service's back — even into an organization whose log is still empty —
// one whose public half was changed, a retired key made active again, or
// a key deleted, fails the log.
func TestLedgerVerifyReceiptKeys(t *testing.T) {
	ctx := context.Background()
	dir, acme, tenantFile, master := acmeDataDir(t)
	verifyLog := func() (string, error) {
		var out, errOut bytes.Buffer
		err := runLedger(ctx, []string{"verify", "--data-dir", dir, "--tenant", "acme"}, &out, &errOut, envOf(nil))
		return out.String(), err
	}
	kr, err := signing.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	// install puts a new key in place of the active ones without an entry,
	// as someone holding the master key and the store could.
	install := func(backend store.Backend) string {
		var kid string
		err := backend.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			ks, err := tx.Keys().SigningKeys(ctx, store.PurposeReceipt)
			if err != nil {
				return err
			}
			var active []string
			for _, k := range ks {
				if k.Status == store.KeyActive {
					active = append(active, k.KID)
				}
			}
			nk, err := kr.NewReceiptKey(acme.ID)
			if err != nil {
				return err
			}
			kid = nk.KID()
			return kr.InstallReceiptKey(ctx, tx.Keys(), nk, active)
		})
		if err != nil {
			t.Fatal(err)
		}
		return kid
	}
	tamper := func(format string, args ...any) {
		sqlitetest.Tamper(t, tenantFile, fmt.Sprintf(format, args...))
	}

	var first, second, unlogged string
	func() {
		backend, l := openServeLedger(t, ctx, dir)
		defer backend.Close()
		defer l.Close()
		// Into an organization whose log has no entry yet.
		planted := install(backend)
		if out, err := verifyLog(); err == nil || !strings.Contains(out, "acme: FAILED: the store's keys do not match the log: receipt key "+planted+" is stored, but no entry of the log introduced it") {
			t.Fatalf("a receipt key planted in an empty log's store: %q, %v", out, err)
		}
		tamper(`DELETE FROM signing_keys WHERE kid = '%s'`, planted)

		rk, err := decision.NewReceiptKeys(backend, l, kr)
		if err != nil {
			t.Fatal(err)
		}
		org := decision.Organization{ID: acme.ID, Slug: "acme"}
		rs, err := rk.Signer(ctx, org) // entry 0
		if err != nil {
			t.Fatal(err)
		}
		first = rs.KID()
		if second, _, err = rk.Rotate(ctx, org); err != nil { // entry 1, retiring first
			t.Fatal(err)
		}
		if out, err := verifyLog(); err != nil || !strings.Contains(out, "acme: OK: 2 entries") {
			t.Fatalf("a log with its receipt keys' entries: %q, %v", out, err)
		}
		unlogged = install(backend)
	}()
	if out, err := verifyLog(); err == nil || !strings.Contains(out, "acme: FAILED: the store's keys do not match the log: receipt key "+unlogged+" is stored, but no entry of the log introduced it") {
		t.Fatalf("a receipt key no entry introduced: %q, %v", out, err)
	}
	tamper(`DELETE FROM signing_keys WHERE kid = '%s'`, unlogged)
	if out, err := verifyLog(); err == nil || !strings.Contains(out, "acme: FAILED: the store's keys do not match the log: receipt key "+second+" is retired, but no entry retired it") {
		t.Fatalf("a key retired without an entry: %q, %v", out, err)
	}
	tamper(`UPDATE signing_keys SET status = 'active', retired_at = NULL WHERE kid = '%s'`, second)
	if out, err := verifyLog(); err != nil || !strings.Contains(out, "acme: OK: 2 entries") {
		t.Fatalf("the store as the log says again: %q, %v", out, err)
	}
	// The key the rotation retired (a leaked one, say) made active again.
	tamper(`UPDATE signing_keys SET status = 'retired', retired_at = created_at WHERE kid = '%s'`, second)
	tamper(`UPDATE signing_keys SET status = 'active', retired_at = NULL WHERE kid = '%s'`, first)
	if out, err := verifyLog(); err == nil || !strings.Contains(out, "acme: FAILED: the store's keys do not match the log: receipt key "+first+" is active, but entry 1 retired it") {
		t.Fatalf("a retired key made active again: %q, %v", out, err)
	}
	tamper(`UPDATE signing_keys SET status = 'retired', retired_at = created_at WHERE kid = '%s'`, first)
	tamper(`UPDATE signing_keys SET status = 'active', retired_at = NULL WHERE kid = '%s'`, second)
	tamper(`UPDATE signing_keys SET public_key = zeroblob(32) WHERE kid = '%s'`, first)
	if out, err := verifyLog(); err == nil || !strings.Contains(out, "acme: FAILED: the store's keys do not match the log: receipt key "+first+" is stored with another public key than entry 0 logged") {
		t.Fatalf("a logged key whose public half changed: %q, %v", out, err)
	}
	tamper(`DELETE FROM signing_keys WHERE kid = '%s'`, first)
	if out, err := verifyLog(); err == nil || !strings.Contains(out, "acme: FAILED: the store's keys do not match the log: receipt key "+first+" was introduced by entry 0, but the store no longer holds it") {
		t.Fatalf("a logged key deleted: %q, %v", out, err)
	}
}

// adoptIn runs ledger adopt --tenant acme on the data dir dir, with args.
func adoptIn(ctx context.Context, dir string) func(args ...string) (string, error) {
	return func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runLedger(ctx, append([]string{"adopt", "--tenant", "acme", "--data-dir", dir}, args...), &out, &errOut, envOf(nil))
		return out.String(), err
	}
}

// listingDigest is the digest a ledger adopt listing ends with.
func listingDigest(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`--confirm ([0-9a-f]{64})\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no digest in %q", out)
	}
	return m[1]
}

// acmeDataDir is a data directory holding organization acme (whose
// store file is tenantFile) and the master key serve or org create makes
// with it; nothing is left open.
func acmeDataDir(t *testing.T) (dir string, acme store.Tenant, tenantFile string, master *secrets.MasterKey) {
	t.Helper()
	dir = t.TempDir()
	s, err := sqlite.Open(context.Background(), sqlite.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	acme = storetest.CreateTenant(t, s, "acme")
	tenantFile = s.TenantFile(acme.ID)
	s.Close()
	if master, _, err = secrets.LoadMasterKey(secrets.LoadOptions{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	return dir, acme, tenantFile, master
}

// ledger verify holds an organization's agents, agent keys and
// counterparties to its log too: a row written behind the service's back
// — as whoever writes the embedded store's file can, triggers dropped —
// fails it, naming the row; so do rows from before they were logged,
// until an operator adopts them (ledger adopt).
func TestLedgerVerifyRows(t *testing.T) {
	ctx := context.Background()
	// pushAndAddKey stores the example policy and a bundle verification
	// key through the CLI: entries 3 (policy.upload) and 4
	// (policy.verification_key).
	pushAndAddKey := func(run func(fn subcommand, args ...string) string, _ string) {
		run(runPolicy, "push", "--tenant", "acme", "--by", "usr_author", filepath.Join("..", "..", "policies", "examples", "acme"))
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "ci.pem")
		if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		run(runPolicy, "add-key", "--tenant", "acme", "--id", "ci", "--by", "usr_admin", file)
	}
	setup := func(t *testing.T) (run func(fn subcommand, args ...string) string, verifyLog func() (string, error), tenantFile, agentID, dir string) {
		dir, _, tenantFile, _ = acmeDataDir(t)
		run = func(fn subcommand, args ...string) string {
			t.Helper()
			var out, errOut bytes.Buffer
			if err := fn(ctx, append(args, "--data-dir", dir), &out, &errOut, envOf(nil)); err != nil {
				t.Fatalf("%v: %v (%s)", args, err, errOut.String())
			}
			return out.String()
		}
		verifyLog = func() (string, error) {
			var out, errOut bytes.Buffer
			err := runLedger(ctx, []string{"verify", "--data-dir", dir, "--tenant", "acme"}, &out, &errOut, envOf(nil))
			return out.String(), err
		}
		keys := t.TempDir()
		agentID = strings.Fields(run(runAgent, "register", "--tenant", "acme", "--name", "payer", "--sponsor", "usr_s",
			"--risk-tier", "high", "--generate-key", filepath.Join(keys, "k1")))[0]
		run(runAgent, "rotate-key", "--tenant", "acme", agentID, "--generate-key", filepath.Join(keys, "k2"))
		run(runCounterparty, "add", "--tenant", "acme", "--name", "Vendor")
		if out, err := verifyLog(); err != nil || !strings.Contains(out, "acme: OK: 3 entries") || strings.Contains(out, "from before") {
			t.Fatalf("untouched: %q, %v", out, err)
		}
		return run, verifyLog, tenantFile, agentID, dir
	}
	for _, tc := range []struct {
		name   string
		before func(run func(fn subcommand, args ...string) string, agentID string) // through the CLI
		stmt   string
		want   string
	}{
		{name: "a key planted", stmt: `INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
			SELECT tenant_id, agent_id, 'planted', public_jwk, 'active', created_at FROM agent_keys LIMIT 1`,
			want: "key planted of agent %s names no entry: planted, or stored before keys were logged and not adopted since"},
		{name: "a retired key active again", stmt: `UPDATE agent_keys SET status = 'active', retired_at = NULL WHERE status = 'retired'`,
			want: "is active, but entry 1 retired it"},
		{name: "a key naming another entry", stmt: `UPDATE agent_keys SET ledger_index = 2 WHERE ledger_index = 0`,
			want: "names entry 2, but entry 0 introduced it"},
		{name: "an agent's sponsor changed", stmt: `UPDATE agents SET sponsor = 'usr_mallory'`,
			want: "agent %s is stored with another name or sponsor than entry 0 registered"},
		{name: "an agent made safer", stmt: `UPDATE agents SET risk_tier = 'low'`,
			want: "agent %s is stored low, safer than entry 0 registered it (high)"},
		{name: "an agent planted", stmt: `INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at, ledger_index)
			SELECT tenant_id, 'agt_aaaaaaaaaaaaaaaaaaaaaaaaaa', name, sponsor, risk_tier, status, created_at, updated_at, 0 FROM agents`,
			want: "agent agt_aaaaaaaaaaaaaaaaaaaaaaaaaa names entry 0, but no entry registered it"},
		{name: "a key with another public key", stmt: `UPDATE agent_keys SET public_jwk = (SELECT public_jwk FROM agent_keys WHERE status = 'active') WHERE status = 'retired'`,
			want: "is stored with another public key than entry 0 logged"},
		{name: "a key retired by no entry", stmt: `UPDATE agent_keys SET status = 'retired', retired_at = created_at WHERE status = 'active'`,
			want: "is retired, but no entry retired it"},
		{name: "a key deleted", stmt: `DELETE FROM agent_keys WHERE status = 'retired'`,
			want: "was introduced by entry 0, but the store no longer holds it"},
		{name: "an agent naming another entry", stmt: `UPDATE agents SET ledger_index = 2`,
			want: "agent %s names entry 2, but entry 0 registered it"},
		{name: "an agent deleted", stmt: `DELETE FROM agent_keys; DELETE FROM agents`,
			want: "agent %s was registered by entry 0, but the store no longer holds it"},
		{name: "a counterparty naming an entry that recorded none", stmt: `INSERT INTO counterparties (tenant_id, id, name, status, created_at, updated_at, ledger_index)
			SELECT tenant_id, 'cp_aaaaaaaaaaaaaaaaaaaaaaaaaa', 'Mallory', 'new', created_at, updated_at, 1 FROM counterparties`,
			want: "counterparty cp_aaaaaaaaaaaaaaaaaaaaaaaaaa names entry 1, but no entry recorded it"},
		{name: "an agent reinstated", before: func(run func(fn subcommand, args ...string) string, agentID string) {
			run(runAgent, "suspend", "--tenant", "acme", agentID)
		}, stmt: `UPDATE agents SET status = 'active'`, want: "agent %s is active, but entry 3 suspended it"},
		{name: "a counterparty verified", stmt: `UPDATE counterparties SET status = 'verified'`,
			want: "is verified, but entry 2 recorded it new"},
		{name: "a counterparty naming no entry", stmt: `UPDATE counterparties SET ledger_index = NULL`,
			want: "names no entry: planted, or stored before counterparties were logged and not adopted since"},
		{name: "a counterparty renamed", stmt: `UPDATE counterparties SET name = 'Mallory Ltd'`,
			want: "is stored with another name than entry 2 recorded"},
		{name: "a counterparty deleted", stmt: `DELETE FROM counterparties`,
			want: "was recorded by entry 2, but the store no longer holds it"},
		{name: "a policy bundle planted", before: pushAndAddKey, stmt: `INSERT INTO policy_bundles (tenant_id, revision, digest, bundle, manifest, signed, uploaded_by, uploaded_at)
			SELECT tenant_id, 'planted', digest, bundle, manifest, signed, uploaded_by, uploaded_at FROM policy_bundles`,
			want: `policy bundle "planted" is stored, but no entry uploaded it`},
		{name: "a policy bundle's digest changed", before: pushAndAddKey, stmt: `UPDATE policy_bundles SET digest = zeroblob(32)`,
			want: `policy bundle "acme-example-1" is stored with bytes whose SHA-256 is not its digest`},
		{name: "a policy bundle's bytes swapped", before: pushAndAddKey, stmt: `UPDATE policy_bundles SET bundle = X'1f8b00'`,
			want: `policy bundle "acme-example-1" is stored with bytes whose SHA-256 is not its digest`},
		{name: "a policy bundle and its digest swapped", before: pushAndAddKey, stmt: `UPDATE policy_bundles SET bundle = X'1f8b00', digest = X'` +
			"4f49dc02c9600234c87f9cd67a65bba18e1ec8bab309c4a720971b25d21f144a" + `'`,
			want: `policy bundle "acme-example-1" is stored with another SHA-256, signed flag or uploader than entry 3 uploaded`},
		{name: "a policy bundle marked signed", before: pushAndAddKey, stmt: `UPDATE policy_bundles SET signed = 1`,
			want: `policy bundle "acme-example-1" is stored with another SHA-256, signed flag or uploader than entry 3 uploaded`},
		{name: "a policy bundle's uploader changed", before: pushAndAddKey, stmt: `UPDATE policy_bundles SET uploaded_by = 'usr_mallory'`,
			want: `policy bundle "acme-example-1" is stored with another SHA-256, signed flag or uploader than entry 3 uploaded`},
		{name: "a policy bundle naming another entry", before: pushAndAddKey, stmt: `UPDATE policy_bundles SET ledger_index = 0`,
			want: `policy bundle "acme-example-1" names entry 0, which did not upload it`},
		{name: "a policy bundle deleted", before: pushAndAddKey, stmt: `DELETE FROM policy_bundles`,
			want: `policy bundle "acme-example-1" was uploaded by entry 3, but the store does not hold it`},
		{name: "a bundle verification key deleted", before: pushAndAddKey, stmt: `DELETE FROM policy_verification_keys`,
			want: `bundle verification key "ci" was registered by entry 4, but the store does not hold it`},
		{name: "a bundle verification key's PEM changed", before: pushAndAddKey, stmt: `UPDATE policy_verification_keys SET public_pem = public_pem || ' '`,
			want: `bundle verification key "ci" is stored with another key or algorithm than entry 4 registered`},
		{name: "a bundle verification key planted", before: pushAndAddKey, stmt: `INSERT INTO policy_verification_keys (tenant_id, kid, public_pem, algorithm, created_at)
			SELECT tenant_id, 'planted', public_pem, algorithm, created_at FROM policy_verification_keys`,
			want: `bundle verification key "planted" is stored, but no entry registered it`},
		{name: "a bundle verification key replaced", before: pushAndAddKey, stmt: `UPDATE policy_verification_keys SET algorithm = 'ES384'`,
			want: `bundle verification key "ci" is stored with another key or algorithm than entry 4 registered`},
		{name: "a bundle verification key naming another entry", before: pushAndAddKey, stmt: `UPDATE policy_verification_keys SET ledger_index = 3`,
			want: `bundle verification key "ci" names entry 3, which did not register it`},
		// Rows from before rows named their entry match any of their
		// subject's entries, but must match one.
		{name: "a policy bundle from before the binding, changed", before: pushAndAddKey, stmt: `UPDATE policy_bundles SET ledger_index = NULL, uploaded_by = 'usr_mallory'`,
			want: `policy bundle "acme-example-1" is stored with another SHA-256, signed flag or uploader than entry 3 uploaded`},
		{name: "a bundle verification key from before the binding, changed", before: pushAndAddKey, stmt: `UPDATE policy_verification_keys SET ledger_index = NULL, algorithm = 'ES384'`,
			want: `bundle verification key "ci" is stored with another key or algorithm than entry 4 registered`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run, verifyLog, tenantFile, agentID, _ := setup(t)
			if tc.before != nil {
				tc.before(run, agentID)
			}
			sqlitetest.Tamper(t, tenantFile, tc.stmt)
			want := tc.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, agentID)
			}
			if out, err := verifyLog(); err == nil || !strings.Contains(out, "acme: FAILED: ") || !strings.Contains(out, want) {
				t.Fatalf("%q, %v; want a failure naming %q", out, err, want)
			}
		})
	}
	t.Run("policy rows as the log records them", func(t *testing.T) {
		run, verifyLog, tenantFile, agentID, _ := setup(t)
		pushAndAddKey(run, agentID)
		if out, err := verifyLog(); err != nil || !strings.Contains(out, "acme: OK: 5 entries") {
			t.Fatalf("%q, %v", out, err)
		}
		// As a build before rows named their entry stored them.
		sqlitetest.Tamper(t, tenantFile, `UPDATE policy_bundles SET ledger_index = NULL`, `UPDATE policy_verification_keys SET ledger_index = NULL`)
		if out, err := verifyLog(); err != nil || !strings.Contains(out, "acme: OK: 5 entries") {
			t.Fatalf("rows from before the binding: %q, %v", out, err)
		}
	})
	t.Run("an agent from before agents were logged", func(t *testing.T) {
		// Stored by a build that did not log agents (both rows name no
		// entry), which nothing tells from rows planted since: ledger
		// verify fails until an operator adopts them.
		const old, ghost = "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "agt_gggggggggggggggggggggggggg"
		run, verifyLog, tenantFile, _, dir := setup(t)
		sqlitetest.Plant(t, tenantFile,
			`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
			SELECT tenant_id, '`+old+`', 'old', sponsor, 'low', 'active', created_at, updated_at FROM agents`,
			`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
			SELECT tenant_id, '`+old+`', 'old-key', json_set(public_jwk, '$.kid', 'old-key'), 'active', created_at FROM agent_keys WHERE status = 'active'`)
		if out, err := verifyLog(); err == nil || !strings.Contains(out, "agent "+old+" names no entry: planted, or stored before agents were logged and not adopted since") {
			t.Fatalf("unadopted: %q, %v", out, err)
		}
		adopt := adoptIn(ctx, dir)
		// Rotated by this build (entry 3) before it is adopted: what the
		// log says of it is held all the same. Its retired key made
		// active again is refused.
		run(runAgent, "rotate-key", "--tenant", "acme", old, "--generate-key", filepath.Join(t.TempDir(), "k"))
		sqlitetest.Tamper(t, tenantFile, `UPDATE agent_keys SET status = 'active', retired_at = NULL WHERE kid = 'old-key'`)
		if out, err := adopt(); err != nil || !strings.Contains(out, "acme: refused: key old-key of agent "+old+" is active, but entry 3 retired it") ||
			strings.Contains(out, "would bind") || !strings.Contains(out, "acme: nothing to adopt; the rows refused stay untrusted") {
			t.Fatalf("a key the log retired, active again: %q, %v", out, err)
		}
		sqlitetest.Tamper(t, tenantFile, `UPDATE agent_keys SET status = 'retired', retired_at = created_at WHERE kid = 'old-key'`)
		listed, err := adopt()
		if err != nil || !strings.Contains(listed, `acme: would bind agent `+old+` name="old" sponsor="usr_s" risk_tier=low status=active, to a new agent.adopted entry; key old-key (retired)`) ||
			!strings.Contains(listed, "nothing adopted") {
			t.Fatalf("listed: %q, %v", listed, err)
		}
		if out, err := verifyLog(); err == nil || !strings.Contains(out, "agent "+old+" names no entry") {
			t.Fatalf("listed, not adopted: %q, %v", out, err)
		}
		// A ghost planted after the listing is not adopted with it: the
		// listing's digest names what the operator saw.
		sqlitetest.Plant(t, tenantFile,
			`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
			SELECT tenant_id, '`+ghost+`', 'ghost', sponsor, 'low', 'active', created_at, updated_at FROM agents WHERE id = '`+old+`'`,
			`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
			SELECT tenant_id, '`+ghost+`', 'ghost-key', json_set(public_jwk, '$.kid', 'ghost-key'), 'active', created_at FROM agent_keys WHERE kid = 'old-key'`)
		if out, err := adopt("--confirm", listingDigest(t, listed)); err == nil || !strings.Contains(err.Error(), "changed since they were listed") || strings.Contains(out, "bound") {
			t.Fatalf("a ghost planted after the listing: %q, %v", out, err)
		}
		sqlitetest.Tamper(t, tenantFile, `DELETE FROM agent_keys WHERE agent_id = '`+ghost+`'`, `DELETE FROM agents WHERE id = '`+ghost+`'`)
		if out, err := adopt("--confirm", listingDigest(t, listed)); err != nil || !strings.Contains(out, "acme: bound agent "+old) {
			t.Fatalf("adopted: %q, %v", out, err)
		}
		run(runAgent, "suspend", "--tenant", "acme", old)
		if out, err := verifyLog(); err != nil || !strings.Contains(out, "acme: OK: 6 entries") {
			t.Fatalf("adopted, then suspended: %q, %v", out, err)
		}
		if out, err := adopt(); err != nil || !strings.Contains(out, "acme: every agent, agent key and counterparty names its entry; nothing to adopt") {
			t.Fatalf("adopt again: %q, %v", out, err)
		}
		// Adopted, its rows are held to the adoption.
		sqlitetest.Tamper(t, tenantFile, `UPDATE agents SET sponsor = 'usr_mallory' WHERE id = '`+old+`'`)
		if out, err := verifyLog(); err == nil || !strings.Contains(out, "agent "+old+" is stored with another name or sponsor than entry 4 registered") {
			t.Fatalf("its sponsor changed: %q, %v", out, err)
		}
		sqlitetest.Tamper(t, tenantFile, `UPDATE agents SET sponsor = 'usr_s', status = 'active' WHERE id = '`+old+`'`)
		if out, err := verifyLog(); err == nil || !strings.Contains(out, "agent "+old+" is active, but entry 5 suspended it") {
			t.Fatalf("reinstated: %q, %v", out, err)
		}
		// A key naming no entry beside an agent that names one, which no
		// entry introduced, is refused.
		sqlitetest.Tamper(t, tenantFile, `UPDATE agents SET status = 'suspended' WHERE id = '`+old+`'`,
			`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
			SELECT tenant_id, agent_id, 'planted', json_set(public_jwk, '$.kid', 'planted'), 'active', created_at FROM agent_keys WHERE kid = 'old-key'`)
		if out, err := verifyLog(); err == nil || !strings.Contains(out, "key planted of agent "+old+" names no entry") {
			t.Fatalf("a key planted beside its keys: %q, %v", out, err)
		}
		if out, err := adopt(); err != nil || !strings.Contains(out, "acme: refused: key planted of agent "+old+" names no entry, and no entry introduced it") || strings.Contains(out, "would bind") {
			t.Fatalf("adopt beside a planted key: %q, %v", out, err)
		}
		// Gone from the store, with the keys the log introduced.
		sqlitetest.Tamper(t, tenantFile, `DELETE FROM agent_keys WHERE agent_id = '`+old+`'`, `DELETE FROM agents WHERE id = '`+old+`'`)
		if out, err := verifyLog(); err == nil || !strings.Contains(out, "agent "+old+" was registered by entry 4, but the store no longer holds it") {
			t.Fatalf("deleted: %q, %v", out, err)
		}
	})
	t.Run("an agent suspended before it was adopted, made active", func(t *testing.T) {
		const old = "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa"
		run, _, tenantFile, _, dir := setup(t)
		sqlitetest.Plant(t, tenantFile,
			`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
			SELECT tenant_id, '`+old+`', 'old', sponsor, 'low', 'active', created_at, updated_at FROM agents`)
		run(runAgent, "suspend", "--tenant", "acme", old) // entry 3
		sqlitetest.Tamper(t, tenantFile, `UPDATE agents SET status = 'active' WHERE id = '`+old+`'`)
		if out, err := adoptIn(ctx, dir)(); err != nil || !strings.Contains(out, "acme: refused: agent "+old+" is active, but entry 3 suspended it") || strings.Contains(out, "would bind") {
			t.Fatalf("listed: %q, %v", out, err)
		}
	})
	t.Run("a registered agent made to name no entry", func(t *testing.T) {
		// Unbound in the file, made safer and given a key of the writer's:
		// adopt holds it to its registration, and binds it to its entries
		// only once its rows say what they say, appending none.
		_, verifyLog, tenantFile, agentID, dir := setup(t)
		adopt := adoptIn(ctx, dir)
		sqlitetest.Tamper(t, tenantFile, `UPDATE agents SET ledger_index = NULL, risk_tier = 'low'`, `UPDATE agent_keys SET ledger_index = NULL`,
			`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
			SELECT tenant_id, agent_id, 'writers', json_set(public_jwk, '$.kid', 'writers'), 'active', created_at FROM agent_keys LIMIT 1`)
		for _, tc := range []struct{ stmt, want string }{
			{"", "agent " + agentID + " is stored low, safer than entry 0 registered it (high)"},
			{`UPDATE agents SET risk_tier = 'high'`, "key writers of agent " + agentID + " names no entry, and no entry introduced it, though entry 0 registered the agent"},
			{`DELETE FROM agent_keys WHERE kid = 'writers'`, ""},
		} {
			if tc.stmt != "" {
				sqlitetest.Tamper(t, tenantFile, tc.stmt)
			}
			out, err := adopt()
			switch {
			case err != nil:
				t.Fatalf("%q: %v", tc.stmt, err)
			case tc.want != "" && (!strings.Contains(out, "acme: refused: "+tc.want) || strings.Contains(out, "would bind")):
				t.Fatalf("%q: %q, want refused: %s", tc.stmt, out, tc.want)
			case tc.want == "":
				if !strings.Contains(out, "would bind agent "+agentID+` name="payer" sponsor="usr_s" risk_tier=high status=active, to entry 0, which registered it`) ||
					!strings.Contains(out, ", to entry 0, which introduced it") || !strings.Contains(out, ", to entry 1, which introduced it") {
					t.Fatalf("listed: %q", out)
				}
				if out, err := adopt("--confirm", listingDigest(t, out)); err != nil || !strings.Contains(out, "acme: bound agent "+agentID) {
					t.Fatalf("adopted: %q, %v", out, err)
				}
			}
		}
		if out, err := verifyLog(); err != nil || !strings.Contains(out, "acme: OK: 3 entries") {
			t.Fatalf("bound to its own entries: %q, %v", out, err)
		}
	})
	t.Run("a rotation an older build logged", func(t *testing.T) {
		// Before d87bb85 a rotation's record did not list the keys it
		// retired; it retired every other active key all the same.
		_, verifyLog, _, agentID, dir := setup(t)
		backend, l := openServeLedger(t, ctx, dir)
		defer backend.Close()
		defer l.Close()
		ref, err := backend.ResolveAgent(ctx, agentID)
		if err != nil {
			t.Fatal(err)
		}
		kid, public, _, err := identity.GenerateAgentKey()
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := json.Marshal(map[string]any{"event": "agent_key_rotated", "agent_id": agentID, "key_id": kid, "public_jwk": json.RawMessage(public)})
		_, err = l.AppendAllAndChange(ctx, l.TenantLog(ref.ID, ref.Slug), []ledger.Entry{{Kind: identity.KindAgentKeyRotated, Subject: agentID, Record: rec}},
			func(ctx context.Context, tx store.TenantTx, index uint64) error {
				keys, err := tx.Agents().Keys(ctx, agentID)
				if err != nil {
					return err
				}
				if _, err := tx.Agents().AddKey(ctx, store.AgentKey{AgentID: agentID, KID: kid, PublicJWK: public, LedgerIndex: &index}); err != nil {
					return err
				}
				for _, k := range keys {
					if k.Status == store.KeyActive {
						if err := tx.Agents().RetireKey(ctx, agentID, k.KID, time.Time{}); err != nil {
							return err
						}
					}
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		backend.Close()
		if out, err := verifyLog(); err != nil || !strings.Contains(out, "acme: OK: 4 entries") {
			t.Fatalf("%q, %v", out, err)
		}
	})
	t.Run("keys of a registered agent made to name no entry", func(t *testing.T) {
		// The agent still names its registration: its keys are bound to
		// the entries that introduced them, all or none, and a key no
		// entry introduced is refused.
		_, verifyLog, tenantFile, agentID, dir := setup(t)
		adopt := adoptIn(ctx, dir)
		sqlitetest.Tamper(t, tenantFile, `UPDATE agent_keys SET ledger_index = NULL`,
			`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
			SELECT tenant_id, agent_id, 'writers', json_set(public_jwk, '$.kid', 'writers'), 'active', created_at FROM agent_keys LIMIT 1`)
		// Beside another agent's row, which is adopted all the same: the
		// refusal binds the agent's keys none, and fails the confirmation.
		sqlitetest.Plant(t, tenantFile, `INSERT INTO counterparties (tenant_id, id, name, status, created_at, updated_at)
			SELECT tenant_id, 'cp_aaaaaaaaaaaaaaaaaaaaaaaaaa', 'Old Vendor', 'new', created_at, updated_at FROM counterparties`)
		out, err := adopt()
		if err != nil || !strings.Contains(out, "acme: refused: key writers of agent "+agentID+" names no entry, and no entry introduced it") ||
			strings.Contains(out, "would bind keys") || !strings.Contains(out, "would bind counterparty cp_aaaaaaaaaaaaaaaaaaaaaaaaaa") {
			t.Fatalf("beside a key no entry introduced: %q, %v", out, err)
		}
		if out, err := adopt("--confirm", listingDigest(t, out)); err == nil || !strings.Contains(out, "acme: bound counterparty cp_aaaaaaaaaaaaaaaaaaaaaaaaaa") ||
			strings.Contains(out, "bound keys") || !strings.Contains(out, "acme: refused: key writers") {
			t.Fatalf("confirmed beside a refusal: %q, %v", out, err)
		}
		sqlitetest.Tamper(t, tenantFile, `DELETE FROM agent_keys WHERE kid = 'writers'`)
		out, err = adopt()
		if err != nil || !strings.Contains(out, "acme: would bind keys of agent "+agentID) ||
			!strings.Contains(out, ", to entry 0, which introduced it") || !strings.Contains(out, ", to entry 1, which introduced it") {
			t.Fatalf("listed: %q, %v", out, err)
		}
		if out, err := adopt("--confirm", listingDigest(t, out)); err != nil || !strings.Contains(out, "acme: bound keys of agent "+agentID) {
			t.Fatalf("bound: %q, %v", out, err)
		}
		if out, err := verifyLog(); err != nil || !strings.Contains(out, "acme: OK: 4 entries") {
			t.Fatalf("bound to their own entries: %q, %v", out, err)
		}
	})
	t.Run("rows no build could have stored", func(t *testing.T) {
		// Refused, quoted, never listed to bind: their entries would fail
		// verify, and a key no agent could register verifies nothing.
		// A JWK's own spaces and line breaks are not printed: they could
		// hide the line that lists it (found by review).
		_, _, tenantFile, _, dir := setup(t)
		sqlitetest.Plant(t, tenantFile, `PRAGMA ignore_check_constraints = ON`,
			`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
			SELECT tenant_id, 'agt_bbbbbbbbbbbbbbbbbbbbbbbbbb', 'bogus', sponsor, 'bogus', 'active', created_at, updated_at FROM agents`,
			`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
			SELECT tenant_id, 'agt_cccccccccccccccccccccccccc', 'spaced', sponsor, 'low', 'active', created_at, updated_at FROM agents WHERE name = 'payer'`,
			`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
			SELECT tenant_id, 'agt_cccccccccccccccccccccccccc', 'bad kid', public_jwk, 'active', created_at FROM agent_keys LIMIT 1`,
			`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
			SELECT tenant_id, 'agt_dddddddddddddddddddddddddd', 'hidden', sponsor, 'low', 'active', created_at, updated_at FROM agents WHERE name = 'payer'`,
			`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
			SELECT tenant_id, 'agt_dddddddddddddddddddddddddd', 'hidden-key', '{'||char(13)||'                '||char(13)||substr(json_set(public_jwk, '$.kid', 'hidden-key'), 2), 'active', created_at FROM agent_keys LIMIT 1`,
			`INSERT INTO counterparties (tenant_id, id, name, status, created_at, updated_at)
			SELECT tenant_id, 'cp_aaaaaaaaaaaaaaaaaaaaaaaaaa', 'Old Vendor', 'trusted', created_at, updated_at FROM counterparties`,
			// Active under another kid than its JWK's own: refused. Retired,
			// it verifies nothing whatever it holds: adopted.
			`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
			SELECT tenant_id, 'agt_eeeeeeeeeeeeeeeeeeeeeeeeee', 'other kid', sponsor, 'low', 'active', created_at, updated_at FROM agents WHERE name = 'payer'`,
			`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
			SELECT tenant_id, 'agt_eeeeeeeeeeeeeeeeeeeeeeeeee', 'other-kid', public_jwk, 'active', created_at FROM agent_keys LIMIT 1`,
			`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
			SELECT tenant_id, 'agt_ffffffffffffffffffffffffff', 'retired kid', sponsor, 'low', 'active', created_at, updated_at FROM agents WHERE name = 'payer'`,
			`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at, retired_at)
			SELECT tenant_id, 'agt_ffffffffffffffffffffffffff', 'other-kid', public_jwk, 'retired', created_at, created_at FROM agent_keys LIMIT 1`,
			`PRAGMA ignore_check_constraints = OFF`)
		var out, errOut bytes.Buffer
		if err := runLedger(ctx, []string{"adopt", "--tenant", "acme", "--data-dir", dir}, &out, &errOut, envOf(nil)); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			`acme: refused: agent "agt_bbbbbbbbbbbbbbbbbbbbbbbbbb": invalid argument: risk tier must be`,
			`acme: refused: agent agt_cccccccccccccccccccccccccc: key "bad kid" of agent agt_cccccccccccccccccccccccccc: invalid argument: key id`,
			`acme: refused: counterparty "cp_aaaaaaaaaaaaaaaaaaaaaaaaaa": invalid argument: `,
			`acme: would bind agent agt_dddddddddddddddddddddddddd name="hidden"`,
			`acme: refused: agent agt_eeeeeeeeeeeeeeeeeeeeeeeeee: key "other-kid" of agent agt_eeeeeeeeeeeeeeeeeeeeeeeeee: invalid agent key: the key's kid is not the one it is registered under`,
			`acme: would bind agent agt_ffffffffffffffffffffffffff name="retired kid"`,
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("listing %q\nwants %q", out.String(), want)
			}
		}
		if strings.Contains(out.String(), "\r") || strings.Count(out.String(), "would bind") != 2 {
			t.Errorf("listing %q: a carriage return, or rows listed to bind that are refused", out.String())
		}
	})
	t.Run("a log never begun", func(t *testing.T) {
		// No entry and no key: read as empty, as verify reads it; the
		// adoption begins it.
		dir, acme, tenantFile, _ := acmeDataDir(t)
		var list, errList bytes.Buffer
		if err := runAgent(ctx, []string{"list", "--tenant", "acme", "--data-dir", dir}, &list, &errList, envOf(nil)); err != nil {
			t.Fatalf("agent list (opens the organization's file): %v %s", err, errList.String())
		}
		sqlitetest.Plant(t, tenantFile, `INSERT INTO counterparties (tenant_id, id, name, status, created_at, updated_at)
			VALUES ('`+acme.ID+`', 'cp_aaaaaaaaaaaaaaaaaaaaaaaaaa', 'Old Vendor', 'verified', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')`)
		adopt := adoptIn(ctx, dir)
		out, err := adopt()
		if err != nil || !strings.Contains(out, "would bind counterparty cp_aaaaaaaaaaaaaaaaaaaaaaaaaa") {
			t.Fatalf("listed: %q, %v", out, err)
		}
		if out, err := adopt("--confirm", listingDigest(t, out)); err != nil || !strings.Contains(out, "acme: bound counterparty") {
			t.Fatalf("adopted: %q, %v", out, err)
		}
		var vout, errOut bytes.Buffer
		if err := runLedger(ctx, []string{"verify", "--data-dir", dir, "--tenant", "acme"}, &vout, &errOut, envOf(nil)); err != nil || !strings.Contains(vout.String(), "acme: OK: 1 entries") {
			t.Fatalf("verify: %q, %v", vout.String(), err)
		}
	})
	// Nothing unblocks a counterparty the log recorded blocked (found by
	// review: an adopted blocked counterparty made new passed).
	t.Run("a blocked counterparty from before, unblocked", func(t *testing.T) {
		_, verifyLog, tenantFile, _, dir := setup(t)
		adopt := adoptIn(ctx, dir)
		const old = "cp_aaaaaaaaaaaaaaaaaaaaaaaaaa"
		sqlitetest.Plant(t, tenantFile, `INSERT INTO counterparties (tenant_id, id, name, status, created_at, updated_at)
			SELECT tenant_id, '`+old+`', 'Old Vendor', 'blocked', created_at, updated_at FROM counterparties`)
		listed, err := adopt()
		if err != nil || !strings.Contains(listed, `status=blocked`) {
			t.Fatalf("listed: %q, %v", listed, err)
		}
		if out, err := adopt("--confirm", listingDigest(t, listed)); err != nil || !strings.Contains(out, "acme: bound counterparty "+old) {
			t.Fatalf("adopted: %q, %v", out, err)
		}
		if out, err := verifyLog(); err != nil || !strings.Contains(out, "acme: OK: 4 entries") {
			t.Fatalf("adopted: %q, %v", out, err)
		}
		for _, status := range []string{"new", "verified"} {
			sqlitetest.Tamper(t, tenantFile, `UPDATE counterparties SET status = '`+status+`' WHERE id = '`+old+`'`)
			if out, err := verifyLog(); err == nil || !strings.Contains(out, "counterparty "+old+" is "+status+", but entry 3 recorded it blocked") {
				t.Fatalf("made %s: %q, %v", status, out, err)
			}
		}
	})
	t.Run("a counterparty from before they were logged", func(t *testing.T) {
		_, verifyLog, tenantFile, _, dir := setup(t)
		adopt := adoptIn(ctx, dir)
		const old = "cp_aaaaaaaaaaaaaaaaaaaaaaaaaa"
		sqlitetest.Plant(t, tenantFile, `INSERT INTO counterparties (tenant_id, id, name, status, created_at, updated_at)
			SELECT tenant_id, '`+old+`', 'Old Vendor', 'verified', created_at, updated_at FROM counterparties`)
		if out, err := verifyLog(); err == nil || !strings.Contains(out, "counterparty "+old+" names no entry: planted, or stored before counterparties were logged and not adopted since") {
			t.Fatalf("unadopted: %q, %v", out, err)
		}
		listed, err := adopt()
		if err != nil || !strings.Contains(listed, `acme: would bind counterparty `+old+` name="Old Vendor" status=verified bank_details_sealed_sha256=none, to a new counterparty.adopted entry`) {
			t.Fatalf("listed: %q, %v", listed, err)
		}
		if out, err := adopt("--confirm", listingDigest(t, listed)); err != nil || !strings.Contains(out, "acme: bound counterparty "+old) {
			t.Fatalf("adopted: %q, %v", out, err)
		}
		if out, err := verifyLog(); err != nil || !strings.Contains(out, "acme: OK: 4 entries") {
			t.Fatalf("adopted: %q, %v", out, err)
		}
		sqlitetest.Tamper(t, tenantFile, `UPDATE counterparties SET bank_details_sealed = X'00' WHERE id = '`+old+`'`)
		if out, err := verifyLog(); err == nil || !strings.Contains(out, "counterparty "+old+" is stored with other bank details than entry 3 recorded") {
			t.Fatalf("its bank details changed: %q, %v", out, err)
		}
		// One the log recorded, made to name no entry: bound to it again,
		// once its row says what it says.
		sqlitetest.Tamper(t, tenantFile, `UPDATE counterparties SET bank_details_sealed = NULL WHERE id = '`+old+`'`,
			`UPDATE counterparties SET ledger_index = NULL, status = 'verified' WHERE id <> '`+old+`'`)
		if out, err := adopt(); err != nil || !strings.Contains(out, "is verified, but entry 2 recorded it new") || strings.Contains(out, "would bind") {
			t.Fatalf("made verified: %q, %v", out, err)
		}
		sqlitetest.Tamper(t, tenantFile, `UPDATE counterparties SET status = 'new', name = 'Mallory Ltd' WHERE id <> '`+old+`'`)
		if out, err := adopt(); err != nil || !strings.Contains(out, "is stored with another name than entry 2 recorded") || strings.Contains(out, "would bind") {
			t.Fatalf("renamed: %q, %v", out, err)
		}
		sqlitetest.Tamper(t, tenantFile, `UPDATE counterparties SET name = 'Vendor' WHERE id <> '`+old+`'`)
		listed, err = adopt()
		if err != nil || !strings.Contains(listed, "status=new bank_details_sealed_sha256=none, to entry 2, which recorded it") {
			t.Fatalf("listed: %q, %v", listed, err)
		}
		if out, err := adopt("--confirm", listingDigest(t, listed)); err != nil || !strings.Contains(out, "acme: bound counterparty") {
			t.Fatalf("bound again: %q, %v", out, err)
		}
		if out, err := verifyLog(); err != nil || !strings.Contains(out, "acme: OK: 4 entries") {
			t.Fatalf("bound again: %q, %v", out, err)
		}
	})
}
