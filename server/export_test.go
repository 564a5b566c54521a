package server

import (
	"bytes"
	"context"
	"sync"
	"time"
)

// LockedBuffer is a log sink that server goroutines and a test share (the
// internal and the external tests alike).
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// SetAfterJTI runs fn between a token request's jti write and its take
// from the agent's bucket.
func SetAfterJTI(a *AgentAuth, fn func()) { a.afterJTI = fn }

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
