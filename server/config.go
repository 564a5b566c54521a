package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"golang.org/x/time/rate"
)

// ReadinessCheck reports whether a plane can serve requests (its store is
// reachable, its keys are loaded…). It must return promptly once ctx is done.
type ReadinessCheck func(ctx context.Context) error

// Defaults, applied by New to zero Config fields.
const (
	DefaultBodyLimit    = 64 << 10 // DESIGN.md §3: request bodies ≤ 64 KiB
	DefaultMaxJSONDepth = 8        // DESIGN.md §3: nesting depth ≤ 8
	DefaultReadTimeout  = 10 * time.Second
	// DefaultWriteTimeout leaves room for the 30 s long poll of
	// GET /v1/cases/{id}?wait=30s.
	DefaultWriteTimeout     = 60 * time.Second
	DefaultIdleTimeout      = 60 * time.Second
	DefaultReadinessTimeout = 2 * time.Second
	// DefaultExportTimeout bounds making and sending a ledger export,
	// which is made while it is sent.
	DefaultExportTimeout = 15 * time.Minute
	// DefaultMaxConnections bounds the connections one plane holds open
	// at once to what 256 MiB holds of the most one connection can cost,
	// connectionWorstCase: 3,276 (fiber's own limit, 262,144, would be
	// 20 GiB).
	DefaultMaxConnections = 256 << 20 / connectionWorstCase
	// connectionWorstCase is what one connection can hold of memory: a
	// goroutine and its buffers (about 16 KiB idle), and the request body
	// the default body limit allows, which fasthttp allocates at the size
	// the Content-Length announces as soon as the headers arrive, before
	// any of the body does (and keeps pooled after). Budgeted for idle
	// connections alone, as this once was (16,384 a plane), a flood that
	// only announced bodies held 4 times the budget (found by review).
	connectionWorstCase = DefaultBodyLimit + 16<<10
	// MinMaxConnections is the fewest connections ConnectionsWithin gives
	// a plane, however low the descriptor limit.
	MinMaxConnections = 64
	// minReservedDescriptors is the fewest descriptors ConnectionsWithin
	// leaves to all but the planes' connections.
	minReservedDescriptors = 1024
	// DefaultAgentDecisionRate and DefaultAgentDecisionBurst bound one
	// agent's POST /v1/decisions: a batch of 100 at once, then 20 a
	// second. A single agent at that rate takes about 1% of this
	// service's processor on a 2-core machine, and adds 1.7 million
	// entries a day to its organization's log.
	DefaultAgentDecisionRate  rate.Limit = 20
	DefaultAgentDecisionBurst            = 100
)

// Config configures both planes. Zero durations and limits take the defaults
// above; Logger and both readiness checks are required.
type Config struct {
	// Logger receives one line per request and every internal error.
	Logger *slog.Logger
	// TenantReady and PlatformReady back GET /readyz on each plane.
	TenantReady   ReadinessCheck
	PlatformReady ReadinessCheck
	// BodyLimit is the largest request body accepted, in bytes, by the
	// transport (413) and by DecodeJSON.
	BodyLimit int
	// MaxJSONDepth is the deepest nesting DecodeJSON accepts.
	MaxJSONDepth int
	// TLS tells whether the listeners serve TLS; only then is
	// Strict-Transport-Security sent (RFC 6797 §7.2: not over plain HTTP).
	TLS bool
	// ReadTimeout, WriteTimeout and IdleTimeout bound each connection.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// ReadinessTimeout bounds one readiness check.
	ReadinessTimeout time.Duration
	// MaxConnections bounds the connections each plane serves at once;
	// past it, a new connection waits to be accepted until one closes.
	MaxConnections int
	// MaxConnectionsPerAddress bounds the connections each plane holds
	// from one address (an IPv6 one by its /64); one more is closed as
	// soon as it is accepted, without an answer. 0 (the default) is no
	// bound: behind a proxy, every connection is the proxy's.
	MaxConnectionsPerAddress int
	// ExportTimeout bounds GET /v1/ledger/export as a whole: the
	// archive's reads and compression happen while it is sent. Within it,
	// WriteTimeout bounds each piece of the archive, so a client that
	// stops reading is dropped after WriteTimeout.
	ExportTimeout time.Duration
	// AgentDecisionRate is how many decisions a second one agent may ask
	// for on the tenant plane, and AgentDecisionBurst how many at once
	// after a quiet spell (a token bucket per agent and process). Past it
	// POST /v1/decisions answers 429 with Retry-After, before the policy
	// or the ledger sees the request. rate.Inf lifts the bound.
	AgentDecisionRate  rate.Limit
	AgentDecisionBurst int
}

// withDefaults validates c once and fills its zero fields.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	if c.Logger == nil {
		errs = append(errs, errors.New("a logger is required"))
	}
	if c.TenantReady == nil || c.PlatformReady == nil {
		errs = append(errs, errors.New("a readiness check is required for each plane"))
	}
	if c.BodyLimit < 0 || c.MaxJSONDepth < 0 || c.MaxConnections < 0 || c.MaxConnectionsPerAddress < 0 || c.AgentDecisionBurst < 0 {
		errs = append(errs, errors.New("body limit, JSON depth, connections and burst must not be negative"))
	}
	if c.AgentDecisionRate < 0 || math.IsNaN(float64(c.AgentDecisionRate)) {
		errs = append(errs, errors.New("the agents' decision rate must be positive (rate.Inf for no bound)"))
	}
	if c.AgentDecisionBurst > MaxAgentBurst {
		errs = append(errs, fmt.Errorf("the agents' decision burst must be at most %d", MaxAgentBurst))
	}
	if c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.ReadinessTimeout < 0 || c.ExportTimeout < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("server: invalid config: %w", err)
	}
	setDefault(&c.BodyLimit, DefaultBodyLimit)
	setDefault(&c.MaxJSONDepth, DefaultMaxJSONDepth)
	setDefault(&c.ReadTimeout, DefaultReadTimeout)
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.ReadinessTimeout, DefaultReadinessTimeout)
	setDefault(&c.ExportTimeout, DefaultExportTimeout)
	setDefault(&c.MaxConnections, DefaultMaxConnections)
	setDefault(&c.AgentDecisionRate, DefaultAgentDecisionRate)
	setDefault(&c.AgentDecisionBurst, DefaultAgentDecisionBurst)
	return c, nil
}

func setDefault[T int | time.Duration | rate.Limit](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// ConnectionsWithin is the most connections each of the two planes should
// hold open at once in a process allowed nofile descriptors
// (RLIMIT_NOFILE): with both planes full, a quarter of them (at least
// 1,024) is left for everything else (each organization's store files,
// its policy worker's pipes, database connections, logs), so that a flood
// of connections cannot starve the service of descriptors. It is at most
// DefaultMaxConnections and at least MinMaxConnections.
func ConnectionsWithin(nofile uint64) int {
	reserve := max(minReservedDescriptors, nofile/4)
	if nofile <= reserve+2*MinMaxConnections {
		return MinMaxConnections
	}
	return int(min((nofile-reserve)/2, DefaultMaxConnections))
}
