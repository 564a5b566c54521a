package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/server"
)

// clock is a settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logSize is the size of lg's newest checkpoint (0 for a log not begun).
func logSize(t *testing.T, l *ledger.Ledger, lg ledger.Log) uint64 {
	t.Helper()
	cp, err := l.LatestCheckpoint(context.Background(), lg)
	if errors.Is(err, store.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return cp.Size
}

// entryAt reads entry i of lg: its kind and its record.
func entryAt(t *testing.T, l *ledger.Ledger, lg ledger.Log, i uint64) (string, []byte) {
	t.Helper()
	e, err := l.Entry(context.Background(), lg, i)
	if err != nil {
		t.Fatal(err)
	}
	var entry struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(e.Entry, &entry); err != nil {
		t.Fatal(err)
	}
	return entry.Kind, e.Record
}

type refusalSummary struct {
	Event         string         `json:"event"`
	WindowStart   time.Time      `json:"window_start"`
	WindowEnd     time.Time      `json:"window_end"`
	Recorded      int            `json:"recorded"`
	Suppressed    int            `json:"suppressed"`
	Reasons       map[string]int `json:"reasons"`
	ClaimedAgents map[string]int `json:"claimed_agents"`
	OtherAgents   int            `json:"other_agents"`
}

func summaryAt(t *testing.T, l *ledger.Ledger, lg ledger.Log, i uint64) refusalSummary {
	t.Helper()
	kind, rec := entryAt(t, l, lg, i)
	if kind != "auth.token_refusals_suppressed" {
		t.Fatalf("entry %d is %s, not a summary of suppressed refusals", i, kind)
	}
	var s refusalSummary
	if err := json.Unmarshal(rec, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// An attacker who knows an agent id floods the token endpoint with
// assertions it cannot sign. Every one is refused, the agent itself still
// gets its token, and the organization's log records only the window's
// first refusals one by one and then one summary that counts the rest; so
// does the platform's log for agents nobody knows.
func TestTokenRefusalsAreBoundedPerLog(t *testing.T) {
	clk := &clock{t: time.Now()}
	const limit = 5
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) {
		c.RefusalsPerWindow, c.RefusalWindow, c.Now = limit, time.Hour, clk.now
	})
	ctx := context.Background()
	acme := e.agents["acme"]
	acmeLog, platformLog := e.ledger.TenantLog(e.orgs["acme"].ID, "acme"), e.ledger.PlatformLog()
	e.token(t, "acme") // creates the token key; counted in acmeFrom
	acmeFrom, platformFrom := logSize(t, e.ledger, acmeLog), logSize(t, e.ledger, platformLog)

	_, forgerPriv, _ := ed25519.GenerateKey(rand.Reader)
	forger, _ := jwk.Import(forgerPriv)
	const forged = 40
	for i := range forged {
		if status, out := e.tokenRequest(t, e.assertion(t, testAgent{id: acme.id, key: forger}, nil)); status != 401 || out["error"] != "invalid_client" {
			t.Fatalf("forged assertion %d: %d %v", i, status, out)
		}
		if i == forged/2 {
			// The agent whose id is abused is not locked out.
			e.token(t, "acme")
		}
	}
	const unknown = 30
	for i := range unknown {
		stranger := testAgent{id: store.NewID(store.PrefixAgent), key: forger}
		if status, out := e.tokenRequest(t, e.assertion(t, stranger, nil)); status != 401 || out["error"] != "invalid_client" {
			t.Fatalf("unknown agent %d: %d %v", i, status, out)
		}
	}
	// Each log holds the first refusals (and acme's the token issued), no more.
	if got, want := logSize(t, e.ledger, acmeLog), acmeFrom+limit+1; got != want {
		t.Fatalf("acme's log grew to %d entries during the flood, want %d", got, want)
	}
	if got, want := logSize(t, e.ledger, platformLog), platformFrom+limit; got != want {
		t.Fatalf("the platform's log grew to %d entries during the flood, want %d", got, want)
	}
	for i := acmeFrom; i < acmeFrom+limit; i++ {
		if kind, _ := entryAt(t, e.ledger, acmeLog, i); kind != "auth.token_refused" {
			t.Fatalf("acme entry %d: %s", i, kind)
		}
	}

	// A new window records refusals one by one again.
	clk.add(time.Hour)
	if status, _ := e.tokenRequest(t, e.assertion(t, testAgent{id: acme.id, key: forger}, nil)); status != 401 {
		t.Fatalf("forged assertion in the next window: %d", status)
	}
	if kind, rec := entryAt(t, e.ledger, acmeLog, acmeFrom+limit+1); kind != "auth.token_refused" {
		t.Fatalf("first refusal of the next window: %s %s", kind, rec)
	}

	// Closing writes the summaries the windows still owe.
	if err := e.auth.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := logSize(t, e.ledger, acmeLog), acmeFrom+limit+3; got != want {
		t.Fatalf("acme's log after close: %d entries, want %d", got, want)
	}
	s := summaryAt(t, e.ledger, acmeLog, acmeFrom+limit+2)
	if s.Event != "token_refusals_suppressed" || s.Recorded != limit || s.Suppressed != forged-limit ||
		s.Reasons["bad_signature"] != forged-limit || len(s.Reasons) != 1 ||
		s.ClaimedAgents[acme.id] != forged-limit || len(s.ClaimedAgents) != 1 || s.OtherAgents != 0 ||
		s.WindowEnd.Sub(s.WindowStart) != time.Hour {
		t.Fatalf("acme's summary: %+v", s)
	}
	if got, want := logSize(t, e.ledger, platformLog), platformFrom+limit+1; got != want {
		t.Fatalf("the platform's log after close: %d entries, want %d", got, want)
	}
	s = summaryAt(t, e.ledger, platformLog, platformFrom+limit)
	named := 0
	for id, n := range s.ClaimedAgents {
		if len(id) != len(acme.id) || n != 1 {
			t.Fatalf("platform summary names %q %d times", id, n)
		}
		named += n
	}
	if s.Suppressed != unknown-limit || s.Reasons["unknown_agent"] != unknown-limit || len(s.ClaimedAgents) != 16 || named+s.OtherAgents != unknown-limit {
		t.Fatalf("platform summary: %+v", s)
	}
	// Closing again writes nothing more.
	if err := e.auth.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := logSize(t, e.ledger, acmeLog), acmeFrom+limit+3; got != want {
		t.Fatalf("acme's log after a second close: %d entries, want %d", got, want)
	}
}

// The summary is written when its window ends, without waiting for a
// close.
func TestTokenRefusalSummaryWhenTheWindowEnds(t *testing.T) {
	const limit, window = 2, 300 * time.Millisecond
	e := newAgentEnv(t, func(c *server.AgentAuthConfig) { c.RefusalsPerWindow, c.RefusalWindow = limit, window })
	platformLog := e.ledger.PlatformLog()
	from := logSize(t, e.ledger, platformLog)
	start := time.Now()
	for range 6 {
		e.tokenRequest(t, unsignedJWS(store.NewID(store.PrefixAgent)))
	}
	if time.Since(start) >= window {
		t.Skip("the refusals took longer than the window; nothing to check")
	}
	if got := logSize(t, e.ledger, platformLog); got != from+limit {
		t.Fatalf("during the window: %d entries, want %d", got, from+limit)
	}
	deadline := time.Now().Add(10 * time.Second)
	for logSize(t, e.ledger, platformLog) < from+limit+1 {
		if time.Now().After(deadline) {
			t.Fatal("no summary 10 s after the window ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := summaryAt(t, e.ledger, platformLog, from+limit); s.Suppressed != 4 || s.Recorded != limit {
		t.Fatalf("summary: %+v", s)
	}
}

func TestAgentAuthRefusesANegativeBound(t *testing.T) {
	e := newAgentEnv(t)
	master, _ := secrets.GenerateMasterKey()
	kr, _ := signing.NewKeyring(master)
	for _, bad := range []func(*server.AgentAuthConfig){
		func(c *server.AgentAuthConfig) { c.RefusalsPerWindow = -1 },
		func(c *server.AgentAuthConfig) { c.RefusalWindow = -time.Second },
	} {
		cfg := server.AgentAuthConfig{Tenants: e.store, Ledger: e.ledger, Keys: kr, PublicURL: testPublicURL}
		bad(&cfg)
		if _, err := server.NewAgentAuth(cfg); err == nil {
			t.Fatalf("accepted %+v", cfg)
		}
	}
}
