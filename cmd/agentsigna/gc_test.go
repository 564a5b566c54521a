package main

import (
	"runtime/debug"
	"testing"
)

// serve raises the collector's target unless the operator chose one.
func TestTuneGC(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })

	noGOGC := func(string) (string, bool) { return "", false }
	if !tuneGC(noGOGC) {
		t.Fatal("tuneGC without GOGC: reported no change")
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Fatalf("GC percent without GOGC = %d, want %d", got, defaultGCPercent)
	}

	withGOGC := func(k string) (string, bool) {
		if k == "GOGC" {
			return "100", true
		}
		return "", false
	}
	if tuneGC(withGOGC) {
		t.Fatal("tuneGC with GOGC set: reported a change")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC percent with GOGC set = %d, want the operator's 100 kept", got)
	}
}
