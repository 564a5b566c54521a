package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
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
	url := "http://" + addr.String() + "/debug/pprof/cmdline"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("pprof cmdline: %d %q", resp.StatusCode, body)
	}
	// Nothing else is served there.
	if resp, err := http.Get("http://" + addr.String() + "/v1/decisions"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a plane path on the pprof listener: %v %v", resp, err)
	}
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
