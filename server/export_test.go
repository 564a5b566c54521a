package server

import "time"

// SetRefusalTimers replaces the timers that end a's refusal windows.
func SetRefusalTimers(a *AgentAuth, after func(d time.Duration, f func()) interface{ Stop() bool }) {
	a.refusals.mu.Lock()
	defer a.refusals.mu.Unlock()
	a.refusals.after = after
}
