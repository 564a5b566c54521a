package ledger_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/postgres"
	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
)

// The child side of TestCrashSafety: appends under load and prints every
// acknowledgement until it is killed. It does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	if os.Getenv("AGENTSIGNA_CRASH_CHILD") == "" {
		t.Skip("runs only as TestCrashSafety's child process")
	}
	ctx := context.Background()
	var backend store.Backend
	var err error
	if dir := os.Getenv("CRASH_DATA_DIR"); dir != "" {
		backend, err = sqlite.Open(ctx, sqlite.Config{DataDir: dir})
	} else {
		key, kerr := hex.DecodeString(os.Getenv("CRASH_TENANT_KEY"))
		if kerr != nil {
			t.Fatal(kerr)
		}
		backend, err = postgres.Open(ctx, postgres.Config{TenantURL: os.Getenv("CRASH_TENANT_URL"), PlatformURL: os.Getenv("CRASH_PLATFORM_URL"), TenantKey: key})
	}
	if err != nil {
		t.Fatal(err)
	}
	master, err := secrets.ParseMasterKey(os.Getenv("CRASH_MASTER_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	kr, _ := signing.NewKeyring(master)
	l, err := ledger.New(ledger.Config{Tenants: backend, Platform: backend, Keys: kr, Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	lg := l.TenantLog(os.Getenv("CRASH_TENANT"), "acme")
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				a, err := l.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: fmt.Sprintf("%d-%d", g, i), Record: []byte(fmt.Sprint(i))})
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					return // the parent sees too few acknowledgements
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %d %s %d %s\n", a.Index, base64.StdEncoding.EncodeToString(a.LeafHash),
					a.Checkpoint.Size, base64.StdEncoding.EncodeToString(a.Checkpoint.Root))
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

type ack struct {
	index    uint64
	leafHash string
	size     uint64
	root     string
}

// SIGKILL a process while it appends under load; after a restart every
// acknowledged entry is there, the log verifies, and the next checkpoint is
// consistent with the last one published before the crash.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			raw := make([]byte, 32)
			_, _ = rand.Read(raw)
			keyB64 := base64.StdEncoding.EncodeToString(raw)
			master, err := secrets.ParseMasterKey(keyB64)
			if err != nil {
				t.Fatal(err)
			}
			env := []string{"AGENTSIGNA_CRASH_CHILD=1", "CRASH_MASTER_KEY=" + keyB64}
			var open func() store.Backend
			switch kind {
			case "sqlite":
				dir := t.TempDir()
				env = append(env, "CRASH_DATA_DIR="+dir)
				open = func() store.Backend {
					s, err := sqlite.Open(ctx, sqlite.Config{DataDir: dir})
					if err != nil {
						t.Fatal(err)
					}
					return s
				}
			case "postgres":
				db := pgtest.New(t)
				env = append(env, "CRASH_TENANT_URL="+db.TenantURL, "CRASH_PLATFORM_URL="+db.PlatformURL, "CRASH_TENANT_KEY="+hex.EncodeToString(db.TenantKey))
				open = func() store.Backend {
					s, err := postgres.Open(ctx, db.Config())
					if err != nil {
						t.Fatal(err)
					}
					return s
				}
			}
			b := open()
			tenant := storetest.CreateTenant(t, b, "acme")
			b.Close()
			env = append(env, "CRASH_TENANT="+tenant.ID)

			acks := runAndKill(t, env, 3000)

			b = open()
			defer b.Close()
			kr, _ := signing.NewKeyring(master)
			l, err := ledger.New(ledger.Config{Tenants: b, Platform: b, Keys: kr, Origin: origin})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			lg := l.TenantLog(tenant.ID, "acme")
			rep, err := l.Check(ctx, lg, "")
			if err != nil || rep.Problem != nil {
				t.Fatalf("log after the crash: %v, %v", rep.Problem, err)
			}
			var last ack
			for _, a := range acks {
				e, err := l.Entry(ctx, lg, a.index)
				if err != nil {
					t.Fatalf("acknowledged entry %d lost: %v", a.index, err)
				}
				if base64.StdEncoding.EncodeToString(e.LeafHash) != a.leafHash {
					t.Fatalf("acknowledged entry %d changed", a.index)
				}
				if a.size > last.size {
					last = a
				}
			}
			if rep.Size < last.size {
				t.Fatalf("log size %d after the crash, below the published %d", rep.Size, last.size)
			}
			next, err := l.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: "after the crash"})
			if err != nil {
				t.Fatal(err)
			}
			c, err := l.ConsistencyProof(ctx, lg, last.size, next.Checkpoint.Size)
			if err != nil {
				t.Fatal(err)
			}
			oldRoot, _ := base64.StdEncoding.DecodeString(last.root)
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, last.size, next.Checkpoint.Size, c.Hashes, oldRoot, next.Checkpoint.Root); err != nil {
				t.Fatalf("checkpoint %d after the crash is not consistent with %d published before: %v", next.Checkpoint.Size, last.size, err)
			}
			t.Logf("%s: %d acknowledged before SIGKILL, log at %d after restart", kind, len(acks), rep.Size)
		})
	}
}

// runAndKill starts the child and SIGKILLs it after n acknowledgements.
func runAndKill(t *testing.T, env []string, n int) []ack {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()
	var acks []ack
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 5 || f[0] != "ack" {
			continue
		}
		idx, _ := strconv.ParseUint(f[1], 10, 64)
		size, _ := strconv.ParseUint(f[3], 10, 64)
		acks = append(acks, ack{idx, f[2], size, f[4]})
		if len(acks) == n {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	_ = cmd.Wait()
	if len(acks) < n {
		t.Fatalf("child stopped after %d acknowledgements: %s", len(acks), stderr.String())
	}
	return acks
}
