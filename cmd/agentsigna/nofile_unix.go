//go:build unix

package main

import "syscall"

// descriptorLimit is the process's RLIMIT_NOFILE (its soft limit, which
// the Go runtime raises to the hard limit at start), or false when it
// cannot be read.
func descriptorLimit() (uint64, bool) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, false
	}
	return uint64(r.Cur), true
}

// disableCoreDumps sets this process's core size limit to 0, soft and
// hard.
func disableCoreDumps() { _ = syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}) }
