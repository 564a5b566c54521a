package bundles

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
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
//   - No capability, even when the service runs as root, and no new
//     privileges.
//   - Landlock (Linux 5.13 on) confines the file system: nothing may be
//     written, and nothing read but the files the process had mapped
//     (itself, its libraries) and time zones; so no data dir, master key,
//     private key or other organization's file. From its ABI 4, no TCP
//     bind or connect; from ABI 6, no signal to a process outside the
//     sandbox and no abstract UNIX socket outside it.
//   - A seccomp filter (amd64, arm64) refuses what Landlock leaves open:
//     sockets, a file's metadata, another process's limits, scheduling and
//     signals, processes of its own, namespaces and other ways into the
//     kernel (seccomp_linux.go). Once the sandboxed image runs, a second
//     refuses execve.
//
// Landlock confines the thread that asks and what it executes, not the
// other threads of a Go process; so the worker confines one thread and
// executes itself again from it (enterSandbox), before it reads anything
// from the service. The new image and every thread it starts are
// confined.

// sandboxReadable are read-only to a worker, where they exist, beside the
// files it had mapped: the dynamic loader's cache and the time zones.
// Symbolic links resolve to their targets, which a rule must cover. No
// allowed builtin reads anything else (the certificate builtins verify
// against the roots they are given, not the system's).
var sandboxReadable = []string{"/etc/ld.so.cache", "/etc/localtime", "/usr/share/zoneinfo"}

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

// canSandbox reports whether this machine has anything to confine a
// worker with.
func canSandbox() bool { return landlockABI() > 0 || seccompArch() != 0 }

// inSandbox reports whether this worker is the image enterSandbox
// executed.
func inSandbox() bool { return os.Getenv(sandboxEnv) == "1" }

// enterSandbox confines the calling thread (no capability, no new
// privileges, the Landlock ruleset the kernel supports, the seccomp
// filter) and executes this binary again from it, with sandboxEnv set. It
// returns only on failure, when the worker exits and its organization's
// evaluations fail closed, or with nil where there is nothing to confine
// it with (the service logs so, sandboxSupport).
func enterSandbox() error {
	if !canSandbox() {
		return nil
	}
	abi := landlockABI()
	// The thread that confines itself must be the one that executes; it
	// never runs anything else.
	runtime.LockOSThread()
	if err := dropCapabilities(); err != nil {
		return fmt.Errorf("bundles: worker sandbox: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("bundles: worker sandbox: no_new_privs: %w", err)
	}
	if abi > 0 {
		if err := restrictFiles(abi); err != nil {
			return fmt.Errorf("bundles: worker sandbox: landlock: %w", err)
		}
	}
	if err := confineCalls(); err != nil {
		return fmt.Errorf("bundles: worker sandbox: seccomp: %w", err)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, sandboxEnv+"=") })
	env = append(env, sandboxEnv+"=1")
	// /proc/self/exe, not a path: it is the image running, even when the
	// file was replaced or removed since.
	err := syscall.Exec(selfExe, os.Args, env)
	return fmt.Errorf("bundles: worker sandbox: executing the worker again: %w", err)
}

// sealSandbox, in the sandboxed image, refuses execve to every thread.
func sealSandbox() error {
	if err := refuseExec(); err != nil {
		return fmt.Errorf("bundles: worker sandbox: seccomp: %w", err)
	}
	return nil
}

// dropCapabilities leaves the calling thread, and what it executes, no
// capability. A service running as root would otherwise give root's to
// its workers: no_new_privs alone stops gaining capabilities from a file,
// not keeping root's; with the thread's own cleared as well, an executed
// image of root's gets none. The bounding set is emptied too where the
// thread may (CAP_SETPCAP), so that nothing can be regained.
func dropCapabilities() error {
	_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) // EINVAL before Linux 4.3: none to clear
	for c := 0; c < 64; c++ {
		// EINVAL past the kernel's last capability, EPERM without
		// CAP_SETPCAP: either way, as far as it goes.
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			break
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var none [2]unix.CapUserData
	if err := unix.Capset(&hdr, &none[0]); err != nil {
		return fmt.Errorf("clearing capabilities: %w", err)
	}
	return nil
}

// restrictFiles applies to the calling thread a Landlock ruleset of abi
// that grants reading the files this process has mapped and
// sandboxReadable, and executing this binary and its ELF interpreter, and
// nothing else.
func restrictFiles(abi int) error {
	attr := landlockRuleset(abi)
	fd, _, errno := syscall.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return fmt.Errorf("creating the ruleset: %w", errno)
	}
	ruleset := int(fd)
	defer unix.Close(ruleset)
	mapped, err := mappedFiles()
	if err != nil {
		return err
	}
	for _, p := range append(mapped, sandboxReadable...) {
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

// mappedFiles are the files this process has mapped: its binary, its
// loader and libraries (where a cgo build finds them, which is not
// everywhere below /usr/lib), which its next image maps again.
func mappedFiles() ([]string, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("listing the mapped files: %w", err)
	}
	var files []string
	for line := range strings.Lines(string(maps)) {
		// address perms offset dev inode path: the path is all that
		// follows from its first slash (none before it), spaces and all.
		i := strings.IndexByte(line, '/')
		if i < 0 || len(strings.Fields(line[:i])) != 5 {
			continue
		}
		if path := strings.TrimSuffix(line[i:], "\n"); !slices.Contains(files, path) {
			files = append(files, path)
		}
	}
	return files, nil
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
// service's log; whole is false when a part is missing.
func sandboxSupport() (desc string, whole bool) {
	abi, arch := landlockABI(), seccompArch()
	switch {
	case abi == 0 && arch == 0:
		return "policy workers are not sandboxed: no Landlock in this kernel, no seccomp filter for " + runtime.GOARCH, false
	case abi == 0:
		return "policy workers are sandboxed by seccomp alone: with no Landlock in this kernel they may read and write what the service's user may", false
	case arch == 0:
		desc = fmt.Sprintf("policy workers are sandboxed by Landlock ABI %d alone: with no seccomp filter for %s they may open UDP and UNIX sockets, start processes, and change files' metadata and other processes' limits and priorities", abi, runtime.GOARCH)
		if abi < 6 {
			desc += ", and signal the service's user's processes"
		}
		return desc, false
	}
	return fmt.Sprintf("policy workers are sandboxed: Landlock ABI %d and seccomp", abi), true
}
