package decision

// OpenWaits is how many WaitCase calls of the agent hold a place: a test
// that must fill an agent's places waits for them instead of sleeping.
func (s *Service) OpenWaits(orgID, agentID string) int {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	return s.waits[waitKey(orgID, agentID)]
}

// SetBeforeChange runs fn between Rotate's read of the keys and its batch.
func (r *ReceiptKeys) SetBeforeChange(fn func()) { r.beforeChange = fn }
