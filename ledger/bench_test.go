package ledger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/agentsigna/agentsigna/ledger"
)

// BenchmarkAppend measures durable appends per second: every Append
// returns only after its batch committed (SQLite synchronous=FULL;
// PostgreSQL synchronous_commit as the server has it).
//
//	go test -run '^$' -bench BenchmarkAppend -benchtime 20000x ./ledger
func BenchmarkAppend(b *testing.B) {
	for _, kind := range kinds {
		for _, appenders := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("%s/appenders=%d", kind, appenders), func(b *testing.B) {
				e := newBenchEnv(b, kind)
				record := make([]byte, 512) // a decision record's size
				var next atomic.Int64
				b.ResetTimer()
				var wg sync.WaitGroup
				for range appenders {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							if _, err := e.ledger.Append(context.Background(), e.log, ledger.Entry{Kind: "decision", Subject: "dec_0123456789", Record: record}); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
			})
		}
	}
}

// BenchmarkInclusionProof measures one inclusion proof, read from stored
// tiles, in a log of 1,048,576 entries (built once, which takes a while).
//
//	go test -run '^$' -bench BenchmarkInclusionProof ./ledger
func BenchmarkInclusionProof(b *testing.B) {
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			e := newBenchEnv(b, kind)
			const size = 1 << 20
			fill(b, e, size)
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				idx := rand.Uint64N(size)
				if _, err := e.ledger.InclusionProof(ctx, e.log, idx, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func fill(b *testing.B, e *env, size uint64) {
	b.Helper()
	var next atomic.Uint64
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for next.Add(1) <= size {
				if _, err := e.ledger.Append(context.Background(), e.log, ledger.Entry{Kind: "decision", Subject: "dec"}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
