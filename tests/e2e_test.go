// Package tests holds end-to-end tests: the real binary on real ports,
// against the embedded store and a real PostgreSQL.
package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
)

// binDir holds the binary built once for the package.
var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain only owns the temporary directory; it returns m.Run's result
// rather than exiting (only cmd/agentsigna exits).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agentsigna-e2e")
	if err == nil {
		binDir = dir
		defer os.RemoveAll(dir)
	}
	m.Run()
}

// agentsigna builds the real binary (with the race detector) once.
func agentsigna(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir == "" {
			buildErr = fmt.Errorf("no temporary directory")
			return
		}
		binPath = filepath.Join(binDir, "agentsigna")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, "../cmd/agentsigna").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build agentsigna: %v", buildErr)
	}
	return binPath
}

// proc is a running `agentsigna serve`.
type proc struct {
	cmd         *exec.Cmd
	tenantURL   string
	platformURL string
	mu          sync.Mutex
	logs        bytes.Buffer
	done        chan struct{}
	waitErr     error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs the binary with args plus fresh loopback ports and waits
// until both planes answer /healthz.
func startServe(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startServeAt(t, env, freeAddr(t), args...)
}

// startServeAt is startServe with the tenant plane on ta.
func startServeAt(t *testing.T, env []string, ta string, args ...string) *proc {
	t.Helper()
	pa := freeAddr(t)
	args = append([]string{"serve", "--tenant-addr", ta, "--platform-addr", pa, "--log-format", "json"}, args...)
	p := &proc{cmd: exec.Command(agentsigna(t), args...), tenantURL: "http://" + ta, platformURL: "http://" + pa, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("agentsigna logs:\n%s", p.Logs())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for _, u := range []string{p.tenantURL, p.platformURL} {
		for {
			resp, err := http.Get(u + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			select {
			case <-p.done:
				t.Fatalf("agentsigna exited early: %v\n%s", p.waitErr, p.Logs())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("agentsigna did not become healthy at %s\n%s", u, p.Logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return p
}

func (p *proc) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("agentsigna did not stop within 30s of SIGTERM")
	}
	if p.waitErr != nil {
		t.Fatalf("agentsigna exited with %v\n%s", p.waitErr, p.Logs())
	}
	if !strings.Contains(p.Logs(), `"msg":"stopped"`) {
		t.Fatalf("no clean-stop log line:\n%s", p.Logs())
	}
}

var boundaryHeaders = map[string]string{
	"Content-Security-Policy":      "default-src 'none'",
	"X-Content-Type-Options":       "nosniff",
	"Referrer-Policy":              "no-referrer",
	"X-Frame-Options":              "DENY",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
	"Permissions-Policy":           "camera=()",
	"Cache-Control":                "no-store",
}

func checkBoundary(t *testing.T, resp *http.Response) {
	t.Helper()
	for h, want := range boundaryHeaders {
		if got := resp.Header.Get(h); !strings.Contains(got, want) {
			t.Errorf("%s %s: %s = %q, want it to contain %q", resp.Request.Method, resp.Request.URL.Path, h, got, want)
		}
	}
	for _, h := range []string{"Server", "X-Powered-By", "Strict-Transport-Security"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("%s: unexpected %s: %q", resp.Request.URL.Path, h, v)
		}
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("%s: no X-Request-Id", resp.Request.URL.Path)
	}
}

func checkPlanes(t *testing.T, p *proc) {
	t.Helper()
	for _, base := range []string{p.tenantURL, p.platformURL} {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s/readyz = %d", base, resp.StatusCode)
		}
		checkBoundary(t, resp)

		resp, err = http.Get(base + "/no/such/path")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkBoundary(t, resp)
		if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("unknown path: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var prob map[string]any
		if err := json.Unmarshal(body, &prob); err != nil || prob["status"] != float64(404) || prob["type"] == "" || prob["title"] == "" {
			t.Errorf("unknown path body: %s (%v)", body, err)
		}
	}
}

func TestServeEmbedded(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	p := startServe(t, nil, "--data-dir", dataDir)
	checkPlanes(t, p)
	p.stop(t)

	if n := strings.Count(p.Logs(), "generated a new master key"); n != 1 {
		t.Errorf("first run logged the new master key %d times", n)
	}
	for _, f := range []string{"master.key", "platform.db"} {
		fi, err := os.Stat(filepath.Join(dataDir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v; want mode 0600", f, fi, err)
		}
	}
	key, _ := os.ReadFile(filepath.Join(dataDir, "master.key"))
	if k := strings.TrimSpace(string(key)); k == "" || strings.Contains(p.Logs(), k) {
		t.Error("master key is empty or appears in the logs")
	}

	// Second run: same key, no new-key message.
	p = startServe(t, nil, "--data-dir", dataDir)
	p.stop(t)
	if strings.Contains(p.Logs(), "generated a new master key") {
		t.Error("second run generated another master key")
	}
	again, _ := os.ReadFile(filepath.Join(dataDir, "master.key"))
	if !bytes.Equal(key, again) {
		t.Error("master key changed between runs")
	}
}

func TestServeFlagsFromEnvironment(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "envdata")
	p := startServe(t, []string{"AGENTSIGNA_DATA_DIR=" + dataDir})
	p.stop(t)
	if _, err := os.Stat(filepath.Join(dataDir, "platform.db")); err != nil {
		t.Fatalf("AGENTSIGNA_DATA_DIR ignored: %v", err)
	}
}

func runBinary(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	_, code, stderr := runBinaryOut(t, env, args...)
	return code, stderr
}

// runBinaryOut is runBinary with what the command printed on stdout too.
func runBinaryOut(t *testing.T, env []string, args ...string) (stdout string, code int, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentsigna(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code, errOut.String()
}

func TestServeRefusesPlainHTTPBeyondLoopback(t *testing.T) {
	dir := t.TempDir()
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "example.com:0"} {
		code, stderr := runBinary(t, nil, "serve", "--data-dir", dir, "--tenant-addr", addr)
		if code == 0 || !strings.Contains(stderr, "refusing plain HTTP") {
			t.Errorf("--tenant-addr %s: exit %d, %q", addr, code, stderr)
		}
		if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
			t.Errorf("error is not one line: %q", stderr)
		}
	}
	code, stderr := runBinary(t, nil, "serve", "--data-dir", dir, "--tls-cert", "only-cert.pem")
	if code != 2 || !strings.Contains(stderr, "--tls-key") {
		t.Errorf("cert without key: exit %d, %q", code, stderr)
	}
}

func TestServeJustifiedPlainHTTP(t *testing.T) {
	// 0.0.0.0 is bound but the test only talks to loopback.
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	ta := "0.0.0.0:" + port
	cmd := exec.Command(agentsigna(t), "serve", "--data-dir", t.TempDir(), "--tenant-addr", ta, "--platform-addr", freeAddr(t),
		"--insecure-http-justification", "lab network behind a TLS proxy")
	if logs := serveUntilHealthy(t, cmd, "http://127.0.0.1:"+port+"/healthz"); !strings.Contains(logs, "lab network behind a TLS proxy") {
		t.Errorf("justification not logged:\n%s", logs)
	}
}

// serveUntilHealthy runs cmd, a serve, until healthURL answers, then stops
// it with SIGTERM and returns what it wrote to standard error.
func serveUntilHealthy(t *testing.T, cmd *exec.Cmd, healthURL string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(healthURL)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("not serving: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	return stderr.String()
}

// serve sizes each plane's connections to its descriptor limit: under a
// limit of 2,048, a quarter (1,024 at least) is kept for the rest, and the
// planes get 512 each.
func TestServeSizesConnectionsToTheDescriptorLimit(t *testing.T) {
	ta := freeAddr(t)
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n 2048 && exec "$0" "$@"`, agentsigna(t),
		"serve", "--data-dir", t.TempDir(), "--tenant-addr", ta, "--platform-addr", freeAddr(t), "--log-format", "json")
	logs := serveUntilHealthy(t, cmd, "http://"+ta+"/healthz")
	if !strings.Contains(logs, `"msg":"connections per plane sized to the descriptor limit","descriptor_limit":2048,"max_connections":512`) {
		t.Errorf("no sizing in the log:\n%s", logs)
	}
}

func TestCommandLineErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		code int
		want string
	}{
		{[]string{"bogus"}, nil, 2, "unknown command"},
		{[]string{}, nil, 2, "a command is required"},
		{[]string{"serve", "--no-such-flag"}, nil, 2, "no-such-flag"},
		{[]string{"serve", "--log-level", "loud"}, nil, 2, "--log-level"},
		{[]string{"serve", "--data-dir", "x", "extra"}, nil, 2, "unexpected argument"},
		{[]string{"serve", "--database-url", "postgres://u:hunter2@127.0.0.1:1/x"}, nil, 2, "--platform-database-url"},
		{[]string{"migrate", "--database-url", "postgres://u:hunter2@127.0.0.1:1/x"}, nil, 2, "--owner-database-url"},
		{[]string{"serve", "--demo", "--database-url", "postgres://u:hunter2@127.0.0.1:1/x", "--platform-database-url", "postgres://p@127.0.0.1:1/x"}, nil, 2, "embedded store only"},
		{[]string{"serve", "--data-dir", "x"}, []string{"AGENTSIGNA_SHUTDOWN_TIMEOUT=soon"}, 2, "AGENTSIGNA_SHUTDOWN_TIMEOUT"},
	} {
		code, stderr := runBinary(t, tc.env, tc.args...)
		// DESIGN §5: anything but success prints one line.
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d, one line mentioning %q", tc.args, code, stderr, tc.code, tc.want)
		}
		if strings.Contains(stderr, "hunter2") {
			t.Errorf("%v: password in error output: %q", tc.args, stderr)
		}
	}
}

func TestServePostgres(t *testing.T) {
	db := pgtest.NewEmpty(t)
	key := "AGENTSIGNA_MASTER_KEY=" + "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=" // base64 of 32 test bytes
	common := []string{"--database-url", db.TenantURL, "--platform-database-url", db.PlatformURL, "--role-prefix", strings.TrimSuffix(db.Roles.Owner, "_owner")}

	// Without migration the app roles refuse to serve a schema-less database.
	code, stderr := runBinary(t, []string{key}, append([]string{"serve"}, common...)...)
	if code != 1 || !strings.Contains(stderr, "migrate") {
		t.Fatalf("serve before migrate: exit %d, %q", code, stderr)
	}
	// No master key: PostgreSQL never generates one.
	code, stderr = runBinary(t, nil, append([]string{"serve", "--owner-database-url", db.AdminURL}, common...)...)
	if code != 1 || !strings.Contains(stderr, "master key") {
		t.Fatalf("serve without a master key: exit %d, %q", code, stderr)
	}
	// migrate binds the organizations' rows to the master key: it needs it.
	migrate := []string{"migrate", "--owner-database-url", db.AdminURL, "--role-prefix", strings.TrimSuffix(db.Roles.Owner, "_owner")}
	code, stderr = runBinary(t, nil, migrate...)
	if code != 1 || !strings.Contains(stderr, "master key") {
		t.Fatalf("migrate without a master key: exit %d, %q", code, stderr)
	}
	code, stderr = runBinary(t, []string{key}, migrate...)
	if code != 0 {
		t.Fatalf("migrate: exit %d, %q", code, stderr)
	}
	p := startServe(t, []string{key}, common...)
	checkPlanes(t, p)
	p.stop(t)
	for _, secret := range []string{db.TenantURL, db.PlatformURL, "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="} {
		if strings.Contains(p.Logs(), secret) {
			t.Errorf("a secret reached the logs")
		}
	}

	// migrate bound the organizations' rows to its master key: a service
	// or migration with another key stops, rather than serving
	// organizations whose rows it cannot reach, and so does a command with
	// none.
	other := "AGENTSIGNA_MASTER_KEY=" + "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=" // base64 of 32 other test bytes
	code, stderr = runBinary(t, []string{other}, append([]string{"serve"}, common...)...)
	if code != 1 || !strings.Contains(stderr, "master key is not the one") {
		t.Fatalf("serve with another master key: exit %d, %q", code, stderr)
	}
	code, stderr = runBinary(t, []string{other}, migrate...)
	if code != 1 || !strings.Contains(stderr, "master key is not the one") {
		t.Fatalf("migrate with another master key: exit %d, %q", code, stderr)
	}
	code, stderr = runBinary(t, nil, append([]string{"org", "list"}, common...)...)
	if code != 1 || !strings.Contains(stderr, "master key") {
		t.Fatalf("org list without a master key: exit %d, %q", code, stderr)
	}
	if out, code, stderr := runBinaryOut(t, []string{key}, append([]string{"org", "list"}, common...)...); code != 0 {
		t.Fatalf("org list with the master key: exit %d, %q %q", code, out, stderr)
	}

	// A superuser URL as the app role is refused: it would bypass row security.
	code, stderr = runBinary(t, []string{key}, "serve", "--database-url", db.AdminURL, "--platform-database-url", db.PlatformURL)
	if code != 1 || !strings.Contains(stderr, "superuser") {
		t.Fatalf("serve as superuser: exit %d, %q", code, stderr)
	}
}
