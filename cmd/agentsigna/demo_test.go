package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
)

// demoCredentialsPath refuses, before anything is seeded, a demo path that
// is not a directory of ours alone: a file or a symlink where the
// directory goes. (A credentials file already there: the e2e test.)
func TestDemoCredentialsPathRefuses(t *testing.T) {
	t.Run("a file where the directory goes", func(t *testing.T) {
		data := t.TempDir()
		if err := os.WriteFile(filepath.Join(data, "demo"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := demoCredentialsPath(data); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("err = %v, want 'not a directory'", err)
		}
	})
	t.Run("a symlink to a directory elsewhere", func(t *testing.T) {
		data, elsewhere := t.TempDir(), t.TempDir()
		if err := os.Symlink(elsewhere, filepath.Join(data, "demo")); err != nil {
			t.Fatal(err)
		}
		if _, err := demoCredentialsPath(data); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("err = %v, want 'not a directory'", err)
		}
	})
	t.Run("another user's directory, 0700", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("giving a directory to another user needs root (chown); CI runs as root")
		}
		data := t.TempDir()
		dir := filepath.Join(data, "demo")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := demoCredentialsPath(data); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Fatalf("err = %v, want the owner named", err)
		}
	})
	t.Run("a directory of its own", func(t *testing.T) {
		data := t.TempDir()
		path, err := demoCredentialsPath(data)
		if err != nil || path != filepath.Join(data, "demo", "credentials.json") {
			t.Fatalf("path %q, %v", path, err)
		}
		if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("demo directory: %v, %v; want 0700", fi, err)
		}
	})
}

// --demo seeds an empty store and only that: a store holding another
// organization, or an acme whose seeding stopped before the credentials
// were written (its agent key lost), is refused, and left as it was.
func TestDemoSeedsOnlyAnEmptyStore(t *testing.T) {
	ctx := context.Background()
	serve := func(ctx context.Context, dir string) error {
		return runServe(ctx, []string{"--data-dir", dir, "--demo", "--log-level", "error",
			"--tenant-addr", "127.0.0.1:0", "--platform-addr", "127.0.0.1:0"}, io.Discard, io.Discard, envOf(nil))
	}
	orgs := func(dir string) string {
		var out bytes.Buffer
		if err := runOrg(ctx, []string{"list", "--data-dir", dir}, &out, io.Discard, envOf(nil)); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	for _, tc := range []struct {
		name, slug, want string
		credsDir         bool // a directory where the credentials go
	}{
		{"another organization", "prod", "seeds an empty store", false},
		{"acme without its credentials", "acme", "stopped part way", false},
		{"acme with a directory for credentials", "acme", "not a regular file", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := runOrg(ctx, []string{"create", "--slug", tc.slug, "--name", "Existing", "--data-dir", dir}, io.Discard, io.Discard, envOf(nil)); err != nil {
				t.Fatal(err)
			}
			if tc.credsDir {
				if err := os.MkdirAll(filepath.Join(dir, "demo", "credentials.json"), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			before := orgs(dir)
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := serve(sctx, dir); err == nil || !strings.Contains(err.Error(), tc.want) || sctx.Err() != nil {
				t.Fatalf("serve --demo: %v, want a refusal saying %q", err, tc.want)
			}
			if after := orgs(dir); after != before {
				t.Errorf("organizations %q, want %q as before", after, before)
			}
			if fi, err := os.Stat(filepath.Join(dir, "demo", "credentials.json")); !errors.Is(err, fs.ErrNotExist) && !(tc.credsDir && fi.IsDir()) {
				t.Errorf("credentials written: %v", err)
			}
		})
	}
}

// A signal during seeding does not cut it part way: the demo seeds to the
// end, credentials included, on a context already cancelled (the next
// --demo start then finds it seeded: TestDemoAgentDecision).
func TestDemoSeedingOutlivesASignal(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	// The store, master key and ledger serve opens, through its own code.
	backend, l := openServeLedger(t, ctx, dir)
	defer backend.Close()
	log := slog.New(slog.DiscardHandler)
	pol := decision.NewPolicies(backend, l, bundles.NewEngine(), decision.PoliciesOptions{})
	cancelled, cancel := context.WithCancel(ctx)
	cancel() // as if SIGTERM came as seeding began
	err := seedDemo(cancelled, backend, l, pol, dir, "http://127.0.0.1:8080", "http://127.0.0.1:8081", log)
	l.Close()
	backend.Close()
	if err != nil {
		t.Fatalf("seedDemo on a cancelled context: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "demo", "credentials.json"))
	var creds demoCredentials
	if err != nil || json.Unmarshal(raw, &creds) != nil || creds.Agent.ID == "" || len(creds.Counterparties) != 2 {
		t.Fatalf("credentials: %v %s", err, raw)
	}

	// An organization made since (the README's local administration) does
	// not make the seeded store one --demo refuses: the next start serves.
	if err := runOrg(ctx, []string{"create", "--slug", "globex", "--name", "Globex", "--data-dir", dir}, io.Discard, io.Discard, envOf(nil)); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	logs := &stopOnLine{line: "listening", stop: stop} // once it serves
	if err := runServe(sctx, []string{"--data-dir", dir, "--demo", "--tenant-addr", "127.0.0.1:0", "--platform-addr", "127.0.0.1:0"}, io.Discard, logs, envOf(nil)); err != nil || !strings.Contains(logs.String(), "not seeding again") {
		t.Fatalf("serve --demo after org create: %v\n%s", err, logs.String())
	}
}

func TestLocalURL(t *testing.T) {
	for _, tc := range []struct {
		addr string
		tls  bool
		want string
	}{
		{"127.0.0.1:8081", false, "http://127.0.0.1:8081"},
		{"127.0.0.1:8081", true, "https://127.0.0.1:8081"},
		{":8081", false, "http://127.0.0.1:8081"},
		{"0.0.0.0:8081", true, "https://127.0.0.1:8081"},
		{"[::]:8081", false, "http://[::1]:8081"},
		{"[::1]:8081", true, "https://[::1]:8081"},
		{"localhost:8081", false, "http://localhost:8081"},
		{"127.0.0.1:0", false, ""},
		{"no-port", false, ""},
	} {
		if got := localURL(tc.addr, tc.tls); got != tc.want {
			t.Errorf("localURL(%q, %v) = %q, want %q", tc.addr, tc.tls, got, tc.want)
		}
	}
}

// stopOnLine collects a server's log and calls stop once it holds line.
type stopOnLine struct {
	bytes.Buffer
	line string
	stop func()
}

func (w *stopOnLine) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if strings.Contains(w.String(), w.line) {
		w.stop()
	}
	return n, err
}
