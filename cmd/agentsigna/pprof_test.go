package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestPprofLoopbackOnly(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, addr := range []string{"0.0.0.0:0", ":0", "example.com:0"} {
		if _, err := servePprof(context.Background(), addr, log); !errors.Is(err, errUsage) {
			t.Errorf("--pprof-addr %s: %v, want a usage error", addr, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr, err := servePprof(ctx, "127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	get := func(path, host string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/debug/pprof/symbol", ""); code != http.StatusOK || body == "" {
		t.Fatalf("pprof symbol: %d %q", code, body)
	}
	if code, body := get("/debug/pprof/", "localhost:6060"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof index as localhost: %d", code)
	}
	// The command line may hold a database password: not served.
	if code, _ := get("/debug/pprof/cmdline", ""); code != http.StatusNotFound {
		t.Fatalf("pprof cmdline: %d, want 404", code)
	}
	// DNS rebinding: a page's own name pointed at 127.0.0.1.
	for _, host := range []string{"attacker.example", "attacker.example:6060", "10.0.0.1:6060", "127.0.0.1.nip.example"} {
		if code, _ := get("/debug/pprof/symbol", host); code != http.StatusForbidden {
			t.Errorf("pprof with Host %q: %d, want 403", host, code)
		}
	}
	// Nothing else is served there.
	if code, _ := get("/v1/decisions", ""); code != http.StatusNotFound {
		t.Fatalf("a plane path on the pprof listener: %d", code)
	}
	url := base + "/debug/pprof/symbol"
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(url)
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("pprof still serving after its context ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
