package bundles

import (
	"bufio"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestMain lets this test binary be a policy worker (Workers starts this
// executable, as the service starts its own), or a worker that breaks the
// protocol (fakeWorkerEnv, set by fakeWorker's script). A worker returns
// without running the tests.
func TestMain(m *testing.M) {
	if sandboxProbe != nil && os.Getenv(sandboxProbeEnv) != "" {
		sandboxProbe()
		return
	}
	if !IsWorker() {
		m.Run()
		return
	}
	if mode := os.Getenv(fakeWorkerEnv); mode != "" {
		serveFakeWorker(mode)
		return
	}
	if err := ServeWorker(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

const fakeWorkerEnv = "AGENTSIGNA_TEST_FAKE_WORKER"

// sandboxProbeEnv makes this test binary a sandbox probe, where the
// sandbox is tested (sandboxProbe is set): it enters the sandbox as a
// worker does, tries what a policy that broke out of OPA would try, and
// prints what each attempt returned.
const sandboxProbeEnv = "AGENTSIGNA_TEST_SANDBOX_PROBE"

var sandboxProbe func()

// serveFakeWorker takes the bundle as a worker does, then misbehaves as
// mode says.
func serveFakeWorker(mode string) {
	r, w := bufio.NewReader(os.Stdin), bufio.NewWriter(os.Stdout)
	if _, err := readFrame(r, maxRequestFrame); err != nil {
		return
	}
	if writeFrame(w, opResult, 0, []byte{0}) != nil {
		return
	}
	if mode == "stall" { // never reads again
		time.Sleep(time.Hour)
		return
	}
	if mode == "unasked" {
		_ = writeFrame(w, opResult, 99, []byte{0}, []byte(`{"allow":true}`))
	}
	f, err := readFrame(r, maxRequestFrame)
	if err != nil {
		return
	}
	switch mode {
	case "answer-then-exit":
		_ = writeFrame(w, opResult, f.id, []byte{0}, []byte(`{"allow":true}`))
		return
	case "wrong-id":
		_ = writeFrame(w, opResult, f.id+7, []byte{0}, []byte(`{"allow":true}`))
	case "oversized":
		_, _ = w.Write([]byte{opResult, 0, 0, 0, 0, 0, 0, 0, byte(f.id), 0xff, 0xff, 0xff, 0xff})
		_ = w.Flush()
	case "cut": // a header promising more than ever comes
		_, _ = w.Write([]byte{opResult, 0, 0, 0, 0, 0, 0, 0, byte(f.id), 0, 0, 0, 100, 0})
		_ = w.Flush()
	case "bad-code":
		_ = writeFrame(w, opResult, f.id, []byte{200}, []byte("?"))
	}
	time.Sleep(time.Hour)
}
