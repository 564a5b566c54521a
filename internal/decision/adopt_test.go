package decision_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
)

// An agent and a counterparty whose rows name no entry — stored before
// rows were logged, or planted since by whoever writes the SQLite file,
// which nothing tells apart — are trusted with nothing: the agent is seen
// as critical, the counterparty as new, so a payment between them goes
// to a human. Once an operator adopts them (ledger adopt), their
// agent.adopted and counterparty.adopted entries stand for their
// registration, and the same payment is allowed. (Found by review: a
// planted low-risk agent and a planted verified payee were paid without
// anyone.) An adoption refuses rows changed since they were listed, and
// rows adopted already.
func TestUnboundRowsTrustedOnlyOnceAdopted(t *testing.T) {
	e, logs := loggingEnv(t, "sqlite")
	ctx := context.Background()
	e.agent(t, store.RiskLow) // the organization's own, for its tenant_id and key
	file := e.backend.(*sqlite.Store).TenantFile(e.org.ID)
	const agentID, cpID = "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "cp_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	sqlitetest.Plant(t, file,
		`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
		SELECT tenant_id, '`+agentID+`', 'old-bot', 'usr_old', 'low', 'active', created_at, updated_at FROM agents LIMIT 1`,
		`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
		SELECT tenant_id, '`+agentID+`', 'old-key', public_jwk, 'active', created_at FROM agent_keys LIMIT 1`,
		`INSERT INTO counterparties (tenant_id, id, name, status, created_at, updated_at)
		SELECT tenant_id, '`+cpID+`', 'Old Vendor', 'verified', created_at, updated_at FROM agents LIMIT 1`)
	escalated := func(what string, reasons ...string) {
		t.Helper()
		got := e.decide(t, agentID, payment("10.00", cpID), "")
		if got.Outcome != decision.Escalate {
			t.Fatalf("%s: %s %v, want an escalation", what, got.Outcome, got.Reasons)
		}
		for _, r := range reasons {
			if !slices.Contains(got.Reasons, r) {
				t.Fatalf("%s: reasons %v, want %s", what, got.Reasons, r)
			}
		}
	}
	for range 2 {
		escalated("unbound rows", "high_tier_money_movement", "unverified_counterparty")
	}
	for _, row := range []string{"agent=" + agentID, "counterparty=" + cpID} {
		if n := strings.Count(logs.String(), row); n != 1 {
			t.Fatalf("%s reported %d times, want once:\n%s", row, n, logs.String())
		}
	}

	agents, err := identity.NewAgents(e.ledger, e.backend)
	if err != nil {
		t.Fatal(err)
	}
	ref := store.TenantRef{ID: e.org.ID, Slug: e.org.Slug}
	unbound, err := agents.Unbound(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(unbound.Agents) != 1 || unbound.Agents[0].Agent.ID != agentID || len(unbound.Agents[0].Keys) != 1 ||
		unbound.Agents[0].Keys[0].KID != "old-key" || len(unbound.Planted) != 0 {
		t.Fatalf("unbound agents: %+v", unbound)
	}
	cps, err := decision.UnboundCounterparties(ctx, e.backend, e.org)
	if err != nil || len(cps) != 1 || cps[0].ID != cpID {
		t.Fatalf("unbound counterparties: %+v, %v", cps, err)
	}
	counterparties, err := decision.NewCounterparties(e.ledger)
	if err != nil {
		t.Fatal(err)
	}

	// Changed since they were listed: refused, and nothing logged.
	size := e.ledgerSize(t)
	sqlitetest.Plant(t, file, `UPDATE agents SET sponsor = 'usr_mallory' WHERE id = '`+agentID+`'`,
		`UPDATE counterparties SET name = 'Mallory Ltd' WHERE id = '`+cpID+`'`)
	if _, err := agents.Adopt(ctx, ref, unbound.Agents[0]); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("an agent changed since it was listed: %v, want ErrConflict", err)
	}
	if _, err := counterparties.Adopt(ctx, e.org, cps[0]); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a counterparty changed since it was listed: %v, want ErrConflict", err)
	}
	if got := e.ledgerSize(t); got != size {
		t.Fatalf("refused adoptions logged %d entries", got-size)
	}
	escalated("after refused adoptions", "high_tier_money_movement", "unverified_counterparty")

	// Listed again and adopted: trusted as the entries record them.
	if unbound, err = agents.Unbound(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if cps, err = decision.UnboundCounterparties(ctx, e.backend, e.org); err != nil {
		t.Fatal(err)
	}
	size = e.ledgerSize(t)
	agentEntry, err := agents.Adopt(ctx, ref, unbound.Agents[0])
	if err != nil {
		t.Fatal(err)
	}
	cpEntry, err := counterparties.Adopt(ctx, e.org, cps[0])
	if err != nil {
		t.Fatal(err)
	}
	if agentEntry != size || cpEntry != size+1 {
		t.Fatalf("adopted by entries %d and %d, want %d and %d", agentEntry, cpEntry, size, size+1)
	}
	entry, record := e.entryAt(t, agentEntry)
	var rec identity.AgentRecord
	if entry.Kind != identity.KindAgentAdopted || entry.Subject != agentID || json.Unmarshal(record, &rec) != nil ||
		rec.Sponsor != "usr_mallory" || rec.RiskTier != store.RiskLow || rec.Status != store.AgentActive ||
		len(rec.Keys) != 1 || rec.Keys[0].KeyID != "old-key" || rec.Keys[0].Status != store.KeyActive {
		t.Fatalf("the adoption entry: %+v %s", entry, record)
	}
	if entry, _ := e.entryAt(t, cpEntry); entry.Kind != decision.KindCounterpartyAdopted || entry.Subject != cpID {
		t.Fatalf("the counterparty's adoption entry: %+v", entry)
	}
	if got := e.decide(t, agentID, payment("10.00", cpID), ""); got.Outcome != decision.Allow {
		t.Fatalf("adopted rows: %s %v, want allow", got.Outcome, got.Reasons)
	}
	// Adopted already: refused.
	if _, err := agents.Adopt(ctx, ref, unbound.Agents[0]); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("an agent adopted twice: %v, want ErrConflict", err)
	}
	if _, err := counterparties.Adopt(ctx, e.org, cps[0]); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a counterparty adopted twice: %v, want ErrConflict", err)
	}
	if unbound, err := agents.Unbound(ctx, ref); err != nil || len(unbound.Agents)+len(unbound.Planted) != 0 {
		t.Fatalf("after adoption: %+v, %v", unbound, err)
	}
}
