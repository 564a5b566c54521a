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
)

// agentLimiter bounds how fast each agent may ask for something (a
// decision, an access token): a token bucket per agent, of limit a second
// and burst deep. Each decision and each token issued appends to the
// organization's ledger and takes a share of the processor all
// organizations share, so without a bound one agent (or a stolen key or
// token) could grow its organization's log, and slow every other
// organization's requests, as fast as it can send them.
//
// An agent is named by a verified access token only, so the agents kept
// are at most the agents registered; one whose bucket has refilled is
// forgotten, since a new bucket is the same. Each process counts its own
// requests: n processes behind one address allow n times the rate.
type agentLimiter struct {
	what  string // what is limited, for the service's log: "decisions"
	limit rate.Limit
	burst int
	now   func() time.Time
	log   *slog.Logger

	mu      sync.Mutex
	agents  map[agentRef]*agentBucket
	sweepAt int // the number of agents at which the next new one sweeps
}

type agentRef struct{ tenant, agent string }

type agentBucket struct {
	tokens *rate.Limiter
	// refused counts the requests refused since logged, when the last
	// line about them was written.
	refused int
	logged  time.Time
}

func newAgentLimiter(what string, limit rate.Limit, burst int, now func() time.Time, log *slog.Logger) *agentLimiter {
	return &agentLimiter{what: what, limit: limit, burst: burst, now: now, log: log,
		agents: map[agentRef]*agentBucket{}, sweepAt: minAgentSweep}
}

// take spends one of the agent's tokens, or tells how long until it has
// one (and spends nothing).
func (l *agentLimiter) take(ref agentRef) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.agents[ref]
	if b == nil {
		if len(l.agents) >= l.sweepAt {
			l.sweep(now)
		}
		b = &agentBucket{tokens: rate.NewLimiter(l.limit, l.burst)}
		l.agents[ref] = b
	}
	r := b.tokens.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	if wait == 0 {
		return 0
	}
	r.CancelAt(now)
	b.refused++
	if now.Sub(b.logged) >= throttleLogEvery {
		l.logRefused(ref, b, now)
	}
	return wait
}

// logRefused writes b's count of refused requests to the service's log.
// The agent and organization ids come from a verified token.
func (l *agentLimiter) logRefused(ref agentRef, b *agentBucket, now time.Time) {
	l.log.Warn("agent "+l.what+" refused: over the agent's rate",
		slog.String("tenant", ref.tenant), slog.String("agent", ref.agent),
		slog.Int("refused", b.refused), slog.Float64("rate_per_second", float64(l.limit)), slog.Int("burst", l.burst))
	b.refused, b.logged = 0, now
}

// sweep forgets the agents whose buckets are full again, logging any
// refusals not yet logged (after the minute since the last line: until
// then such an agent is kept). It runs when the map has doubled since the
// last sweep, so its cost is spread over the agents added.
func (l *agentLimiter) sweep(now time.Time) {
	for ref, b := range l.agents {
		if b.tokens.TokensAt(now) < float64(l.burst) {
			continue
		}
		if b.refused > 0 {
			if now.Sub(b.logged) < throttleLogEvery {
				continue
			}
			l.logRefused(ref, b, now)
		}
		delete(l.agents, ref)
	}
	l.sweepAt = max(minAgentSweep, 2*len(l.agents))
}

// limitDecisions is the middleware: after Require, before the body is
// read. A refused request reaches neither the policy nor the ledger.
func (l *agentLimiter) limitDecisions(c *fiber.Ctx) error {
	agent, ok := AgentFrom(c)
	if !ok {
		return Problem(ErrUnauthorized, "An agent access token is required (Authorization: Bearer).")
	}
	wait := l.take(agentRef{tenant: agent.Tenant.ID, agent: agent.ID})
	if wait == 0 {
		return c.Next()
	}
	setRetryAfter(c, wait)
	return Problem(ErrTooManyRequests, "This agent is asking for decisions faster than this service allows; retry after the number of seconds in Retry-After.")
}

// setRetryAfter tells the client to wait wait: whole seconds (RFC 9110
// §10.2.3), rounded up so that a client that waits as told finds a token.
func setRetryAfter(c *fiber.Ctx, wait time.Duration) {
	c.Set(fiber.HeaderRetryAfter, strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
}
