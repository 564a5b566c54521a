package bundles

import (
	"context"
	"errors"
	"log/slog"
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

// stopped waits until w's process has exited.
func stopped(t *testing.T, w *worker) {
	t.Helper()
	select {
	case <-w.waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the idle worker was not stopped")
	}
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
	ws := idleWorkers(t, 200*time.Millisecond, &logs)
	p := workerPolicy(t, ws, slowPolicy)
	w := currentWorker(p)
	done := make(chan error, 1)
	go func() {
		_, err := evaluateWithin(p, time.Second, payment(t))
		done <- err
	}()
	for {
		select {
		case err := <-done:
			if !errors.Is(err, ErrEvalTimeout) {
				t.Fatalf("the long evaluation: %v, want ErrEvalTimeout", err)
			}
			stopped(t, w)
			return
		case <-time.After(20 * time.Millisecond):
			if currentWorker(p) != w {
				t.Fatal("the worker was stopped for idleness while an evaluation held it")
			}
		}
	}
}

// Callers arriving together at an idle policy share one start; one whose
// deadline passes first gets a timeout, and the start goes on for the
// others.
func TestWorkerIdleStartsOnceForManyCallers(t *testing.T) {
	var logs syncBuffer
	ws := idleWorkers(t, 200*time.Millisecond, &logs)
	p := workerPolicy(t, ws, allowAll)
	stopped(t, currentWorker(p))

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
	ws := idleWorkers(t, 200*time.Millisecond, &logs)
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
	var logs syncBuffer
	ws := idleWorkers(t, 200*time.Millisecond, &logs)
	p := workerPolicy(t, ws, allowAll)
	stopped(t, currentWorker(p))
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
