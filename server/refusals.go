package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// Defaults of AgentAuthConfig's refusal bound.
const (
	defaultRefusalsPerWindow = 60
	defaultRefusalWindow     = time.Minute
	// maxRefusalWindow is as long as a window grows while every window
	// ends with refusals it only counted.
	maxRefusalWindow = time.Hour
	// summaryAgents bounds the claimed agents a summary names.
	summaryAgents = 16
	// summaryTimeout bounds the append of a summary when its window ends.
	summaryTimeout = 30 * time.Second
)

// A refusal is one refused client assertion, to be recorded in log (key
// names that log: a tenant id, or "" for the platform's).
type refusal struct {
	key     string
	log     ledger.Log
	claimed string // the assertion's sub, cut to 64 bytes
	reason  string
}

// recordRefusal records a refusal.
type recordRefusal func(ctx context.Context, r refusal) error

// refusalGate bounds how many refusals a log records one by one. A refusal
// needs no credentials, so without a bound anyone who knows an agent id
// (receipts name it) could grow that organization's log, and load its
// writer, as fast as they can send requests. In each window a log records
// its first `limit` refusals as entries; the rest are counted, and when
// the window ends one auth.token_refusals_suppressed entry in the same log
// says how many there were, for which claimed agents and reasons. While
// windows keep ending with counted refusals each is twice as long as the
// one before, up to maxRefusalWindow, so a sustained flood adds `limit`+1
// entries an hour. The refusals themselves are not changed: the gate
// decides only what is written.
type refusalGate struct {
	limit  int
	window time.Duration
	now    func() time.Time
	// after runs f after d; the timers that end windows (a test sets it).
	after  func(d time.Duration, f func()) interface{ Stop() bool }
	record func(ctx context.Context, lg ledger.Log, rec []byte) error // appends a summary
	logger *slog.Logger

	// base bounds the summaries written when windows end; close cancels it
	// when its own context ends first.
	base   context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	windows map[string]*refusalWindow   // the current ones, by refusal key
	armed   map[*refusalWindow]struct{} // summaries not yet written, of current windows or not
	closed  bool
	pending sync.WaitGroup // one for each timer armed and not yet stopped or run
}

// refusalWindow counts one log's refusals in one window.
type refusalWindow struct {
	log      ledger.Log
	start    time.Time
	span     time.Duration
	recorded int // refusals written as entries of their own
	// What was counted, not recorded; summarized once, at the window's end.
	suppressed int
	reasons    map[string]int
	agents     map[string]map[string]int // claimed agent → reason → count
	others     int                       // suppressed refusals of a claimed agent not named in agents
	timer      interface{ Stop() bool }
	written    bool
}

func newRefusalGate(limit int, window time.Duration, now func() time.Time, logger *slog.Logger,
	record func(context.Context, ledger.Log, []byte) error) *refusalGate {
	base, cancel := context.WithCancel(context.Background())
	return &refusalGate{limit: limit, window: window, now: now, logger: logger, record: record,
		after: func(d time.Duration, f func()) interface{ Stop() bool } { return time.AfterFunc(d, f) },
		base:  base, cancel: cancel, windows: map[string]*refusalWindow{}, armed: map[*refusalWindow]struct{}{}}
}

// bound decorates next: it records the refusals the window still admits
// and counts the others.
func (g *refusalGate) bound(next recordRefusal) recordRefusal {
	return func(ctx context.Context, r refusal) error {
		w := g.admit(r)
		if w == nil {
			return nil
		}
		err := next(ctx, r)
		if err != nil {
			g.mu.Lock()
			w.recorded--
			g.mu.Unlock()
		}
		return err
	}
}

// admit returns the window that records r as an entry of its own, or nil
// when r is only counted.
func (g *refusalGate) admit(r refusal) *refusalWindow {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	w := g.windows[r.key]
	if w == nil || w.written || !now.Before(w.start.Add(w.span)) {
		span := g.window
		if w != nil && w.suppressed > 0 && now.Before(w.start.Add(2*w.span)) {
			// The flood goes on: a longer window, so fewer entries.
			span = min(2*w.span, max(maxRefusalWindow, g.window))
		}
		w = &refusalWindow{log: r.log, start: now, span: span}
		g.windows[r.key] = w
	}
	if w.recorded < g.limit {
		w.recorded++
		return w
	}
	if w.suppressed == 0 {
		w.reasons, w.agents = map[string]int{}, map[string]map[string]int{}
		if !g.closed {
			g.armed[w] = struct{}{}
			g.pending.Add(1)
			w.timer = g.after(w.start.Add(w.span).Sub(now), func() {
				defer g.pending.Done()
				ctx, cancel := context.WithTimeout(g.base, summaryTimeout)
				defer cancel()
				g.write(ctx, w)
			})
		}
	}
	w.suppressed++
	w.reasons[r.reason]++
	byReason, named := w.agents[r.claimed]
	if !named && len(w.agents) < summaryAgents && store.CheckID(store.PrefixAgent, r.claimed) == nil {
		// Only well-formed ids are named: on the platform's log the
		// claimed agent is whatever the sender wrote.
		byReason, named = map[string]int{}, true
		w.agents[r.claimed] = byReason
	}
	if named {
		byReason[r.reason]++
	} else {
		w.others++
	}
	return nil
}

// refusalSummary is the record of an auth.token_refusals_suppressed entry.
type refusalSummary struct {
	Event       string `json:"event"`
	WindowStart string `json:"window_start"`
	// WindowEnd is when counting stopped: the window's end, or the
	// server's stop when that came first.
	WindowEnd string `json:"window_end"`
	// Recorded refusals of the window have entries of their own;
	// Suppressed ones only this summary.
	Recorded      int                       `json:"recorded"`
	Suppressed    int                       `json:"suppressed"`
	Reasons       map[string]int            `json:"reasons"`
	ClaimedAgents map[string]map[string]int `json:"claimed_agents"`
	OtherAgents   int                       `json:"other_agents"`
}

// write appends w's summary, once; a failure is logged, and the count is
// lost with it.
func (g *refusalGate) write(ctx context.Context, w *refusalWindow) error {
	g.mu.Lock()
	if w.written {
		g.mu.Unlock()
		return nil
	}
	w.written = true
	delete(g.armed, w)
	end := w.start.Add(w.span)
	if now := g.now(); now.Before(end) {
		end = now
	}
	rec, err := json.Marshal(refusalSummary{
		Event: "token_refusals_suppressed", Recorded: w.recorded, Suppressed: w.suppressed,
		WindowStart: w.start.UTC().Format(time.RFC3339Nano), WindowEnd: end.UTC().Format(time.RFC3339Nano),
		Reasons: w.reasons, ClaimedAgents: w.agents, OtherAgents: w.others,
	})
	g.mu.Unlock()
	if err == nil {
		err = g.record(ctx, w.log, rec)
	}
	if err != nil {
		g.logger.Error("token refusals counted but not recorded", slog.Int("suppressed", w.suppressed),
			slog.String("window_start", w.start.UTC().Format(time.RFC3339)), slog.Any("error", err))
	}
	return err
}

// close writes every summary whose window has not ended yet, and waits
// for those being written, until ctx ends. Refusals counted after it are
// not summarized: close runs once the planes have stopped serving. It may
// be called again, and then writes nothing.
func (g *refusalGate) close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	var due []*refusalWindow
	for w := range g.armed {
		if w.timer.Stop() {
			due = append(due, w)
		}
	}
	g.mu.Unlock()
	errs := make([]error, len(due))
	var writes sync.WaitGroup
	for i, w := range due {
		writes.Go(func() {
			defer g.pending.Done()
			errs[i] = g.write(ctx, w)
		})
	}
	writes.Wait()
	done := make(chan struct{})
	go func() { g.pending.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		g.cancel() // the summaries still being written give up
		<-done
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}
