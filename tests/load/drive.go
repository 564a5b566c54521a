package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// errBacklog is the failure of a request still waiting to be sent when its
// phase ended.
var errBacklog = errors.New("still waiting to be sent when the phase ended (the server fell behind the offered rate)")

// target is one server under load: Do sends one request and returns an
// error unless the answer is the allow the harness expects.
type target interface {
	Name() string
	Do(ctx context.Context) error
}

// Result is one measured phase.
type Result struct {
	Target string
	// Load describes the phase: "closed, 32 in flight" or "open, 1234/s".
	Load string
	// OfferedRate is the open-loop arrival rate (0 for a closed loop).
	OfferedRate float64
	Window      time.Duration
	// Requests is how many latencies were measured: in a closed loop the
	// requests answered within the window, in an open loop those due
	// within it (however late their answer: leaving the slowest out would
	// flatter the p99).
	Requests int
	// Rate is the requests answered as expected within the window, per
	// second.
	Rate float64
	// P50, P99 and Max are the measured latencies. In an open loop a
	// request's latency runs from when it was due, not from when a worker
	// got to it, so a backlog shows (no coordinated omission).
	P50, P99, Max time.Duration
	// Quarters counts the answers of each quarter of the window: a rate
	// that drifts during the run shows there.
	Quarters [4]int
	// Errors in the whole phase, warm-up included, and the first of them.
	Errors   int
	FirstErr error
	// CPU is the processor time the server's process used within the
	// window, DatabaseCPU that of the database processes on this machine
	// (PostgreSQL); 0 when not measured (an open loop, a clock that could
	// not be read, or a round of a pool that was not measured).
	CPU, DatabaseCPU time.Duration

	// latencies (sorted) and answered are kept to pool rounds (pool).
	latencies []time.Duration
	answered  int
}

// recorder collects one worker's observations; workers merge theirs at
// the end, so the hot path takes no lock.
type recorder struct {
	from, to time.Time
	// byDue measures the latency of requests due within the window (open
	// loop) rather than of those answered within it (closed loop).
	byDue     bool
	latencies []time.Duration
	quarters  [4]int
	errors    int
	firstErr  error
}

func (r *recorder) within(t time.Time) bool { return !t.Before(r.from) && t.Before(r.to) }

// record notes one request due (or sent) at due and answered at end.
// Errors count whenever they happen, warm-up included.
func (r *recorder) record(due, end time.Time, err error) {
	if err != nil {
		r.errors++
		if r.firstErr == nil {
			r.firstErr = err
		}
		return
	}
	if r.within(end) {
		q := int(4 * end.Sub(r.from) / r.to.Sub(r.from))
		r.quarters[min(q, 3)]++
	}
	if (r.byDue && r.within(due)) || (!r.byDue && r.within(end)) {
		r.latencies = append(r.latencies, end.Sub(due))
	}
}

// summarize merges the workers' recorders into a Result.
func summarize(name, load string, from, to time.Time, recs []*recorder) Result {
	res := Result{Target: name, Load: load, Window: to.Sub(from)}
	var all []time.Duration
	answered := 0
	for _, r := range recs {
		all = append(all, r.latencies...)
		for i, n := range r.quarters {
			res.Quarters[i] += n
			answered += n
		}
		res.Errors += r.errors
		if res.FirstErr == nil {
			res.FirstErr = r.firstErr
		}
	}
	slices.Sort(all)
	res.latencies, res.answered = all, answered
	res.fill()
	return res
}

// fill derives the figures from the latencies and answers.
func (res *Result) fill() {
	res.Requests = len(res.latencies)
	res.Rate = float64(res.answered) / res.Window.Seconds()
	res.P50, res.P99 = percentile(res.latencies, 0.50), percentile(res.latencies, 0.99)
	res.Max = 0
	if len(res.latencies) > 0 {
		res.Max = res.latencies[len(res.latencies)-1]
	}
}

// pool merges the rounds of one server's closed loop: their windows,
// answers and latencies add up, and Quarters counts each quarter of every
// round's window.
func pool(rounds []Result) Result {
	if len(rounds) == 1 {
		return rounds[0]
	}
	res := Result{Target: rounds[0].Target, Load: fmt.Sprintf("%s, %d rounds", rounds[0].Load, len(rounds))}
	allCPU, allDatabaseCPU := true, true
	for _, r := range rounds {
		res.Window += r.Window
		res.answered += r.answered
		res.latencies = append(res.latencies, r.latencies...)
		for i, n := range r.Quarters {
			res.Quarters[i] += n
		}
		res.Errors += r.Errors
		if res.FirstErr == nil {
			res.FirstErr = r.FirstErr
		}
		res.CPU += r.CPU
		res.DatabaseCPU += r.DatabaseCPU
		allCPU, allDatabaseCPU = allCPU && r.CPU != 0, allDatabaseCPU && r.DatabaseCPU != 0
	}
	// A time is the pool's only if every round measured it: the answers of
	// a round without one would dilute the others'.
	if !allCPU {
		res.CPU = 0
	}
	if !allDatabaseCPU {
		res.DatabaseCPU = 0
	}
	slices.Sort(res.latencies)
	res.fill()
	return res
}

// percentile is the nearest-rank percentile of sorted latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// closedLoop keeps concurrency requests in flight — each worker sends its
// next request when the previous one is answered — for warmup, then for
// the measured duration, then lets the requests in flight finish. It reads
// clocks at the start and end of the measured window.
func closedLoop(ctx context.Context, t target, clocks serverClocks, concurrency int, warmup, duration, requestTimeout time.Duration) Result {
	start := time.Now()
	from, to := start.Add(warmup), start.Add(warmup+duration)
	cpu := startCPUWindow(ctx, clocks, from, to)
	ctx, cancel := context.WithDeadline(ctx, to.Add(requestTimeout))
	defer cancel()
	recs := make([]*recorder, concurrency)
	var wg sync.WaitGroup
	for i := range recs {
		rec := &recorder{from: from, to: to}
		recs[i] = rec
		wg.Go(func() {
			for ctx.Err() == nil {
				begin := time.Now()
				if !begin.Before(to) {
					return
				}
				err := t.Do(ctx)
				rec.record(begin, time.Now(), err)
			}
		})
	}
	wg.Wait()
	res := summarize(t.Name(), fmt.Sprintf("closed, %d in flight", concurrency), from, to, recs)
	w := cpu.wait() // an unmeasured time is 0
	res.CPU, res.DatabaseCPU = w.server, w.database
	return res
}

// CPUPerRequest is the server's processor time per request answered
// within the window (0 when not measured).
func (res Result) CPUPerRequest() time.Duration { return res.perAnswer(res.CPU) }

// DatabaseCPUPerRequest is the same for the server's database.
func (res Result) DatabaseCPUPerRequest() time.Duration { return res.perAnswer(res.DatabaseCPU) }

// perAnswer is d per request answered within the window.
func (res Result) perAnswer(d time.Duration) time.Duration {
	if res.answered == 0 {
		return 0
	}
	return d / time.Duration(res.answered)
}

// openLoop offers requests at a fixed rate, whatever the answers: request
// i is due at start + i/rate, and one of workers sends it as soon as it is
// free. When the server falls behind, requests wait in line and their
// latency, counted from when they were due, says so. The phase sends
// exactly rate × (warmup + duration) requests, then stops.
func openLoop(ctx context.Context, t target, rate float64, workers int, warmup, duration, requestTimeout time.Duration) Result {
	start := time.Now()
	from, to := start.Add(warmup), start.Add(warmup+duration)
	// Requests answered after `to` are not measured, but a backlog must
	// not outlive the phase by more than a request's timeout.
	ctx, cancel := context.WithDeadline(ctx, to.Add(requestTimeout))
	defer cancel()
	due := make(chan time.Time, workers)
	recs := make([]*recorder, workers)
	var wg sync.WaitGroup
	for i := range recs {
		rec := &recorder{from: from, to: to, byDue: true}
		recs[i] = rec
		wg.Go(func() {
			for at := range due {
				if ctx.Err() != nil {
					// The phase is over with requests still waiting: they
					// are failures, not requests that never were.
					rec.record(at, time.Now(), errBacklog)
					continue
				}
				err := t.Do(ctx)
				rec.record(at, time.Now(), err)
			}
		})
	}
	total := int((warmup + duration).Seconds() * rate)
	interval := float64(time.Second) / rate
	sent := 0
schedule:
	for ; sent < total; sent++ {
		at := start.Add(time.Duration(float64(sent) * interval))
		if d := time.Until(at); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				break schedule
			}
		}
		select {
		case due <- at:
		case <-ctx.Done():
			break schedule
		}
	}
	close(due)
	wg.Wait()
	res := summarize(t.Name(), "open, "+formatRate(rate), from, to, recs)
	res.OfferedRate = rate
	if unsent := total - sent; unsent > 0 {
		res.Errors += unsent
		if res.FirstErr == nil {
			res.FirstErr = errBacklog
		}
	}
	return res
}
