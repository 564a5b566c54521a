package bundles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func init() {
	sandboxProbe = probeSandbox
	// Inside, the probe reads its parent-death signal with prctl, which
	// answers for the calling thread: a thread the runtime started after
	// the execve has none, whatever the main thread holds (the kernel
	// signals the process when any of its threads holds one, and the main
	// thread lives as long as the process). The main goroutine stays on
	// the main thread there, so that the check reads the main thread's.
	// Outside, workerserve.go's init locks it, as in every worker: an
	// execve from another thread would leave the main thread none.
	if inSandbox() && os.Getenv(sandboxProbeEnv) != "" {
		runtime.LockOSThread()
	}
}

// probeRequest is what the test asks the probe to try.
type probeRequest struct {
	Dir      string // a directory of the test's, holding "secret"
	TCPAddr  string // a loopback listener of the test's
	ParentID int    // the test process
	KeyFile  string // a private key below /etc/ssl the test may read, or ""
}

// probeSandbox runs as the probe: enterSandbox executes it again, inside,
// where it prints each attempt's error ("" when it succeeded) as JSON.
func probeSandbox() {
	if !inSandbox() {
		if err := enterSandbox(); err != nil {
			os.Stderr.WriteString("entering the sandbox: " + err.Error() + "\n")
		}
		return
	}
	if err := sealSandbox(); err != nil {
		os.Stderr.WriteString("sealing the sandbox: " + err.Error() + "\n")
		return
	}
	var req probeRequest
	if err := json.Unmarshal([]byte(os.Getenv(sandboxProbeEnv)), &req); err != nil {
		os.Stderr.WriteString("the probe's request: " + err.Error() + "\n")
		return
	}
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	socket := func(domain, typ, proto int) error {
		fd, err := unix.Socket(domain, typ, proto)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	got := map[string]string{}
	_, err := os.ReadFile(filepath.Join(req.Dir, "secret"))
	got["read a file"] = errText(err)
	_, err = os.ReadDir(req.Dir)
	got["list a directory"] = errText(err)
	got["write a file"] = errText(os.WriteFile(filepath.Join(req.Dir, "planted"), []byte("x"), 0o600))
	f, err := os.CreateTemp("", "probe")
	if err == nil {
		f.Close()
		os.Remove(f.Name())
	}
	got["create a temporary file"] = errText(err)
	_, err = os.ReadFile("/proc/" + strconv.Itoa(req.ParentID) + "/environ")
	got["read the service's environment"] = errText(err)
	sh := exec.Command("/bin/sh", "-c", "true")
	sh.Stdin, sh.Stdout, sh.Stderr = os.Stdin, os.Stderr, os.Stderr // no /dev/null to open
	got["run a shell"] = errText(sh.Run())
	c, err := net.DialTimeout("tcp", req.TCPAddr, time.Second)
	if err == nil {
		c.Close()
	}
	got["connect over TCP"] = errText(err)
	got["open a Multipath TCP socket"] = errText(socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP))
	got["open a UDP socket"] = errText(socket(unix.AF_INET, unix.SOCK_DGRAM, 0))
	got["open a UNIX socket"] = errText(socket(unix.AF_UNIX, unix.SOCK_STREAM, 0))
	var params [120]byte // struct io_uring_params
	if _, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params)), 0); errno != 0 {
		got["set up an io_uring"] = errno.Error()
	} else {
		got["set up an io_uring"] = ""
	}
	got["signal the service"] = errText(syscall.Kill(req.ParentID, 0))
	got["signal the process group"] = errText(syscall.Kill(0, 0))
	// Each of these, allowed, would change nothing: a limit read, the
	// nice value and processors the service has, the file's own mode,
	// owner and times.
	var limit unix.Rlimit
	got["limit the service's processor time"] = errText(unix.Prlimit(req.ParentID, unix.RLIMIT_CPU, nil, &limit))
	got["renice the service"] = errText(unix.Setpriority(unix.PRIO_PROCESS, req.ParentID, 0))
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err == nil {
		got["pin the service to processors"] = errText(unix.SchedSetaffinity(req.ParentID, &cpus))
	}
	secret := filepath.Join(req.Dir, "secret")
	got["change a file's mode"] = errText(os.Chmod(secret, 0o644))
	got["change a file's owner"] = errText(os.Chown(secret, os.Getuid(), os.Getgid()))
	got["change a file's times"] = errText(os.Chtimes(secret, time.Unix(1, 0), time.Unix(1, 0)))
	got["set a file's extended attribute"] = errText(unix.Setxattr(secret, "user.planted", []byte("x"), 0))
	got["truncate a file"] = errText(os.Truncate(secret, 0))
	_, err = unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	got["open a socket pair"] = errText(err)
	// A child would outlive the worker, and could name another process
	// by the worker's pid once it is gone. (Allowed, the child exits at
	// once.)
	if child, _, errno := syscall.RawSyscall(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0); errno != 0 {
		got["start a process"] = errno.Error()
	} else if child == 0 {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	} else {
		got["start a process"] = ""
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(int(child), &ws, 0, nil)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err == nil {
		_, err := unix.FcntlInt(uintptr(p[0]), unix.F_SETOWN, req.ParentID)
		got["signal the service by SIGIO"] = errText(err)
		const fioSetOwn = 0x8901 // FIOSETOWN
		got["name an owner by ioctl"] = errText(unix.IoctlSetPointerInt(p[0], fioSetOwn, req.ParentID))
	}
	got["make a user namespace"] = errText(unix.Unshare(unix.CLONE_NEWUSER))
	_, err = unix.AddKey("user", "planted", []byte("x"), unix.KEY_SPEC_USER_KEYRING)
	got["add a key to the user's keyring"] = errText(err)
	_, err = unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
	got["make shared memory"] = errText(err)
	_, _, errno := syscall.Syscall(unix.SYS_USERFAULTFD, 0, 0, 0)
	got["open a userfaultfd"] = errText(errnoErr(errno))
	if fd, err := unix.MemfdCreate("planted", 0); err == nil {
		unix.Close(fd)
		got["make an anonymous file"] = ""
	} else {
		got["make an anonymous file"] = err.Error()
	}
	// Refused by Yama or the service's being non-dumpable where those
	// hold; by the filter everywhere.
	_, _, errno = syscall.Syscall6(syscall.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(req.ParentID), 0, 0, 0, 0)
	got["attach to the service"] = errText(errnoErr(errno))
	word := make([]byte, 8)
	_, err = unix.ProcessVMReadv(req.ParentID, []unix.Iovec{{Base: &word[0], Len: 8}}, []unix.RemoteIovec{{Base: 0x400000, Len: 8}}, 0)
	got["read the service's memory"] = errText(err)

	if req.KeyFile != "" {
		_, err := os.ReadFile(req.KeyFile)
		got["read a TLS private key"] = errText(err)
	}
	var sig int32
	if tid := unix.Gettid(); tid != os.Getpid() {
		got["keep the parent-death signal"] = fmt.Sprintf("read on thread %d, not the main thread", tid)
	} else if _, _, errno := syscall.Syscall(syscall.SYS_PRCTL, syscall.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0); errno != 0 {
		got["keep the parent-death signal"] = errno.Error()
	} else if syscall.Signal(sig) != syscall.SIGKILL {
		got["keep the parent-death signal"] = fmt.Sprintf("signal %d", sig)
	} else {
		got["keep the parent-death signal"] = ""
	}
	// Each of these, allowed, is undone at once.
	if f, err := os.Open("/usr/share/zoneinfo/UTC"); err == nil {
		err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
		got["lock a readable file"] = errText(err)
		_, err = unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_RDLCK)
		got["lease a readable file"] = errText(err)
		f.Close()
	}
	got["clear its parent-death signal"] = errText(unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0)) // after "keep the parent-death signal"
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		got["hold no capability"] = err.Error()
	} else if caps != [2]unix.CapUserData{} {
		got["hold no capability"] = fmt.Sprintf("holds %+v", caps)
	} else {
		got["hold no capability"] = ""
	}
	_, err = time.LoadLocation("America/New_York")
	got["load a time zone"] = errText(err)
	out, _ := json.Marshal(got)
	os.Stdout.Write(out)
}

// A worker is confined: what a policy that escaped OPA's evaluator would
// try first (the data dir, the service's environment, a shell, the network,
// a signal to the service) fails, and what a policy may use (time zones)
// still works.
func TestWorkerSandbox(t *testing.T) {
	abi, arch := landlockABI(), seccompArch()
	if abi == 0 && arch == 0 {
		t.Skip("no Landlock and no seccomp filter here: workers are not sandboxed")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("master key"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// A private key of the system's the test may read (as root), if any.
	var keyFile string
	if keys, _ := filepath.Glob("/etc/ssl/private/*"); len(keys) > 0 {
		if _, err := os.ReadFile(keys[0]); err == nil {
			keyFile = keys[0]
		}
	}
	req, _ := json.Marshal(probeRequest{Dir: dir, TCPAddr: ln.Addr().String(), ParentID: os.Getpid(), KeyFile: keyFile})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // as Workers starts a worker
	// A worker's environment too, so that it starts as a worker does
	// (workerserve.go's init keeps it on the main thread until it executes
	// itself again, which keeps its parent-death signal).
	cmd.Env = append(os.Environ(), sandboxProbeEnv+"="+string(req), workerEnv+"="+workerProtocol)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var got map[string]string
	if err != nil || json.Unmarshal(out, &got) != nil {
		t.Fatalf("probe: %v: %q, stderr %q", err, out, stderr.String())
	}

	const eacces, eperm = "permission denied", "operation not permitted"
	want := map[string]string{"hold no capability": "", "keep the parent-death signal": ""}
	if abi > 0 {
		for _, what := range []string{"read a file", "list a directory", "write a file", "create a temporary file", "read the service's environment"} {
			want[what] = eacces
		}
	}
	if arch != 0 {
		for _, what := range []string{
			"connect over TCP", "open a Multipath TCP socket", "open a UDP socket", "open a UNIX socket", "set up an io_uring",
			"change a file's mode", "change a file's owner", "change a file's times", "set a file's extended attribute", "truncate a file",
			"limit the service's processor time", "renice the service", "pin the service to processors",
			"signal the service", "signal the process group", "run a shell",
			"open a socket pair", "start a process", "signal the service by SIGIO", "name an owner by ioctl",
			"make a user namespace", "add a key to the user's keyring", "make shared memory", "open a userfaultfd",
			"clear its parent-death signal", "make an anonymous file", "attach to the service", "read the service's memory",
		} {
			want[what] = eperm
		}
	} else if abi >= 6 {
		want["signal the service"] = eperm
		want["signal the process group"] = eperm
	}
	// Allowed inside when allowed here.
	if _, err := time.LoadLocation("America/New_York"); err == nil {
		want["load a time zone"] = ""
	}
	if _, err := os.Stat("/usr/share/zoneinfo/UTC"); err == nil && arch != 0 {
		want["lock a readable file"] = eperm
		want["lease a readable file"] = eperm
	}
	if keyFile != "" && abi > 0 {
		want["read a TLS private key"] = eacces
	}
	for what, w := range want {
		g, ok := got[what]
		switch {
		case !ok:
			t.Errorf("%s: the probe did not try", what)
		case w == "" && g != "":
			t.Errorf("%s: %s; want it allowed", what, g)
		case w != "" && !strings.Contains(g, w):
			t.Errorf("%s: %q; want %q", what, g, w)
		}
	}
	if planted, err := os.ReadFile(filepath.Join(dir, "planted")); err == nil {
		t.Errorf("the probe wrote %q into the test's directory", planted)
	}
	if fi, err := os.Stat(filepath.Join(dir, "secret")); err != nil || fi.Size() != int64(len("master key")) || fi.Mode().Perm() != 0o644 || fi.ModTime().Unix() < 2 {
		t.Errorf("the probe changed the test's file: %v, %v", fi, err)
	}
}

// A worker Workers starts runs inside the sandbox: without capabilities
// or new privileges, under both seccomp filters.
func TestWorkerRunsSandboxed(t *testing.T) {
	if landlockABI() == 0 && seccompArch() == 0 {
		t.Skip("no Landlock and no seccomp filter here: workers are not sandboxed")
	}
	ws := newWorkers(t, WorkerOptions{})
	p := workerPolicy(t, ws, allowAll)
	pid := strconv.Itoa(currentWorker(p).cmd.Process.Pid)
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	// No core dump, which would hold what the worker holds, even where a
	// non-dumpable process still dumps one (fs.suid_dumpable 2).
	limits, err := os.ReadFile("/proc/" + pid + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Max core file size +0 +0 `).Match(limits) {
		t.Errorf("the worker may dump core:\n%s", limits)
	}
	want := []string{"NoNewPrivs:\t1", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000"}
	if mayDropBounding(t) {
		want = append(want, "CapBnd:\t0000000000000000")
	}
	if seccompArch() != 0 {
		want = append(want, "Seccomp:\t2", "Seccomp_filters:\t2")
	}
	for _, w := range want {
		if !bytes.Contains(status, []byte(w+"\n")) {
			t.Errorf("the worker's status lacks %q:\n%s", w, status)
		}
	}
}

// errnoErr is errno as an error, nil for 0.
func errnoErr(errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}

// mayDropBounding reports whether this process holds CAP_SETPCAP, which
// a worker it starts keeps until it empties its capability bounding set.
func mayDropBounding(t *testing.T) bool {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		t.Fatal(err)
	}
	return caps[0].Effective&(1<<unix.CAP_SETPCAP) != 0
}
