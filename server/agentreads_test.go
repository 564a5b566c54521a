package server_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/server"
)

// Each agent's reads (its decisions, cases and their proofs, its log's
// head) are bounded per agent: past the burst every read route answers
// 429 problem+json with the wait in Retry-After, counted once the token
// verifies, whatever the route would have answered (200, 403 or 404).
// Another agent's reads, the same agent's decisions, and a request
// without a token are not counted; waiting as told is enough.
func TestAgentReadRate(t *testing.T) {
	var clock atomic.Int64 // seconds added to the real time
	now := func() time.Time { return time.Now().Add(time.Duration(clock.Load()) * time.Second) }
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) {
		c.Now, c.ReadRate, c.ReadBurst = now, rate.Every(time.Minute), 3
	})
	get := func(tok, path string) (int, http.Header, []byte) { t.Helper(); return e.get(t, tok, path) }
	tok := e.token(t, "acme")
	status, _, body := e.decide(t, tok, payment(e.cps["acme"], "100.00"), nil)
	var dec struct {
		ID string `json:"decision_id"`
	}
	if status != 200 || json.Unmarshal(body, &dec) != nil || dec.ID == "" {
		t.Fatalf("decision: %d %s", status, body)
	}
	for _, path := range []string{"/v1/decisions/" + dec.ID, "/v1/decisions/" + dec.ID + "/tlog-proof", "/v1/ledger/checkpoint"} {
		if status, _, body := get(tok, path); status != 200 {
			t.Fatalf("%s within the burst of 3: %d %s", path, status, body)
		}
	}
	for _, path := range []string{
		"/v1/decisions/" + dec.ID,
		"/v1/decisions/" + dec.ID + "/tlog-proof",
		"/v1/cases/case_nope", // would be 404
		"/v1/ledger/checkpoint",
		"/v1/ledger/proofs/consistency?first=1&second=2",
		"/v1/ledger/entries/0", // would be 403
	} {
		status, hdr, body := get(tok, path)
		var p struct {
			Status int    `json:"status"`
			Detail string `json:"detail"`
		}
		if status != 429 || hdr.Get("Content-Type") != "application/problem+json" || json.Unmarshal(body, &p) != nil || p.Status != 429 {
			t.Fatalf("%s past the burst: %d %v %s", path, status, hdr, body)
		}
		if secs, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || secs < 59 || secs > 60 {
			t.Errorf("%s: Retry-After %q, want about 60 seconds", path, hdr.Get("Retry-After"))
		}
	}
	// Not counted before the token verifies: no token is 401, not 429.
	if status, _, body := get("", "/v1/decisions/"+dec.ID); status != 401 {
		t.Errorf("no token, acme's bucket empty: %d %s", status, body)
	}
	// Beta's agent reads; acme's agent still decides.
	betaTok := e.token(t, "beta")
	if status, _, body := get(betaTok, "/v1/ledger/checkpoint"); status != 200 {
		t.Errorf("beta's agent, after acme's spent its reads: %d %s", status, body)
	}
	if status, _, body := e.decide(t, tok, payment(e.cps["acme"], "5.00"), nil); status != 200 {
		t.Errorf("acme's decision, its reads spent: %d %s", status, body)
	}
	clock.Add(60)
	if status, _, body := get(tok, "/v1/decisions/"+dec.ID); status != 200 {
		t.Fatalf("a minute on: %d %s", status, body)
	}
	// The bound comes first, a suspended agent's 401 after: the bucket,
	// spent again, answers 429 though the agent is suspended meanwhile,
	// and its next read, once there is one, 401.
	if err := e.registry.Suspend(context.Background(), store.TenantRef{ID: e.orgs["acme"].ID, Slug: "acme"}, e.agents["acme"].id); err != nil {
		t.Fatal(err)
	}
	if status, _, body := get(tok, "/v1/ledger/checkpoint"); status != 429 {
		t.Errorf("a suspended agent, its reads spent: %d %s", status, body)
	}
	clock.Add(60)
	if status, _, body := get(tok, "/v1/ledger/checkpoint"); status != 401 {
		t.Errorf("a suspended agent, a minute on: %d %s", status, body)
	}

	e.refusesConfigs(t,
		func(c *server.AgentAuthConfig) { c.ReadRate = -1 },
		func(c *server.AgentAuthConfig) { c.ReadRate = rate.Limit(math.NaN()) },
		func(c *server.AgentAuthConfig) { c.ReadBurst = -1 },
		func(c *server.AgentAuthConfig) { c.ReadBurst = server.MaxAgentBurst + 1 },
	)
}
