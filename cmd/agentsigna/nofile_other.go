//go:build !unix

package main

// descriptorLimit: no RLIMIT_NOFILE to read here.
func descriptorLimit() (uint64, bool) { return 0, false }

// disableCoreDumps: no core size limit to set here.
func disableCoreDumps() {}
