package server

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/agentsigna/agentsigna/ledger"
)

// Defaults of AgentAuthConfig's refusal bound.
const (
	defaultRefusalsPerWindow = 60
	defaultRefusalWindow     = time.Minute
	// summaryAgents bounds the claimed agents a summary names one by one;
	// on the platform's log they are whatever strings the senders chose.
	summaryAgents = 16
	// summaryTimeout bounds the append of a summary when its window ends.
	summaryTimeout = 30 * time.Second
)

// refusalGate bounds how many token refusals a log records one by one.
// A refusal needs no credentials, so without a bound anyone who knows an
// agent id (receipts name it) could grow that organization's log, and
// load its writer, as fast as they can send requests. In each window a
// log records its first `limit` refusals as entries. The rest are still
// refused, with the same answer, so a sender learns nothing and an agent
// whose id is being abused is never locked out; they are counted instead,
// and when the window ends one auth.token_refusals_suppressed entry in the
// same log says how many there were, for which reasons and claimed agents.
type refusalGate struct {
	limit  int
	window time.Duration
	now    func() time.Time
	// record appends a summary (ctx bounds it).
	record func(ctx context.Context, lg ledger.Log, rec []byte) error

	mu      sync.Mutex
	windows map[string]*refusalWindow // the current ones, by tenant id; "" is the platform's log
	armed   map[*refusalWindow]bool   // windows whose summary is not yet written, current or not
	closed  bool
	pending sync.WaitGroup // one for each timer armed and not yet stopped or run
}

// refusalWindow counts one log's refusals in one window.
type refusalWindow struct {
	log      ledger.Log
	start    time.Time
	recorded int
	// What was counted, not recorded; written once, when the window ends.
	suppressed int
	reasons    map[string]int
	agents     map[string]int
	others     int // suppressed refusals whose claimed agent summaryAgents left out
	timer      *time.Timer
	written    bool
}

func newRefusalGate(limit int, window time.Duration, now func() time.Time, record func(context.Context, ledger.Log, []byte) error) *refusalGate {
	return &refusalGate{limit: limit, window: window, now: now, record: record,
		windows: map[string]*refusalWindow{}, armed: map[*refusalWindow]bool{}}
}

// admit reports whether this refusal is recorded as its own entry; if not,
// it is counted in the window's summary.
func (g *refusalGate) admit(key string, lg ledger.Log, claimed, reason string) bool {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.windows[key]
	if w == nil || !now.Before(w.start.Add(g.window)) {
		// A window that ended with a count stays armed until its
		// summary is written.
		w = &refusalWindow{log: lg, start: now}
		g.windows[key] = w
	}
	if w.recorded < g.limit {
		w.recorded++
		return true
	}
	if w.suppressed == 0 {
		w.reasons, w.agents = map[string]int{}, map[string]int{}
		if !g.closed {
			g.armed[w] = true
			g.pending.Add(1)
			w.timer = time.AfterFunc(w.start.Add(g.window).Sub(now), func() {
				defer g.pending.Done()
				ctx, cancel := context.WithTimeout(context.Background(), summaryTimeout)
				defer cancel()
				_ = g.write(ctx, w)
			})
		}
	}
	w.suppressed++
	w.reasons[reason]++
	if _, named := w.agents[claimed]; named || len(w.agents) < summaryAgents {
		w.agents[claimed]++
	} else {
		w.others++
	}
	return false
}

// write appends w's summary, once.
func (g *refusalGate) write(ctx context.Context, w *refusalWindow) error {
	g.mu.Lock()
	if w.written || w.suppressed == 0 {
		g.mu.Unlock()
		return nil
	}
	w.written = true
	delete(g.armed, w)
	rec, err := json.Marshal(refusalSummary{
		Event: "token_refusals_suppressed", Recorded: w.recorded, Suppressed: w.suppressed,
		WindowStart: w.start.UTC().Format(time.RFC3339Nano), WindowEnd: w.start.Add(g.window).UTC().Format(time.RFC3339Nano),
		Reasons: w.reasons, ClaimedAgents: w.agents, OtherAgents: w.others,
	})
	g.mu.Unlock()
	if err != nil {
		return err
	}
	return g.record(ctx, w.log, rec)
}

// refusalSummary is the record of an auth.token_refusals_suppressed entry.
type refusalSummary struct {
	Event       string `json:"event"`
	WindowStart string `json:"window_start"`
	WindowEnd   string `json:"window_end"`
	// Recorded refusals have their own entries; Suppressed ones only this.
	Recorded      int            `json:"recorded"`
	Suppressed    int            `json:"suppressed"`
	Reasons       map[string]int `json:"reasons"`
	ClaimedAgents map[string]int `json:"claimed_agents"`
	OtherAgents   int            `json:"other_agents"`
}

// close writes every summary still waiting for its window to end, and
// waits for those being written. Refusals counted after it are not
// summarized: close runs once the planes have stopped serving.
func (g *refusalGate) close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	var now []*refusalWindow
	for w := range g.armed {
		if w.timer.Stop() {
			now = append(now, w)
		}
	}
	g.mu.Unlock()
	var errs []error
	for _, w := range now {
		errs = append(errs, g.write(ctx, w))
		g.pending.Done()
	}
	g.pending.Wait()
	return errors.Join(errs...)
}
