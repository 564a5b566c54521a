package server_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/agentsigna/agentsigna/server"
)

func TestNewValidatesConfig(t *testing.T) {
	ok := func(context.Context) error { return nil }
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name string
		cfg  server.Config
	}{
		{"no logger", server.Config{TenantReady: ok, PlatformReady: ok}},
		{"no tenant readiness", server.Config{Logger: logger, PlatformReady: ok}},
		{"no platform readiness", server.Config{Logger: logger, TenantReady: ok}},
		{"negative body limit", server.Config{Logger: logger, TenantReady: ok, PlatformReady: ok, BodyLimit: -1}},
		{"negative timeout", server.Config{Logger: logger, TenantReady: ok, PlatformReady: ok, WriteTimeout: -time.Second}},
		{"negative export timeout", server.Config{Logger: logger, TenantReady: ok, PlatformReady: ok, ExportTimeout: -time.Second}},
		{"negative connections", server.Config{Logger: logger, TenantReady: ok, PlatformReady: ok, MaxConnections: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := server.New(tc.cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	env := newEnv(t)
	for _, p := range env.bothPlanes() {
		cfg := p.App().Config()
		if cfg.BodyLimit != server.DefaultBodyLimit || cfg.ReadTimeout != server.DefaultReadTimeout ||
			cfg.WriteTimeout != server.DefaultWriteTimeout || cfg.IdleTimeout != server.DefaultIdleTimeout {
			t.Errorf("%s: defaults not applied: %+v", p.Name(), cfg)
		}
		if !cfg.StrictRouting || !cfg.CaseSensitive || cfg.ServerHeader != "" || cfg.ProxyHeader != "" ||
			cfg.EnableTrustedProxyCheck || !cfg.DisableStartupMessage || cfg.DisableDefaultContentType ||
			!cfg.DisablePreParseMultipartForm || cfg.StreamRequestBody {
			t.Errorf("%s: fiber config not locked down", p.Name())
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	env := newEnv(t)
	for _, p := range env.bothPlanes() {
		resp, body := do(t, p.App(), get("/healthz"))
		if resp.StatusCode != 200 || string(body) != `{"status":"ok"}` || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s /healthz: %d %q %s", p.Name(), resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		resp, body = do(t, p.App(), get("/readyz"))
		if resp.StatusCode != 200 || string(body) != `{"status":"ready"}` {
			t.Errorf("%s /readyz: %d %s", p.Name(), resp.StatusCode, body)
		}
	}

	env.notReady.Store(true)
	for _, p := range env.bothPlanes() {
		resp, body := do(t, p.App(), get("/readyz"))
		pr := assertProblem(t, resp, body, 503, "unavailable")
		if strings.Contains(string(body), "10.1.2.3") || strings.Contains(string(body), "db-secret-host") {
			t.Errorf("%s: readiness error leaked: %s", p.Name(), body)
		}
		if !strings.Contains(env.logs.String(), "db-secret-host") {
			t.Errorf("%s: readiness error not logged", p.Name())
		}
		if len(env.logs.lines(t, pr.RequestID)) == 0 {
			t.Errorf("%s: readiness failure not logged with the request id", p.Name())
		}
		// Liveness does not depend on readiness.
		if resp, _ := do(t, p.App(), get("/healthz")); resp.StatusCode != 200 {
			t.Errorf("%s /healthz while not ready: %d", p.Name(), resp.StatusCode)
		}
	}
}

func TestPlanesShareNoRoutes(t *testing.T) {
	env := newEnv(t)
	env.planes.Tenant.App().Get("/v1/tenant-only", func(c *fiber.Ctx) error { return c.SendString("tenant") })
	if resp, _ := do(t, env.planes.Tenant.App(), get("/v1/tenant-only")); resp.StatusCode != 200 {
		t.Fatalf("tenant: %d", resp.StatusCode)
	}
	resp, body := do(t, env.planes.Platform.App(), get("/v1/tenant-only"))
	assertProblem(t, resp, body, 404, "not-found")
	if env.planes.Tenant.App() == env.planes.Platform.App() {
		t.Fatal("both planes are the same app")
	}
}

// TestShutdownLetsInFlightRequestsFinish: a request in a handler when
// Shutdown starts still gets its response; new connections are refused.
func TestShutdownLetsInFlightRequestsFinish(t *testing.T) {
	env := newEnv(t)
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	env.planes.Tenant.App().Get("/slow", func(c *fiber.Ctx) error {
		close(started)
		<-release
		finished.Store(true)
		return c.SendString("done")
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- env.planes.Tenant.Serve(ln) }()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	type result struct {
		status int
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := client.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		resp.Body.Close()
		got <- result{status: resp.StatusCode}
	}()
	<-started

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- env.planes.Shutdown(ctx)
	}()
	// Wait until the listener is closed, then let the handler finish.
	for {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			break
		}
		conn.Close()
		time.Sleep(5 * time.Millisecond)
	}
	close(release)

	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !finished.Load() {
		t.Fatal("Shutdown returned before the in-flight handler finished")
	}
	if r := <-got; r.err != nil || r.status != 200 {
		t.Fatalf("in-flight request: %+v", r)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestMaxConnections: a plane holds at most MaxConnections connections
// open at once; the next is not served (not even a refusal, which would
// bypass the boundary) until one closes, and then it is.
func TestMaxConnections(t *testing.T) {
	env := newEnv(t, func(c *server.Config) { c.MaxConnections = 2 })
	addr := serve(t, env.planes.Tenant)
	// ask sends a request on a new connection, which the answer keeps
	// open (keep-alive) and counted.
	ask := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		return conn, bufio.NewReader(conn)
	}
	answer := func(conn net.Conn, r *bufio.Reader, within time.Duration) (*http.Response, error) {
		if err := conn.SetReadDeadline(time.Now().Add(within)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	first, r := ask()
	if resp, err := answer(first, r, 5*time.Second); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first connection: %v %v", resp, err)
	}
	second, r := ask()
	if resp, err := answer(second, r, 5*time.Second); err != nil || resp.StatusCode != 200 {
		t.Fatalf("second connection: %v %v", resp, err)
	}
	third, r := ask()
	if resp, err := answer(third, r, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third connection answered while two are open: %v %v", resp, err)
	}
	first.Close()
	if resp, err := answer(third, r, 5*time.Second); err != nil || resp.StatusCode != 200 {
		t.Fatalf("third connection, once the first closed: %v %v", resp, err)
	}
}
