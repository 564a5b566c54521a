package bundles

import (
	"fmt"
	"syscall"
)

// limitMemory caps this process's data (RLIMIT_DATA: its private writable
// memory, the Go heap included): past it an allocation fails, and the Go
// runtime ends the process. Not RLIMIT_AS: the runtime reserves address
// space it never touches, 1.5 GB of it in a worker that uses 18 MB.
func limitMemory(bytes uint64) error {
	lim := syscall.Rlimit{Cur: bytes, Max: bytes}
	if err := syscall.Setrlimit(syscall.RLIMIT_DATA, &lim); err != nil {
		return fmt.Errorf("limiting data to %d bytes: %w", bytes, err)
	}
	return nil
}
