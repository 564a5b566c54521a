package bundles

import (
	"fmt"
	"os"
	"strconv"
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

// workerProcAttr kills a worker when the service's thread that started
// it ends (with the service, in practice: the Go runtime does not end its
// threads), so that no worker stuck in one long step outlives it. Should
// the thread end alone, the worker dies and is started again.
func workerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// offerToOOMKiller makes this worker the kernel's first choice when the
// machine runs out of memory, before the service.
func offerToOOMKiller() {
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0)
}

// closeInheritedOnExec marks every descriptor this process holds
// close-on-exec: Go opens its own so, but one inherited from whatever
// started the service would otherwise pass to every worker.
func closeInheritedOnExec() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// pollable returns descriptor fd (a pipe from the service) as a file
// Go's network poller serves. Read in a blocking system call, it kept the
// runtime's monitor polling every 20 µs to take the worker's one processor
// back from the blocked thread, handing it to another: under load that
// was a fifth of a worker's processor time, and a thread switch or two
// each decision. Parked on the poller, an idle worker sleeps.
func pollable(fd int, name string) (*os.File, error) {
	if err := syscall.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("bundles: worker: %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// nonDumpable makes this process non-dumpable: its /proc files (environ,
// mem) are then root's, and a process of the same user may not ptrace it
// (which is open where Yama does not restrict it). Workers run as the
// service's user and run policy code: a flaw in OPA that let that code run
// code of its own could otherwise read the master key from the service's
// environment or memory, or another organization's inputs from its
// worker. Core dumps, which would hold the same secrets, are off too:
// where fs.suid_dumpable is 2 a non-dumpable process still dumps core (for
// root to read), so its core size limit is set to 0 as well, soft and hard.
func nonDumpable() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0); errno != 0 {
		return fmt.Errorf("bundles: making this process non-dumpable: %w", errno)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}); err != nil {
		return fmt.Errorf("bundles: turning core dumps off: %w", err)
	}
	return nil
}
