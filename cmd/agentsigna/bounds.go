package main

import (
	"flag"
	"fmt"
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/agentsigna/agentsigna/server"
)

// agentBoundFlags are serve's bounds on each agent: how fast it may ask
// for decisions, for access tokens and to read (see server.Config and
// server.AgentAuthConfig).
type agentBoundFlags struct {
	decisionsPerSecond float64
	decisionBurst      int
	tokensPerMinute    float64
	tokenBurst         int
	readsPerSecond     float64
	readBurst          int
}

func (f *agentBoundFlags) register(fs *flag.FlagSet) {
	fs.Float64Var(&f.decisionsPerSecond, "agent-decisions-per-second", float64(server.DefaultAgentDecisionRate),
		"decisions one agent may ask for each second, per process, after its burst (429 past it); 0: no bound")
	fs.IntVar(&f.decisionBurst, "agent-decision-burst", server.DefaultAgentDecisionBurst,
		"decisions one agent may ask for at once after a quiet spell")
	fs.Float64Var(&f.tokensPerMinute, "agent-tokens-per-minute", float64(server.DefaultAgentTokenRate*60),
		"access tokens one agent may be issued each minute, per process, after its burst (429 past it); 0: no bound")
	fs.IntVar(&f.tokenBurst, "agent-token-burst", server.DefaultAgentTokenBurst,
		"access tokens one agent may be issued at once after a quiet spell")
	fs.Float64Var(&f.readsPerSecond, "agent-reads-per-second", float64(server.DefaultAgentReadRate),
		"reads of its decisions, cases, their proofs and its log's head one agent may make each second, per process, after its burst (429 past it); 0: no bound")
	fs.IntVar(&f.readBurst, "agent-read-burst", server.DefaultAgentReadBurst,
		"reads one agent may make at once after a quiet spell")
}

// agentBounds are the flags as the server takes them: rate.Inf is no
// bound.
type agentBounds struct {
	decisionRate  rate.Limit
	decisionBurst int
	tokenRate     rate.Limit
	tokenBurst    int
	readRate      rate.Limit
	readBurst     int
}

func (f *agentBoundFlags) parse() (agentBounds, error) {
	decisions, err := perSecond("--agent-decisions-per-second", "--agent-decision-burst", f.decisionsPerSecond, time.Second, f.decisionBurst)
	if err != nil {
		return agentBounds{}, err
	}
	tokens, err := perSecond("--agent-tokens-per-minute", "--agent-token-burst", f.tokensPerMinute, time.Minute, f.tokenBurst)
	if err != nil {
		return agentBounds{}, err
	}
	reads, err := perSecond("--agent-reads-per-second", "--agent-read-burst", f.readsPerSecond, time.Second, f.readBurst)
	if err != nil {
		return agentBounds{}, err
	}
	return agentBounds{decisionRate: decisions, decisionBurst: f.decisionBurst, tokenRate: tokens, tokenBurst: f.tokenBurst,
		readRate: reads, readBurst: f.readBurst}, nil
}

// perSecond is n a period as a rate a second: 0 is no bound (rate.Inf).
// A bounded rate needs a burst of at least 1.
func perSecond(rateFlag, burstFlag string, n float64, period time.Duration, burst int) (rate.Limit, error) {
	switch {
	case burst < 0 || burst > server.MaxAgentBurst:
		return 0, fmt.Errorf("%w: %s must be from 1 to %d", errUsage, burstFlag, server.MaxAgentBurst)
	case n == 0:
		return rate.Inf, nil
	case !(n > 0) || math.IsInf(n, 0):
		return 0, fmt.Errorf("%w: %s must be a positive number, or 0 for no bound", errUsage, rateFlag)
	case burst < 1:
		return 0, fmt.Errorf("%w: %s must be from 1 to %d", errUsage, burstFlag, server.MaxAgentBurst)
	}
	perSecond := n / period.Seconds()
	if !(perSecond > 0) {
		// So small it rounds to none, which the server would take for
		// its default.
		return 0, fmt.Errorf("%w: %s is too small to be a rate", errUsage, rateFlag)
	}
	return rate.Limit(perSecond), nil
}
