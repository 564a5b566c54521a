package bundles

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A worker runs code an organization wrote. The builtins that reach outside
// the process are forbidden at compile time (capabilities.go), and the
// worker gets no secret in its environment; the sandbox is for a flaw that
// would let that code do more: it confines the worker to what it needs,
// which is its pipes, its memory and read-only system files.
//
// Landlock (Linux 5.13 on) confines the file system: nothing may be
// written, and nothing read but the shared libraries, time zones and
// certificate roots below; so no data dir, master key or other
// organization's file. From its ABI 4, no TCP bind or connect; from ABI 6,
// no signal to a process outside the sandbox (the service, another
// worker) and no abstract UNIX socket outside it. A seccomp filter refuses
// socket(2) and io_uring_setup(2) (whose requests make sockets without
// socket(2)): Landlock does not cover UDP, or TCP when asked for as
// Multipath TCP, and a worker has no use for a socket.
//
// Landlock confines the thread that asks and what it executes, not the
// other threads of a Go process; so the worker confines one thread and
// executes itself again from it (enterSandbox), before it reads anything
// from the service. The new image and every thread it starts are
// confined.

// sandboxReadable are read-only to a worker, where they exist: the dynamic
// loader's cache and the libraries it loads, time zones, certificate
// roots (crypto.x509.parse_and_verify_certificates may use them). Symbolic
// links resolve to their targets, which a rule must cover.
var sandboxReadable = []string{
	"/etc/ld.so.cache",
	"/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/lib32",
	"/usr/share/zoneinfo",
	"/etc/ssl", "/etc/pki", "/usr/share/ca-certificates", "/usr/local/share/ca-certificates",
}

const (
	fsReadFile = unix.LANDLOCK_ACCESS_FS_READ_FILE
	fsReadDir  = unix.LANDLOCK_ACCESS_FS_READ_DIR
	fsExecute  = unix.LANDLOCK_ACCESS_FS_EXECUTE
)

// landlockABI is the kernel's Landlock ABI version, 0 without Landlock.
func landlockABI() int {
	v, _, errno := syscall.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
}

// landlockRuleset is what a worker's ruleset handles at ABI version abi:
// every access right the version knows, so that each is refused but where
// a rule grants it.
func landlockRuleset(abi int) unix.LandlockRulesetAttr {
	var attr unix.LandlockRulesetAttr
	attr.Handled_access_fs = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR |
		unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR |
		unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	if abi >= 2 {
		attr.Handled_access_fs |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		attr.Handled_access_fs |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 4 {
		attr.Handled_access_net = unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
	}
	if abi >= 5 {
		attr.Handled_access_fs |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	if abi >= 6 {
		attr.Scoped = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
	}
	if abi >= 9 {
		attr.Handled_access_fs |= unix.LANDLOCK_ACCESS_FS_RESOLVE_UNIX
	}
	return attr
}

// seccompArch is the seccomp audit architecture of this build, 0 where the
// filter is not built (a filter must check it: a system call number means
// another call on another architecture).
func seccompArch() uint32 {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64
	}
	return 0
}

// seccompFilter refuses socket(2) and io_uring_setup(2) with EPERM and
// allows every other call of arch; a call of another ABI (x32 on amd64,
// another architecture) kills the process.
func seccompFilter(arch uint32) []unix.SockFilter {
	const (
		ld     = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge    = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		ret    = unix.BPF_RET | unix.BPF_K
		x32    = 0x40000000 // __X32_SYSCALL_BIT
		nrAt   = 0          // offsetof(struct seccomp_data, nr)
		archAt = 4          // offsetof(struct seccomp_data, arch)
	)
	return []unix.SockFilter{
		{Code: ld, K: archAt},
		{Code: jeq, K: arch, Jt: 1},
		{Code: ret, K: unix.SECCOMP_RET_KILL_PROCESS},
		{Code: ld, K: nrAt},
		{Code: jge, K: x32, Jt: 3},
		{Code: jeq, K: unix.SYS_SOCKET, Jt: 3},
		{Code: jeq, K: unix.SYS_IO_URING_SETUP, Jt: 2},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		{Code: ret, K: unix.SECCOMP_RET_KILL_PROCESS},
		{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
	}
}

// inSandbox reports whether this worker is the image enterSandbox
// executed.
func inSandbox() bool { return os.Getenv(sandboxEnv) == "1" }

// enterSandbox confines the calling thread (no new privileges, the
// Landlock ruleset the kernel supports, the seccomp filter) and executes
// this binary again from it, with sandboxEnv set. It returns only on
// failure: the worker then exits, and its organization's evaluations fail
// closed. With neither Landlock nor the filter to apply, it returns nil
// and the worker runs unconfined (the service logs so, sandboxSupport).
func enterSandbox() error {
	abi, arch := landlockABI(), seccompArch()
	if abi == 0 && arch == 0 {
		return nil
	}
	// The thread that confines itself must be the one that executes; it
	// never runs anything else.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("bundles: worker sandbox: no_new_privs: %w", err)
	}
	if abi > 0 {
		if err := restrictFiles(abi); err != nil {
			return fmt.Errorf("bundles: worker sandbox: landlock: %w", err)
		}
	}
	if arch != 0 {
		filter := seccompFilter(arch)
		prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
			return fmt.Errorf("bundles: worker sandbox: seccomp: %w", err)
		}
	}
	env := append(os.Environ(), sandboxEnv+"=1")
	// /proc/self/exe, not a path: it is the image running, even when the
	// file was replaced or removed since.
	err := syscall.Exec(selfExe, os.Args, env)
	return fmt.Errorf("bundles: worker sandbox: executing the worker again: %w", err)
}

// restrictFiles applies to the calling thread a Landlock ruleset of abi
// that grants reading sandboxReadable and executing this binary and its
// ELF interpreter, and nothing else.
func restrictFiles(abi int) error {
	attr := landlockRuleset(abi)
	fd, _, errno := syscall.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return fmt.Errorf("creating the ruleset: %w", errno)
	}
	ruleset := int(fd)
	defer unix.Close(ruleset)
	for _, p := range sandboxReadable {
		if err := allowPath(ruleset, p, fsReadFile|fsReadDir); err != nil {
			return err
		}
	}
	if err := allowPath(ruleset, selfExe, fsReadFile|fsExecute); err != nil {
		return err
	}
	interp, err := elfInterpreter(selfExe)
	if err != nil {
		return err
	}
	if interp != "" {
		if err := allowPath(ruleset, interp, fsReadFile|fsExecute); err != nil {
			return err
		}
	}
	if _, _, errno := syscall.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(ruleset), 0, 0); errno != 0 {
		return fmt.Errorf("restricting the thread: %w", errno)
	}
	return nil
}

// allowPath grants access beneath path (a file: to it), if it exists. A
// rule on a file may hold only the rights that apply to files.
func allowPath(ruleset int, path string, access uint64) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		access &^= fsReadDir
	}
	rule := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(fd)}
	if _, _, errno := syscall.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&rule)), 0, 0, 0); errno != 0 {
		return fmt.Errorf("a rule for %s: %w", path, errno)
	}
	return nil
}

// elfInterpreter is the program interpreter an ELF executable names (the
// dynamic loader, which execve opens and runs), "" for a static one.
func elfInterpreter(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading the executable: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return "", fmt.Errorf("reading the executable's interpreter: %w", err)
		}
		for len(b) > 0 && b[len(b)-1] == 0 {
			b = b[:len(b)-1]
		}
		return string(b), nil
	}
	return "", nil
}

// sandboxSupport says how workers are confined on this machine, for the
// service's log; ok is false when they are not confined at all.
func sandboxSupport() (desc string, ok bool) {
	abi, arch := landlockABI(), seccompArch()
	switch {
	case abi == 0 && arch == 0:
		return "no Landlock in this kernel and no seccomp filter for " + runtime.GOARCH + ": policy workers are not sandboxed", false
	case abi == 0:
		return "no Landlock in this kernel: policy workers may read and write what the service's user may; they have no sockets (seccomp)", true
	case arch == 0:
		return fmt.Sprintf("policy workers are confined by Landlock ABI %d; no seccomp filter for %s, so they may open sockets", abi, runtime.GOARCH), true
	case abi < 6:
		return fmt.Sprintf("policy workers are confined by Landlock ABI %d and seccomp; below ABI 6 they may signal the service's user's processes", abi), true
	}
	return fmt.Sprintf("policy workers are confined by Landlock ABI %d and seccomp", abi), true
}
