package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/agentsigna/agentsigna/server"
)

// testEnv is both planes with throwaway routes registered the way later
// handlers will be: thin, returning errors, decoding with DecodeJSON.
type testEnv struct {
	planes   *server.Planes
	logs     *syncBuffer
	notReady atomic.Bool
	// echoCalls and bodyCalls count handler invocations, to prove that a
	// refused request never reached a handler.
	echoCalls atomic.Int64
	bodyCalls atomic.Int64
	// errs are what GET /err/:kind returns.
	errs map[string]error
}

type echoRequest struct {
	Message string `json:"message"`
	Nested  *struct {
		Value int `json:"value"`
	} `json:"nested,omitempty"`
}

func newEnv(t *testing.T, mutate ...func(*server.Config)) *testEnv {
	t.Helper()
	env := &testEnv{logs: &syncBuffer{}, errs: map[string]error{}}
	cfg := server.Config{
		Logger:        slog.New(slog.NewJSONHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		TenantReady:   env.ready,
		PlatformReady: env.ready,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	planes, err := server.New(cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	env.planes = planes
	for _, p := range env.bothPlanes() {
		env.registerRoutes(p.App())
	}
	return env
}

func (e *testEnv) ready(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("readiness check called without a deadline")
	}
	if e.notReady.Load() {
		return errors.New("dial tcp 10.1.2.3:5432: connect: connection refused (host db-secret-host)")
	}
	return nil
}

func (e *testEnv) bothPlanes() []*server.Plane {
	return []*server.Plane{e.planes.Tenant, e.planes.Platform}
}

func (e *testEnv) registerRoutes(app *fiber.App) {
	app.Post("/echo", func(c *fiber.Ctx) error {
		var req echoRequest
		if err := server.DecodeJSON(c, &req); err != nil {
			return err
		}
		e.echoCalls.Add(1)
		return c.JSON(req)
	})
	// /body calls c.Body(), the call that inflates compressed bodies.
	app.Post("/body", func(c *fiber.Ctx) error {
		e.bodyCalls.Add(1)
		return c.SendString(strconv.Itoa(len(c.Body())))
	})
	app.Get("/boom", func(c *fiber.Ctx) error {
		return fmt.Errorf("list cases: %w", errors.New(`pq: relation "secret_table" does not exist (see /etc/passwd)`))
	})
	app.Get("/panic", func(c *fiber.Ctx) error {
		panic("secret panic value /etc/shadow")
	})
	app.Get("/err/:kind", func(c *fiber.Ctx) error {
		if err, ok := e.errs[c.Params("kind")]; ok {
			return err
		}
		return c.SendStatus(http.StatusNoContent)
	})
	app.Get("/ip", func(c *fiber.Ctx) error { return c.SendString(c.IP()) })
}

// do sends req to app with app.Test. req's URL must be path-only: fasthttp
// v1.78 refuses an absolute-form request line from app.Test.
func do(t *testing.T, app *fiber.App, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	if req.URL.IsAbs() || !strings.HasPrefix(req.RequestURI, "/") {
		t.Fatalf("request URI %q is not path-only", req.RequestURI)
	}
	resp, err := app.Test(req, 5000)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.RequestURI, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func get(path string) *http.Request { return httptest.NewRequest(http.MethodGet, path, nil) }

func postJSON(path, body string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// serve runs p on a loopback listener until the test ends.
func serve(t *testing.T, p *server.Plane) string {
	t.Helper()
	return serveOn(t, p, listen(t))
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serveOn serves p on ln until the test ends.
func serveOn(t *testing.T, p *server.Plane, ln net.Listener) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// rawDo writes req on a fresh TCP connection and reads the response, even
// when the server answers before reading the whole body (as for a 413, which
// app.Test reports as an error instead of a response).
func rawDo(t *testing.T, addr string, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	if req.ContentLength > 0 {
		req.Header.Set("Content-Length", strconv.FormatInt(req.ContentLength, 10))
	}
	dump, err := httputil.DumpRequest(req, true)
	if err != nil {
		t.Fatal(err)
	}
	return rawSend(t, addr, dump, req)
}

// rawSend is rawDo of the bytes of a request, which may be one no client
// library would write; req (nil for none) is what the response answers.
func rawSend(t *testing.T, addr string, raw []byte, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() { _, _ = conn.Write(raw) }() // may fail once the server has answered
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

var requestIDPattern = regexp.MustCompile(`^[A-Z2-7]{26}$`)

// boundaryHeaders are the headers every response carries.
var boundaryHeaders = map[string]string{
	"Content-Security-Policy":      "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
	"X-Content-Type-Options":       "nosniff",
	"Referrer-Policy":              "no-referrer",
	"X-Frame-Options":              "DENY",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
	"Permissions-Policy":           "camera=(), microphone=(), geolocation=(), payment=(), usb=(), browsing-topics=()",
	"Cache-Control":                "no-store",
}

func assertBoundaryHeaders(t *testing.T, resp *http.Response, tls bool) {
	t.Helper()
	for name, want := range boundaryHeaders {
		if got := resp.Header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("%d: %s = %q, want %q", resp.StatusCode, name, got, want)
		}
	}
	hsts := resp.Header.Get("Strict-Transport-Security")
	switch {
	case tls && hsts != "max-age=63072000; includeSubDomains":
		t.Errorf("%d: Strict-Transport-Security = %q with TLS", resp.StatusCode, hsts)
	case !tls && hsts != "":
		t.Errorf("%d: Strict-Transport-Security = %q without TLS", resp.StatusCode, hsts)
	}
	for _, name := range []string{"Server", "X-Powered-By"} {
		if v, ok := resp.Header[name]; ok {
			t.Errorf("%d: %s header present: %q", resp.StatusCode, name, v)
		}
	}
	if id := resp.Header.Get("X-Request-Id"); !requestIDPattern.MatchString(id) {
		t.Errorf("%d: X-Request-Id = %q", resp.StatusCode, id)
	}
}

// problem is decoded strictly: an unexpected member fails the test.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
}

func assertProblem(t *testing.T, resp *http.Response, body []byte, status int, slug string) problem {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	var p problem
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %s: %v", body, err)
	}
	if want := "https://agentsigna.dev/problems/" + slug; p.Type != want {
		t.Errorf("type = %q, want %q", p.Type, want)
	}
	if p.Status != status || p.Title == "" || p.Detail == "" {
		t.Errorf("problem %+v: want status %d, a title and a detail", p, status)
	}
	if p.RequestID == "" || p.RequestID != resp.Header.Get("X-Request-Id") {
		t.Errorf("request_id %q differs from X-Request-Id %q", p.RequestID, resp.Header.Get("X-Request-Id"))
	}
	return p
}

// syncBuffer is a log sink shared by server goroutines and the test.
type syncBuffer struct{ server.LockedBuffer }

// lines returns the decoded log records whose request_id is id.
func (b *syncBuffer) lines(t *testing.T, id string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["request_id"] == id {
			out = append(out, rec)
		}
	}
	return out
}
