package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// Defaults of AgentAuthConfig's refusal bound.
const (
	defaultRefusalBudget = 60
	defaultRefusalWindow = time.Minute
	// budgetRefill is how long a spent budget takes to refill; and the
	// longest a summary's window grows while refusals keep being counted.
	budgetRefill = time.Hour
	// summaryAgents bounds the claimed agents a summary names.
	summaryAgents = 16
	// summaryTimeout bounds the append of a summary when its window ends.
	summaryTimeout = 30 * time.Second
)

// A refusal is one refused client assertion, to be recorded in log.
type refusal struct {
	key     string // names log: a tenant id, or "" for the platform's
	log     ledger.Log
	claimed string // the assertion's sub: at most 64 bytes, cut at a character boundary
	reason  string
}

// logName names key's log in the service's own log.
func (r refusal) logName() string {
	if r.key == "" {
		return "platform"
	}
	return r.key
}

// recordRefusal records a refusal.
type recordRefusal func(ctx context.Context, r refusal) error

// stopper is a timer that ends a window.
type stopper interface{ Stop() bool }

// refusalGate bounds how many refusals a log records one by one. A refusal
// needs no credentials, so without a bound anyone who knows an agent id
// (receipts name it) could grow that organization's log, and load its
// writer, as fast as they can send requests.
//
// Each log has a budget of `budget` entries of their own, refilled at
// `budget` an hour (a token bucket). A refusal the budget cannot pay for
// is counted in the log's open window instead, and when that window ends
// one auth.token_refusals_suppressed entry in the same log says how many
// there were, for which claimed agents and reasons. A window opens at the
// first refusal it counts and lasts `window`; until the log has gone an
// hour without counting one, each new window is twice as long as the
// last, up to an hour. So however a sender paces them, a log gains at
// most `budget` entries of their own an hour after the first `budget`,
// and at most about four summaries an hour (one an hour while refusals
// keep coming: a sender has to stop for an hour to get short windows
// back). The refusals themselves are not changed: the gate decides only
// what is written.
type refusalGate struct {
	budget int
	window time.Duration
	now    func() time.Time
	// after runs f after d: the timers that end windows (a test sets it).
	after  func(d time.Duration, f func()) stopper
	record func(ctx context.Context, lg ledger.Log, rec []byte) error // appends a summary
	logger *slog.Logger

	// base bounds the summaries written when windows end; close cancels it.
	base   context.Context
	cancel context.CancelFunc

	// mu guards what follows, and orders the clock's readings: each
	// budget sees time go forward.
	mu      sync.Mutex
	logs    map[string]*logRefusals     // by refusal key
	armed   map[*refusalWindow]struct{} // windows with a timer whose summary is not yet written
	closed  bool
	pending sync.WaitGroup // one for each timer armed, until its summary's write returns
}

// logRefusals is one log's budget and windows.
type logRefusals struct {
	budget *rate.Limiter
	open   *refusalWindow // the newest window: counting now, unless written or ended
	// counted is when the log last counted a refusal.
	counted time.Time
}

// refusalWindow counts one log's refusals in one window.
type refusalWindow struct {
	name  string // the log's, for the service's own log
	log   ledger.Log
	start time.Time
	span  time.Duration
	// What was counted instead of recorded; summarized once, at the
	// window's end.
	suppressed int
	failed     int // of suppressed: refusals the budget paid for whose entry's write failed
	reasons    map[string]int
	agents     map[string]map[string]int // claimed agent → reason → count
	others     int                       // counted refusals of claimed agents not named in agents
	timer      stopper
	written    bool
}

func newRefusalGate(budget int, window time.Duration, now func() time.Time, logger *slog.Logger,
	record func(context.Context, ledger.Log, []byte) error) *refusalGate {
	base, cancel := context.WithCancel(context.Background())
	return &refusalGate{budget: budget, window: window, now: now, logger: logger, record: record,
		after: func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) },
		base:  base, cancel: cancel, logs: map[string]*logRefusals{}, armed: map[*refusalWindow]struct{}{}}
}

// bound decorates next: it records the refusals the log's budget pays for
// and counts the others, and those whose recording failed.
func (g *refusalGate) bound(next recordRefusal) recordRefusal {
	return func(ctx context.Context, r refusal) error {
		if !g.admit(r) {
			return nil
		}
		err := next(ctx, r)
		if err != nil {
			// Its budget stays spent: a failing store must not invite
			// more attempts than a working one.
			g.mu.Lock()
			g.count(r, g.now()).failed++
			g.mu.Unlock()
		}
		return err
	}
}

// admit reports whether r's log's budget pays for an entry of its own; if
// not, r is counted in the log's open window.
func (g *refusalGate) admit(r refusal) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	lr := g.logs[r.key]
	if lr == nil {
		lr = &logRefusals{budget: rate.NewLimiter(rate.Every(budgetRefill/time.Duration(g.budget)), g.budget)}
		g.logs[r.key] = lr
	}
	if lr.budget.AllowN(now, 1) {
		return true
	}
	g.count(r, now)
	return false
}

// current is the log's open window at now, or nil.
func (lr *logRefusals) current(now time.Time) *refusalWindow {
	if w := lr.open; w != nil && !w.written && now.Before(w.start.Add(w.span)) {
		return w
	}
	return nil
}

// count adds r to its log's open window, opening one if needed, and
// returns that window (g.mu held).
func (g *refusalGate) count(r refusal, now time.Time) *refusalWindow {
	lr := g.logs[r.key]
	w := lr.current(now)
	if w == nil {
		span := g.window
		if last := lr.open; last != nil && now.Before(lr.counted.Add(budgetRefill)) {
			// A refusal was counted within the hour: a longer window,
			// fewer summaries.
			span = min(2*last.span, max(budgetRefill, g.window))
		}
		w = &refusalWindow{name: r.logName(), log: r.log, start: now, span: span,
			reasons: map[string]int{}, agents: map[string]map[string]int{}}
		lr.open = w
		if g.closed {
			g.logger.Warn("token refusals counted after the server began to stop are in no summary", slog.String("log", w.name))
		} else {
			g.armed[w] = struct{}{}
			g.pending.Add(1)
			w.timer = g.after(span, func() {
				defer g.pending.Done()
				ctx, cancel := context.WithTimeout(g.base, summaryTimeout)
				defer cancel()
				_ = g.write(ctx, w)
			})
		}
	}
	lr.counted = now
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
	return w
}

// refusalSummary is the record of an auth.token_refusals_suppressed entry.
type refusalSummary struct {
	Event       string `json:"event"`
	WindowStart string `json:"window_start"`
	// WindowEnd is when counting stopped: the window's end, or the
	// server's stop when that came first.
	WindowEnd string `json:"window_end"`
	// Suppressed refusals are in this summary, not in entries of their
	// own. Of them, WriteFailed were to have such an entry and its write
	// failed; an entry whose write ran out of time may be in the log all
	// the same.
	Suppressed    int                       `json:"suppressed"`
	WriteFailed   int                       `json:"write_failed"`
	Reasons       map[string]int            `json:"reasons"`
	ClaimedAgents map[string]map[string]int `json:"claimed_agents"`
	OtherAgents   int                       `json:"other_agents_refusals"` // refusals of claimed agents not named
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
		Event: "token_refusals_suppressed", Suppressed: w.suppressed, WriteFailed: w.failed,
		WindowStart: w.start.UTC().Format(time.RFC3339Nano), WindowEnd: end.UTC().Format(time.RFC3339Nano),
		Reasons: w.reasons, ClaimedAgents: w.agents, OtherAgents: w.others,
	})
	g.mu.Unlock()
	if err == nil {
		err = g.record(ctx, w.log, rec)
	}
	if err != nil {
		g.logger.Error("summary of token refusals may not be recorded", slog.String("log", w.name), slog.Int("suppressed", w.suppressed),
			slog.String("window_start", w.start.UTC().Format(time.RFC3339)), slog.Any("error", err))
	}
	return err
}

// close writes every summary whose window has not ended yet, and waits
// for those being written, until ctx ends. Then it returns at once: a
// summary its ledger writer has not taken yet gives up, one already taken
// ends with its batch (committed or not; ledger.Close waits for it), and a
// summary not recorded is logged either way. Refusals counted after close
// are not summarized: close runs once the planes have stopped serving. It
// may be called again, and then writes nothing.
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
	var failed atomic.Int32
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for _, w := range due {
			go func() {
				defer g.pending.Done()      // the window's, taken when it was armed
				if g.write(ctx, w) != nil { // logged by write
					failed.Add(1)
				}
			}()
		}
		g.pending.Wait()
	}()
	select {
	case <-finished:
		g.cancel()
	case <-ctx.Done():
		g.cancel() // the summaries being written give up, if they still can
		return fmt.Errorf("the last summaries of token refusals may not be recorded: %w", ctx.Err())
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of the last %d summaries of token refusals may not be recorded (see the log)", n, len(due))
	}
	return nil
}
