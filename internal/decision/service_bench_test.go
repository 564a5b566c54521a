package decision_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
)

// BenchmarkDecideAllow is the whole allow path on the embedded store: a
// payment.send under the acme example policy, with its ledger entries,
// receipt, inclusion proof and stored rows. Serial, so ns/op is one
// decision's latency.
//
// Requests rotate over benchAgents agents and counterparties: the policy
// input's agent stats and payments_count are counted from the stored
// decisions, at a cost that grows with them, so one agent paying one
// counterparty b.N times would measure that growth rather than the path,
// and ns/op would depend on -benchtime.
func BenchmarkDecideAllow(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			e, reqs := allowBench(b, kind, benchAgents)
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := reqs[i%len(reqs)]
				i++
				resp, err := e.service.Decide(ctx, e.org, r.agent, r.req, "")
				if err != nil || resp.Outcome != decision.Allow {
					b.Fatalf("%+v, %v", resp, err)
				}
			}
		})
	}
}

// BenchmarkDecideAllowParallel is the same with many requests in flight, as
// behind an HTTP server: what batching in the ledger can share. "one-agent"
// is the load harness's shape: every request from one agent paying one
// counterparty, so every decision updates the same counter rows.
func BenchmarkDecideAllowParallel(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		for _, agents := range []int{benchAgents, 1} {
			name := kind
			if agents == 1 {
				name += "/one-agent"
			}
			b.Run(name, func(b *testing.B) {
				e, reqs := allowBench(b, kind, agents)
				ctx := context.Background()
				var next atomic.Uint64
				written := bytesWritten()
				b.ReportAllocs()
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						r := reqs[next.Add(1)%uint64(len(reqs))]
						resp, err := e.service.Decide(ctx, e.org, r.agent, r.req, "")
						if err != nil || resp.Outcome != decision.Allow {
							b.Errorf("%+v, %v", resp, err)
							return
						}
					}
				})
				b.StopTimer()
				if kind == "sqlite" {
					reportStorage(b, e, written)
				}
			})
		}
	}
}

const benchAgents = 64

type benchRequest struct {
	agent string
	req   decision.DecisionRequest
}

func allowBench(b *testing.B, kind string, agents int) (*serviceEnv, []benchRequest) {
	e := newServiceEnv(b, kind)
	e.activate(b, acmeBundle(b))
	reqs := make([]benchRequest, agents)
	for i := range reqs {
		payee := e.counterparty(b, e.org, store.CounterpartyVerified)
		reqs[i] = benchRequest{agent: e.agent(b, store.RiskLow).ID, req: payment("100.00", payee.ID)}
	}
	// Warm: the receipt key exists and the policy is loaded, as in a
	// running server.
	e.decide(b, reqs[0].agent, reqs[0].req, "")
	return e, reqs
}

// reportStorage adds the embedded store's file size per decision
// (file-B/op: the organization's file once closing the store has copied
// its WAL back, over b.N; the schema and the setup's rows are in it too,
// a share that a large -benchtime, e.g. 20000x, makes negligible) and
// what the process passed to write calls per decision (written-B/op: WAL
// frames and their copies into the file, the last ones made by closing;
// from written, bytesWritten before the loop).
func reportStorage(b *testing.B, e *serviceEnv, written int64) {
	b.Helper()
	e.ledger.Close()
	s := e.backend.(*sqlite.Store)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if after := bytesWritten(); written >= 0 && after >= 0 {
		b.ReportMetric(float64(after-written)/float64(b.N), "written-B/op")
	}
	st, err := os.Stat(s.TenantFile(e.org.ID))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.Size())/float64(b.N), "file-B/op")
}

// bytesWritten is the bytes this process has passed to write calls
// (/proc/self/io wchar), or -1 where that is not known.
func bytesWritten() int64 {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}
