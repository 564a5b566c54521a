package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/server"
)

// clock is a settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// timers are timers on the test's clock that fire only when the test
// says.
type timers struct {
	clk *clock
	mu  sync.Mutex
	all []*timer
}

type timer struct {
	in             *timers
	d              time.Duration
	due            time.Time
	f              func()
	stopped, fired bool
}

func (ts *timers) after(d time.Duration, f func()) interface{ Stop() bool } {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := &timer{in: ts, d: d, due: ts.clk.now().Add(d), f: f}
	ts.all = append(ts.all, t)
	return t
}

// fireDue fires, in order, the timers due by the clock.
func (ts *timers) fireDue(tb testing.TB) {
	tb.Helper()
	for {
		ts.mu.Lock()
		var next *timer
		for _, t := range ts.all {
			if !t.stopped && !t.fired && !t.due.After(ts.clk.now()) && (next == nil || t.due.Before(next.due)) {
				next = t
			}
		}
		ts.mu.Unlock()
		if next == nil {
			return
		}
		next.fire(tb)
	}
}

func (t *timer) Stop() bool {
	t.in.mu.Lock()
	defer t.in.mu.Unlock()
	if t.stopped || t.fired {
		return false
	}
	t.stopped = true
	return true
}

// count is how many timers were set.
func (ts *timers) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.all)
}

// last is the newest timer.
func (ts *timers) last(tb testing.TB) *timer {
	tb.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.all) == 0 {
		tb.Fatal("no timer was set")
	}
	return ts.all[len(ts.all)-1]
}

// fire runs t's function, as its end would; fireAsync starts it.
func (t *timer) fire(tb testing.TB) { t.claim(tb)() }

// fireAsync claims t here, so that a Stop racing it loses, and runs its
// function in another goroutine.
func (t *timer) fireAsync(tb testing.TB) { f := t.claim(tb); go f() }

// claim marks t fired and returns its function.
func (t *timer) claim(tb testing.TB) func() {
	tb.Helper()
	t.in.mu.Lock()
	defer t.in.mu.Unlock()
	if t.stopped || t.fired {
		tb.Fatal("firing a timer that was stopped or has fired")
	}
	t.fired = true
	return t.f
}

// refusalEnv is an agent environment whose token refusal windows follow
// a test's clock and timers.
func refusalEnv(t *testing.T, budget int, window time.Duration, configure ...func(*server.AgentAuthConfig)) (*agentEnv, *clock, *timers, *syncBuffer) {
	clk, logs := &clock{t: time.Now()}, &syncBuffer{} // assertions are checked against the clock too
	ts := &timers{clk: clk}
	e := newAgentEnv(t, append([]func(*server.AgentAuthConfig){func(c *server.AgentAuthConfig) {
		c.RefusalBudget, c.RefusalWindow, c.Now = budget, window, clk.now
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	}}, configure...)...)
	clk.set(time.Now()) // after the setup, which may be slow
	server.SetRefusalTimers(e.auth, ts.after)
	return e, clk, ts, logs
}

// logSize is the size of lg's newest checkpoint (0 for a log not begun).
func logSize(t *testing.T, l *ledger.Ledger, lg ledger.Log) uint64 {
	t.Helper()
	cp, err := l.LatestCheckpoint(context.Background(), lg)
	if errors.Is(err, store.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return cp.Size
}

// kindsFrom counts the kinds of lg's entries from index from on.
func kindsFrom(t *testing.T, l *ledger.Ledger, lg ledger.Log, from uint64) map[string]int {
	t.Helper()
	kinds := map[string]int{}
	for i := from; i < logSize(t, l, lg); i++ {
		kind, _ := entryAt(t, l, lg, i)
		kinds[kind]++
	}
	return kinds
}

// entryAt reads entry i of lg: its kind and its record.
func entryAt(t *testing.T, l *ledger.Ledger, lg ledger.Log, i uint64) (string, []byte) {
	t.Helper()
	e, err := l.Entry(context.Background(), lg, i)
	if err != nil {
		t.Fatal(err)
	}
	var entry struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(e.Entry, &entry); err != nil {
		t.Fatal(err)
	}
	return entry.Kind, e.Record
}

type refusalSummary struct {
	Event         string                    `json:"event"`
	WindowStart   time.Time                 `json:"window_start"`
	WindowEnd     time.Time                 `json:"window_end"`
	Suppressed    int                       `json:"suppressed"`
	WriteFailed   int                       `json:"write_failed"`
	Reasons       map[string]int            `json:"reasons"`
	ClaimedAgents map[string]map[string]int `json:"claimed_agents"`
	OtherAgents   int                       `json:"other_agents_refusals"`
}

// summaryAt reads entry i of lg, which must be a summary of refusals.
func summaryAt(t *testing.T, l *ledger.Ledger, lg ledger.Log, i uint64) refusalSummary {
	t.Helper()
	kind, rec := entryAt(t, l, lg, i)
	if kind != "auth.token_refusals_suppressed" {
		t.Fatalf("entry %d is %s, not a summary of suppressed refusals", i, kind)
	}
	var s refusalSummary
	if err := json.Unmarshal(rec, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// forger signs assertions for any agent id with a key no agent has.
func forger(t *testing.T, e *agentEnv) func(agentID string) string {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := jwk.Import(priv)
	return func(agentID string) string { return e.assertion(t, testAgent{id: agentID, key: key}, nil) }
}

// refuse sends assertion to the token endpoint, which must refuse it.
func refuse(t *testing.T, e *agentEnv, assertion string) {
	t.Helper()
	if status, out := e.tokenRequest(t, assertion); status != 400 || out["error"] != "invalid_client" {
		t.Fatalf("%d %v", status, out)
	}
}

// An attacker who knows an agent id floods the token endpoint with
// assertions it cannot sign. Every one is refused, the agent itself still
// gets its token, and the organization's log records only the refusals
// its budget pays for one by one and then one summary that counts the
// rest; so does the platform's log for agents nobody knows.
func TestTokenRefusalsAreBoundedPerLog(t *testing.T) {
	const budget = 5 // the budget; the clock stands still until the end, so it does not refill
	e, clk, _, _ := refusalEnv(t, budget, time.Hour)
	ctx := context.Background()
	acme := e.agents["acme"]
	acmeLog, platformLog := e.ledger.TenantLog(e.orgs["acme"].ID, "acme"), e.ledger.PlatformLog()
	e.token(t, "acme") // creates the token key before the count starts
	acmeFrom, platformFrom := logSize(t, e.ledger, acmeLog), logSize(t, e.ledger, platformLog)
	forge := forger(t, e)
	start := clk.now()

	const forged = 40
	for i := range forged {
		refuse(t, e, forge(acme.id))
		if i == forged/2 {
			// The agent whose id is abused is not locked out.
			e.token(t, "acme")
		}
	}
	// One of acme's own refusals during the flood: counted apart.
	refuse(t, e, e.assertion(t, acme, func(b *jwt.Builder) { b.Expiration(time.Now().Add(-time.Minute)) }))
	const unknown = 30
	for range unknown {
		refuse(t, e, forge(store.NewID(store.PrefixAgent)))
	}
	refuse(t, e, unsignedJWS("not an agent id"))
	// Each log holds the first refusals (and acme's the token issued), no more.
	if got, want := kindsFrom(t, e.ledger, acmeLog, acmeFrom), (map[string]int{"auth.token_refused": budget, "auth.token_issued": 1}); !equalCounts(got, want) {
		t.Fatalf("acme's log during the flood: %v, want %v", got, want)
	}
	if got, want := kindsFrom(t, e.ledger, platformLog, platformFrom), (map[string]int{"auth.token_refused": budget}); !equalCounts(got, want) {
		t.Fatalf("the platform's log during the flood: %v, want %v", got, want)
	}

	// Closing writes the summaries the windows owe, once.
	clk.add(10 * time.Minute)
	for range 2 {
		if err := e.auth.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	acmeSize := logSize(t, e.ledger, acmeLog)
	if acmeSize != acmeFrom+budget+2 {
		t.Fatalf("acme's log after close: %d entries, want %d", acmeSize, acmeFrom+budget+2)
	}
	s := summaryAt(t, e.ledger, acmeLog, acmeSize-1)
	if s.Event != "token_refusals_suppressed" || s.WriteFailed != 0 || s.Suppressed != forged+1-budget ||
		s.Reasons["bad_signature"] != forged-budget || s.Reasons["expired"] != 1 || len(s.Reasons) != 2 ||
		s.ClaimedAgents[acme.id]["bad_signature"] != forged-budget || s.ClaimedAgents[acme.id]["expired"] != 1 ||
		len(s.ClaimedAgents) != 1 || s.OtherAgents != 0 {
		t.Fatalf("acme's summary: %+v", s)
	}
	// Closed before its end, the window says when counting stopped.
	if !s.WindowStart.Equal(start) || !s.WindowEnd.Equal(start.Add(10*time.Minute)) {
		t.Fatalf("acme's summary: a window from %v closed 10 minutes in reads %v–%v", start, s.WindowStart, s.WindowEnd)
	}
	platformSize := logSize(t, e.ledger, platformLog)
	if platformSize != platformFrom+budget+1 {
		t.Fatalf("the platform's log after close: %d entries, want %d", platformSize, platformFrom+budget+1)
	}
	s = summaryAt(t, e.ledger, platformLog, platformSize-1)
	for id, byReason := range s.ClaimedAgents {
		if store.CheckID(store.PrefixAgent, id) != nil || byReason["unknown_agent"] != 1 || len(byReason) != 1 {
			t.Fatalf("platform summary names %q: %v", id, byReason)
		}
	}
	// 16 named; the rest, and the malformed id, counted. The unsigned
	// assertion is refused for its alg before any agent is looked up.
	if s.Suppressed != unknown+1-budget || s.Reasons["unknown_agent"] != unknown-budget || s.Reasons["bad_algorithm"] != 1 ||
		len(s.ClaimedAgents) != 16 || s.OtherAgents != unknown+1-budget-16 {
		t.Fatalf("platform summary: %+v", s)
	}
}

// equalCounts compares counts; a key missing counts 0.
func equalCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// Windows of a sustained flood double up to an hour; after a quiet spell
// the budget is whole again and windows are short again. Each summary is
// written at its window's end and covers exactly that window.
func TestTokenRefusalWindows(t *testing.T) {
	const budget, window = 2, time.Minute
	e, clk, ts, _ := refusalEnv(t, budget, window)
	lg := e.ledger.PlatformLog()
	stranger := func() string { return unsignedJWS(store.NewID(store.PrefixAgent)) }
	from := logSize(t, e.ledger, lg)
	for i, tc := range []struct {
		wait time.Duration // before the window's refusals
		own  int           // refusals recorded as entries of their own
		span time.Duration
	}{
		{0, budget, window},
		{0, 0, 2 * window},
		{0, 0, 4 * window},
		{0, 0, 8 * window},
		{0, 0, 16 * window},
		{0, 1, 32 * window}, // half an hour refills one
		{0, 1, time.Hour},
		// The hour-long window's refusals all came at its start: the log
		// has gone an hour without counting one.
		{0, 2, window},
		{3 * time.Hour, budget, window},    // after a quiet spell
		{58 * time.Minute, 1, 2 * window},  // 59 minutes after the last refusal counted
		{59 * time.Minute, budget, window}, // 61 minutes after it
	} {
		clk.add(tc.wait)
		start, timersBefore := clk.now(), ts.count()
		for range budget + 3 {
			refuse(t, e, stranger())
		}
		if n, tm := ts.count(), ts.last(t); n != timersBefore+1 || tm.d != tc.span {
			t.Fatalf("window %d: %d timers, the last for %v; want %d for %v", i, n, tm.d, timersBefore+1, tc.span)
		}
		if got := kindsFrom(t, e.ledger, lg, from); !equalCounts(got, map[string]int{"auth.token_refused": tc.own}) {
			t.Fatalf("window %d: %v, want %d refusals of their own", i, got, tc.own)
		}
		clk.add(tc.span)
		ts.fireDue(t)
		s := summaryAt(t, e.ledger, lg, from+uint64(tc.own))
		if s.Suppressed != budget+3-tc.own || !s.WindowStart.Equal(start) || !s.WindowEnd.Equal(start.Add(tc.span)) {
			t.Fatalf("window %d: summary %+v", i, s)
		}
		from += uint64(tc.own) + 1
	}
	// A window whose timer fired before the clock reached its end is over:
	// the next refusal is counted in a new one.
	refuse(t, e, stranger())
	ts.last(t).fire(t)
	before := ts.count()
	refuse(t, e, stranger())
	if ts.count() != before+1 {
		t.Fatal("a refusal after its window's summary was counted in that window")
	}
}

// However a sender paces refusals, a log gets only the budget's entries
// of their own (5, and 5 an hour after that) and at most four summaries
// an hour, one an hour while refusals keep coming; no refusal is lost.
func TestTokenRefusalsPaced(t *testing.T) {
	const budget, minutes = 5, 368
	for _, tc := range []struct {
		name      string
		cycle     int   // minutes
		at        []int // minutes into each cycle that a burst is sent
		burst     int
		sustained bool // refusals keep coming: windows of 1, 2, … 32 minutes, then hours
	}{
		{"one a minute", 1, []int{0}, 1, true},
		{"bursts every two minutes", 2, []int{0}, 3, true},
		{"bursts every ten minutes", 10, []int{0}, 8, true},
		// Short windows, then an hour's pause to get short windows back.
		{"bursts, then a pause", 92, []int{0, 1, 3, 7, 15, 31}, budget + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, clk, ts, _ := refusalEnv(t, budget, time.Minute)
			lg := e.ledger.PlatformLog()
			from, sent := logSize(t, e.ledger, lg), 0
			for m := range minutes + 1 {
				if slices.Contains(tc.at, m%tc.cycle) {
					for range tc.burst {
						refuse(t, e, unsignedJWS(store.NewID(store.PrefixAgent)))
						sent++
					}
				}
				clk.add(time.Minute)
				ts.fireDue(t)
			}
			if err := e.auth.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			own, summaries, suppressed := 0, 0, 0
			for i := from; i < logSize(t, e.ledger, lg); i++ {
				switch kind, _ := entryAt(t, e.ledger, lg, i); kind {
				case "auth.token_refused":
					own++
				case "auth.token_refusals_suppressed":
					summaries++
					suppressed += summaryAt(t, e.ledger, lg, i).Suppressed
				default:
					t.Fatalf("entry %d: %s", i, kind)
				}
			}
			maxSummaries := 4*minutes/60 + 1 // and the window open at the end
			if tc.sustained {
				maxSummaries = 6 + (minutes-63)/60 + 1
			}
			if own > budget+budget*minutes/60 || own < budget || summaries > maxSummaries || own+suppressed != sent {
				t.Fatalf("%d refusals in %d minutes: %d of their own, %d counted in %d summaries (at most %d)",
					sent, minutes, own, suppressed, summaries, maxSummaries)
			}
		})
	}
}

// With the service's own timers, a window's summary is written when it
// ends (here after a millisecond), without a close.
func TestTokenRefusalSummaryOnItsOwn(t *testing.T) {
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) { c.RefusalBudget, c.RefusalWindow = 1, time.Millisecond })
	lg := e.ledger.PlatformLog()
	from := logSize(t, e.ledger, lg)
	const sent = 4
	for range sent {
		refuse(t, e, unsignedJWS(store.NewID(store.PrefixAgent)))
	}
	// The budget pays for one; the other three are in one or more
	// summaries, written by the timers.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		own, suppressed := 0, 0
		for i := from; i < logSize(t, e.ledger, lg); i++ {
			if kind, _ := entryAt(t, e.ledger, lg, i); kind == "auth.token_refused" {
				own++
			} else {
				suppressed += summaryAt(t, e.ledger, lg, i).Suppressed
			}
		}
		if own == 1 && suppressed == sent-1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s on: %d refusals of their own, %d in summaries", own, suppressed)
		}
	}
}

// A refusal whose entry cannot be written spends the budget all the same,
// so a failing store gets no more attempts than a working one, and it is
// counted in the summary.
func TestTokenRefusalsWhenRecordingFails(t *testing.T) {
	const budget = 5
	e, _, _, logs := refusalEnv(t, budget, time.Hour)
	var attempts int
	var mu sync.Mutex
	server.SetRefusalAppend(e.auth, func(context.Context, string, string) error {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		return errors.New("the store is failing")
	})
	lg := e.ledger.PlatformLog()
	from := logSize(t, e.ledger, lg)
	const sent = 30
	for range sent {
		refuse(t, e, unsignedJWS(store.NewID(store.PrefixAgent)))
	}
	mu.Lock()
	if attempts != budget {
		t.Fatalf("%d attempts to record %d refusals, want %d (the budget)", attempts, sent, budget)
	}
	mu.Unlock()
	if n := strings.Count(logs.String(), "the store is failing"); n != budget {
		t.Fatalf("%d failed writes logged, want %d:\n%s", n, budget, logs.String())
	}
	if err := e.auth.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := summaryAt(t, e.ledger, lg, from); s.Suppressed != sent || s.WriteFailed != budget {
		t.Fatalf("summary: %+v", s)
	}
}

// Refusals sent at once are each recorded or counted, exactly once.
func TestTokenRefusalsInParallel(t *testing.T) {
	const budget, senders, each = 5, 20, 5
	e, _, _, _ := refusalEnv(t, budget, time.Hour)
	lg := e.ledger.PlatformLog()
	from := logSize(t, e.ledger, lg)
	assertions := make([]string, senders*each)
	for i := range assertions {
		assertions[i] = unsignedJWS(store.NewID(store.PrefixAgent))
	}
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for _, a := range assertions[s*each : (s+1)*each] {
				if status, _ := e.tokenRequest(t, a); status != 400 {
					t.Errorf("status %d", status)
				}
			}
		})
	}
	wg.Wait()
	if err := e.auth.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := kindsFrom(t, e.ledger, lg, from), (map[string]int{"auth.token_refused": budget, "auth.token_refusals_suppressed": 1}); !equalCounts(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	if s := summaryAt(t, e.ledger, lg, logSize(t, e.ledger, lg)-1); s.Suppressed != senders*each-budget {
		t.Fatalf("summary: %+v", s)
	}
}

// batchBegun is the store of a ledger that says when a batch of the
// watched organization's log begins its transaction: the ledger's writer
// has taken the batch's entries by then.
type batchBegun struct {
	store.TenantStore
	watched atomic.Pointer[string] // tenant id
	begun   chan struct{}
	once    sync.Once
}

func (b *batchBegun) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	if w := b.watched.Load(); w != nil && *w == tenantID {
		b.once.Do(func() { close(b.begun) })
	}
	return b.TenantStore.InTenantTx(ctx, tenantID, fn)
}

// Close gives up when its context ends, even with a summary stuck behind
// the log's writer: the one its window's end began, and the one it writes
// itself.
func TestTokenRefusalsCloseGivesUp(t *testing.T) {
	const budget = 1
	begun := &batchBegun{begun: make(chan struct{})}
	var l *ledger.Ledger // the authenticator's: its store is begun
	e, _, ts, logs := refusalEnv(t, budget, time.Hour, func(c *server.AgentAuthConfig) {
		begun.TenantStore = c.Tenants
		var err error
		l, err = ledger.New(ledger.Config{Tenants: begun, Platform: c.Tenants.(store.PlatformStore), Keys: c.Keys, Origin: "agentsigna.test"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		c.Ledger = l
	})
	forge := forger(t, e)
	acme, beta := e.agents["acme"], e.agents["beta"]
	for range budget + 1 {
		refuse(t, e, forge(acme.id))
		refuse(t, e, forge(beta.id))
	}
	release := sync.OnceFunc(storetest.HoldWriter(t, e.store, e.orgs["acme"].ID))
	defer release()
	releaseBeta := sync.OnceFunc(storetest.HoldWriter(t, e.store, e.orgs["beta"].ID))
	defer releaseBeta()
	if ts.count() != 2 {
		t.Fatalf("%d windows counting refusals, want 2", ts.count())
	}
	betaID := e.orgs["beta"].ID
	begun.watched.Store(&betaID)
	ts.last(t).fireAsync(t) // one summary begun by its window's end: beta's
	// Await its batch at beta's ledger writer, which has taken it and
	// waits for the held store: from then on, only its batch can end it.
	select {
	case <-begun.begun:
	case <-time.After(10 * time.Second):
		t.Fatal("beta's summary never reached its ledger writer")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	closed := make(chan error, 1)
	go func() { closed <- e.auth.Close(ctx) }()
	select {
	case err := <-closed:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Close with the writers held: %v", err)
		}
	case <-time.After(10 * time.Second):
		// The ledger's commit timeout is 30 s: Close must not wait for it.
		t.Fatal("Close with an ended context waited for the held writers")
	}
	// Once the writers go, nothing is lost in silence: each summary is in
	// its log, or the service said it may not be.
	release()
	releaseBeta()
	l.Close() // waits for the batches in flight
	// The summaries' writes go on after the first Close returned; a
	// second one returns when they have (each logged its failure first).
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.auth.Close(ctx); err != nil {
		t.Fatalf("Close again, the writers released: %v", err)
	}
	for _, org := range []string{"acme", "beta"} {
		lg := e.ledger.TenantLog(e.orgs[org].ID, org)
		if kindsFrom(t, e.ledger, lg, 0)["auth.token_refusals_suppressed"] == 1 {
			continue
		}
		if !strings.Contains(logs.String(), `"log":"`+e.orgs[org].ID+`"`) {
			t.Errorf("%s's summary is neither in its log nor said to be missing; the service logged:\n%s", org, logs.String())
		}
	}
}

func TestAgentAuthRefusesANegativeBound(t *testing.T) {
	e := newAgentEnv(t)
	master, _ := secrets.GenerateMasterKey()
	kr, _ := signing.NewKeyring(master)
	for _, tc := range []struct {
		name string
		bad  func(*server.AgentAuthConfig)
	}{
		{"budget", func(c *server.AgentAuthConfig) { c.RefusalBudget = -1 }},
		{"window", func(c *server.AgentAuthConfig) { c.RefusalWindow = -time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := server.AgentAuthConfig{Tenants: e.store, Ledger: e.ledger, Keys: kr, PublicURL: testPublicURL}
			tc.bad(&cfg)
			if _, err := server.NewAgentAuth(cfg); err == nil {
				t.Fatalf("accepted %+v", cfg)
			}
		})
	}
}
