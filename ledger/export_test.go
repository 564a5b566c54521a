package ledger

// QueuedRequests is how many requests wait in lg's writer's queue, 0 when
// the log has no writer: a test that must cancel a request while it is
// queued waits for it to be there instead of sleeping and hoping.
func (l *Ledger) QueuedRequests(lg Log) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.writers[lg.key]; ok {
		return len(w.reqs)
	}
	return 0
}
