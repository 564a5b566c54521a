//go:build race

package bundles

// raceEnabled: this is a build with the race detector. It takes memory of
// its own (a worker's data starts at about 420 MB), which memory limits in
// tests must leave room for, and its options (GORACE) pass on to workers.
const raceEnabled = true
