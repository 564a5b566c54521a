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

// SetExportChunk makes Export read n entries per transaction, until restore:
// a test of what it holds in memory need not write thousands of entries.
func SetExportChunk(n uint64) (restore func()) {
	old := exportChunk
	exportChunk = n
	return func() { exportChunk = old }
}
