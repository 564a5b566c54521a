//go:build !race

package bundles

const raceEnabled = false
