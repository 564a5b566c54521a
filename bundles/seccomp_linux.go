//go:build linux && (amd64 || arm64)

package bundles

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// What a worker's seccomp filters refuse, with EPERM. Landlock leaves
// these open:
//   - sockets of the kinds it does not cover (UDP, UNIX, Multipath TCP;
//     io_uring makes sockets without socket(2));
//   - a file's mode, owner, times, extended attributes, flags (ioctl) or
//     length (Landlock guards its contents and names, not its metadata;
//     truncation only from ABI 3);
//   - another process of the same user: its limits (prlimit64 may set
//     RLIMIT_CPU to 0, which kills the service), scheduling, and, below
//     Landlock ABI 6, signals, also by SIGIO (fcntl F_SETOWN);
//   - a process of its own (fork, or clone without CLONE_THREAD), which
//     would outlive the worker and could then name another by its pid;
//   - what a worker has no use for and is a way into the kernel or to
//     another process: namespaces, keyrings, System V IPC, userfaultfd,
//     perf events, BPF, personality, file notifications, the mount
//     table, and locks and leases on the files it may read (a lease
//     holds a writer up for the lease-break time);
//   - its own parent-death signal: cleared, an escaped worker would
//     outlive the service;
//   - another process's memory (ptrace, process_vm_readv/writev: Yama
//     and Landlock may not be there to refuse them, and a sibling worker
//     is dumpable for a moment after its exec), anonymous executable
//     files (memfd_create), the kernel log, files by handle, and POSIX
//     message queues.
var (
	refusedCalls = []uint32{
		unix.SYS_SOCKET, unix.SYS_SOCKETPAIR, unix.SYS_IO_URING_SETUP,
		unix.SYS_FCHMOD, unix.SYS_FCHMODAT, unix.SYS_FCHMODAT2,
		unix.SYS_FCHOWN, unix.SYS_FCHOWNAT, unix.SYS_UTIMENSAT,
		unix.SYS_SETXATTR, unix.SYS_LSETXATTR, unix.SYS_FSETXATTR, unix.SYS_SETXATTRAT,
		unix.SYS_REMOVEXATTR, unix.SYS_LREMOVEXATTR, unix.SYS_FREMOVEXATTR, unix.SYS_REMOVEXATTRAT,
		unix.SYS_TRUNCATE, unix.SYS_IOCTL,
		unix.SYS_SETPRIORITY, unix.SYS_IOPRIO_SET,
		unix.SYS_SCHED_SETAFFINITY, unix.SYS_SCHED_SETSCHEDULER, unix.SYS_SCHED_SETPARAM, unix.SYS_SCHED_SETATTR,
		unix.SYS_TKILL, unix.SYS_PIDFD_OPEN, unix.SYS_PIDFD_SEND_SIGNAL, unix.SYS_PROCESS_MADVISE, unix.SYS_KCMP,
		unix.SYS_UNSHARE, unix.SYS_SETNS,
		unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
		unix.SYS_SHMGET, unix.SYS_SHMAT, unix.SYS_SHMCTL, unix.SYS_SHMDT,
		unix.SYS_MSGGET, unix.SYS_MSGSND, unix.SYS_MSGRCV, unix.SYS_MSGCTL,
		unix.SYS_SEMGET, unix.SYS_SEMOP, unix.SYS_SEMCTL, unix.SYS_SEMTIMEDOP,
		unix.SYS_USERFAULTFD, unix.SYS_PERF_EVENT_OPEN, unix.SYS_BPF, unix.SYS_PERSONALITY,
		unix.SYS_FANOTIFY_INIT, unix.SYS_INOTIFY_INIT1,
		unix.SYS_LISTMOUNT, unix.SYS_STATMOUNT, unix.SYS_FLOCK,
		unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV,
		unix.SYS_MEMFD_CREATE, unix.SYS_SYSLOG, unix.SYS_NAME_TO_HANDLE_AT, unix.SYS_OPEN_BY_HANDLE_AT,
		unix.SYS_MQ_OPEN, unix.SYS_MQ_UNLINK, unix.SYS_MQ_TIMEDSEND, unix.SYS_MQ_TIMEDRECEIVE,
		unix.SYS_MQ_NOTIFY, unix.SYS_MQ_GETSETATTR,
	}
	// selfCalls name a process in their first argument: only this one may
	// be named (the Go runtime signals its own threads with tgkill).
	selfCalls = []uint32{unix.SYS_KILL, unix.SYS_TGKILL, unix.SYS_RT_SIGQUEUEINFO, unix.SYS_RT_TGSIGQUEUEINFO}
	// selfOrZeroCalls also take 0 for this process, as the Go runtime and
	// limitMemory call prlimit64.
	selfOrZeroCalls = []uint32{unix.SYS_PRLIMIT64}
	// refusedCommands are the fcntl commands that name a process to
	// signal when a descriptor is ready (or the signal), and take a lease.
	refusedCommands = []uint32{unix.F_SETOWN, unix.F_SETOWN_EX, unix.F_SETSIG, unix.F_SETLEASE}
)

// cloneNamespaces are clone's flags that make new namespaces.
const cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// seccompArch is the seccomp audit architecture of this build (a filter
// must check it: a system call number means another call on another
// architecture).
func seccompArch() uint32 { return auditArch }

// An insn is a classic BPF instruction whose jumps name labels.
type insn struct {
	code          uint16
	k             uint32
	ifTrue, else_ string // labels; "" is the next instruction
}

// assemble resolves the labels of prog (label: index) into jump offsets.
func assemble(prog []insn, labels map[string]int) ([]unix.SockFilter, error) {
	out := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		out[i] = unix.SockFilter{Code: in.code, K: in.k}
		for _, j := range []struct {
			label string
			off   *uint8
		}{{in.ifTrue, &out[i].Jt}, {in.else_, &out[i].Jf}} {
			if j.label == "" {
				continue
			}
			to, ok := labels[j.label]
			if !ok || to <= i || to-i-1 > 255 {
				return nil, fmt.Errorf("seccomp filter: jump from %d to %q", i, j.label)
			}
			*j.off = uint8(to - i - 1)
		}
	}
	return out, nil
}

const (
	bpfLoad = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJEq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJGE  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	bpfJSet = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	bpfRet  = unix.BPF_RET | unix.BPF_K

	// Offsets in struct seccomp_data; both architectures are little
	// endian, so an argument's low half comes first.
	dataNR      = 0
	dataArch    = 4
	dataArg0Low = 16
	dataArg0Hi  = 20
	dataArg1Low = 24

	x32Bit = 0x40000000 // __X32_SYSCALL_BIT: the x32 ABI, never Go's
)

// seccompFilter is the program of a filter that returns EPERM for
// refused, for selfCalls and selfOrZeroCalls naming a process other than
// pid, for fcntl's refusedCommands, for prctl PR_SET_PDEATHSIG and for a
// clone that is not a thread's or makes a namespace, and ENOSYS for
// clone3 (whose flags it cannot read: the C library then clones as
// before); that allows every other call of arch, and kills the process on
// a call of another ABI.
func seccompFilter(arch uint32, pid int, refused []uint32) ([]unix.SockFilter, error) {
	prog := []insn{
		{code: bpfLoad, k: dataArch},
		{code: bpfJEq, k: arch, else_: "kill"},
		{code: bpfLoad, k: dataNR},
		{code: bpfJGE, k: x32Bit, ifTrue: "kill"},
	}
	for _, nr := range refused {
		prog = append(prog, insn{code: bpfJEq, k: nr, ifTrue: "refuse"})
	}
	for _, nr := range selfCalls {
		prog = append(prog, insn{code: bpfJEq, k: nr, ifTrue: "self"})
	}
	for _, nr := range selfOrZeroCalls {
		prog = append(prog, insn{code: bpfJEq, k: nr, ifTrue: "selfOrZero"})
	}
	prog = append(prog,
		insn{code: bpfJEq, k: unix.SYS_FCNTL, ifTrue: "fcntl"},
		insn{code: bpfJEq, k: unix.SYS_PRCTL, ifTrue: "prctl"},
		insn{code: bpfJEq, k: unix.SYS_CLONE, ifTrue: "clone"},
		insn{code: bpfJEq, k: unix.SYS_CLONE3, ifTrue: "noSys"},
	)
	labels := map[string]int{}
	mark := func(label string) { labels[label] = len(prog) }
	prog = append(prog, insn{code: bpfRet, k: unix.SECCOMP_RET_ALLOW})
	mark("fcntl") // the command is an unsigned int: its low half
	prog = append(prog, insn{code: bpfLoad, k: dataArg1Low})
	for _, cmd := range refusedCommands {
		prog = append(prog, insn{code: bpfJEq, k: cmd, ifTrue: "refuse"})
	}
	prog = append(prog, insn{code: bpfRet, k: unix.SECCOMP_RET_ALLOW})
	mark("prctl") // the option is an int: its low half
	prog = append(prog,
		insn{code: bpfLoad, k: dataArg0Low},
		insn{code: bpfJEq, k: unix.PR_SET_PDEATHSIG, ifTrue: "refuse", else_: "allow"},
	)
	mark("clone") // the flags are its first argument on both architectures
	prog = append(prog,
		insn{code: bpfLoad, k: dataArg0Low},
		insn{code: bpfJSet, k: cloneNamespaces, ifTrue: "refuse"},
		insn{code: bpfJSet, k: unix.CLONE_THREAD, ifTrue: "allow", else_: "refuse"},
	)
	mark("selfOrZero")
	prog = append(prog,
		insn{code: bpfLoad, k: dataArg0Hi},
		insn{code: bpfJEq, k: 0, else_: "refuse"},
		insn{code: bpfLoad, k: dataArg0Low},
		insn{code: bpfJEq, k: 0, ifTrue: "allow"},
		insn{code: bpfJEq, k: uint32(pid), ifTrue: "allow", else_: "refuse"},
	)
	mark("self")
	prog = append(prog,
		insn{code: bpfLoad, k: dataArg0Hi},
		insn{code: bpfJEq, k: 0, else_: "refuse"},
		insn{code: bpfLoad, k: dataArg0Low},
		insn{code: bpfJEq, k: uint32(pid), else_: "refuse"},
	)
	mark("allow")
	prog = append(prog, insn{code: bpfRet, k: unix.SECCOMP_RET_ALLOW})
	mark("kill")
	prog = append(prog, insn{code: bpfRet, k: unix.SECCOMP_RET_KILL_PROCESS})
	mark("refuse")
	prog = append(prog, insn{code: bpfRet, k: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)})
	mark("noSys")
	prog = append(prog, insn{code: bpfRet, k: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)})
	return assemble(prog, labels)
}

// execFilter refuses execve(2) and execveat(2): once the sandboxed image
// runs, a worker has nothing to execute (the Landlock rules let it
// execute its own binary, and any library through the loader).
func execFilter(arch uint32) ([]unix.SockFilter, error) {
	prog := []insn{
		{code: bpfLoad, k: dataArch},
		{code: bpfJEq, k: arch, else_: "kill"},
		{code: bpfLoad, k: dataNR},
		{code: bpfJEq, k: unix.SYS_EXECVE, ifTrue: "refuse"},
		{code: bpfJEq, k: unix.SYS_EXECVEAT, ifTrue: "refuse"},
		{code: bpfRet, k: unix.SECCOMP_RET_ALLOW},
		{code: bpfRet, k: unix.SECCOMP_RET_KILL_PROCESS},               // kill
		{code: bpfRet, k: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)}, // refuse
	}
	return assemble(prog, map[string]int{"kill": 6, "refuse": 7})
}

// installFilter adds filter to the calling thread, or with tsync to every
// thread of the process. It needs no_new_privs set first.
func installFilter(filter []unix.SockFilter, tsync bool) error {
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	var flags uintptr
	if tsync {
		flags = unix.SECCOMP_FILTER_FLAG_TSYNC
	}
	r, _, errno := syscall.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog)))
	switch {
	case errno != 0:
		return errno
	case r != 0: // with TSYNC: the id of a thread that could not take it
		return fmt.Errorf("thread %d has another filter", r)
	}
	return nil
}

// confineCalls adds the filter of seccompFilter to the calling thread.
func confineCalls() error {
	filter, err := seccompFilter(auditArch, syscall.Getpid(), append(refusedCalls, legacyRefusedCalls...))
	if err != nil {
		return err
	}
	return installFilter(filter, false)
}

// refuseExec adds execFilter to every thread of this process.
func refuseExec() error {
	filter, err := execFilter(auditArch)
	if err != nil {
		return err
	}
	return installFilter(filter, true)
}
