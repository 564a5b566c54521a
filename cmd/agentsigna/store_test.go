package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
)

// A store whose secrets are sealed under a configured key (serve's
// --master-key-file), and a command run without it: refused, rather than
// making DATA_DIR/master.key and sealing what comes next under that — a
// rotated receipt key serve cannot open, which fails every decision, or
// an organization whose log key nothing else opens. A fresh store may
// still get its key made (TestOrgCreateAndList).
func TestCommandsRefuseToMakeASecondMasterKey(t *testing.T) {
	ctx := context.Background()
	keyDir, dir := t.TempDir(), t.TempDir()
	if _, _, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: keyDir}); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(keyDir, secrets.DefaultKeyFileName)
	run := func(fn subcommand, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := fn(ctx, append(args, "--data-dir", dir), &out, &errOut, envOf(nil))
		return out.String() + errOut.String(), err
	}
	withKey := func(args ...string) []string { return append(args, "--master-key-file", keyFile) }
	if out, err := run(runOrg, withKey("create", "--slug", "acme", "--name", "Acme")...); err != nil {
		t.Fatalf("org create: %q, %v", out, err)
	}
	if out, err := run(runKeys, withKey("rotate", "--tenant", "acme")...); err != nil {
		t.Fatalf("keys rotate: %q, %v", out, err)
	}
	bank := writeFile(t, t.TempDir(), "bank.txt", []byte("IBAN DE89 3704 0044 0532 0130 00"))

	// A store that holds only the platform log's key, sealed under the
	// configured key: what serve leaves before any organization exists.
	fresh := t.TempDir()
	sf := storeFlags{dataDir: fresh, masterKeyFile: keyFile}
	backend, err := openStore(ctx, &sf, envOf(nil), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	l, err := openLedger(ctx, &sf, &ledgerFlags{publicURL: "http://127.0.0.1:8080"}, backend, envOf(nil), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.InitLog(ctx, l.PlatformLog()); err != nil {
		t.Fatal(err)
	}
	l.Close()
	backend.Close()
	var out, errOut bytes.Buffer
	if err := runOrg(ctx, []string{"create", "--slug", "gamma", "--name", "Gamma", "--data-dir", fresh}, &out, &errOut, envOf(nil)); !errors.Is(err, secrets.ErrNoMasterKey) {
		t.Fatalf("org create beside a platform log key and no master key: %v (%s)", err, errOut.String())
	}
	if _, err := os.Stat(filepath.Join(fresh, secrets.DefaultKeyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a second master key was made beside the platform log's key: %v", err)
	}

	for _, tc := range []struct {
		name string
		fn   subcommand
		args []string
	}{
		{"keys rotate", runKeys, []string{"rotate", "--tenant", "acme"}},
		{"org create", runOrg, []string{"create", "--slug", "beta", "--name", "Beta"}},
		{"policy push", runPolicy, []string{"push", "--tenant", "acme", "--by", "usr_author", filepath.Join("..", "..", "policies", "examples", "acme")}},
		{"counterparty add with bank details", runCounterparty, []string{"add", "--tenant", "acme", "--name", "Initech", "--bank-details-file", bank}},
		// A counterparty is logged, and the log key is sealed.
		{"counterparty add", runCounterparty, []string{"add", "--tenant", "acme", "--name", "Initech"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := run(tc.fn, tc.args...); !errors.Is(err, secrets.ErrNoMasterKey) || !strings.Contains(err.Error(), "--master-key-file") {
				t.Fatalf("%q, %v; want a refusal naming the key to give", out, err)
			}
			if _, err := os.Stat(filepath.Join(dir, secrets.DefaultKeyFileName)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a second master key was made: %v", err)
			}
		})
	}
	// Nothing was written by the refused commands: one organization, no
	// counterparty.
	if out, err := run(runOrg, "list"); err != nil || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "acme\t") {
		t.Fatalf("org list: %q, %v", out, err)
	}
	if out, err := run(runCounterparty, "list", "--tenant", "acme"); err != nil || out != "" {
		t.Fatalf("counterparty list: %q, %v", out, err)
	}
	// With the key, the same commands work.
	if out, err := run(runCounterparty, withKey("add", "--tenant", "acme", "--name", "Initech")...); err != nil || !strings.Contains(out, "bank_details=none") {
		t.Fatalf("counterparty add with the key: %q, %v", out, err)
	}
	if out, err := run(runKeys, withKey("rotate", "--tenant", "acme")...); err != nil || !strings.Contains(out, "new receipt key") {
		t.Fatalf("keys rotate with the key: %q, %v", out, err)
	}
}

// org create with the wrong master key fails before the organization
// exists: otherwise it would hold a slug that cannot be taken again, with
// its creation in no log. keys rotate, counterparty add and serve with it
// fail too, having sealed nothing the right key could not open.
func TestWrongMasterKeyCreatesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	other := t.TempDir()
	if _, _, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: other}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := runOrg(ctx, append(args, "--data-dir", dir), &out, &errOut, envOf(nil))
		return out.String(), err
	}
	if out, err := run("create", "--slug", "acme", "--name", "Acme"); err != nil {
		t.Fatalf("create: %q, %v", out, err)
	}
	wrong := filepath.Join(other, secrets.DefaultKeyFileName)
	if out, err := run("create", "--slug", "beta", "--name", "Beta", "--master-key-file", wrong); !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("create with the wrong key: %q, %v", out, err)
	}
	if out, err := run("list"); err != nil || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "acme\t") {
		t.Fatalf("list: %q, %v", out, err)
	}
	// With the right key, beta can still be made.
	if out, err := run("create", "--slug", "beta", "--name", "Beta"); err != nil {
		t.Fatalf("create beta: %q, %v", out, err)
	}

	// Nor is anything sealed for acme under the wrong key: a receipt key
	// (rotate makes acme's first), bank details, or, for the whole store,
	// a server's first keys.
	cmd := func(fn subcommand, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := fn(ctx, append(args, "--data-dir", dir, "--master-key-file", wrong), &out, &errOut, envOf(nil))
		return out.String() + errOut.String(), err
	}
	if out, err := cmd(runKeys, "rotate", "--tenant", "acme"); !errors.Is(err, signing.ErrWrongMasterKey) {
		t.Errorf("keys rotate with the wrong key: %q, %v", out, err)
	}
	bank := writeFile(t, t.TempDir(), "bank.txt", []byte("IBAN DE89 3704 0044 0532 0130 00"))
	if out, err := cmd(runCounterparty, "add", "--tenant", "acme", "--name", "Vendor", "--bank-details-file", bank); !errors.Is(err, signing.ErrWrongMasterKey) {
		t.Errorf("counterparty add with the wrong key: %q, %v", out, err)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var serveOut bytes.Buffer
	err := runServe(sctx, []string{"--data-dir", dir, "--master-key-file", wrong,
		"--tenant-addr", "127.0.0.1:0", "--platform-addr", "127.0.0.1:0"}, &serveOut, &serveOut, envOf(nil))
	if !errors.Is(err, secrets.ErrDecrypt) || sctx.Err() != nil {
		t.Errorf("serve with the wrong key: %v (%s)", err, serveOut.String())
	}
	s, err := sqlite.Open(ctx, sqlite.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var acmeID string
	if err := s.InPlatformReadTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
		ts, err := tx.ListTenants(ctx)
		for _, tn := range ts {
			if tn.Slug == "acme" {
				acmeID = tn.ID
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.InTenantReadTx(ctx, acmeID, func(ctx context.Context, tx store.TenantTx) error {
		receiptKeys, err := tx.Keys().SigningKeys(ctx, store.PurposeReceipt)
		if err != nil {
			return err
		}
		cps, err := tx.Counterparties().List(ctx)
		if len(receiptKeys) != 0 || len(cps) != 0 {
			t.Errorf("acme holds %d receipt keys and %d counterparties, want none", len(receiptKeys), len(cps))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// A command on an organization names an existing store: a mistyped
// --data-dir is refused, and leaves no new, empty store behind.
func TestOrganizationCommandsNeedAnExistingStore(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "agentsigna-dta")
	for _, tc := range []struct {
		name string
		fn   subcommand
		args []string
	}{
		{"agent list", runAgent, []string{"list", "--tenant", "acme"}},
		{"keys rotate", runKeys, []string{"rotate", "--tenant", "acme"}},
		{"counterparty list", runCounterparty, []string{"list", "--tenant", "acme"}},
		{"policy push", runPolicy, []string{"push", "--tenant", "acme", "--by", "usr_author", filepath.Join("..", "..", "policies", "examples", "acme")}},
		{"policy activate", runPolicy, []string{"activate", "--tenant", "acme", "--revision", "r1", "--by", "usr_a", "--approved-by", "usr_b"}},
		{"ledger verify", runLedger, []string{"verify", "--tenant", "acme"}},
		{"org list", runOrg, []string{"list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := tc.fn(context.Background(), append(tc.args, "--data-dir", missing), &out, &errOut, envOf(nil))
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "no embedded store at "+missing) {
				t.Fatalf("%v", err)
			}
			if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a store was made at the mistyped path: %v", err)
			}
		})
	}
}
