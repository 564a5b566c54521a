package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// An agent reads its organization's log head (DESIGN §4: an agent reads
// the log for its own entries): the newest checkpoint, and a consistency
// proof from the checkpoint one of its decisions came with, so it can
// hold its receipts' checkpoints to one append-only log. It reads no
// tiles and no export (403), and another organization's agent reads its
// own organization's log.
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

	// No entries all at once, and no entry not its own (entry 0 is the
	// organization's policy upload): TestAgentReadsItsOwnEntries.
	for _, path := range []string{"/v1/ledger/tile/0/000.p/1", "/v1/ledger/tile/entries/000.p/1", "/v1/ledger/entries/0",
		"/v1/ledger/proofs/inclusion?index=0", "/v1/ledger/export"} {
		status, hdr, body := get(tok, path)
		want := "/v1/decisions/{id}/tlog-proof"
		if strings.HasPrefix(path, "/v1/ledger/entries/") || strings.Contains(path, "inclusion") {
			want = "its own entries only"
		}
		if status != 403 || hdr.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(body), want) ||
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

// An agent reads its own entries one at a time (DESIGN §4): its decisions,
// their receipts and cases, its registration and the tokens issued to it,
// each as an entry and as an inclusion proof by index or by leaf hash.
// Every other entry of its organization's log is 403: another agent's,
// even of the same organization, the organization's own (policies,
// counterparties), and a token refusal that claimed its id.
func TestAgentReadsItsOwnEntries(t *testing.T) {
	e := newAgentEnv(t)
	ctx := context.Background()
	acme := store.TenantRef{ID: e.orgs["acme"].ID, Slug: "acme"}
	lg := e.ledger.TenantLog(acme.ID, "acme")
	a := e.agents["acme"]
	key, kid, pub := newAgentJWK(t, "")
	other, err := e.registry.Register(ctx, acme, store.Agent{Name: "acme other", Sponsor: "usr_sponsor", RiskTier: store.RiskLow},
		store.AgentKey{KID: kid, PublicJWK: pub})
	if err != nil {
		t.Fatal(err)
	}
	e.agents["other"] = testAgent{id: other.ID, key: key}
	type entryKey struct{ kind, subject string }
	own := map[entryKey]bool{{"agent.registered", a.id}: true}
	var aTok string
	for _, who := range []string{"acme", "other"} {
		status, out := e.tokenRequest(t, e.assertion(t, e.agents[who], nil))
		if status != 200 {
			t.Fatalf("token: %d %v", status, out)
		}
		tok := out["access_token"].(string)
		if who == "acme" {
			aTok = tok
			own[entryKey{"auth.token_issued", a.id}] = true
		}
		// Allowed (a decision and its receipt), and escalated (a decision
		// and its case).
		for _, amount := range []string{"100.00", "1500.00"} {
			status, _, body := e.decide(t, tok, payment(e.cps["acme"], amount), nil)
			var resp struct {
				DecisionID string `json:"decision_id"`
				Receipt    string `json:"receipt"`
				Case       struct {
					ID string `json:"id"`
				} `json:"case"`
			}
			if status != 200 || json.Unmarshal(body, &resp) != nil || (resp.Receipt == "") == (resp.Case.ID == "") {
				t.Fatalf("decision of %s: %d %s", amount, status, body)
			}
			if who != "acme" {
				continue
			}
			own[entryKey{"decision", resp.DecisionID}] = true
			if resp.Case.ID != "" {
				own[entryKey{"case.opened", resp.Case.ID}] = true
			} else {
				claims, err := jws.Parse([]byte(resp.Receipt))
				if err != nil {
					t.Fatal(err)
				}
				var c struct {
					JTI string `json:"jti"`
				}
				if err := json.Unmarshal(claims.Payload(), &c); err != nil {
					t.Fatal(err)
				}
				own[entryKey{"receipt", c.JTI}] = true
			}
		}
	}
	// A refusal filed under the agent's id: an assertion for it, signed
	// by another agent's key.
	if status, _ := e.tokenRequest(t, e.assertion(t, testAgent{id: a.id, key: key}, nil)); status != 400 {
		t.Fatalf("an assertion signed by another key: %d", status)
	}

	cp, err := e.ledger.LatestCheckpoint(ctx, lg)
	if err != nil {
		t.Fatal(err)
	}
	vkey, _ := e.ledger.VerifierKey(ctx, lg)
	kinds := map[string]int{}
	read := 0
	for i := uint64(0); i < cp.Size; i++ {
		stored, err := e.ledger.Entry(ctx, lg, i)
		if err != nil {
			t.Fatal(err)
		}
		entry, _ := verify.ParseEntry(stored.Entry)
		mine := own[entryKey{entry.Kind, entry.Subject}]
		kinds[entry.Kind]++
		leafHash := base64.StdEncoding.EncodeToString(stored.LeafHash)
		for _, path := range []string{
			fmt.Sprintf("/v1/ledger/entries/%d", i),
			fmt.Sprintf("/v1/ledger/proofs/inclusion?index=%d", i),
			"/v1/ledger/proofs/inclusion?leaf_hash=" + url.QueryEscape(leafHash),
		} {
			status, hdr, body := e.get(t, aTok, path)
			switch {
			case !mine && (status != 403 || hdr.Get("WWW-Authenticate") != `Bearer error="insufficient_scope"`):
				t.Errorf("the agent reads %s (%s %s): %d %s", path, entry.Kind, entry.Subject, status, body)
			case mine && status != 200:
				t.Errorf("the agent reads its own %s (%s): %d %s", path, entry.Kind, status, body)
			case mine && strings.Contains(path, "inclusion"):
				p, err := verify.ParseInclusionJSON(body)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := p.Verify(vkey, stored.LeafHash); err != nil || p.Index != i {
					t.Errorf("the inclusion proof of its own entry %d: %v", i, err)
				}
			case mine:
				var got struct {
					Index  uint64          `json:"index"`
					Entry  []byte          `json:"entry"`
					Record json.RawMessage `json:"record"`
				}
				if err := json.Unmarshal(body, &got); err != nil || got.Index != i || !bytes.Equal(got.Entry, stored.Entry) {
					t.Errorf("its own entry %d: %s", i, body)
				}
				read++
			}
		}
	}
	if read != len(own) {
		t.Errorf("the agent read %d of its %d entries", read, len(own))
	}
	// Every kind of entry was tried, the refusal included.
	for _, k := range []string{"decision", "receipt", "case.opened", "auth.token_issued", "auth.token_refused", "agent.registered", "counterparty.created"} {
		if kinds[k] == 0 {
			t.Errorf("no %s entry in the log", k)
		}
	}
	// Past the log's end: 404, as for any reader.
	if status, _, body := e.get(t, aTok, fmt.Sprintf("/v1/ledger/entries/%d", cp.Size)); status != 404 {
		t.Errorf("past the end: %d %s", status, body)
	}
	// Beta's agent, asking acme's indexes, reads beta's log.
	betaTok := e.token(t, "beta")
	for i := uint64(0); i < cp.Size; i++ {
		if status, _, body := e.get(t, betaTok, fmt.Sprintf("/v1/ledger/entries/%d", i)); status == 200 {
			var got struct {
				Record struct {
					AgentID string `json:"agent_id"`
				} `json:"record"`
			}
			if json.Unmarshal(body, &got) != nil || got.Record.AgentID == a.id || bytes.Contains(body, []byte(a.id)) {
				t.Errorf("beta's agent read acme's entry %d: %s", i, body)
			}
		}
	}
}
