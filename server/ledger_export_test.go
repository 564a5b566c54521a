package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
	"github.com/agentsigna/agentsigna/server"
)

// An export is streamed (chunked, no Content-Length) over a real
// connection, and verifies. When the store fails part-way, after the 200
// went out, the client's read fails: the connection drops without the
// chunked body's end, so no HTTP client takes the archive for a whole one.
func TestExportStreamsOverHTTP(t *testing.T) {
	fe := &failingEntries{}
	e := newLedgerEnvOver(t, testLogAccess, func(s store.Backend) store.TenantStore {
		return &storetest.EntriesThrough{Backend: s, Through: fe.through}
	})
	l := e.ledger
	lg := l.TenantLog(e.acme.ID, e.acme.Slug)
	// More than one read's worth (1024 entries; their bytes are far below
	// a read's 16 MiB bound), of records gzip cannot shrink: the first
	// read's part of the archive is sent before the second read.
	const n = 1100
	for from := 0; from < n; from += 550 {
		var es []ledger.Entry
		for i := from; i < from+550; i++ {
			r := make([]byte, 150)
			_, _ = rand.Read(r)
			es = append(es, ledger.Entry{Kind: "test", Subject: fmt.Sprint(i), Record: []byte(fmt.Sprintf(`{"r":"%x"}`, r))})
		}
		if _, err := l.AppendAll(context.Background(), lg, es); err != nil {
			t.Fatal(err)
		}
	}
	vkey, err := l.VerifierKey(context.Background(), lg)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, e.planes.Tenant)
	// A connection each: Go retries a GET whose reused connection closed
	// before any response arrived.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() (*http.Response, []byte, error) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/ledger/export", nil)
		req.Header.Set("X-Test-Tenant", "acme")
		resp, err := client.Do(req)
		if err != nil {
			return &http.Response{}, nil, err // no response at all
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}

	beforeGet := fe.calls.Load()
	resp, body, err := get()
	// A GET reads the entries twice: the sizing pass, then to send them.
	perPass := (fe.calls.Load() - beforeGet) / 2
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("export: %d, length %d, transfer encoding %v, %v", resp.StatusCode, resp.ContentLength, resp.TransferEncoding, err)
	}
	if rep, err := verify.VerifyExport(bytes.NewReader(body), vkey, verify.ExportOptions{}); err != nil || rep.To != n {
		t.Fatalf("the streamed export: %+v, %v", rep, err)
	}

	// HEAD answers the headers a GET would, refusals included, and sends
	// no archive: the entries are read for the sizing pass only, not again
	// to send them.
	before := fe.calls.Load()
	req, _ := http.NewRequest(http.MethodHead, "http://"+addr+"/v1/ledger/export", nil)
	req.Header.Set("X-Test-Tenant", "acme")
	head, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if perPass < 2 || head.StatusCode != 200 || head.Header.Get("Content-Type") != "application/gzip" || fe.calls.Load()-before != perPass {
		t.Fatalf("HEAD: %d %q, %d reads of the entries, want 200 application/gzip and the sizing pass's %d", head.StatusCode, head.Header.Get("Content-Type"), fe.calls.Load()-before, perPass)
	}
	req, _ = http.NewRequest(http.MethodHead, "http://"+addr+"/v1/ledger/export?to=999999", nil)
	req.Header.Set("X-Test-Tenant", "acme")
	if head, err = client.Do(req); err != nil || head.StatusCode != 404 {
		t.Fatalf("HEAD of an export to a size never signed: %v, %v", head, err)
	}
	head.Body.Close()

	// The sizing pass reads the entries in perPass reads, as does the pass
	// that sends them; its last read fails, after the first ones' part of
	// the archive went out.
	fe.failAt.Store(fe.calls.Load() + 2*perPass)
	resp, body, err = get()
	if resp.StatusCode != 200 || err == nil || len(body) < 64<<10 {
		t.Fatalf("an export whose store failed part-way: %d, %d bytes, read error %v; want the read to fail", resp.StatusCode, len(body), err)
	}

	// Making the archive counts against the connection's write deadline
	// (it is made while sent), so an export gets longer than the plane's
	// WriteTimeout: here 300 ms, while the pass that sends it reads for
	// 150 ms a read, perPass reads, and compresses besides.
	fe.failAt.Store(0)
	fe.delay.Store(int64(150 * time.Millisecond))
	slow := e.newPlanes(t, server.Config{WriteTimeout: 300 * time.Millisecond})
	addr = serve(t, slow.Tenant)
	resp, body, err = get()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("an export slower than the WriteTimeout: %d, %v", resp.StatusCode, err)
	}
	if rep, err := verify.VerifyExport(bytes.NewReader(body), vkey, verify.ExportOptions{}); err != nil || rep.To != n {
		t.Fatalf("an export slower than the WriteTimeout: %+v, %v", rep, err)
	}

	// ExportTimeout is the export's bound: one shorter than the export
	// cuts it (or, when the sizing pass already outlasts it, refuses it):
	// it is never delivered whole.
	short := e.newPlanes(t, server.Config{WriteTimeout: time.Minute, ExportTimeout: 450 * time.Millisecond})
	addr = serve(t, short.Tenant)
	resp, body, err = get()
	fe.delay.Store(0)
	if err == nil && resp.StatusCode != 503 {
		t.Fatalf("an export slower than its ExportTimeout: %d, %d bytes, no error; want it cut (a read error) or refused (503)", resp.StatusCode, len(body))
	}
	// The pass that sizes the archive counts against it too: one whose
	// sizing alone outlasts ExportTimeout is refused before any byte.
	fe.delay.Store(int64(300 * time.Millisecond))
	sizing := e.newPlanes(t, server.Config{WriteTimeout: time.Minute, ExportTimeout: 400 * time.Millisecond})
	addr = serve(t, sizing.Tenant)
	resp, body, _ = get()
	fe.delay.Store(0)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "did not finish within its time") {
		t.Fatalf("an export whose sizing outlasts its ExportTimeout: %d %.200s; want 503", resp.StatusCode, body)
	}

	// A client that stops reading is dropped after WriteTimeout without
	// progress, not held until ExportTimeout. Small socket buffers on both
	// ends, so that the archive cannot all wait in them.
	logs := &syncBuffer{}
	stalled := e.newPlanes(t, server.Config{Logger: slog.New(slog.NewJSONHandler(logs, nil)), WriteTimeout: 200 * time.Millisecond, ExportTimeout: time.Minute})
	addr = serveOn(t, stalled.Tenant, smallSendBuffers{listen(t)})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "GET /v1/ledger/export HTTP/1.1\r\nHost: test\r\nX-Test-Tenant: acme\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The server gives up by itself while nothing is read.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "ledger export not delivered"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("an export whose client stopped reading was still being sent after 50 times the WriteTimeout")
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body, err = io.ReadAll(resp.Body); err == nil {
		t.Fatalf("an export whose client stopped reading: %d bytes and no error; want the connection dropped", len(body))
	}
}

// smallSendBuffers gives every connection it accepts a small send buffer.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// failingEntries fails the failAt-th read of ledger entries and those
// after it (0: none), and makes each read take delay.
type failingEntries struct {
	calls, failAt atomic.Int64
	delay         atomic.Int64
}

func (f *failingEntries) through(es []store.LedgerEntry, err error) ([]store.LedgerEntry, error) {
	time.Sleep(time.Duration(f.delay.Load()))
	if n, at := f.calls.Add(1), f.failAt.Load(); at > 0 && n >= at {
		return nil, fmt.Errorf("%w: the disk is gone", store.ErrUnavailable)
	}
	return es, err
}
