//go:build !linux

package bundles

// limitMemory does nothing off Linux: a worker there is bounded by
// its stack limit and its deadline only.
func limitMemory(uint64) error { return nil }
