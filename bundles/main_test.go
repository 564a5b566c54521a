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
// protocol (fakeWorkerEnv, set by fakeWorker's script).
func TestMain(m *testing.M) {
	if IsWorker() {
		if mode := os.Getenv(fakeWorkerEnv); mode != "" {
			os.Exit(serveFakeWorker(mode))
		}
		if err := ServeWorker(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const fakeWorkerEnv = "AGENTSIGNA_TEST_FAKE_WORKER"

// serveFakeWorker takes the bundle as a worker does, then misbehaves as
// mode says.
func serveFakeWorker(mode string) int {
	r, w := bufio.NewReader(os.Stdin), bufio.NewWriter(os.Stdout)
	if _, err := readFrame(r, maxRequestFrame); err != nil {
		return 1
	}
	if writeFrame(w, opResult, 0, []byte{0}) != nil {
		return 1
	}
	if mode == "stall" { // never reads again
		time.Sleep(time.Hour)
		return 0
	}
	f, err := readFrame(r, maxRequestFrame)
	if err != nil {
		return 1
	}
	switch mode {
	case "wrong-id":
		_ = writeFrame(w, opResult, f.id+7, []byte{0}, []byte(`{"allow":true}`))
	case "oversized":
		_, _ = w.Write([]byte{opResult, 0, 0, 0, 0, 0, 0, 0, byte(f.id), 0xff, 0xff, 0xff, 0xff})
		_ = w.Flush()
	case "bad-code":
		_ = writeFrame(w, opResult, f.id, []byte{200}, []byte("?"))
	}
	time.Sleep(time.Hour)
	return 0
}
