package identity

// SetBeforeChange has a run fn between RotateKey's read of the keys and
// its batch.
func SetBeforeChange(a *Agents, fn func()) { a.beforeChange = fn }
