package bundles

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/proctest"
)

// idleWorkers are Workers whose workers stop after idle, logging at debug
// level into logs.
func idleWorkers(t *testing.T, idle time.Duration, logs *syncBuffer) *Workers {
	t.Helper()
	return newWorkers(t, WorkerOptions{
		IdleAfter: idle,
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
}

// stopped waits until w's process has exited; nil, the remote's worker
// read after it had been stopped, is stopped already.
func stopped(t *testing.T, w *worker) {
	t.Helper()
	if w == nil {
		return
	}
	select {
	case <-w.waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle worker was not stopped")
	}
}

// linkedExecutable is a symbolic link to the test binary, to start workers
// from: removing it makes a start fail, linking self again mends it.
func linkedExecutable(t *testing.T) (exe, self string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe = filepath.Join(t.TempDir(), "worker")
	if err := os.Symlink(self, exe); err != nil {
		t.Fatal(err)
	}
	return exe, self
}

// idlePolicy loads an allow-all policy in Workers whose workers stop
// after 200 ms, and waits for its worker to have stopped.
func idlePolicy(t *testing.T) (*Workers, *Policy, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	ws := idleWorkers(t, 200*time.Millisecond, logs)
	p := workerPolicy(t, ws, allowAll)
	stopped(t, currentWorker(p))
	return ws, p, logs
}

// A worker without evaluations for IdleAfter is stopped, as asked rather
// than as a failure: no warning, no restart. The policy's next evaluation
// starts another and answers as before.
func TestWorkerIdleStopsAndStartsAgain(t *testing.T) {
	var logs syncBuffer
	ws := idleWorkers(t, 300*time.Millisecond, &logs)
	p := workerPolicy(t, ws, allowAll)
	in := payment(t)
	w := currentWorker(p)

	// Evaluations more often than IdleAfter keep it.
	for range 8 {
		if v, err := evaluateWithin(p, time.Second, in); err != nil || !v.Allow {
			t.Fatalf("while in use: %+v, %v", v, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := currentWorker(p); n != w {
		t.Fatalf("a worker in use every 100 ms was replaced (IdleAfter 300 ms)")
	}

	stopped(t, w)
	if n := currentWorker(p); n != nil {
		t.Fatal("a worker was started again with nothing to evaluate")
	}
	if v, err := evaluateWithin(p, 10*time.Second, in); err != nil || !v.Allow {
		t.Fatalf("the first evaluation after idle: %+v, %v", v, err)
	}
	n := currentWorker(p)
	if n == nil || n == w || n.cmd.Process.Pid == w.cmd.Process.Pid {
		t.Fatal("the first evaluation after idle did not run in a new worker")
	}
	log := logs.String()
	for _, want := range []string{"policy worker stopped: idle", "policy worker started again"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q: %s", want, log)
		}
	}
	if strings.Contains(log, "policy worker exited") || strings.Contains(log, "level=WARN") {
		t.Errorf("stopping an idle worker was logged as a failure: %s", log)
	}

	// The new one goes idle in turn.
	stopped(t, n)
}

// An evaluation longer than IdleAfter keeps its worker: one that holds
// it counts as use until it returns.
func TestWorkerIdleSparesAnEvaluationInFlight(t *testing.T) {
	var logs syncBuffer
	// 300 ms does not divide the evaluation's second: no check of the
	// timer's falls on the evaluation's end.
	ws := idleWorkers(t, 300*time.Millisecond, &logs)
	p := workerPolicy(t, ws, slowPolicy)
	w := currentWorker(p)
	done := make(chan error, 1)
	go func() {
		_, err := evaluateWithin(p, time.Second, payment(t))
		done <- err
	}()
	ended := func(err error) {
		t.Helper()
		if !errors.Is(err, ErrEvalTimeout) {
			t.Fatalf("the long evaluation: %v, want ErrEvalTimeout", err)
		}
		stopped(t, w)
	}
	for {
		select {
		case err := <-done:
			ended(err)
			return
		case <-time.After(20 * time.Millisecond):
			if currentWorker(p) != w {
				select {
				case err := <-done: // it had just ended
					ended(err)
					return
				default:
				}
				t.Fatal("the worker was stopped for idleness while an evaluation held it")
			}
		}
	}
}

// A caller arriving while a woken worker is being installed finds it, or
// waits for it: never a remote neither idle nor running nor down (found by
// review: such a caller was denied "policy evaluation failed: <nil>").
func TestWorkerIdleWakeHasNoGap(t *testing.T) {
	var logs syncBuffer
	ws := idleWorkers(t, 30*time.Millisecond, &logs)
	p := workerPolicy(t, ws, allowAll)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wrong []error
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if currentWorker(p) != nil {
					time.Sleep(time.Millisecond)
					continue
				}
				w, err := p.remote.take(cancelled)
				switch {
				case err == nil:
					w.r.inUse.Add(-1)
				case !errors.Is(err, ErrEvalTimeout):
					mu.Lock()
					wrong = append(wrong, err)
					mu.Unlock()
				}
			}
		})
	}
	deadline := time.Now().Add(3 * time.Second)
	for cycles := 0; cycles < 20 && time.Now().Before(deadline); {
		if w := currentWorker(p); w != nil {
			stopped(t, w)
			cycles++
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if len(wrong) > 0 {
		t.Fatalf("%d callers during wakes got an error other than their timeout, first: %v", len(wrong), wrong[0])
	}
}

// A start after idleness that fails leaves the policy down, as a worker
// that exited does: its evaluations fail saying so, and the start is tried
// again after the pause.
func TestWorkerIdleStartFails(t *testing.T) {
	exe, self := linkedExecutable(t)
	var logs syncBuffer
	ws := newWorkers(t, WorkerOptions{
		Executable: exe, IdleAfter: 200 * time.Millisecond, RestartAfter: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	p := workerPolicy(t, ws, allowAll)
	stopped(t, currentWorker(p))
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	_, err := evaluateWithin(p, 10*time.Second, payment(t))
	if !errors.Is(err, ErrEval) || !strings.Contains(err.Error(), "does not start again") || !strings.Contains(err.Error(), "tried again in 300ms") {
		t.Fatalf("an idle policy whose worker cannot start: %v, want ErrEval saying it is tried again", err)
	}
	if !strings.Contains(logs.String(), "policy worker does not restart") {
		t.Errorf("the failed start was not logged: %s", logs.String())
	}
	if err := os.Symlink(self, exe); err != nil {
		t.Fatal(err)
	}
	proctest.WaitUntil(t, 10*time.Second, func() bool {
		v, err := evaluateWithin(p, time.Second, payment(t))
		return err == nil && v.Allow
	})
}

// Closing a policy releases the callers waiting for its worker to start
// again: a replaced policy holds nobody up.
func TestWorkerIdleCloseReleasesWaiters(t *testing.T) {
	ws, p, _ := idlePolicy(t)
	// Every compile turn taken: the start waits for one.
	for range cap(ws.starting) {
		ws.starting <- struct{}{}
	}
	defer func() {
		for range cap(ws.starting) {
			<-ws.starting
		}
	}()
	waked := make(chan error, 1)
	go func() { waked <- p.Wake(context.Background()) }()
	evaluated := make(chan error, 1)
	go func() {
		_, err := evaluateWithin(p, 10*time.Second, payment(t))
		evaluated <- err
	}()
	time.Sleep(100 * time.Millisecond)
	p.Close()
	for name, ch := range map[string]chan error{"Wake": waked, "an evaluation": evaluated} {
		select {
		case err := <-ch:
			if name == "an evaluation" && (!errors.Is(err, ErrEval) || !strings.Contains(err.Error(), "replaced or closed")) {
				t.Errorf("%s waiting when the policy closed: %v", name, err)
			}
			if name == "Wake" && err != nil {
				t.Errorf("Wake waiting when the policy closed: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s still waits after the policy closed", name)
		}
	}
}

// Callers arriving together at an idle policy share one start; one whose
// deadline passes first gets a timeout, and the start goes on for the
// others.
func TestWorkerIdleStartsOnceForManyCallers(t *testing.T) {
	_, p, logs := idlePolicy(t)

	if _, err := evaluateWithin(p, time.Millisecond, payment(t)); !errors.Is(err, ErrEvalTimeout) {
		t.Fatalf("a caller out of time at an idle policy: %v, want ErrEvalTimeout", err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if v, err := evaluateWithin(p, 10*time.Second, payment(t)); err != nil || !v.Allow {
				t.Errorf("a caller of the idle policy: %+v, %v", v, err)
			}
		})
	}
	wg.Wait()
	if n := strings.Count(logs.String(), "policy worker started again"); n != 1 {
		t.Errorf("%d starts for the callers of one idle policy, want 1: %s", n, logs.String())
	}
}

// Wake starts an idle policy's worker and waits for it, so that a caller
// can give the start its own time; it returns at once otherwise, and
// only its context's error.
func TestWorkerIdleWake(t *testing.T) {
	var logs syncBuffer
	// Long enough that the worker Wake started is still running for the
	// evaluation after it on a loaded machine.
	ws := idleWorkers(t, time.Second, &logs)
	p := workerPolicy(t, ws, allowAll)
	w := currentWorker(p)
	if err := p.Wake(context.Background()); err != nil || currentWorker(p) != w {
		t.Fatalf("Wake of a running worker: %v", err)
	}
	stopped(t, w)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Wake(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wake with its context ended: %v, want context.Canceled", err)
	}
	// That start went on without it.
	proctest.WaitUntil(t, 10*time.Second, func() bool { return currentWorker(p) != nil })
	stopped(t, currentWorker(p))

	if err := p.Wake(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := currentWorker(p)
	if n == nil {
		t.Fatal("Wake returned before the worker was running")
	}
	// Evaluating now needs no start: a deadline far shorter than a
	// compile is met.
	if v, err := evaluateWithin(p, time.Second, payment(t)); err != nil || !v.Allow {
		t.Fatalf("after Wake: %+v, %v", v, err)
	}
	if currentWorker(p) != n {
		t.Error("the evaluation after Wake started another worker")
	}

	var nilPolicy *Policy
	if err := nilPolicy.Wake(context.Background()); err != nil {
		t.Errorf("Wake of no policy: %v", err)
	}
	in, err := policyFrom(t, map[string]string{"/tenant/p.rego": allowAll})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Wake(ctx); err != nil {
		t.Errorf("Wake of a policy compiled in process, its context ended: %v", err)
	}
}

// A policy closed while its worker is idle starts none: its evaluations
// fail as a closed policy's do.
func TestWorkerIdleThenClosed(t *testing.T) {
	_, p, logs := idlePolicy(t)
	p.Close()
	if _, err := evaluateWithin(p, time.Second, payment(t)); !errors.Is(err, ErrEval) || !strings.Contains(err.Error(), "replaced or closed") {
		t.Fatalf("a closed idle policy: %v, want ErrEval saying it was closed", err)
	}
	if err := p.Wake(context.Background()); err != nil {
		t.Fatalf("Wake of a closed policy: %v", err)
	}
	if currentWorker(p) != nil || strings.Contains(logs.String(), "started again") {
		t.Errorf("a closed policy started a worker: %s", logs.String())
	}
}

// A worker stopped for idleness after a long life starts the restarts'
// pause over, as one that exited after a long life does: a crash soon
// after the next start is not made to wait out a pause grown by failures
// long before.
func TestWorkerIdleStartsThePauseOver(t *testing.T) {
	exe, self := linkedExecutable(t)
	ws := newWorkers(t, WorkerOptions{
		Executable: exe, IdleAfter: 400 * time.Millisecond,
		RestartAfter: 50 * time.Millisecond, MaxRestartAfter: 200 * time.Millisecond,
	})
	p := workerPolicy(t, ws, allowAll)
	// Failed starts grow the pause to its most.
	stopped(t, currentWorker(p))
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	if _, err := evaluateWithin(p, 10*time.Second, payment(t)); !errors.Is(err, ErrEval) {
		t.Fatalf("with no executable: %v", err)
	}
	proctest.WaitUntil(t, 10*time.Second, func() bool {
		p.remote.mu.Lock()
		defer p.remote.mu.Unlock()
		return p.remote.pause == 200*time.Millisecond
	})
	if err := os.Symlink(self, exe); err != nil {
		t.Fatal(err)
	}
	// The worker then starts, lives past MaxRestartAfter and goes idle.
	proctest.WaitUntil(t, 10*time.Second, func() bool { return currentWorker(p) != nil })
	stopped(t, currentWorker(p))
	if err := p.Wake(context.Background()); err != nil {
		t.Fatal(err)
	}
	w := currentWorker(p)
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-w.done
	if _, err := evaluateWithin(p, time.Second, payment(t)); err == nil || !strings.Contains(err.Error(), "restarts in 50ms") {
		t.Fatalf("a crash after the idle stop: %v, want it to restart in 50ms", err)
	}
}
