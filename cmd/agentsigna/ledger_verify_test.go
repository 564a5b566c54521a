package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

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
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, sqlite.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	acme := storetest.CreateTenant(t, s, "acme")
	tenantFile := s.TenantFile(acme.ID)
	s.Close()

	// appendAll appends one batch per record and returns the newest
	// checkpoint, through the ledger `ledger verify` opens.
	appendAll := func(records ...string) []byte {
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
		backend, err := openStore(ctx, &sf, log)
		if err != nil {
			t.Fatal(err)
		}
		defer backend.Close()
		l, err := openLedger(&sf, &lf, backend, envOf(nil), log)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		lg := l.TenantLog(acme.ID, "acme")
		for _, r := range records {
			if _, err := l.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: r, Record: []byte(`{"r":"` + r + `"}`)}); err != nil {
				t.Fatal(err)
			}
		}
		cp, err := l.LatestCheckpoint(ctx, lg)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Note
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
	kept := keep(appendAll("c", "d")) // size 4
	if out, err := verifyLog("--tenant", "acme", "--checkpoint", kept); err != nil || !strings.Contains(out, "acme: OK: 4 entries") {
		t.Fatalf("the log that extends the kept checkpoint: %q, %v", out, err)
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
}
