package decision

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// benchOptions: the machine may be shared (parallel builds); a scheduling
// stall must not turn into a policy_timeout that fails the benchmark. The
// deadline is still set, so its cost is measured.
func benchOptions() Options { return Options{Timeout: time.Minute} }

// BenchmarkEvaluateCombined is one decision's policy work as the server
// does it: the input converted once, the base policy and the example
// organization policy (policies/examples/acme) evaluated, the verdicts
// combined. Target (issue 4): at most 50 µs per op.
func BenchmarkEvaluateCombined(b *testing.B) {
	for _, bc := range []struct {
		name   string
		mutate func(*Input)
	}{
		{"allow", func(*Input) {}},
		{"escalate", func(in *Input) { in.Action.Amount.Value = "5000.00"; in.Agent.RiskTier = "high" }},
		{"deny", func(in *Input) { in.Action.Type = "invoice.approve" }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ev, engine := newEvaluator(b, benchOptions())
			engine.Activate("t_1", acmePolicy(b))
			in := defaultInput()
			bc.mutate(&in)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if got := ev.Evaluate(ctx, in); len(got.Errors) > 0 {
					b.Fatal(got.Errors)
				}
			}
		})
	}
}

// BenchmarkEvaluateCombinedInWorker is BenchmarkEvaluateCombined/allow
// with the organization policy in a worker process, as the service runs
// it, one evaluation at a time: the difference is what isolation costs a
// decision (the input's encoding, a pipe round trip each way, the
// worker's decoding of the input).
func BenchmarkEvaluateCombinedInWorker(b *testing.B) {
	ev := workerEvaluator(b)
	in := defaultInput()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if got := ev.Evaluate(ctx, in); got.Outcome != Allow {
			b.Fatal(got.Outcome, got.Errors)
		}
	}
}

// BenchmarkEvaluateCombinedInWorkerParallel is the same with 8
// evaluations per processor in flight, pipelined to the one worker, as an
// agent's burst and an organization's agents send them.
func BenchmarkEvaluateCombinedInWorkerParallel(b *testing.B) {
	ev := workerEvaluator(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		in := defaultInput()
		for pb.Next() {
			if got := ev.Evaluate(ctx, in); got.Outcome != Allow {
				b.Error(got.Outcome, got.Errors)
				return
			}
		}
	})
}

// workerEvaluator is an Evaluator whose organization t_1 has the example
// policy active in a worker.
func workerEvaluator(b *testing.B) *Evaluator {
	b.Helper()
	ev, engine := newEvaluator(b, benchOptions())
	engine.Activate("t_1", acmeInWorker(b))
	return ev
}

// BenchmarkEvaluateCombinedBaseMiss is the worst case for the base memo:
// every decision names a counterparty never seen, so the base policy is
// evaluated, not recalled.
func BenchmarkEvaluateCombinedBaseMiss(b *testing.B) {
	ev, engine := newEvaluator(b, benchOptions())
	engine.Activate("t_1", acmePolicy(b))
	in := defaultInput()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		in.Counterparty.ID = "cp_" + strconv.Itoa(i)
		if got := ev.Evaluate(ctx, in); got.Outcome != Allow {
			b.Fatal(got.Outcome, got.Errors)
		}
	}
}

// BenchmarkEvaluateCombinedParallel is the same under concurrent load.
func BenchmarkEvaluateCombinedParallel(b *testing.B) {
	ev, engine := newEvaluator(b, benchOptions())
	engine.Activate("t_1", acmePolicy(b))
	in := defaultInput()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if got := ev.Evaluate(ctx, in); got.Outcome != Allow {
				b.Error(got.Outcome, got.Errors)
				return
			}
		}
	})
}
