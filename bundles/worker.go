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
	"sync/atomic"
	"time"
)

// DefaultCompileTimeout is how long a worker may take to read and compile
// a bundle, unless WorkerOptions says otherwise.
const DefaultCompileTimeout = 10 * time.Second

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
	// bundle (OPA's compiler has no deadline of its own). 0 means
	// DefaultCompileTimeout.
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
	// again (the organization's decisions deny meanwhile); it doubles with
	// each exit, up to MaxRestartAfter, and starts over once a worker has
	// lived MaxRestartAfter. 0 means 100 ms.
	RestartAfter time.Duration
	// MaxRestartAfter: 0 means 1 min.
	MaxRestartAfter time.Duration
	// IdleAfter stops a worker that has had no evaluation for that long:
	// an organization that has gone quiet holds no process (tens of MiB
	// each). Its policy's next evaluation, or Wake, starts one again and
	// waits for the bundle to compile. 0 means 10 min.
	IdleAfter time.Duration
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
	for _, d := range []*time.Duration{&o.CompileTimeout, &o.KillAfter, &o.RestartAfter, &o.MaxRestartAfter, &o.IdleAfter} {
		if *d < 0 {
			return o, fmt.Errorf("bundles: negative duration %v in WorkerOptions", *d)
		}
	}
	if o.StackBytes < 0 || o.Procs < 0 || o.GCPercent < 0 {
		return o, fmt.Errorf("bundles: negative StackBytes, Procs or GCPercent in WorkerOptions")
	}
	if o.CompileTimeout == 0 {
		o.CompileTimeout = DefaultCompileTimeout
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
		o.RestartAfter = 100 * time.Millisecond
	}
	if o.MaxRestartAfter == 0 {
		o.MaxRestartAfter = time.Minute
	}
	if o.IdleAfter == 0 {
		o.IdleAfter = 10 * time.Minute
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
// A worker left without evaluations for WorkerOptions.IdleAfter is
// stopped, and started again when its policy is next evaluated.
type Workers struct {
	opts WorkerOptions
	// starting holds a token per worker compiling: each may take its
	// memory limit for CompileTimeout.
	starting chan struct{}

	mu     sync.Mutex
	live   map[*remote]struct{}
	closed bool
}

// NewWorkers returns Workers with opts (validated here, once). It makes
// this process non-dumpable on Linux (no worker, which runs as the same
// user, may read its memory or environment) and marks the descriptors it
// inherited close-on-exec.
func NewWorkers(opts WorkerOptions) (*Workers, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := nonDumpable(); err != nil {
		return nil, err
	}
	closeInheritedOnExec()
	if desc, whole := sandboxSupport(); whole {
		opts.Logger.Info(desc)
	} else {
		opts.Logger.Warn(desc)
	}
	return &Workers{opts: opts, starting: make(chan struct{}, runtime.GOMAXPROCS(0)), live: map[*remote]struct{}{}}, nil
}

// Load is bundles.Load with the parsing and compilation, and every later
// evaluation, in a worker: the archive, its signature and its manifest
// are checked here (intake is bounded by opts.Limits), then the modules
// and data are parsed and compiled in a new worker within
// WorkerOptions.CompileTimeout, which bounds it rather than ctx (a caller
// that leaves would otherwise leave nobody with the compiled policy).
// At most GOMAXPROCS workers compile at once; a start that waits longer
// than CompileTimeout for its turn fails with ErrWorker. The Bundle
// returned describes the bundle (revision, digest, signer, manifest); it
// holds no parsed modules, and bundles.Compile cannot compile it.
func (ws *Workers) Load(_ context.Context, raw []byte, opts ReadOptions) (*Policy, *Bundle, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	if opts.Limits.MaxCompressedBytes > maxBundleFrame {
		return nil, nil, fmt.Errorf("bundles: MaxCompressedBytes %d is more than a policy worker takes (%d)", opts.Limits.MaxCompressedBytes, maxBundleFrame)
	}
	// The data files' hashes are checked in the worker (verifyData).
	var signedData map[string]signedFile
	b, err := readUnparsed(raw, opts.Limits, func(b *Bundle) (err error) {
		signedData, err = b.verifyAllButData(opts.Keys)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	r := &remote{ws: ws, raw: raw, limits: opts.Limits, signedData: signedData, revision: b.Revision, pause: ws.opts.RestartAfter, closing: make(chan struct{})}
	w, err := ws.start(r)
	if err != nil {
		return nil, nil, err
	}
	ws.mu.Lock()
	if ws.closed {
		ws.mu.Unlock()
		w.end("")
		return nil, nil, fmt.Errorf("%w: Workers is closed", ErrWorker)
	}
	ws.live[r] = struct{}{}
	ws.mu.Unlock()
	r.install(w)
	return &Policy{revision: b.Revision, digest: b.Digest, digest64: b.DigestBase64, remote: r}, b, nil
}

// Close stops every worker, concurrently, and refuses further loads: for
// the service's shutdown, once requests have stopped. A worker is asked
// to stop (its input closes) and killed if it has not a second later; an
// evaluation still in flight then fails. Policies closed before (and
// draining) stop on their own schedule, KillAfter after their Close.
func (ws *Workers) Close() {
	ws.mu.Lock()
	ws.closed = true
	live := ws.live
	ws.live = map[*remote]struct{}{}
	ws.mu.Unlock()
	var wg sync.WaitGroup
	for r := range live {
		wg.Go(func() { r.close(0) })
	}
	wg.Wait()
}

// start starts a worker for r and waits for its bundle to compile.
func (ws *Workers) start(r *remote) (*worker, error) {
	select {
	case ws.starting <- struct{}{}:
	default:
		wait := time.NewTimer(ws.opts.CompileTimeout)
		defer wait.Stop()
		select {
		case ws.starting <- struct{}{}:
		case <-wait.C:
			return nil, fmt.Errorf("%w: %d others were compiling for %v", ErrWorker, cap(ws.starting), ws.opts.CompileTimeout)
		}
	}
	defer func() { <-ws.starting }()
	if r.isClosed() {
		// Replaced or closed while it waited for its turn: no process.
		return nil, fmt.Errorf("%w: the policy was replaced or closed", ErrWorker)
	}
	cfg, err := json.Marshal(workerConfig{Limits: r.limits, SignedData: r.signedData, StackBytes: ws.opts.StackBytes, MemoryBytes: ws.opts.MemoryBytes})
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(ws.opts.Executable)
	// The worker gets nothing of the service's environment: no master key,
	// no database URL, no credentials (it runs code the service does not
	// trust).
	cmd.Env = []string{workerEnv + "=" + workerProtocol, "GOMAXPROCS=" + strconv.Itoa(ws.opts.Procs), "GOGC=" + strconv.Itoa(ws.opts.GCPercent),
		// Collect harder as the heap nears the memory limit, rather than
		// die at GOGC's target of five times what is alive.
		"GOMEMLIMIT=" + strconv.FormatUint(ws.opts.MemoryBytes/10*8, 10)}
	if v, ok := os.LookupEnv("GORACE"); ok && raceEnabled {
		// Only a build with the race detector reads it: the detector's
		// options (where to report, how long to wait at exit) are the
		// service's, in the workers too.
		cmd.Env = append(cmd.Env, "GORACE="+v)
	}
	cmd.Dir = os.TempDir()
	cmd.SysProcAttr = workerProcAttr()
	w := &worker{r: r, cmd: cmd, wake: make(chan struct{}, 1), readerDone: make(chan struct{}), waited: make(chan struct{}), done: make(chan struct{}), started: time.Now()}
	cmd.Stderr = &w.stderr
	// Pipes of our own rather than exec's: these are served by Go's
	// poller, so reads and writes take deadlines.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWorker, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("%w: %v", ErrWorker, err)
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("%w: starting one: %v", ErrWorker, err)
	}
	w.stdin, w.stdout = inW, outR
	w.piped = &countingWriter{w: inW}
	w.in = bufio.NewWriterSize(w.piped, 4<<10)
	w.out = bufio.NewReaderSize(outR, 4<<10)
	go func() {
		w.waitErr = cmd.Wait()
		close(w.waited)
		// A worker that exits while idle (the OOM killer, an operator) is
		// reaped, and restarted, now rather than at its next request.
		w.end("")
	}()

	go w.read()
	go w.write()

	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(cfg)))
	c := w.send(time.Now().Add(ws.opts.CompileTimeout), true, opLoad, n[:], cfg, r.raw)
	var res result
	select {
	case res = <-c.res:
	case <-w.done:
		// The reader gives a compile that took too long its answer
		// before it ends the worker.
		select {
		case res = <-c.res:
		default:
			return nil, fmt.Errorf("%w: the policy worker exited while compiling it: %v", ErrCompile, w.exit)
		}
	}
	if res.err != nil {
		w.end("") // it refused the bundle, and exits
		return nil, res.err
	}
	return w, nil
}

// remote is a loaded revision's side of its worker: the worker running
// now, or why there is none, and the restarts.
type remote struct {
	ws     *Workers
	raw    []byte
	limits Limits
	// signedData is what the bundle's verified signature says of its
	// data files, for the worker to check (nil: unsigned).
	signedData map[string]signedFile
	revision   string

	mu     sync.Mutex
	w      *worker // nil while restarting, while idle, and once closed
	down   error   // why w is nil, unless idle
	pause  time.Duration
	closed bool
	// closing is closed with closed: callers waiting for a start leave.
	closing chan struct{}
	// idle: w was stopped for want of evaluations (WorkerOptions.IdleAfter),
	// and the next one starts it again; waking, made by the first, is
	// closed once that start has ended.
	idle   bool
	waking chan struct{}
	// used is when an evaluation last took w; inUse counts those still
	// holding it (taken under mu, so that none can be holding a worker
	// the idle timer stops). idleTimer looks at them after IdleAfter.
	used      time.Time
	inUse     atomic.Int64
	idleTimer *time.Timer
}

func (r *remote) evaluate(ctx context.Context, in Input) (Verdict, error) {
	payload, err := appendValue(nil, in.value)
	if err != nil {
		return Verdict{}, fmt.Errorf("%w: the input: %v", ErrEval, err)
	}
	w, err := r.take(ctx)
	if err != nil {
		return Verdict{}, err
	}
	defer r.inUse.Add(-1)
	return w.evaluate(ctx, payload)
}

// take returns the worker to evaluate in, marked in use: once a worker
// stopped for idleness has started again, within ctx.
func (r *remote) take(ctx context.Context) (*worker, error) {
	r.mu.Lock()
	for r.w == nil && r.idle && !r.closed {
		waking := r.wakeLocked()
		r.mu.Unlock()
		select {
		case <-waking:
		case <-r.closing:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: waiting for the organization's policy worker to start: %w", ErrEvalTimeout, ctx.Err())
		}
		r.mu.Lock()
	}
	w, down := r.w, r.down
	if w != nil {
		r.inUse.Add(1)
		r.used = time.Now()
	}
	r.mu.Unlock()
	if w == nil {
		if down == nil {
			down = errors.New("the organization's policy worker is not running")
		}
		return nil, fmt.Errorf("%w: %v", ErrEval, down)
	}
	return w, nil
}

// wake starts the worker again if it was stopped for idleness, and waits
// for that start until ctx ends (ctx's error). A start that fails leaves
// the remote down, as a worker that exited does: evaluations fail until a
// later start succeeds.
func (r *remote) wake(ctx context.Context) error {
	r.mu.Lock()
	if r.w != nil {
		// Counts as use: the evaluation that follows must not find the
		// worker stopped in between.
		r.used = time.Now()
	}
	if r.w != nil || !r.idle || r.closed {
		r.mu.Unlock()
		return nil
	}
	waking := r.wakeLocked()
	r.mu.Unlock()
	select {
	case <-waking:
		return nil
	case <-r.closing:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wakeLocked starts a worker for an idle remote, unless one is starting
// already, and returns the channel closed once it has started (or failed
// to). r.mu is held.
func (r *remote) wakeLocked() chan struct{} {
	if r.waking != nil {
		return r.waking
	}
	waking := make(chan struct{})
	r.waking = waking
	go func() {
		defer close(waking)
		start := time.Now()
		w, err := r.ws.start(r)
		r.mu.Lock()
		// Installed in the same hold that ends idle: a caller never finds
		// the remote neither idle nor with a worker, nor down.
		r.idle, r.waking = false, nil
		installed := false
		switch {
		case err == nil:
			installed = r.installLocked(w)
		case !r.closed:
			r.down = fmt.Errorf("the organization's policy worker does not start again (%v); it is tried again in %v", err, r.pause)
			r.ws.opts.Logger.Warn("policy worker does not restart", "revision", r.revision, "error", err, "retry_in", r.pause.String())
			r.restartLater()
		}
		r.mu.Unlock()
		if err == nil {
			if installed {
				r.ws.opts.Logger.Debug("policy worker started again", "revision", r.revision, "took", time.Since(start).String())
			}
			r.installed(w, installed)
		}
	}()
	return waking
}

// stopIfIdle stops the worker if no evaluation has taken it for
// IdleAfter and none holds it; else it looks again when IdleAfter may
// have passed.
func (r *remote) stopIfIdle() {
	idleAfter := r.ws.opts.IdleAfter
	r.mu.Lock()
	w := r.w
	if w == nil || r.closed {
		// Down or closed: a worker installed later sets the timer again.
		r.mu.Unlock()
		return
	}
	if left := idleAfter - time.Since(r.used); left > 0 || r.inUse.Load() > 0 {
		if left <= 0 {
			left = idleAfter
		}
		r.idleTimer.Reset(left)
		r.mu.Unlock()
		return
	}
	r.w, r.idle = nil, true
	if time.Since(w.started) >= r.ws.opts.MaxRestartAfter {
		// As for a worker that exited after living that long: the
		// restarts' pause starts over.
		r.pause = r.ws.opts.RestartAfter
	}
	r.mu.Unlock()
	r.ws.opts.Logger.Info("policy worker stopped: idle", "revision", r.revision, "idle_after", idleAfter.String())
	w.end("")
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
	close(r.closing)
	r.down = errors.New("the policy was replaced or closed")
	w := r.w
	if r.idleTimer != nil {
		r.idleTimer.Stop()
	}
	r.mu.Unlock()
	r.ws.mu.Lock()
	delete(r.ws.live, r)
	r.ws.mu.Unlock()
	if w == nil {
		return
	}
	if drain == 0 {
		w.end("")
		return
	}
	time.AfterFunc(drain, func() { w.end("") })
}

// exited is told by a worker that it has exited.
func (r *remote) exited(w *worker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != w {
		return // a start that failed, a worker already replaced, or one stopped for idleness
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
	r.restartLater()
}

// restartLater starts a worker again after the pause, and doubles the
// next pause. r.mu is held.
func (r *remote) restartLater() {
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
	w, err := r.ws.start(r)
	r.mu.Lock()
	if err != nil && !r.closed {
		r.down = fmt.Errorf("the organization's policy worker does not start again (%v); it is tried again in %v", err, r.pause)
		r.ws.opts.Logger.Warn("policy worker does not restart", "revision", r.revision, "error", err, "retry_in", r.pause.String())
		r.restartLater()
	}
	r.mu.Unlock()
	if err == nil {
		r.install(w)
	}
}

// install makes w, started, the remote's worker, unless the remote has
// been closed meanwhile (then w is stopped).
func (r *remote) install(w *worker) {
	r.mu.Lock()
	ok := r.installLocked(w)
	r.mu.Unlock()
	r.installed(w, ok)
}

// installLocked makes w the remote's worker, and sets the idle timer,
// unless the remote is closed (false). r.mu is held.
func (r *remote) installLocked(w *worker) bool {
	if r.closed {
		return false
	}
	r.w, r.down = w, nil
	r.used = time.Now()
	if r.idleTimer == nil {
		r.idleTimer = time.AfterFunc(r.ws.opts.IdleAfter, r.stopIfIdle)
	} else {
		r.idleTimer.Reset(r.ws.opts.IdleAfter)
	}
	return true
}

// installed ends installing w, r.mu released: a worker the closed remote
// did not take is stopped, and one that ended before it was installed
// (exited did nothing then) is reported now.
func (r *remote) installed(w *worker, ok bool) {
	if !ok {
		w.end("")
		return
	}
	select {
	case <-w.done:
		r.exited(w)
	default:
	}
}

func (r *remote) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// result is a worker's answer to one request.
type result struct {
	verdict Verdict
	err     error
}

// worker is one worker process. Requests are pipelined: a caller queues
// its request and waits for the answer; one writer goroutine per worker
// writes the queued frames, and one reader goroutine takes the answers,
// which come in order, and hands each to its caller. A worker with more
// work waiting finds it in its pipe rather than sleeping until it is sent
// (waking another process is most of what a round trip costs, on a
// virtualized processor), and no caller waits on the pipe: one whose
// deadline passes leaves, whatever the worker is doing.
type worker struct {
	r       *remote
	cmd     *exec.Cmd
	started time.Time
	stderr  headBuffer

	// mu guards the requests: next, the next id; sent, those queued and
	// not yet answered, oldest first (a worker answers in order);
	// unwritten, those the writer has yet to write, in the same order;
	// and stdout's read deadline, which is when the oldest must be
	// answered by (none when no request is waiting).
	mu        sync.Mutex
	next      uint64
	sent      []*call
	unwritten []*call
	// wake has a token when unwritten may be non-empty.
	wake   chan struct{}
	stdin  *os.File
	in     *bufio.Writer // the writer's
	queued int64         // bytes given to in; the writer's
	piped  *countingWriter
	stdout *os.File
	out    *bufio.Reader // the reader's
	// readerDone is closed when the reader has stopped: it has read
	// every answer the worker wrote, or is killing the worker.
	readerDone chan struct{}

	// waited is closed once the process has exited, waitErr saying how.
	waited  chan struct{}
	waitErr error

	once sync.Once
	// done is closed once the worker has ended and exit says how.
	done chan struct{}
	exit error
}

// call is one request in flight.
type call struct {
	id    uint64
	load  bool
	op    byte
	parts [][]byte // the frame's payload, until written
	// killAt: if the worker has not answered by then, it is stuck (in one
	// step of an evaluation, or compiling) and is killed. A request that
	// waited behind others gets at least KillAfter from when its turn
	// comes (answer).
	killAt time.Time
	// end is where the frame ends in the stream to the worker, once the
	// writer has taken it (0 before); the frame is in the pipe once
	// piped has counted that far. Guarded by mu.
	end int64
	// res receives the answer; it is given before the worker ends.
	res chan result
}

// evaluate sends input to the worker and waits for its verdict until ctx
// ends. The worker stops an evaluation at the same deadline; if it has
// not answered KillAfter later, it is stuck in one step and is killed.
func (w *worker) evaluate(ctx context.Context, input []byte) (Verdict, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return Verdict{}, fmt.Errorf("%w: an evaluation in a worker needs a deadline", ErrEval)
	}
	left := time.Until(deadline)
	if left <= 0 {
		return Verdict{}, fmt.Errorf("%w: %w", ErrEvalTimeout, context.DeadlineExceeded)
	}
	select {
	case <-w.done:
		return Verdict{}, w.exitError()
	default:
	}
	// The worker evaluates requests one after another, so this one may
	// wait in the pipe: the deadline goes as a point in time (wall clock,
	// the only one two processes share in Go), and the time left, which
	// bounds it should the clock be set back meanwhile.
	var d [16]byte
	binary.BigEndian.PutUint64(d[:8], uint64(left))
	binary.BigEndian.PutUint64(d[8:], uint64(deadline.UnixNano()))
	c := w.send(deadline.Add(w.r.ws.opts.KillAfter), false, opEval, d[:], input)
	select {
	case res := <-c.res:
		if ctx.Err() != nil {
			// As in the service: no answer is given past the deadline.
			return Verdict{}, fmt.Errorf("%w: %w", ErrEvalTimeout, ctx.Err())
		}
		return res.verdict, res.err
	case <-ctx.Done():
		// The reader takes the answer when it comes, or kills the
		// worker when it does not.
		return Verdict{}, fmt.Errorf("%w: %w", ErrEvalTimeout, ctx.Err())
	case <-w.done:
		// An answer given before the worker ended is the answer, if it
		// is in time.
		select {
		case res := <-c.res:
			if ctx.Err() != nil {
				return Verdict{}, fmt.Errorf("%w: %w", ErrEvalTimeout, ctx.Err())
			}
			return res.verdict, res.err
		default:
			return Verdict{}, w.exitError()
		}
	}
}

// maxBundleFrame is the largest bundle a load frame carries, its
// config beside it.
const maxBundleFrame = maxRequestFrame - 64<<10

// violation is why a worker whose request failed with err is killed: it
// broke the protocol; or "" when its pipes failed, which means it is
// exiting on its own (and its exit status says why).
func violation(err error) string {
	if errors.Is(err, errFrame) {
		return err.Error()
	}
	return ""
}

func (w *worker) exitError() error {
	return fmt.Errorf("%w: the organization's policy worker exited (%v)", ErrEval, w.exit)
}

// send queues a request for the writer and returns its call. It never
// waits: should the worker have ended, the call is never answered, and
// its caller sees done.
func (w *worker) send(killAt time.Time, load bool, op byte, parts ...[]byte) *call {
	c := &call{load: load, op: op, parts: parts, killAt: killAt, res: make(chan result, 1)}
	w.mu.Lock()
	c.id = w.next
	w.next++
	w.sent = append(w.sent, c)
	w.unwritten = append(w.unwritten, c)
	if len(w.sent) == 1 {
		_ = w.stdout.SetReadDeadline(killAt)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // the writer is awake already
	}
	return c
}

// write writes the queued requests, as many at once as are waiting, until
// the worker ends. A write has no deadline: it waits only while the pipe
// is full, that is while the worker works through earlier requests, and
// the reader kills a worker that has not answered the oldest in time,
// which ends the write (a write cut short would leave half a frame).
func (w *worker) write() {
	for {
		select {
		case <-w.wake:
		case <-w.done:
			return
		}
		w.mu.Lock()
		batch := w.unwritten
		w.unwritten = nil
		for _, c := range batch {
			w.queued += frameHeader
			for _, p := range c.parts {
				w.queued += int64(len(p))
			}
			c.end = w.queued
		}
		w.mu.Unlock()
		var err error
		for _, c := range batch {
			if err = bufferFrame(w.in, c.op, c.id, c.parts...); err != nil {
				break
			}
			c.parts = nil
		}
		if err == nil {
			err = w.in.Flush()
		}
		if err != nil {
			w.end("")
			return
		}
	}
}

// countingWriter counts the bytes the pipe has taken.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// read takes the worker's answers, in order, and gives each to its call,
// until the worker ends: it exits, breaks the protocol, or has not
// answered a request by its killAt (then it is killed).
func (w *worker) read() {
	for {
		// Wait for an answer's first byte by the oldest request's killAt
		// (the deadline mu guards); the rest of the frame follows at
		// once, so it gets KillAfter: a frame cut by a deadline could not
		// be read again.
		_, err := w.out.Peek(1)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// A reader late to run fails a read whose deadline has passed
			// without trying it: look once more before killing.
			w.mu.Lock()
			_ = w.stdout.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			w.mu.Unlock()
			_, err = w.out.Peek(1)
		}
		if err == nil {
			w.mu.Lock()
			_ = w.stdout.SetReadDeadline(time.Now().Add(w.r.ws.opts.KillAfter))
			w.mu.Unlock()
			var f frame
			if f, err = readFrame(w.out, maxResultFrame); errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("%w: a result cut short", errFrame)
			}
			if err == nil {
				err = w.answer(f)
			}
		}
		if err != nil {
			why := violation(err)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				why = w.overran()
			}
			close(w.readerDone)
			w.end(why)
			return
		}
	}
}

// answer gives a result frame to the oldest call, which it must answer,
// and moves the read deadline on to the next.
func (w *worker) answer(f frame) error {
	w.mu.Lock()
	if len(w.sent) == 0 {
		w.mu.Unlock()
		return fmt.Errorf("%w: op %q for request %d, and no request is waiting", errFrame, f.op, f.id)
	}
	c := w.sent[0]
	w.sent[0] = nil
	w.sent = w.sent[1:]
	next := time.Time{}
	if len(w.sent) > 0 {
		// Its turn comes now: however long it waited behind others, the
		// worker gets KillAfter for it.
		o := w.sent[0]
		o.killAt = later(o.killAt, time.Now().Add(w.r.ws.opts.KillAfter))
		next = o.killAt
	}
	_ = w.stdout.SetReadDeadline(next)
	w.mu.Unlock()
	if f.op != opResult || f.id != c.id || len(f.payload) < 1 {
		return fmt.Errorf("%w: op %q for request %d, want a result for %d", errFrame, f.op, f.id, c.id)
	}
	res, err := parseResult(f.payload, c.load)
	if err != nil {
		return err
	}
	c.res <- res
	return nil
}

// overran says why a worker that has not answered its oldest request by
// that request's killAt is killed; a compile's caller is told here that
// it took too long.
func (w *worker) overran() string {
	w.mu.Lock()
	var c *call
	if len(w.sent) > 0 {
		c = w.sent[0]
	}
	written := c != nil && c.end != 0 && w.piped.n.Load() >= c.end
	w.mu.Unlock()
	switch {
	case c == nil:
		return "" // no deadline is set without a request waiting
	case c.load:
		c.res <- result{err: fmt.Errorf("%w: compiling took longer than %v", ErrCompile, w.r.ws.opts.CompileTimeout)}
		return "compiling ran past its deadline"
	case !written:
		return "the worker does not read its input"
	}
	return fmt.Sprintf("an evaluation ran %v past its deadline", w.r.ws.opts.KillAfter)
}

// end ends the worker, once: killed when why says why, else asked to
// stop by closing its input (and killed if it has not a second later).
// It waits for the process, records how it exited, and tells the remote.
func (w *worker) end(why string) {
	w.once.Do(func() {
		if why != "" {
			_ = w.cmd.Process.Kill()
		}
		_ = w.stdin.Close()
		slow := time.AfterFunc(time.Second, func() { _ = w.cmd.Process.Kill() })
		<-w.waited
		slow.Stop()
		// The answers the worker wrote before it exited are given: the
		// reader reads to the end of its output (which the exit ends),
		// unless it is the one ending the worker.
		<-w.readerDone
		_ = w.stdout.Close()
		switch {
		case why != "":
			w.exit = fmt.Errorf("killed: %s", why)
		case w.waitErr != nil:
			w.exit = fmt.Errorf("%v: %s", w.waitErr, w.stderr.reason())
		default:
			w.exit = errors.New("it ended")
		}
		// The remote learns first: a caller the exit releases, asking
		// again at once, finds the worker down (and when it restarts),
		// not this one still installed.
		w.r.exited(w)
		close(w.done)
	})
	<-w.done
}

// parseResult reads a result frame's payload; an error is the worker
// breaking the protocol. A worker runs policy code, so its verdict is
// checked again here as the worker checked it (one that fails denies, as
// in the service).
func parseResult(p []byte, load bool) (result, error) {
	code, body := p[0], p[1:]
	if code != 0 {
		err := resultError(code, body)
		if errors.Is(err, errFrame) {
			return result{}, err
		}
		return result{err: err}, nil
	}
	if load {
		return result{}, nil
	}
	var v Verdict
	if err := json.Unmarshal(body, &v); err != nil {
		return result{err: fmt.Errorf("%w: the worker's verdict: %v", ErrEval, err)}, nil
	}
	if err := v.check(); err != nil {
		return result{err: err}, nil
	}
	return result{verdict: v}, nil
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

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
