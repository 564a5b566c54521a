package server

import (
	"context"
	"time"
)

// SetRefusalTimers replaces the timers that end a's refusal windows.
func SetRefusalTimers(a *AgentAuth, after func(d time.Duration, f func()) interface{ Stop() bool }) {
	a.refusals.mu.Lock()
	defer a.refusals.mu.Unlock()
	a.refusals.after = func(d time.Duration, f func()) stopper { return after(d, f) }
}

// SetRefusalAppend replaces how a gets a refusal into its own entry.
func SetRefusalAppend(a *AgentAuth, appendRefusal func(ctx context.Context, claimed, reason string) error) {
	a.recordRefusal = a.refusals.bound(func(ctx context.Context, r refusal) error { return appendRefusal(ctx, r.claimed, r.reason) })
}
