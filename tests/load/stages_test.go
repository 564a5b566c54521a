package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/latency"
)

// The harness reads the service's /metrics before and after a window and
// reports the difference, in its order, stages it does not know last; a
// service without them is told apart from one that fails.
func TestStageScrape(t *testing.T) {
	decisions := latency.NewFamily("agentsigna_decision_stage_seconds", "D.", "stage", "total", "read", "novel")
	appends := latency.NewFamily("agentsigna_ledger_append_seconds", "L.", "stage", "queued", "commit")
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" || status != http.StatusOK {
			http.Error(w, "no", status)
			return
		}
		_ = latency.WriteText(w, decisions, appends)
	}))
	defer srv.Close()
	client := newClient(1, 5*time.Second)
	ctx := context.Background()

	decisions.Stage("total").Observe(time.Second) // before the window
	w := startStageWindow(ctx, client, srv.URL, 0)
	<-w.done
	for range 3 {
		decisions.Stage("total").Observe(2 * time.Millisecond)
		decisions.Stage("read").Observe(time.Millisecond)
	}
	appends.Stage("commit").Observe(time.Millisecond)
	stages, err := w.end(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range stages {
		names = append(names, s.Family+" "+s.Name)
	}
	if want := []string{"decision read", "decision total", "decision novel", "ledger append queued", "ledger append commit"}; !slices.Equal(names, want) {
		t.Fatalf("stages %q, want %q", names, want)
	}
	if total := stages[1]; total.Count() != 3 || total.Mean() != 2*time.Millisecond {
		t.Errorf("decision total over the window: %d, mean %v; want 3 of 2ms (the one before excluded)", total.Count(), total.Mean())
	}

	var out strings.Builder
	open := Result{OfferedRate: 100}
	Report{Open: &open, Stages: stages}.printStages(&out)
	rows := map[string][]string{}
	for line := range strings.Lines(out.String()) {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "decision" {
			rows[f[1]] = f[2:]
		}
	}
	if !strings.HasPrefix(out.String(), "where the time went at 100/s") || !strings.Contains(out.String(), "ledger appends per batch: 0.0") ||
		!slices.Equal(rows["total"][:2], []string{"3", "2.00ms"}) || !slices.Equal(rows["read"][:3], []string{"3", "1.00ms", "943µs"}) ||
		!slices.Equal(rows["novel"], []string{"0", "-", "-", "-", "-"}) {
		t.Errorf("printed:\n%s", out.String())
	}

	if s, err := startStageWindow(ctx, client, "", 0).end(ctx); s != nil || err != nil {
		t.Errorf("without a pprof URL: %v, %v", s, err)
	}
	status = http.StatusNotFound
	if _, err := scrapeStages(ctx, client, srv.URL); !errors.Is(err, errNoStages) {
		t.Errorf("a service without /metrics: %v", err)
	}
	// The first reading failed: the window's end says so.
	if s, err := startStageWindow(ctx, client, srv.URL, 0).end(ctx); s != nil || !errors.Is(err, errNoStages) {
		t.Errorf("a window whose first reading failed: %v, %v", s, err)
	}
	out.Reset()
	Report{Open: &open, StagesErr: errNoStages}.Print(&out)
	if !strings.Contains(out.String(), "where the time went: not shown: the service serves no stage histograms") {
		t.Errorf("a failed reading is not reported:\n%s", out.String())
	}
	status = http.StatusInternalServerError
	if _, err := scrapeStages(ctx, client, srv.URL); err == nil || errors.Is(err, errNoStages) {
		t.Errorf("a failing /metrics: %v", err)
	}
	// A restart between the two readings: counts went down.
	before := stageScrape{"agentsigna_decision_stage_seconds": {"total": {Bounds: []float64{1}, Counts: []uint64{9}}}}
	after := stageScrape{"agentsigna_decision_stage_seconds": {"total": {Bounds: []float64{1}, Counts: []uint64{1}}}}
	if _, err := stagesBetween(before, after); err == nil {
		t.Error("counts that went down were reported")
	}
}
