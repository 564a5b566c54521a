package server_test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/agentsigna/agentsigna/server"
)

// TestHeadersOnEveryStatus sends, to both planes, one request for each kind
// of response the boundary produces, including those Fiber and fasthttp
// answer themselves (404, 405, 413, 501).
func TestHeadersOnEveryStatus(t *testing.T) {
	for _, tls := range []bool{false, true} {
		env := newEnv(t, func(c *server.Config) { c.TLS = tls })
		env.notReady.Store(true)
		for _, plane := range env.bothPlanes() {
			app := plane.App()
			gz := httptest.NewRequest(http.MethodPost, "/echo", strings.NewReader("x"))
			gz.Header.Set("Content-Type", "application/json")
			gz.Header.Set("Content-Encoding", "gzip")
			for _, tc := range []struct {
				name   string
				req    *http.Request
				status int
				slug   string // "" for a success
			}{
				{"200 healthz", get("/healthz"), 200, ""},
				{"200 echo", postJSON("/echo", `{"message":"hi"}`), 200, ""},
				{"404 unknown route", get("/no/such/route"), 404, "not-found"},
				{"404 case-sensitive", get("/HEALTHZ"), 404, "not-found"},
				{"404 strict routing", get("/healthz/"), 404, "not-found"},
				{"405 wrong method", httptest.NewRequest(http.MethodPost, "/healthz", nil), 405, "method-not-allowed"},
				{"415 content type", httptest.NewRequest(http.MethodPost, "/echo", strings.NewReader(`{}`)), 415, "unsupported-media-type"},
				{"415 content encoding", gz, 415, "unsupported-media-type"},
				{"500 error", get("/boom"), 500, "internal"},
				{"500 panic", get("/panic"), 500, "internal"},
				{"503 not ready", get("/readyz"), 503, "unavailable"},
				{"501 unknown method", httptest.NewRequest("PROPFIND", "/healthz", nil), 501, "not-implemented"},
			} {
				t.Run(plane.Name()+"/"+tc.name, func(t *testing.T) {
					resp, body := do(t, app, tc.req)
					if resp.StatusCode != tc.status {
						t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tc.status, body)
					}
					assertBoundaryHeaders(t, resp, tls)
					if tc.slug != "" {
						assertProblem(t, resp, body, tc.status, tc.slug)
					}
				})
			}
			t.Run(plane.Name()+"/413 body over limit", func(t *testing.T) {
				// A fresh env: app.Test and a live listener must not share an app.
				served := newEnv(t, func(c *server.Config) { c.TLS = tls })
				p := served.planes.Tenant
				if plane.Name() == "platform" {
					p = served.planes.Platform
				}
				addr := serve(t, p)
				resp, body := rawDo(t, addr, postJSON("/echo", `{"message":"`+strings.Repeat("a", 70<<10)+`"}`))
				assertBoundaryHeaders(t, resp, tls)
				assertProblem(t, resp, body, 413, "payload-too-large")
				if served.echoCalls.Load() != 0 {
					t.Error("the handler ran")
				}
			})
		}
	}
}

func TestMethodNotAllowedNamesAllowedMethods(t *testing.T) {
	env := newEnv(t)
	resp, _ := do(t, env.planes.Tenant.App(), httptest.NewRequest(http.MethodDelete, "/healthz", nil))
	if resp.StatusCode != 405 || resp.Header.Get("Allow") == "" {
		t.Fatalf("status %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestPortalGetsItsOwnPolicy(t *testing.T) {
	env := newEnv(t)
	app := env.planes.Tenant.App()
	app.Get("/portal/", func(c *fiber.Ctx) error { return c.SendString("<!doctype html>") })
	const portalCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
	const apiCSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
	for _, tc := range []struct {
		path, want string
	}{
		{"/portal/", portalCSP},
		{"/portal/missing.js", portalCSP},
		{"/portal", portalCSP},
		{"/portalx", apiCSP},
		{"/v1/portal/", apiCSP},
		{"/healthz", apiCSP},
	} {
		resp, _ := do(t, app, get(tc.path))
		if got := resp.Header.Get("Content-Security-Policy"); got != tc.want {
			t.Errorf("%s: CSP = %q, want %q", tc.path, got, tc.want)
		}
	}
	// A path that climbs out of the portal gets the portal's policy, but is
	// routed under the portal as well: no document of another route is
	// served under the portal's policy.
	resp, body := do(t, app, get("/portal/../healthz"))
	if resp.StatusCode != 404 || strings.Contains(string(body), "ok") {
		t.Errorf("/portal/../healthz: %d %s, want 404", resp.StatusCode, body)
	}
}

func TestRequestID(t *testing.T) {
	env := newEnv(t)
	seen := map[string]bool{}
	for i := range 100 {
		plane := env.bothPlanes()[i%2]
		resp, _ := do(t, plane.App(), get("/healthz"))
		id := resp.Header.Get("X-Request-Id")
		if !requestIDPattern.MatchString(id) || seen[id] {
			t.Fatalf("request id %q is malformed or repeated", id)
		}
		seen[id] = true
	}

	for _, tc := range []struct {
		name, client string
		logged       bool
	}{
		{"well-formed", "trace-1.abc_DEF", true},
		{"too long", strings.Repeat("a", 65), false},
		{"markup", "<script>alert(1)</script>", false},
		{"spaces", "a b", false},
		{"non-ASCII", "idé", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := get("/healthz")
			req.Header.Set("X-Request-Id", tc.client)
			resp, _ := do(t, env.planes.Tenant.App(), req)
			id := resp.Header.Get("X-Request-Id")
			if id == tc.client || !requestIDPattern.MatchString(id) {
				t.Fatalf("X-Request-Id = %q for client id %q", id, tc.client)
			}
			lines := env.logs.lines(t, id)
			if len(lines) != 1 {
				t.Fatalf("%d log lines for %s", len(lines), id)
			}
			if got, ok := lines[0]["client_request_id"]; ok != tc.logged || (ok && got != tc.client) {
				t.Errorf("client_request_id = %v (present %v), want present %v", got, ok, tc.logged)
			}
		})
	}
}

func TestAccessLogLine(t *testing.T) {
	env := newEnv(t)
	req := postJSON("/echo?token=SECRET-QUERY", `{"message":"SECRET-BODY"}`)
	req.Header.Set("Authorization", "Bearer SECRET-HEADER")
	req.Header.Set("Cookie", "session=SECRET-COOKIE")
	resp, _ := do(t, env.planes.Tenant.App(), req)
	id := resp.Header.Get("X-Request-Id")

	lines := env.logs.lines(t, id)
	if len(lines) != 1 {
		t.Fatalf("want one log line for the request, got %v", lines)
	}
	rec := lines[0]
	for key, want := range map[string]any{"msg": "request", "plane": "tenant", "method": "POST", "route": "/echo", "status": float64(200)} {
		if rec[key] != want {
			t.Errorf("%s = %v, want %v", key, rec[key], want)
		}
	}
	if _, ok := rec["duration"]; !ok {
		t.Error("no duration")
	}
	if logs := env.logs.String(); strings.Contains(logs, "SECRET") {
		t.Errorf("log carries request data:\n%s", logs)
	}

	// An unknown route is logged without its raw path.
	resp, _ = do(t, env.planes.Tenant.App(), get("/v1/secret-path-SECRET"))
	if rec := env.logs.lines(t, resp.Header.Get("X-Request-Id")); len(rec) != 1 || rec[0]["route"] != "" {
		t.Errorf("404 log line = %v", rec)
	}
	if strings.Contains(env.logs.String(), "SECRET") {
		t.Error("raw path logged")
	}
}

// A request fasthttp refuses while reading its headers comes with its
// headers reset, and fasthttp's method then reads GET whatever was sent:
// the access log said GET for a malformed POST (found by review). It
// now logs no method for those; a refusal after the headers, a 413, keeps
// its method.
func TestAccessLogOfUnparsedRequests(t *testing.T) {
	env := newEnv(t)
	addr := serveOn(t, env.planes.Tenant, listen(t))
	for _, tc := range []struct {
		name, req string
		status    int
		slug      string
		method    string
	}{
		{"a length that is no number", "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n", 400, "bad-request", ""},
		{"headers too large", "POST /echo HTTP/1.1\r\nHost: test\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", 431, "request-header-fields-too-large", ""},
		{"a body too large", fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 1<<20), 413, "payload-too-large", "POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := rawSend(t, addr, []byte(tc.req), nil)
			assertProblem(t, resp, b, tc.status, tc.slug)
			lines := env.logs.lines(t, resp.Header.Get("X-Request-Id"))
			if len(lines) != 1 || lines[0]["method"] != tc.method || lines[0]["status"] != float64(tc.status) {
				t.Fatalf("log lines %v, want one with method %q", lines, tc.method)
			}
		})
	}
}

func TestForwardedHeadersNotTrusted(t *testing.T) {
	env := newEnv(t)
	req := get("/ip")
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Real-Ip", "203.0.113.7")
	_, body := do(t, env.planes.Tenant.App(), req)
	if strings.Contains(string(body), "203.0.113.7") {
		t.Fatalf("c.IP() = %s: a forwarded header was trusted", body)
	}
}

func TestContentEncodingRefused(t *testing.T) {
	env := newEnv(t)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write([]byte(`{"message":"hi"}`))
	_ = w.Close()
	var zl bytes.Buffer
	zw := zlib.NewWriter(&zl)
	_, _ = zw.Write([]byte(`{"message":"hi"}`))
	_ = zw.Close()

	for _, tc := range []struct {
		name      string
		encodings []string
		body      []byte
		refused   bool
	}{
		{"gzip", []string{"gzip"}, gz.Bytes(), true},
		{"GZIP upper case", []string{"GZIP"}, gz.Bytes(), true},
		{"x-gzip", []string{"x-gzip"}, gz.Bytes(), true},
		{"deflate", []string{"deflate"}, zl.Bytes(), true},
		{"br", []string{"br"}, []byte{0x1b, 0x0f, 0x00, 0x00}, true},
		{"zstd", []string{"zstd"}, []byte{0x28, 0xb5, 0x2f, 0xfd}, true},
		{"identity then gzip", []string{"identity, gzip"}, gz.Bytes(), true},
		{"gzip then identity", []string{"gzip,identity"}, gz.Bytes(), true},
		{"two header lines", []string{"identity", "gzip"}, gz.Bytes(), true},
		{"unknown coding", []string{"compress"}, []byte("x"), true},
		{"identity", []string{"identity"}, []byte(`{"message":"hi"}`), false},
		{"IDENTITY", []string{" IDENTITY "}, []byte(`{"message":"hi"}`), false},
		{"absent", nil, []byte(`{"message":"hi"}`), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/echo", "/body", "/healthz", "/no-such-route"} {
				env.echoCalls.Store(0)
				env.bodyCalls.Store(0)
				req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header["Content-Encoding"] = tc.encodings
				resp, body := do(t, env.planes.Platform.App(), req)
				if !tc.refused {
					if resp.StatusCode == 415 {
						t.Errorf("%s: refused: %s", path, body)
					}
					continue
				}
				p := assertProblem(t, resp, body, 415, "unsupported-media-type")
				if !strings.Contains(p.Detail, "Content-Encoding") {
					t.Errorf("detail %q does not name Content-Encoding", p.Detail)
				}
				if resp.Header.Get("Accept-Encoding") != "identity" {
					t.Errorf("Accept-Encoding = %q", resp.Header.Get("Accept-Encoding"))
				}
				if env.echoCalls.Load()+env.bodyCalls.Load() != 0 {
					t.Errorf("%s: a handler ran", path)
				}
			}
		})
	}
}

// A header that may appear once (Authorization, Idempotency-Key) is refused
// when repeated, in any case spelling, before any handler runs: read from
// its first line here and its last by a proxy, it would be two requests.
func TestRepeatedSingleHeadersRefused(t *testing.T) {
	env := newEnv(t)
	for _, tc := range []struct {
		name    string
		headers map[string][]string
		refused string
	}{
		{"two Idempotency-Keys", map[string][]string{"Idempotency-Key": {"k1", "k2"}}, "Idempotency-Key"},
		{"the same Idempotency-Key twice", map[string][]string{"Idempotency-Key": {"k1", "k1"}}, "Idempotency-Key"},
		{"Idempotency-Key spelled two ways", map[string][]string{"Idempotency-Key": {"k1"}, "idempotency-key": {"k2"}}, "Idempotency-Key"},
		{"two Authorization lines", map[string][]string{"Authorization": {"Bearer a", "Bearer b"}}, "Authorization"},
		{"one of each", map[string][]string{"Authorization": {"Bearer a"}, "Idempotency-Key": {"k1"}}, ""},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/echo", "/healthz", "/no-such-route"} {
				env.echoCalls.Store(0)
				req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"message":"hi"}`))
				req.Header.Set("Content-Type", "application/json")
				for k, v := range tc.headers {
					req.Header[k] = v // as written: not canonicalized, so both spellings are sent
				}
				resp, body := do(t, env.planes.Platform.App(), req)
				if tc.refused == "" {
					if resp.StatusCode == 400 {
						t.Errorf("%s: refused: %s", path, body)
					}
					continue
				}
				p := assertProblem(t, resp, body, 400, "bad-request")
				if !strings.Contains(p.Detail, "The "+tc.refused+" header appears more than once") {
					t.Errorf("detail %q does not name %s", p.Detail, tc.refused)
				}
				if env.echoCalls.Load() != 0 {
					t.Errorf("%s: a handler ran", path)
				}
			}
		})
	}
}

// Nor may one come as a trailer after a chunked body, where fasthttp's
// Peek finds it too and a proxy that drops trailers does not: alone,
// announced or not, or after one in the header section. Other trailers
// pass.
func TestSingleHeadersAsTrailersRefused(t *testing.T) {
	env := newEnv(t)
	addr := serveOn(t, env.planes.Platform, listen(t))
	body := `{"message":"hi"}`
	for _, tc := range []struct {
		name, header, trailer string
		refused               bool
	}{
		{"an Idempotency-Key and another as a trailer", "Idempotency-Key: k1\r\n", "Idempotency-Key: k2", true},
		{"an Idempotency-Key as a trailer alone", "", "Idempotency-Key: k2", true},
		{"another trailer", "Idempotency-Key: k1\r\n", "X-Checksum: abc", false},
		{"unannounced", "", "Idempotency-Key: k2", true}, // no Trailer header
	} {
		t.Run(tc.name, func(t *testing.T) {
			env.echoCalls.Store(0)
			name, _, _ := strings.Cut(tc.trailer, ":")
			announce := "Trailer: " + name + "\r\n"
			if tc.name == "unannounced" {
				announce = ""
			}
			req := "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n" + tc.header +
				announce + "\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n%s\r\n\r\n", len(body), body, tc.trailer)
			resp, b := rawSend(t, addr, []byte(req), nil)
			if !tc.refused {
				if resp.StatusCode != 200 || env.echoCalls.Load() != 1 {
					t.Fatalf("refused: %d %s", resp.StatusCode, b)
				}
				return
			}
			p := assertProblem(t, resp, b, 400, "bad-request")
			if !strings.Contains(p.Detail, "The Idempotency-Key header may not be sent as a trailer") || env.echoCalls.Load() != 0 {
				t.Fatalf("detail %q; the handler ran %d times", p.Detail, env.echoCalls.Load())
			}
		})
	}
}

// gzipBomb is 10 MiB of zeros, about 10 KiB once gzipped.
func gzipBomb(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := w.Write(make([]byte, 10<<20)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 64<<10 {
		t.Fatalf("bomb is %d bytes, not under the body limit", buf.Len())
	}
	return buf.Bytes()
}

// TestFiberInflatesPastBodyLimit shows the hazard the boundary exists for:
// without it, a handler's c.Body() turns a 10 KiB body into 10 MiB. If this
// test fails, Fiber bounds decompression and the boundary may be revisited.
func TestFiberInflatesPastBodyLimit(t *testing.T) {
	app := fiber.New(fiber.Config{BodyLimit: 64 << 10, DisableStartupMessage: true})
	var inflated int
	app.Post("/body", func(c *fiber.Ctx) error {
		inflated = len(c.Body())
		return nil
	})
	req := httptest.NewRequest(http.MethodPost, "/body", bytes.NewReader(gzipBomb(t)))
	req.Header.Set("Content-Encoding", "gzip")
	if _, err := app.Test(req, 5000); err != nil {
		t.Fatal(err)
	}
	if inflated != 10<<20 {
		t.Fatalf("bare Fiber inflated to %d bytes", inflated)
	}
}

// TestGzipBombRefused: the same bomb through the boundary is refused with
// 415 before any handler runs, and nothing is inflated.
func TestGzipBombRefused(t *testing.T) {
	env := newEnv(t)
	bomb := gzipBomb(t)
	for _, path := range []string{"/body", "/echo", "/no-such-route"} {
		for _, plane := range env.bothPlanes() {
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(bomb))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Content-Encoding", "gzip")

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			resp, body := do(t, plane.App(), req)
			runtime.ReadMemStats(&after)

			assertBoundaryHeaders(t, resp, false)
			assertProblem(t, resp, body, 415, "unsupported-media-type")
			if n := env.bodyCalls.Load() + env.echoCalls.Load(); n != 0 {
				t.Fatalf("%s %s: %d handler calls", plane.Name(), path, n)
			}
			// Inflating would allocate at least 10 MiB.
			if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 4<<20 {
				t.Errorf("%s %s: %d bytes allocated while refusing", plane.Name(), path, allocated)
			}
		}
	}
}
