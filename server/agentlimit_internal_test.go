package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) add(d time.Duration)     { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock               { return &fakeClock{t: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)} }
func noCheck(context.Context) error          { return nil }
func discardLogger() *slog.Logger            { return slog.New(slog.DiscardHandler) }
func refOf(tenant, agent string) agentRef    { return agentRef{tenant: tenant, agent: agent} }
func spend(l *agentLimiter, r agentRef) bool { return l.take(r) == 0 }

// An agent gets its burst at once, then one decision each 1/rate; a
// refused request spends nothing and is told how long to wait.
func TestAgentLimiterBucket(t *testing.T) {
	clock := newFakeClock()
	l := newAgentLimiter("decisions", 2, 3, clock.now, discardLogger())
	a := refOf("ten_1", "agt_a")
	for i := range 3 {
		if !spend(l, a) {
			t.Fatalf("decision %d of the burst of 3 refused", i+1)
		}
	}
	if wait := l.take(a); wait != 500*time.Millisecond {
		t.Fatalf("past the burst: wait %v, want 500ms (1/rate)", wait)
	}
	// The refusals above and these spent nothing: half a period on, the
	// wait is half as long, not longer.
	clock.add(250 * time.Millisecond)
	for range 5 {
		if wait := l.take(a); wait != 250*time.Millisecond {
			t.Fatalf("a quarter second on: wait %v, want 250ms", wait)
		}
	}
	clock.add(250 * time.Millisecond)
	if !spend(l, a) {
		t.Fatal("refused once a token had refilled")
	}
	if spend(l, a) {
		t.Fatal("two decisions allowed for one refilled token")
	}
	// A quiet spell refills the burst, and no more than it.
	clock.add(time.Hour)
	for i := range 3 {
		if !spend(l, a) {
			t.Fatalf("after an hour, decision %d of 3 refused", i+1)
		}
	}
	if spend(l, a) {
		t.Fatal("a quiet spell refilled more than the burst")
	}
}

// Each agent has its own bucket: another agent of the same organization,
// and an agent of another organization with the same id, are not slowed
// by one that spent its own.
func TestAgentLimiterIsPerAgent(t *testing.T) {
	clock := newFakeClock()
	l := newAgentLimiter("decisions", rate.Every(time.Hour), 1, clock.now, discardLogger())
	a := refOf("ten_1", "agt_a")
	if !spend(l, a) || spend(l, a) {
		t.Fatal("a burst of 1 did not allow exactly one")
	}
	for _, other := range []agentRef{refOf("ten_1", "agt_b"), refOf("ten_2", "agt_a")} {
		if !spend(l, other) {
			t.Errorf("%v refused after %v spent its bucket", other, a)
		}
	}
}

// The limiter forgets an agent only when forgetting changes nothing: its
// bucket is full again and its refusals are logged. A spent agent is not
// forgotten, so it cannot refill by making the map sweep.
func TestAgentLimiterSweep(t *testing.T) {
	clock := newFakeClock()
	timers := &manualTimers{}
	l := newAgentLimiter("decisions", 1, 2, clock.now, discardLogger())
	l.after = timers.after
	spent, throttled := refOf("ten_1", "agt_spent"), refOf("ten_1", "agt_throttled")
	spend(l, spent)
	spend(l, spent) // 0 tokens
	for i := range 10 {
		spend(l, refOf("ten_1", fmt.Sprintf("agt_%d", i))) // 1 token each
	}
	spend(l, throttled)
	spend(l, throttled)
	l.take(throttled) // logged
	l.take(throttled) // counted, for a timer to log

	clock.add(500 * time.Millisecond) // none full: spent 0.5, the others 1.5
	l.sweep(clock.now())
	if got := len(l.agents); got != 12 {
		t.Fatalf("a sweep with no full bucket kept %d agents, want 12", got)
	}
	clock.add(10 * time.Second) // all full
	l.sweep(clock.now())
	if _, ok := l.agents[throttled]; !ok || len(l.agents) != 1 {
		t.Fatalf("after refilling, kept %d agents; want only the one with a refusal to log", len(l.agents))
	}
	timers.fire()
	l.sweep(clock.now())
	if len(l.agents) != 0 {
		t.Fatalf("%d agents kept once their refusals were logged", len(l.agents))
	}

	// A new agent sweeps when the map has reached sweepAt: here the full
	// buckets of 1,023 agents go, and spent's part-empty one stays.
	for i := range minAgentSweep - 1 {
		spend(l, refOf("ten_1", fmt.Sprintf("agt_%d", i)))
	}
	spend(l, spent)
	spend(l, spent)
	clock.add(1500 * time.Millisecond) // the others full again; spent has 1.5
	spend(l, refOf("ten_1", "agt_new"))
	if _, ok := l.agents[spent]; !ok || len(l.agents) != 2 {
		t.Errorf("after the sweep a new agent made, %d agents kept; want spent and the new one", len(l.agents))
	}
	if l.take(spent) != 0 {
		t.Error("spent had 1.5 tokens and was refused")
	}
	if l.sweepAt != minAgentSweep {
		t.Errorf("next sweep at %d agents, want %d", l.sweepAt, minAgentSweep)
	}
}

// An agent kept over its rate is logged at its first refusal, then at
// most once a minute with how many were refused since: by the next
// refusal a minute on, by a timer a minute on when none comes, and at
// close. Nothing but the ids the request verified is logged.
func TestAgentLimiterLogsOncePerMinute(t *testing.T) {
	clock := newFakeClock()
	timers := &manualTimers{}
	var buf LockedBuffer
	l := newAgentLimiter("decisions", 1, 1, clock.now, slog.New(slog.NewJSONHandler(&buf, nil)))
	l.after = timers.after
	a := refOf("ten_1", "agt_a")
	spend(l, a)
	for range 10 {
		l.take(a) // the first is logged; 9 counted
	}
	if timers.armed() != 1 || timers.d[0] != time.Minute {
		t.Fatalf("timers %v, want one of a minute", timers.d)
	}
	clock.add(30 * time.Second) // the bucket holds 1: one allowed, 4 counted
	for range 5 {
		l.take(a)
	}
	clock.add(30 * time.Second)
	timers.fire() // a minute on: 13 logged
	clock.add(time.Second)
	l.take(a) // one allowed
	for range 7 {
		l.take(a) // counted: the last line was a second ago
	}
	if timers.armed() != 1 || timers.d[1] != 59*time.Second {
		t.Fatalf("timers %v, want a second one, of 59s", timers.d)
	}
	l.close() // 7 logged
	timers.fire()
	l.take(a) // after close: refused, not logged
	lines := jsonLines(t, &buf)
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3: %v", len(lines), lines)
	}
	for i, want := range []float64{1, 13, 7} {
		ln := lines[i]
		if ln["msg"] != "agent decisions refused: over the agent's rate" || ln["level"] != "WARN" ||
			ln["tenant"] != "ten_1" || ln["agent"] != "agt_a" || ln["refused"] != want {
			t.Errorf("line %d = %v, want refused %v", i, ln, want)
		}
	}
	if timers.stopped != 1 {
		t.Errorf("close stopped %d timers, want the pending one", timers.stopped)
	}
}

// check tells the wait as take does, and spends nothing.
func TestAgentLimiterCheck(t *testing.T) {
	clock := newFakeClock()
	l := newAgentLimiter("token requests", 2, 1, clock.now, discardLogger())
	a := refOf("ten_1", "agt_a")
	for range 3 {
		if wait := l.check(a); wait != 0 {
			t.Fatalf("check of a full bucket: wait %v", wait)
		}
	}
	spend(l, a)
	for range 3 {
		if wait := l.check(a); wait != 500*time.Millisecond {
			t.Fatalf("check of an empty bucket: wait %v, want 500ms", wait)
		}
	}
	clock.add(500 * time.Millisecond)
	if l.check(a) != 0 || !spend(l, a) {
		t.Fatal("a refilled token was not there to spend")
	}
	tiny := newAgentLimiter("token requests", 1e-300, 1, clock.now, discardLogger())
	spend(tiny, a)
	if wait := tiny.check(a); wait != math.MaxInt64 {
		t.Errorf("check at 1e-300 a second: wait %v, want the longest", wait)
	}
}

// Concurrent requests of one agent get no more than the bucket allows:
// each reads the clock under the limiter's lock, so the bucket sees time
// go forward (x/time/rate counts a refill again when it goes back).
func TestAgentLimiterConcurrent(t *testing.T) {
	var ticks atomic.Int64 // each reading of the clock is 1 ms on
	start := newFakeClock().now()
	now := func() time.Time { return start.Add(time.Duration(ticks.Add(1)) * time.Millisecond) }
	l := newAgentLimiter("decisions", 20, 1, now, discardLogger())
	a := refOf("ten_1", "agt_a")
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				if l.take(a) == 0 {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	// 16,000 readings: 16 s at 20 a second, and the burst of 1.
	if got, most := allowed.Load(), int64(1+20*16); got > most {
		t.Errorf("%d allowed, at most %d may be", got, most)
	}
}

// A clock that steps back and then forward again refills nothing twice:
// a reading before the latest counts as the latest.
func TestAgentLimiterClockGoingBack(t *testing.T) {
	clock := newFakeClock()
	l := newAgentLimiter("decisions", 1, 5, clock.now, discardLogger())
	a := refOf("ten_1", "agt_a")
	allowed := 0
	for range 10 {
		for range 10 {
			if spend(l, a) {
				allowed++
			}
		}
		clock.add(-time.Hour)
		for range 10 {
			if spend(l, a) {
				allowed++
			}
		}
		clock.add(time.Hour)
	}
	if allowed != 5 {
		t.Errorf("%d allowed with the clock going back and forth, want the burst of 5", allowed)
	}
}

// manualTimers stands for time.AfterFunc: fire runs what is armed.
type manualTimers struct {
	mu      sync.Mutex
	d       []time.Duration
	fs      []func()
	stopped int
}

type manualTimer struct {
	m *manualTimers
	i int
}

func (m *manualTimers) after(d time.Duration, f func()) stopper {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.d, m.fs = append(m.d, d), append(m.fs, f)
	return manualTimer{m, len(m.fs) - 1}
}

func (t manualTimer) Stop() bool {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	if t.m.fs[t.i] == nil {
		return false
	}
	t.m.fs[t.i] = nil
	t.m.stopped++
	return true
}

func (m *manualTimers) armed() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, f := range m.fs {
		if f != nil {
			n++
		}
	}
	return n
}

func (m *manualTimers) fire() {
	m.mu.Lock()
	var run []func()
	for i, f := range m.fs {
		if f != nil {
			run = append(run, f)
			m.fs[i] = nil
		}
	}
	m.mu.Unlock()
	for _, f := range run {
		f()
	}
}

// jsonLines are the JSON log lines written to b.
func jsonLines(t *testing.T, b *LockedBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for ln := range strings.Lines(b.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			t.Fatalf("log line %q: %v", ln, err)
		}
		out = append(out, m)
	}
	return out
}

// Zero takes the defaults; a negative or NaN rate and a negative burst
// are refused; rate.Inf is no bound, and mounts no limiter.
func TestAgentDecisionRateConfig(t *testing.T) {
	base := Config{Logger: discardLogger(), TenantReady: noCheck, PlatformReady: noCheck}
	c, err := base.withDefaults()
	if err != nil || c.AgentDecisionRate != DefaultAgentDecisionRate || c.AgentDecisionBurst != DefaultAgentDecisionBurst {
		t.Fatalf("defaults: %v %v %v", c.AgentDecisionRate, c.AgentDecisionBurst, err)
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.AgentDecisionRate = -1 },
		func(c *Config) { c.AgentDecisionRate = rate.Limit(math.NaN()) },
		func(c *Config) { c.AgentDecisionBurst = -1 },
		func(c *Config) { c.AgentDecisionBurst = MaxAgentBurst + 1 },
		func(c *Config) { c.MaxConnectionsPerAddress = -1 },
	} {
		c := base
		bad(&c)
		if _, err := New(c); err == nil {
			t.Errorf("New accepted rate %v burst %v", c.AgentDecisionRate, c.AgentDecisionBurst)
		}
	}
	c = base
	c.AgentDecisionRate = rate.Inf
	planes, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if planes.Tenant.agents != nil {
		t.Error("rate.Inf still built a limiter")
	}
	planes, _ = New(base)
	if l := planes.Tenant.agents; l == nil || l.limit != DefaultAgentDecisionRate || l.burst != DefaultAgentDecisionBurst {
		t.Errorf("default limiter %+v", l)
	}
	if planes.Platform.agents != nil {
		t.Error("the platform plane, which has no agents, got a limiter")
	}
}
