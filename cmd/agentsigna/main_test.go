package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/bundles"
)

// TestMain lets this test binary be a policy worker, as main lets the
// binary be one: the policy commands run in these tests compile and
// evaluate in workers that start this executable.
func TestMain(m *testing.M) {
	if !bundles.IsWorker() {
		os.Exit(m.Run())
	}
	if err := bundles.ServeWorker(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func envOf(m map[string]string) env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFlagsFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"default", nil, nil, "./agentsigna-data"},
		{"environment", nil, map[string]string{"AGENTSIGNA_DATA_DIR": "/env"}, "/env"},
		{"flag beats environment", []string{"--data-dir", "/flag"}, map[string]string{"AGENTSIGNA_DATA_DIR": "/env"}, "/flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFlagSet("test", &bytes.Buffer{})
			var sf storeFlags
			sf.register(fs)
			if err := parse(fs, tc.args, envOf(tc.env)); err != nil {
				t.Fatal(err)
			}
			if sf.dataDir != tc.want {
				t.Fatalf("data dir = %q, want %q", sf.dataDir, tc.want)
			}
		})
	}
}

func TestBadEnvironmentValueDoesNotEchoIt(t *testing.T) {
	fs := newFlagSet("test", &bytes.Buffer{})
	var on bool
	fs.BoolVar(&on, "verbose", false, "")
	err := parse(fs, nil, envOf(map[string]string{"AGENTSIGNA_VERBOSE": "s3cret-value"}))
	if !errors.Is(err, errUsage) || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "AGENTSIGNA_VERBOSE") {
		t.Fatalf("err = %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true,
		"127.1.2.3:80":   true,
		"[::1]:8080":     true,
		"localhost:8080": true,
		"0.0.0.0:8080":   false,
		":8080":          false,
		"[::]:8080":      false,
		"10.0.0.1:8080":  false,
		"example.com:80": false,
	} {
		got, err := isLoopback(addr)
		if err != nil || got != want {
			t.Errorf("isLoopback(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
	if _, err := isLoopback("no-port"); err == nil {
		t.Error("address without a port accepted")
	}
}

// A listener whose name (say, localhost in a hosts file) led it to another
// interface is refused and closed; one on a loopback IP is kept.
func TestBoundToLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := boundToLoopback(ln); err != nil {
		t.Fatalf("127.0.0.1: %v", err)
	}
	for _, ip := range []string{"192.0.2.10", "0.0.0.0", "::", "2001:db8::1"} {
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fake := &boundElsewhere{Listener: inner, addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 8080}}
		if err := boundToLoopback(fake); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("%s: %v", ip, err)
		}
		if _, err := inner.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s: the listener was left open (%v)", ip, err)
		}
	}
}

// boundElsewhere is a listener that says it listens on addr.
type boundElsewhere struct {
	net.Listener
	addr net.Addr
}

func (b *boundElsewhere) Addr() net.Addr { return b.addr }

// Exit status 0 is success (help included); anything else prints one
// line a person understands, on standard error (DESIGN §5): no flag
// list, no usage block, no "usage: usage:".
func TestExitStatus(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		args []string
		code int
		says string // in the one line; "" for help
	}{
		{nil, 2, "a command is required"},
		{[]string{"help"}, 0, ""},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"serve", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"serve", "--help"}, 0, ""},
		{[]string{"serve", "--agent-decisions-per-second", "-1"}, 2, "--agent-decisions-per-second must be a positive number, or 0 for no bound"},
		{[]string{"serve", "--agent-decisions-per-second", "NaN"}, 2, "--agent-decisions-per-second must be"},
		{[]string{"serve", "--agent-decisions-per-second", "+Inf"}, 2, "--agent-decisions-per-second must be"},
		{[]string{"serve", "--agent-decision-burst", "0"}, 2, "--agent-decision-burst must be from 1 to 1000000000"},
		{[]string{"serve", "--agent-decision-burst", "1000000001"}, 2, "--agent-decision-burst must be from 1 to 1000000000"},
		{[]string{"serve", "--agent-decisions-per-second", "0", "--agent-decision-burst", "-1"}, 2, "--agent-decision-burst must be from 1 to"},
		{[]string{"serve", "--agent-tokens-per-minute", "1e-323"}, 2, "--agent-tokens-per-minute is too small to be a rate"},
		{[]string{"serve", "--agent-tokens-per-minute", "-0.5"}, 2, "--agent-tokens-per-minute must be a positive number, or 0 for no bound"},
		{[]string{"serve", "--max-connections-per-address", "-1"}, 2, "--max-connections-per-address must not be negative"},
		{[]string{"serve", "--max-connections", "-1"}, 2, "--max-connections must not be negative"},
		{[]string{"serve", "--agent-token-burst", "0"}, 2, "--agent-token-burst must be from 1 to 1000000000"},
		{[]string{"serve", "--agent-reads-per-second", "-2"}, 2, "--agent-reads-per-second must be a positive number, or 0 for no bound"},
		{[]string{"serve", "--agent-read-burst", "0"}, 2, "--agent-read-burst must be from 1 to 1000000000"},
		{[]string{"agent"}, 2, "agent needs a subcommand: register, suspend, rotate-key, list or assertion"},
		{[]string{"agent", "suspend", "--bogus"}, 2, "-bogus"},
		{[]string{"counterparty"}, 2, "counterparty needs a subcommand"},
		{[]string{"verify"}, 2, "verify needs a subcommand"},
		{[]string{"verify", "receipt"}, 2, "want exactly one RECEIPT"},
		{[]string{"audit", "verify"}, 2, "want exactly one EXPORT file"},
		{[]string{"ledger"}, 2, "agentsigna ledger: usage: agentsigna ledger verify"},
		{[]string{"keys"}, 2, "agentsigna keys: usage: agentsigna keys rotate"},
		{[]string{"keys", "--help"}, 0, ""},
		{[]string{"org", "--help"}, 0, ""},
		{[]string{"org"}, 2, "agentsigna org: usage: agentsigna org create"},
		{[]string{"policy"}, 2, "policy needs a subcommand"},
		{[]string{"policy", "--help"}, 0, ""},
		{[]string{"policy", "check", "--compile-timeout", "0s", "../../policies/examples/acme"}, 2, "--compile-timeout must be a positive duration"},
		{[]string{"policy", "check", "--compile-timeout", "-1s", "../../policies/examples/acme"}, 2, "--compile-timeout must be a positive duration"},
		{[]string{"agent", "--help"}, 0, ""},
		{[]string{"agent", "list", "--tenant", "acme", "--data-dir", missing}, 2, "no embedded store at"},
		{[]string{"verify", "inclusion", missing, "--log-key", "k", "--leaf-hash", "x"}, 2, "--log-key is neither a note verifier key nor a file"},
	} {
		var stdout, stderr bytes.Buffer
		got := run(ctx, tc.args, &stdout, &stderr, envOf(nil))
		if got != tc.code {
			t.Errorf("run(%v) = %d, want %d (stderr %q)", tc.args, got, tc.code, stderr.String())
		}
		if tc.says == "" {
			if !strings.Contains(stderr.String(), "usage") {
				t.Errorf("run(%v): help printed %q", tc.args, stderr.String())
			}
			continue
		}
		if lines := strings.Count(stderr.String(), "\n"); lines != 1 || !strings.Contains(stderr.String(), tc.says) || strings.Contains(stderr.String(), "usage: usage") {
			t.Errorf("run(%v): stderr %q, want one line saying %q", tc.args, stderr.String(), tc.says)
		}
	}
}

// Without --public-url (or its environment twin), the tenant plane is
// announced where it listens when that is a loopback address with a fixed
// port; otherwise the flag's default or the given URL stands.
func TestDefaultPublicURL(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		tls  bool
		want string
	}{
		{"default address", nil, nil, false, "http://127.0.0.1:8080"},
		{"moved on loopback", []string{"--tenant-addr", "127.0.0.1:18180"}, nil, false, "http://127.0.0.1:18180"},
		{"moved, with TLS", []string{"--tenant-addr", "localhost:8443"}, nil, true, "https://localhost:8443"},
		{"given on the command line", []string{"--tenant-addr", "127.0.0.1:18180", "--public-url", "https://agentsigna.example"}, nil, false, "https://agentsigna.example"},
		{"given in the environment", []string{"--tenant-addr", "127.0.0.1:18180"}, map[string]string{"AGENTSIGNA_PUBLIC_URL": "https://agentsigna.example"}, false, "https://agentsigna.example"},
		{"all interfaces", []string{"--tenant-addr", "0.0.0.0:18180"}, nil, false, "http://127.0.0.1:8080"},
		{"a port chosen at listen", []string{"--tenant-addr", "127.0.0.1:0"}, nil, false, "http://127.0.0.1:8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFlagSet("serve", io.Discard)
			var f serveFlags
			f.ledger.register(fs)
			fs.StringVar(&f.tenantAddr, "tenant-addr", "127.0.0.1:8080", "")
			if err := parse(fs, tc.args, envOf(tc.env)); err != nil {
				t.Fatal(err)
			}
			defaultPublicURL(fs, &f, tc.tls)
			if f.ledger.publicURL != tc.want {
				t.Errorf("public URL %q, want %q", f.ledger.publicURL, tc.want)
			}
		})
	}
}
