package bundles

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// WorkerOptions configure Workers; the zero value is the default.
type WorkerOptions struct {
	// Executable is the program a worker runs: a binary whose main calls
	// ServeWorker when IsWorker reports true. "" means this process's own
	// executable: on Linux /proc/self/exe, which stays the binary this
	// process runs even once an upgrade has replaced the file (a worker of
	// another build would not speak its protocol), elsewhere
	// os.Executable.
	Executable string
	// CompileTimeout bounds a worker's start: reading and compiling the
	// bundle (OPA's compiler has no deadline of its own). 0 means 10 s.
	CompileTimeout time.Duration
	// KillAfter is how long past an evaluation's deadline its worker may
	// go on before it is killed: OPA checks the deadline between
	// evaluation steps, never inside one. 0 means 1 s.
	KillAfter time.Duration
	// StackBytes is a worker's goroutine stack limit (debug.SetMaxStack).
	// 0 means 256 MiB.
	StackBytes int
	// MemoryBytes is a worker's memory limit (RLIMIT_DATA: its heap and
	// other private memory; Linux only). 0 means 1 GiB.
	MemoryBytes uint64
	// Procs is a worker's GOMAXPROCS. 0 means 1.
	Procs int
	// GCPercent is a worker's GOGC. 0 means 400, as the service's own
	// default: a worker keeps little alive, and at Go's 100 it collected
	// so often that isolation cost a third more processor time.
	GCPercent int
	// RestartAfter is the pause before a worker that exited is started
	// again; it doubles with each exit, up to MaxRestartAfter, and starts
	// over once a worker has lived MaxRestartAfter. 0 means 1 s.
	RestartAfter time.Duration
	// MaxRestartAfter: 0 means 1 min.
	MaxRestartAfter time.Duration
	// Logger receives a line for each worker that exits unasked; nil means
	// slog.Default().
	Logger *slog.Logger
}

func (o WorkerOptions) withDefaults() (WorkerOptions, error) {
	if o.Executable == "" && runtime.GOOS == "linux" {
		if _, err := os.Stat(selfExe); err == nil {
			o.Executable = selfExe
		}
	}
	if o.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("bundles: finding this executable for policy workers: %w", err)
		}
		o.Executable = exe
	}
	for _, d := range []*time.Duration{&o.CompileTimeout, &o.KillAfter, &o.RestartAfter, &o.MaxRestartAfter} {
		if *d < 0 {
			return o, fmt.Errorf("bundles: negative duration %v in WorkerOptions", *d)
		}
	}
	if o.StackBytes < 0 || o.Procs < 0 || o.GCPercent < 0 {
		return o, fmt.Errorf("bundles: negative StackBytes, Procs or GCPercent in WorkerOptions")
	}
	if o.CompileTimeout == 0 {
		o.CompileTimeout = 10 * time.Second
	}
	if o.KillAfter == 0 {
		o.KillAfter = time.Second
	}
	if o.StackBytes == 0 {
		o.StackBytes = 256 << 20
	}
	if o.MemoryBytes == 0 {
		o.MemoryBytes = 1 << 30
	}
	if o.Procs == 0 {
		o.Procs = 1
	}
	if o.GCPercent == 0 {
		o.GCPercent = 400
	}
	if o.RestartAfter == 0 {
		o.RestartAfter = time.Second
	}
	if o.MaxRestartAfter == 0 {
		o.MaxRestartAfter = time.Minute
	}
	if o.MaxRestartAfter < o.RestartAfter {
		return o, fmt.Errorf("bundles: MaxRestartAfter %v is shorter than RestartAfter %v", o.MaxRestartAfter, o.RestartAfter)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

const selfExe = "/proc/self/exe"

// Workers compiles and evaluates organization policies in worker
// processes, one per loaded revision, so that what a policy does to its
// process (a goroutine stack or the memory exhausted, which no recover
// stops, or a builtin that runs long past the deadline) ends that
// organization's worker and not the service. The base policy, which is
// ours, stays in the service.
//
// A Policy that Workers.Load returns evaluates in its worker; Close
// releases it. A worker that exits unasked fails the evaluations it had in
// flight (ErrEval), is logged, and is started again after a pause
// (WorkerOptions.RestartAfter); evaluations in the pause fail at once.
type Workers struct {
	opts WorkerOptions

	mu     sync.Mutex
	live   map[*remote]struct{}
	closed bool
}

// NewWorkers returns Workers with opts (validated here, once).
func NewWorkers(opts WorkerOptions) (*Workers, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Workers{opts: opts, live: map[*remote]struct{}{}}, nil
}

// Load is bundles.Load with the compilation, and every later evaluation,
// in a worker: the bundle is read and verified here (intake is bounded by
// opts.Limits), then compiled in a new worker within
// WorkerOptions.CompileTimeout.
func (ws *Workers) Load(ctx context.Context, raw []byte, opts ReadOptions) (*Policy, *Bundle, error) {
	b, err := Read(raw, opts)
	if err != nil {
		return nil, nil, err
	}
	opts, _ = opts.withDefaults()
	r := &remote{ws: ws, raw: raw, limits: opts.Limits, revision: b.Revision, pause: ws.opts.RestartAfter}
	w, err := ws.start(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	ws.mu.Lock()
	if ws.closed {
		ws.mu.Unlock()
		w.stop()
		return nil, nil, errors.New("bundles: Workers is closed")
	}
	ws.live[r] = struct{}{}
	ws.mu.Unlock()
	r.install(w)
	return &Policy{revision: b.Revision, digest: b.Digest, remote: r}, b, nil
}

// Close stops every worker at once, evaluations in flight included (they
// fail), and refuses further loads: for the service's shutdown.
func (ws *Workers) Close() {
	ws.mu.Lock()
	ws.closed = true
	live := ws.live
	ws.live = map[*remote]struct{}{}
	ws.mu.Unlock()
	for r := range live {
		r.close(0)
	}
}

// start starts a worker for r and waits for its bundle to compile.
func (ws *Workers) start(ctx context.Context, r *remote) (*worker, error) {
	cfg, err := json.Marshal(workerConfig{Limits: r.limits, StackBytes: ws.opts.StackBytes, MemoryBytes: ws.opts.MemoryBytes})
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(ws.opts.Executable)
	// The worker gets nothing of the service's environment: no master key,
	// no database URL, no credentials (it runs code the service does not
	// trust).
	cmd.Env = []string{workerEnv + "=" + workerProtocol, "GOMAXPROCS=" + strconv.Itoa(ws.opts.Procs), "GOGC=" + strconv.Itoa(ws.opts.GCPercent)}
	cmd.Dir = os.TempDir()
	w := &worker{r: r, cmd: cmd, pending: map[uint64]chan result{}, done: make(chan struct{}), started: time.Now()}
	cmd.Stderr = &w.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bundles: starting a policy worker: %w", err)
	}
	w.stdin = stdin
	w.in = bufio.NewWriterSize(stdin, 4<<10)
	loaded := make(chan result, 1)
	w.pending[0] = loaded
	w.next = 1
	go w.read(bufio.NewReaderSize(stdout, 4<<10))

	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(cfg)))
	if err := w.send(opLoad, 0, n[:], cfg, r.raw); err != nil {
		w.kill("it did not take its bundle")
		<-w.done
		return nil, fmt.Errorf("%w: the policy worker did not take the bundle: %v", ErrCompile, w.exit)
	}
	timer := time.NewTimer(ws.opts.CompileTimeout)
	defer timer.Stop()
	select {
	case res := <-loaded:
		if res.err != nil {
			w.stop()
			return nil, res.err
		}
		return w, nil
	case <-w.done:
		return nil, fmt.Errorf("%w: the policy worker exited while compiling it: %v", ErrCompile, w.exit)
	case <-timer.C:
		w.kill("compiling ran past its deadline")
		return nil, fmt.Errorf("%w: compiling took longer than %v", ErrCompile, ws.opts.CompileTimeout)
	case <-ctx.Done():
		w.kill("its start was cancelled")
		return nil, fmt.Errorf("bundles: starting a policy worker: %w", ctx.Err())
	}
}

// remote is a loaded revision's side of its worker: the worker running
// now, or why there is none, and the restarts.
type remote struct {
	ws       *Workers
	raw      []byte
	limits   Limits
	revision string

	mu     sync.Mutex
	w      *worker // nil while restarting, and once closed
	down   error   // why w is nil
	pause  time.Duration
	closed bool
}

func (r *remote) evaluate(ctx context.Context, in Input) (Verdict, error) {
	r.mu.Lock()
	w, down := r.w, r.down
	r.mu.Unlock()
	if w == nil {
		return Verdict{}, fmt.Errorf("%w: %v", ErrEval, down)
	}
	payload, err := appendValue(nil, in.value)
	if err != nil {
		return Verdict{}, fmt.Errorf("%w: the input: %v", ErrEval, err)
	}
	return w.evaluate(ctx, payload)
}

// close stops the worker after drain, the time evaluations that already
// hold the Policy need to finish; no worker is started again.
func (r *remote) close(drain time.Duration) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	w := r.w
	r.mu.Unlock()
	r.ws.mu.Lock()
	delete(r.ws.live, r)
	r.ws.mu.Unlock()
	if w == nil {
		return
	}
	if drain == 0 {
		w.stop()
		return
	}
	time.AfterFunc(drain, w.stop)
}

// exited is told by a worker's reader that the worker has exited.
func (r *remote) exited(w *worker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != w {
		return // a start that failed, or a worker already replaced
	}
	r.w = nil
	if r.closed {
		return
	}
	if time.Since(w.started) >= r.ws.opts.MaxRestartAfter {
		r.pause = r.ws.opts.RestartAfter
	}
	r.down = fmt.Errorf("the organization's policy worker exited (%v); it restarts in %v", w.exit, r.pause)
	r.ws.opts.Logger.Warn("policy worker exited", "revision", r.revision, "error", w.exit, "restart_in", r.pause.String())
	time.AfterFunc(r.pause, r.restart)
	r.pause = min(2*r.pause, r.ws.opts.MaxRestartAfter)
}

func (r *remote) restart() {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return
	}
	w, err := r.ws.start(context.Background(), r)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		if w != nil {
			w.stop()
		}
		return
	}
	if err != nil {
		r.down = fmt.Errorf("the organization's policy worker does not start again (%v); it is tried again in %v", err, r.pause)
		r.ws.opts.Logger.Warn("policy worker does not restart", "revision", r.revision, "error", err, "retry_in", r.pause.String())
		time.AfterFunc(r.pause, r.restart)
		r.pause = min(2*r.pause, r.ws.opts.MaxRestartAfter)
		return
	}
	r.w, r.down = w, nil
	select {
	case <-w.done: // it exited before it was installed: exited did nothing
		go r.exited(w)
	default:
	}
}

// install makes w, started, the remote's worker.
func (r *remote) install(w *worker) {
	r.mu.Lock()
	r.w, r.down = w, nil
	r.mu.Unlock()
	select {
	case <-w.done: // it exited before it was installed: exited did nothing
		r.exited(w)
	default:
	}
}

// result is a worker's answer to one request.
type result struct {
	verdict Verdict
	err     error
}

// worker is one worker process.
type worker struct {
	r       *remote
	cmd     *exec.Cmd
	started time.Time
	stderr  headBuffer

	wmu   sync.Mutex // one frame at a time on in
	stdin io.Closer
	in    *bufio.Writer

	mu      sync.Mutex
	pending map[uint64]chan result
	next    uint64
	// killed is why the service killed the worker, if it did.
	killed string

	// done is closed once the process has exited and exit says how.
	done chan struct{}
	exit error
}

func (w *worker) send(op byte, id uint64, parts ...[]byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return writeFrame(w.in, op, id, parts...)
}

// evaluate sends input to the worker and waits for its verdict until ctx
// ends. An evaluation that outlives its deadline is cancelled in the
// worker, and if it has not ended WorkerOptions.KillAfter later either,
// the worker is killed: it is stuck in one step.
func (w *worker) evaluate(ctx context.Context, input []byte) (Verdict, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return Verdict{}, fmt.Errorf("%w: an evaluation in a worker needs a deadline", ErrEval)
	}
	left := time.Until(deadline)
	if left <= 0 {
		return Verdict{}, fmt.Errorf("%w: %w", ErrEvalTimeout, context.DeadlineExceeded)
	}
	ch := make(chan result, 1)
	w.mu.Lock()
	if w.pending == nil {
		w.mu.Unlock()
		<-w.done
		return Verdict{}, fmt.Errorf("%w: the organization's policy worker exited (%v)", ErrEval, w.exit)
	}
	id := w.next
	w.next++
	w.pending[id] = ch
	w.mu.Unlock()
	var l [8]byte
	binary.BigEndian.PutUint64(l[:], uint64(left))
	if err := w.send(opEval, id, l[:], input); err != nil {
		// The reader fails every pending request once the process is gone.
		<-w.done
		return Verdict{}, fmt.Errorf("%w: the organization's policy worker exited (%v)", ErrEval, w.exit)
	}
	select {
	case res := <-ch:
		return res.verdict, res.err
	case <-w.done:
		return Verdict{}, fmt.Errorf("%w: the organization's policy worker exited (%v)", ErrEval, w.exit)
	case <-ctx.Done():
		_ = w.send(opCancel, id)
		go w.overrun(ch)
		return Verdict{}, fmt.Errorf("%w: %w", ErrEvalTimeout, ctx.Err())
	}
}

// overrun kills the worker if an evaluation past its deadline does not
// end within KillAfter.
func (w *worker) overrun(ch chan result) {
	t := time.NewTimer(w.r.ws.opts.KillAfter)
	defer t.Stop()
	select {
	case <-ch:
	case <-w.done:
	case <-t.C:
		w.kill(fmt.Sprintf("an evaluation ran %v past its deadline", w.r.ws.opts.KillAfter))
	}
}

// read reads the worker's results until its output ends, then waits for
// the process, fails what is pending and tells the remote.
func (w *worker) read(out *bufio.Reader) {
	err := w.readResults(out)
	if err != nil && !errors.Is(err, io.EOF) {
		// The worker broke the protocol: it is not ours to trust.
		w.kill(err.Error())
	}
	waitErr := w.cmd.Wait()
	w.mu.Lock()
	switch {
	case w.killed != "":
		w.exit = fmt.Errorf("killed: %s", w.killed)
	case waitErr != nil:
		w.exit = fmt.Errorf("%v: %s", waitErr, w.stderr.reason())
	default:
		w.exit = errors.New("it ended")
	}
	w.pending = nil
	w.mu.Unlock()
	close(w.done)
	w.r.exited(w)
}

func (w *worker) readResults(out *bufio.Reader) error {
	for {
		f, err := readFrame(out, maxResultFrame)
		if err != nil {
			return err
		}
		if f.op != opResult || len(f.payload) < 1 {
			return fmt.Errorf("%w: op %q", errFrame, f.op)
		}
		w.mu.Lock()
		ch := w.pending[f.id]
		delete(w.pending, f.id)
		w.mu.Unlock()
		if ch == nil {
			return fmt.Errorf("%w: a result for request %d, which is not pending", errFrame, f.id)
		}
		ch <- parseResult(f.payload, f.id == 0)
	}
}

// parseResult reads a result frame's payload. A worker runs policy code,
// so its verdict is checked again here as the worker checked it.
func parseResult(p []byte, load bool) result {
	code, body := p[0], p[1:]
	if code != 0 {
		return result{err: resultError(code, body)}
	}
	if load {
		return result{}
	}
	var v Verdict
	if err := json.Unmarshal(body, &v); err != nil {
		return result{err: fmt.Errorf("%w: the worker's verdict: %v", ErrEval, err)}
	}
	if err := v.check(); err != nil {
		return result{err: err}
	}
	return result{verdict: v}
}

// kill ends the worker now, saying why.
func (w *worker) kill(why string) {
	w.mu.Lock()
	if w.killed == "" {
		w.killed = why
	}
	w.mu.Unlock()
	_ = w.cmd.Process.Kill()
}

// stop asks the worker to end (its input closes) and kills it if it has
// not within a second.
func (w *worker) stop() {
	w.wmu.Lock()
	_ = w.stdin.Close()
	w.wmu.Unlock()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
		w.kill("it did not stop when asked")
		<-w.done
	}
}

// headBuffer keeps the first bytes a worker writes to its stderr: a Go
// runtime failure says what it was in its first lines, then prints every
// goroutine's stack.
type headBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const maxHead = 4 << 10

func (h *headBuffer) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if room := maxHead - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// reason is the line of the head that says why the process failed
// ("fatal error: stack overflow"), else its first line.
func (h *headBuffer) reason() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	lines := bytes.Split(h.buf, []byte("\n"))
	for _, prefix := range []string{"fatal error:", "panic:", "runtime:"} {
		for _, l := range lines {
			if bytes.HasPrefix(l, []byte(prefix)) {
				return printable(string(l))
			}
		}
	}
	if len(lines) > 0 && len(lines[0]) > 0 {
		return printable(string(lines[0]))
	}
	return "no message"
}
