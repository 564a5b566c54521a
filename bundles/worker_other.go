//go:build !linux

package bundles

import "syscall"

// limitMemory does nothing off Linux: a worker there is bounded by
// its stack limit and its deadline only.
func limitMemory(uint64) error { return nil }

func workerProcAttr() *syscall.SysProcAttr { return nil }

func offerToOOMKiller() {}

func closeInheritedOnExec() {}
