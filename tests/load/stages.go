package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/agentsigna/agentsigna/internal/latency"
)

// The service's stage histograms the harness reads from /metrics on its
// --pprof-addr listener, by family, in the order they are printed. A stage
// the service has and this list lacks is printed after these.
var stageFamilies = []struct {
	metric, label string
	stages        []string
}{
	{"agentsigna_decision_stage_seconds", "decision", []string{"read", "turn", "policy", "sign", "ledger", "total"}},
	{"agentsigna_ledger_append_seconds", "ledger append", []string{"queued", "commit"}},
}

// errNoStages: the service serves no stage histograms (a build from
// before they were added).
var errNoStages = errors.New("the service serves no stage histograms (/metrics): a build from before them")

// Stage is one stage's histogram over a measured window, as the service
// timed it.
type Stage struct {
	Family, Name string
	latency.Snapshot
}

// stageScrape is one reading of every family, by metric then stage.
type stageScrape map[string]map[string]latency.Snapshot

func scrapeStages(ctx context.Context, client *http.Client, pprofURL string) (stageScrape, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(pprofURL, "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("stage histograms: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, errNoStages
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("stage histograms: %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("stage histograms: %w", err)
	}
	out := stageScrape{}
	for _, f := range stageFamilies {
		if out[f.metric], err = latency.ReadText(strings.NewReader(string(body)), f.metric, "stage"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// stagesBetween is what the service timed between two scrapes, in
// stageFamilies' order.
func stagesBetween(before, after stageScrape) ([]Stage, error) {
	var out []Stage
	for _, f := range stageFamilies {
		names := slices.Clone(f.stages)
		var others []string
		for name := range after[f.metric] {
			if !slices.Contains(names, name) {
				others = append(others, name)
			}
		}
		slices.Sort(others)
		for _, name := range append(names, others...) {
			a, ok := after[f.metric][name]
			if !ok {
				continue
			}
			s, err := a.Sub(before[f.metric][name])
			if err != nil {
				return nil, fmt.Errorf("%s{stage=%q}: %w", f.metric, name, err)
			}
			out = append(out, Stage{Family: f.label, Name: name, Snapshot: s})
		}
	}
	return out, nil
}

// stageWindow reads the stage histograms at the start of a measured window
// (after warmup) and, when end is called, at its end, and gives what the
// service timed in between. With no pprofURL it reads nothing.
type stageWindow struct {
	client   *http.Client
	pprofURL string
	done     chan struct{}
	before   stageScrape
	err      error
}

func startStageWindow(ctx context.Context, client *http.Client, pprofURL string, warmup time.Duration) *stageWindow {
	w := &stageWindow{client: client, pprofURL: pprofURL, done: make(chan struct{})}
	if pprofURL == "" {
		close(w.done)
		return w
	}
	go func() {
		defer close(w.done)
		select {
		case <-time.After(warmup):
		case <-ctx.Done():
			w.err = ctx.Err()
			return
		}
		w.before, w.err = scrapeStages(ctx, client, w.pprofURL)
	}()
	return w
}

// end reads the histograms again and returns the window's stages; none
// (and no error) without a pprofURL.
func (w *stageWindow) end(ctx context.Context) ([]Stage, error) {
	<-w.done
	if w.pprofURL == "" {
		return nil, nil
	}
	if w.err != nil {
		return nil, w.err
	}
	after, err := scrapeStages(ctx, w.client, w.pprofURL)
	if err != nil {
		return nil, err
	}
	return stagesBetween(w.before, after)
}
