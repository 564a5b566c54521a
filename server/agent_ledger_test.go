package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// An agent reads its organization's log head (DESIGN §4: an agent reads
// the log for its own entries): the newest checkpoint, and a consistency
// proof from the checkpoint one of its decisions came with, so it can
// hold its receipts' checkpoints to one append-only log. It reads no
// entry that way (403: its own are at /v1/decisions/{id}/tlog-proof), and
// another organization's agent reads its own organization's log.
func TestAgentReadsItsLogHead(t *testing.T) {
	e := newAgentEnv(t)
	ctx := context.Background()
	tok := e.token(t, "acme")
	get := func(tok, path string) (int, http.Header, []byte) { t.Helper(); return e.get(t, tok, path) }
	vkey := func(slug string) string {
		k, err := e.ledger.VerifierKey(ctx, e.ledger.TenantLog(e.orgs[slug].ID, slug))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	status, _, body := e.decide(t, tok, payment(e.cps["acme"], "100.00"), nil)
	var resp struct {
		Ledger struct {
			Checkpoint string `json:"checkpoint"`
		} `json:"ledger"`
	}
	if status != 200 || json.Unmarshal(body, &resp) != nil {
		t.Fatalf("decision: %d %s", status, body)
	}
	older, err := verify.VerifyCheckpoint([]byte(resp.Ledger.Checkpoint), vkey("acme"))
	if err != nil {
		t.Fatal(err)
	}
	// The log grows: another decision, another token.
	if status, _, body := e.decide(t, e.token(t, "acme"), payment(e.cps["acme"], "5.00"), nil); status != 200 {
		t.Fatalf("decision: %d %s", status, body)
	}

	status, hdr, body := get(tok, "/v1/ledger/checkpoint")
	if status != 200 || hdr.Get("Content-Type") != "text/plain; charset=utf-8" || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("checkpoint: %d %v %s", status, hdr, body)
	}
	newest, err := verify.VerifyCheckpoint(body, vkey("acme"))
	if err != nil || newest.Origin() != "agentsigna.test/t/acme" || newest.Size() <= older.Size() {
		t.Fatalf("checkpoint %s: %v; older size %d", body, err, older.Size())
	}
	status, _, body = get(tok, fmt.Sprintf("/v1/ledger/proofs/consistency?first=%d&second=%d", older.Size(), newest.Size()))
	if status != 200 {
		t.Fatalf("consistency: %d %s", status, body)
	}
	p, err := verify.ParseConsistencyJSON(body)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.Verify(vkey("acme"), older); err != nil || got.Size() != newest.Size() {
		t.Fatalf("the consistency proof from the decision's checkpoint: %v", err)
	}

	// Beta's agent reads beta's log, whatever it asks.
	status, _, body = get(e.token(t, "beta"), "/v1/ledger/checkpoint")
	if cp, err := verify.VerifyCheckpoint(body, vkey("beta")); status != 200 || err != nil || cp.Origin() != "agentsigna.test/t/beta" {
		t.Fatalf("beta's agent reads %d %s: %v", status, body, err)
	}

	// No entry, one by one or all at once.
	for _, path := range []string{"/v1/ledger/tile/0/000.p/1", "/v1/ledger/tile/entries/000.p/1", "/v1/ledger/entries/0",
		"/v1/ledger/proofs/inclusion?index=0", "/v1/ledger/export"} {
		status, hdr, body := get(tok, path)
		if status != 403 || hdr.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(body), "/v1/decisions/{id}/tlog-proof") ||
			hdr.Get("WWW-Authenticate") != `Bearer error="insufficient_scope"` {
			t.Errorf("an agent reads %s: %d %v %s", path, status, hdr, body)
		}
		// Without a valid agent token, 401 (not a 403 that tells the
		// route from another).
		for _, tc := range []struct{ tok, why string }{{"", "no token"}, {"not-a-token", "junk"}, {tok + "x", "a tampered token"}} {
			if status, hdr, body := get(tc.tok, path); status != 401 || hdr.Get("WWW-Authenticate") == "" {
				t.Errorf("%s reads %s: %d %s", tc.why, path, status, body)
			}
		}
	}
	for _, tc := range []struct{ tok, why string }{{"", "no token"}, {"not-a-token", "junk"}, {tok + "x", "a tampered token"}} {
		if status, hdr, body := get(tc.tok, "/v1/ledger/checkpoint"); status != 401 || hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %s", tc.why, status, body)
		}
	}

	// Suspending the agent ends its reads at once, though its token has
	// not expired and its key is still its own.
	if err := e.registry.Suspend(ctx, store.TenantRef{ID: e.orgs["acme"].ID, Slug: "acme"}, e.agents["acme"].id); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/ledger/checkpoint", "/v1/ledger/proofs/consistency?first=1&second=2", "/v1/ledger/entries/0"} {
		if status, hdr, body := get(tok, path); status != 401 || hdr.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("a suspended agent reads %s: %d %v %s", path, status, hdr, body)
		}
	}
}
