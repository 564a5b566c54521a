//go:build race

package bundles

// raceEnabled: the race detector takes memory of its own (a worker's data
// starts at about 420 MB), which memory limits in tests must leave room for.
const raceEnabled = true
