package bundles

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// workerEnv is set, to workerProtocol, in the environment of a process
// Workers starts; a binary's main asks IsWorker before anything else.
const (
	workerEnv      = "AGENTSIGNA_POLICY_WORKER"
	workerProtocol = "4"
	// sandboxEnv is set, to "1", when a worker executes itself again
	// inside its sandbox (enterSandbox).
	sandboxEnv = "AGENTSIGNA_POLICY_WORKER_SANDBOXED"
)

// A worker's main goroutine stays on the main thread until enterSandbox
// executes the worker again from it: the parent-death signal the service
// asked for is the main thread's, and an execve from another thread would
// lose it. The sandboxed image runs unlocked: locked, every decision cost
// it about two thread switches more.
func init() {
	if IsWorker() && !inSandbox() {
		runtime.LockOSThread()
	}
}

// IsWorker reports whether this process was started by Workers to serve
// one organization policy: its main must then call ServeWorker and nothing
// else.
func IsWorker() bool { return os.Getenv(workerEnv) == workerProtocol }

// workerConfig is what a worker is told before it reads the bundle: the
// limits it puts on itself and the bundle's intake limits.
type workerConfig struct {
	Limits Limits `json:"limits"`
	// SignedData is what the bundle's signature, verified by the service,
	// says of each data file, whose hash is of its parsed JSON: the worker
	// checks them before it compiles (Bundle.verifyData). Nil: unsigned.
	SignedData  map[string]signedFile `json:"signed_data,omitempty"`
	StackBytes  int                   `json:"stack_bytes"`
	MemoryBytes uint64                `json:"memory_bytes"`
}

// ServeWorker serves one organization policy over the process's stdin and
// stdout until stdin ends. Nothing else may write to stdout: os.Stdout is
// pointed at stderr first.
func ServeWorker() error {
	if !inSandbox() {
		offerToOOMKiller()
		// Where the machine can, this executes the worker again,
		// confined, and returns only an error.
		if err := enterSandbox(); err != nil {
			return err
		}
	} else if err := sealSandbox(); err != nil {
		return err
	}
	// Exec made this process dumpable again: another organization's
	// worker, the same user, must not read this one's inputs.
	if err := nonDumpable(); err != nil {
		return err
	}
	// os.Stdin stays as it is, referenced: were its *os.File collected,
	// its finalizer would close descriptor 0 under in.
	in, err := pollable(0, "stdin")
	if err != nil {
		return err
	}
	out := os.Stdout
	os.Stdout = os.Stderr
	return serveWorker(in, out)
}

// serveWorker serves one organization policy over in and out, the
// protocol of workerframe.go, until in ends: it reads the bundle, limits
// its own stack and memory, compiles the bundle and evaluates inputs one
// at a time, each under the deadline the service sent.
//
// What the policy does may still end this process (a stack or memory
// limit reached ends a Go program, and no recover stops it): that is the
// point of a worker. The service sees its output end and fails the
// organization's evaluations in flight, and nobody else's.
func serveWorker(in io.Reader, out io.Writer) error {
	r := bufio.NewReaderSize(in, 64<<10)
	s := &workerServer{w: bufio.NewWriterSize(out, 4<<10)}

	f, err := readFrame(r, maxRequestFrame)
	if err != nil {
		return fmt.Errorf("bundles: worker: reading the bundle: %w", err)
	}
	if f.op != opLoad || len(f.payload) < 4 {
		return fmt.Errorf("%w: the first frame is not a load", errFrame)
	}
	n := binary.BigEndian.Uint32(f.payload)
	if uint64(n) > uint64(len(f.payload)-4) {
		return fmt.Errorf("%w: the load's config overruns it", errFrame)
	}
	var cfg workerConfig
	if err := json.Unmarshal(f.payload[4:4+n], &cfg); err != nil {
		return fmt.Errorf("%w: the load's config: %v", errFrame, err)
	}
	if cfg.StackBytes > 0 {
		debug.SetMaxStack(cfg.StackBytes)
	}
	if cfg.MemoryBytes > 0 {
		if err := limitMemory(cfg.MemoryBytes); err != nil {
			return fmt.Errorf("bundles: worker: %w", err)
		}
	}
	p, err := loadVerified(f.payload[4+n:], cfg.Limits, cfg.SignedData)
	if err := s.result(f.id, err, nil); err != nil {
		return err
	}
	if err != nil {
		return nil
	}
	s.policy = p

	// One evaluation at a time, on this goroutine (one that lives on
	// keeps the stack OPA's evaluation has grown). The service pipelines
	// its requests: the next may be waiting already, and its deadline may
	// have passed while it waited.
	for {
		f, err := readFrame(r, maxRequestFrame)
		if errors.Is(err, io.EOF) {
			return nil // the service closed our input: stop
		}
		if err != nil {
			return fmt.Errorf("bundles: worker: %w", err)
		}
		if f.op != opEval || len(f.payload) < 16 {
			return fmt.Errorf("%w: op %q, want an evaluation and its deadline", errFrame, f.op)
		}
		left := min(time.Duration(binary.BigEndian.Uint64(f.payload)), time.Until(time.Unix(0, int64(binary.BigEndian.Uint64(f.payload[8:])))))
		if left <= 0 {
			err = s.result(f.id, fmt.Errorf("%w: the deadline passed before the evaluation began", ErrEvalTimeout), nil)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), left)
			err = s.evaluate(ctx, f.id, f.payload[16:])
			cancel()
		}
		if err != nil {
			return fmt.Errorf("bundles: worker: %w", err)
		}
	}
}

// loadVerified reads and compiles a bundle the service has read and
// verified already (its signature checked against the organization's keys,
// which the worker does not hold), but for its data files' hashes, which
// it checks against signedData first.
func loadVerified(raw []byte, limits Limits, signedData map[string]signedFile) (*Policy, error) {
	if err := limits.validate(); err != nil {
		return nil, err
	}
	b, err := read(raw, limits, func(b *Bundle) error { return b.verifyData(signedData) })
	if err != nil {
		return nil, err
	}
	return Compile(context.Background(), b)
}

type workerServer struct {
	policy *Policy
	w      *bufio.Writer
}

// evaluate evaluates one input and sends its result.
func (s *workerServer) evaluate(ctx context.Context, id uint64, input []byte) error {
	var v Verdict
	value, err := decodeValue(input)
	if err != nil {
		err = fmt.Errorf("%w: %v", ErrEval, err)
	} else {
		v, err = s.policy.Evaluate(ctx, NewInput(value))
	}
	var verdict []byte
	if err == nil {
		verdict, err = json.Marshal(v)
	}
	return s.result(id, err, verdict)
}

// result sends the result of request id: err, or success with payload.
func (s *workerServer) result(id uint64, err error, payload []byte) error {
	code := resultCode(err)
	if err != nil {
		// The service keeps maxResultMessage bytes and refuses a frame
		// past maxResultFrame: a long compiler error must not read as a
		// broken worker.
		msg := err.Error()
		if len(msg) > maxResultMessage {
			msg = strings.ToValidUTF8(msg[:maxResultMessage], "")
		}
		payload = []byte(msg)
	}
	return writeFrame(s.w, opResult, id, []byte{code}, payload)
}
