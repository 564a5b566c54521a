package server

import (
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/time/rate"
)

const (
	// minAgentSweep is the fewest agents the limiter keeps before it
	// looks for ones to forget.
	minAgentSweep = 1024
	// throttleLogEvery bounds the service's log lines about one agent's
	// refused requests to one a minute.
	throttleLogEvery = time.Minute
	// MaxAgentBurst bounds a burst: past 2^53 a bucket's float64 count
	// no longer changes when one is spent, which is no bound at all.
	MaxAgentBurst = 1_000_000_000
)

// agentLimiter bounds how fast each agent may ask for something (a
// decision, an access token, a read): a token bucket per agent, of limit
// a second and burst deep. Each decision and each token issued appends to
// the organization's ledger, and every request takes a share of the
// processor and store all organizations share, so without a bound one
// agent (or a stolen key or token) could grow its organization's log, and
// slow every other organization's requests, as fast as it can send them.
//
// An agent is named only by what verified (an access token, a client
// assertion), so the agents kept are at most the agents registered; one
// whose bucket has refilled, with nothing left to log, is forgotten, since
// a new bucket is the same. Each process counts its own requests: n
// processes behind one address allow n times the rate.
//
// The refusals are logged, per agent, at the first and then at most once
// a minute with how many there were since: a timer writes a count the
// next refusal has not; close writes what is left.
type agentLimiter struct {
	what  string // what is limited, for the service's log: "decisions"
	limit rate.Limit
	burst int
	now   func() time.Time
	// after runs f after d: the timers that log counted refusals (a test
	// sets it).
	after func(d time.Duration, f func()) stopper
	log   *slog.Logger

	// mu guards what follows, and orders the clock's readings; last is
	// the latest, and a reading before it counts as it: x/time/rate
	// counts a refill again when time goes back and forth.
	mu      sync.Mutex
	last    time.Time
	agents  map[agentRef]*agentBucket
	sweepAt int // the number of agents at which the next new one sweeps
	closed  bool
}

type agentRef struct{ tenant, agent string }

type agentBucket struct {
	tokens *rate.Limiter
	// refused counts the requests refused since logged, when the last
	// line about them was written; flush, when set, is the timer that
	// writes them.
	refused int
	logged  time.Time
	flush   stopper
}

// refusedLine is one log line about an agent's refusals, written after
// the lock is let go: a slow log must not hold every agent's requests.
type refusedLine struct {
	ref     agentRef
	refused int
}

func newAgentLimiter(what string, limit rate.Limit, burst int, now func() time.Time, log *slog.Logger) *agentLimiter {
	return &agentLimiter{what: what, limit: limit, burst: burst, now: now, log: log,
		after:  func(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) },
		agents: map[agentRef]*agentBucket{}, sweepAt: minAgentSweep}
}

// take spends one of the agent's tokens, or tells how long until it has
// one (and spends nothing: the refusal is counted).
func (l *agentLimiter) take(ref agentRef) time.Duration { return l.admit(ref, true) }

// check tells how long until the agent has a token, as take does, and
// spends nothing either way.
func (l *agentLimiter) check(ref agentRef) time.Duration { return l.admit(ref, false) }

func (l *agentLimiter) admit(ref agentRef, spend bool) time.Duration {
	l.mu.Lock()
	now := l.forward()
	b := l.agents[ref]
	if b == nil {
		if len(l.agents) >= l.sweepAt {
			l.sweep(now)
		}
		b = &agentBucket{tokens: rate.NewLimiter(l.limit, l.burst)}
		l.agents[ref] = b
	}
	var wait time.Duration
	if spend {
		r := b.tokens.ReserveN(now, 1)
		if wait = r.DelayFrom(now); wait > 0 {
			r.CancelAt(now)
		}
	} else if tokens := b.tokens.TokensAt(now); tokens < 1 {
		wait = time.Duration(math.MaxInt64) // the longest there is: 2^63 ns and more is past it
		if ns := math.Ceil((1 - tokens) / float64(l.limit) * float64(time.Second)); ns < 1<<63 {
			wait = time.Duration(ns)
		}
	}
	if wait == 0 {
		l.mu.Unlock()
		return 0
	}
	b.refused++
	var line *refusedLine
	switch {
	case now.Sub(b.logged) >= throttleLogEvery:
		line = l.logged(ref, b, now)
	case b.flush == nil && !l.closed:
		b.flush = l.after(b.logged.Add(throttleLogEvery).Sub(now), func() { l.flushAgent(ref) })
	}
	l.mu.Unlock()
	l.write(line)
	return wait
}

// forward reads the clock, never earlier than its last reading. With
// l.mu held.
func (l *agentLimiter) forward() time.Time {
	if now := l.now(); now.After(l.last) {
		l.last = now
	}
	return l.last
}

// logged marks b's refusals as logged at now, and returns the line that
// says so. With l.mu held.
func (l *agentLimiter) logged(ref agentRef, b *agentBucket, now time.Time) *refusedLine {
	line := &refusedLine{ref: ref, refused: b.refused}
	b.refused, b.logged = 0, now
	return line
}

// flushAgent is a timer's: it logs the refusals counted since the last
// line, a minute after it.
func (l *agentLimiter) flushAgent(ref agentRef) {
	l.mu.Lock()
	var line *refusedLine
	if b := l.agents[ref]; b != nil && !l.closed {
		b.flush = nil
		if b.refused > 0 {
			line = l.logged(ref, b, l.forward())
		}
	}
	l.mu.Unlock()
	l.write(line)
}

func (l *agentLimiter) write(line *refusedLine) {
	if line == nil {
		return
	}
	// The agent and organization ids come from what verified.
	l.log.Warn("agent "+l.what+" refused: over the agent's rate",
		slog.String("tenant", line.ref.tenant), slog.String("agent", line.ref.agent),
		slog.Int("refused", line.refused), slog.Float64("rate_per_second", float64(l.limit)), slog.Int("burst", l.burst))
}

// close logs the refusals not yet logged and stops the timers. Requests
// after it are still limited; their refusals are not logged.
func (l *agentLimiter) close() {
	l.mu.Lock()
	var lines []*refusedLine
	for ref, b := range l.agents {
		if b.flush != nil {
			b.flush.Stop()
			b.flush = nil
		}
		if b.refused > 0 {
			lines = append(lines, l.logged(ref, b, l.forward()))
		}
	}
	l.closed = true
	l.mu.Unlock()
	for _, line := range lines {
		l.write(line)
	}
}

// sweep forgets the agents whose buckets are full again and whose
// refusals are logged (a timer will log the others). It runs when the map
// has doubled since the last sweep, so its cost is spread over the agents
// added. With l.mu held.
func (l *agentLimiter) sweep(now time.Time) {
	for ref, b := range l.agents {
		if b.refused == 0 && b.flush == nil && b.tokens.TokensAt(now) >= float64(l.burst) {
			delete(l.agents, ref)
		}
	}
	l.sweepAt = max(minAgentSweep, 2*len(l.agents))
}

// What a refusal says, of decisions and of reads.
const (
	decisionsRefused = "This agent is asking for decisions faster than this service allows; retry after the number of seconds in Retry-After."
	readsRefused     = "This agent is reading faster than this service allows; retry after the number of seconds in Retry-After."
)

// middleware spends one of the agent's tokens, after Require and before
// the handler reads anything (a decision's body, the store): a refused
// request reaches neither the policy nor the ledger, and says refused.
func (l *agentLimiter) middleware(refused string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		agent, ok := AgentFrom(c)
		if !ok {
			return Problem(ErrUnauthorized, "An agent access token is required (Authorization: Bearer).")
		}
		if err := l.admitAgent(c, agent, refused); err != nil {
			return err
		}
		return c.Next()
	}
}

// admitAgent spends one of agent's tokens, or refuses the request: 429
// problem+json saying detail, with the wait in Retry-After.
func (l *agentLimiter) admitAgent(c *fiber.Ctx, agent Agent, detail string) error {
	wait := l.take(agentRef{tenant: agent.Tenant.ID, agent: agent.ID})
	if wait == 0 {
		return nil
	}
	setRetryAfter(c, wait)
	return Problem(ErrTooManyRequests, detail)
}

// setRetryAfter tells the client to wait wait: whole seconds (RFC 9110
// §10.2.3), rounded up so that a client that waits as told finds a token.
func setRetryAfter(c *fiber.Ctx, wait time.Duration) {
	c.Set(fiber.HeaderRetryAfter, strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
}
