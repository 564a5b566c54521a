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

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/latency"
	"github.com/agentsigna/agentsigna/ledger"
)

func TestPprofLoopbackOnly(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, addr := range []string{"0.0.0.0:0", ":0", "example.com:0"} {
		if _, err := servePprof(context.Background(), addr, log); !errors.Is(err, errUsage) {
			t.Errorf("--pprof-addr %s: %v, want a usage error", addr, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	stages, appends := decision.NewStages(), ledger.NewStages()
	stages.Stage(decision.StageTotal).Observe(3 * time.Millisecond)
	addr, err := servePprof(ctx, "127.0.0.1:0", log, stages, appends)
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
	// The stage histograms, in the Prometheus text format.
	code, body := get("/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	decided, err := latency.ReadText(strings.NewReader(body), "agentsigna_decision_stage_seconds", "stage")
	if err != nil {
		t.Fatal(err)
	}
	appended, err := latency.ReadText(strings.NewReader(body), "agentsigna_ledger_append_seconds", "stage")
	if err != nil {
		t.Fatal(err)
	}
	if len(decided) != 6 || decided[decision.StageTotal].Count() != 1 || decided[decision.StageLedger].Count() != 0 ||
		len(appended) != 2 || appended[ledger.StageCommit].Count() != 0 {
		t.Fatalf("metrics: decisions %v, appends %v", decided, appended)
	}
	// DNS rebinding: a page's own name pointed at 127.0.0.1.
	for _, host := range []string{"attacker.example", "attacker.example:6060", "10.0.0.1:6060", "127.0.0.1.nip.example"} {
		for _, path := range []string{"/debug/pprof/symbol", "/metrics"} {
			if code, _ := get(path, host); code != http.StatusForbidden {
				t.Errorf("%s with Host %q: %d, want 403", path, host, code)
			}
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
