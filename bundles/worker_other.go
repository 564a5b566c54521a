//go:build !linux

package bundles

import (
	"os"
	"syscall"
)

// limitMemory does nothing off Linux: a worker there is bounded by
// its stack limit and its deadline only.
func limitMemory(uint64) error { return nil }

func workerProcAttr() *syscall.SysProcAttr { return nil }

func offerToOOMKiller() {}

func closeInheritedOnExec() {}

// pollable returns descriptor fd as a file.
func pollable(fd int, name string) (*os.File, error) {
	return os.NewFile(uintptr(fd), name), nil
}

// nonDumpable does nothing off Linux.
func nonDumpable() error { return nil }
