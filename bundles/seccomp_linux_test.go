//go:build linux && (amd64 || arm64)

package bundles

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The worker's filter, on one thread of this test: it refuses what a
// worker could do to another process of its user (the victim, here),
// which capabilities do not stop when the service runs as a user other
// than root, and allows what the Go runtime does to its own process.
func TestSeccompFilterRefusesOtherProcesses(t *testing.T) {
	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Skip("no sleep to be the victim:", err)
	}
	defer func() { _ = victim.Process.Kill(); _ = victim.Wait() }()
	pid := victim.Process.Pid

	type attempt struct {
		what string
		call func() error
		want error // nil: allowed
	}
	var limit unix.Rlimit
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		t.Fatal(err)
	}
	attempts := []attempt{
		{"read the victim's limit", func() error { return unix.Prlimit(pid, unix.RLIMIT_CPU, nil, &limit) }, unix.EPERM},
		{"renice the victim", func() error { return unix.Setpriority(unix.PRIO_PROCESS, pid, 0) }, unix.EPERM},
		{"pin the victim", func() error { return unix.SchedSetaffinity(pid, &cpus) }, unix.EPERM},
		{"signal the victim", func() error { return syscall.Kill(pid, 0) }, unix.EPERM},
		{"signal the process group", func() error { return syscall.Kill(0, 0) }, unix.EPERM},
		{"signal every process", func() error { return syscall.Kill(-1, 0) }, unix.EPERM},
		{"signal a thread of the victim", func() error { return unix.Tgkill(pid, pid, 0) }, unix.EPERM},
		{"signal a thread by id alone", func() error {
			_, _, errno := syscall.Syscall(unix.SYS_TKILL, uintptr(pid), 0, 0)
			return errnoErr(errno)
		}, unix.EPERM},
		{"open a pidfd", func() error {
			fd, err := unix.PidfdOpen(pid, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}, unix.EPERM},
		{"read its own limit", func() error { return unix.Prlimit(0, unix.RLIMIT_CPU, nil, &limit) }, nil},
		{"read its own limit by pid", func() error { return unix.Prlimit(syscall.Getpid(), unix.RLIMIT_CPU, nil, &limit) }, nil},
		{"signal itself", func() error { return syscall.Kill(syscall.Getpid(), 0) }, nil},
		{"signal its own thread", func() error { return unix.Tgkill(syscall.Getpid(), unix.Gettid(), 0) }, nil},
	}
	// Without the filter each is allowed: the victim is this process's
	// child, of its user.
	for _, a := range attempts {
		if err := a.call(); err != nil {
			t.Fatalf("%s, unfiltered: %v", a.what, err)
		}
	}

	got := make(chan []error)
	go func() {
		// The filter stays on this thread, which ends with the goroutine:
		// it never runs anything else.
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			got <- []error{err}
			return
		}
		if err := confineCalls(); err != nil {
			got <- []error{err}
			return
		}
		errs := make([]error, len(attempts))
		for i, a := range attempts {
			errs[i] = a.call()
		}
		got <- errs
	}()
	errs := <-got
	if len(errs) != len(attempts) {
		t.Fatalf("installing the filter: %v", errs[0])
	}
	for i, a := range attempts {
		if errs[i] != a.want {
			t.Errorf("%s: %v, want %v", a.what, errs[i], a.want)
		}
	}
}

// Every jump of both filters lands inside them, forward.
func TestSeccompFiltersAssemble(t *testing.T) {
	for name, build := range map[string]func() ([]unix.SockFilter, error){
		"calls": func() ([]unix.SockFilter, error) {
			return seccompFilter(auditArch, 1234, append(refusedCalls, legacyRefusedCalls...))
		},
		"exec": func() ([]unix.SockFilter, error) { return execFilter(auditArch) },
	} {
		prog, err := build()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i, in := range prog {
			if in.Code&0x07 == unix.BPF_JMP && (i+1+int(in.Jt) >= len(prog) || i+1+int(in.Jf) >= len(prog)) {
				t.Errorf("%s: instruction %d jumps out of the program", name, i)
			}
		}
		if last := prog[len(prog)-1]; last.Code != bpfRet {
			t.Errorf("%s: the program does not end in a return", name)
		}
	}
	if _, err := assemble([]insn{{code: bpfJEq, ifTrue: "back"}}, map[string]int{"back": 0}); err == nil {
		t.Error("a jump backwards assembled")
	}
}
