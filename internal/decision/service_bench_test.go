package decision_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
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
		payee := e.counterparty(b, e.org.ID, store.CounterpartyVerified)
		reqs[i] = benchRequest{agent: e.agent(b, store.RiskLow).ID, req: payment("100.00", payee.ID)}
	}
	// Warm: the receipt key exists and the policy is loaded, as in a
	// running server.
	e.decide(b, reqs[0].agent, reqs[0].req, "")
	return e, reqs
}
