package bundles

import (
	"syscall"
	"testing"
)

// Once Workers exist the service is not dumpable: no worker, which runs
// as its user, may ptrace it or read its environment or memory.
func TestWorkersMakeTheServiceNonDumpable(t *testing.T) {
	newWorkers(t, WorkerOptions{})
	if d, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_GET_DUMPABLE, 0, 0); errno != 0 || d != 0 {
		t.Errorf("PR_GET_DUMPABLE = %d, %v; want 0", d, errno)
	}
}
