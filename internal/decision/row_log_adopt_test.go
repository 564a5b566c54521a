package decision_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
	"github.com/agentsigna/agentsigna/ledger"
)

// ledger verify holds an adopted agent to its agent.adopted entry and to
// what entries said of it before: a key a rotation retired before the
// adoption stays retired, whether the rotation listed it or (before
// d87bb85) retired every key; an agent adopted revoked stays revoked; and
// an agent the log registered is never adopted. Entries are appended
// here as only a holder of the log key could, for what Adopter itself
// refuses to write (found by review).
func TestRowLogHoldsAdoptions(t *testing.T) {
	const legacy = "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	for _, tc := range []struct {
		name string
		// status is the legacy agent's; entries appends what the log
		// says of it and returns the index its rows then name.
		status  string
		entries func(t *testing.T, e *serviceEnv, key store.AgentKey) uint64
		tamper  string // then, to the rows
		want    string // the problem ledger verify reports
	}{
		{"an old rotation's key adopted active", "active", func(t *testing.T, e *serviceEnv, key store.AgentKey) uint64 {
			e.appendEntry(t, identity.KindAgentKeyRotated, legacy, rotationRecord(t, legacy, key.PublicJWK, nil))
			return e.appendEntry(t, identity.KindAgentAdopted, legacy, adoptionRecord(t, legacy, "active", key, store.KeyActive))
		}, "", "key old-key of agent " + legacy + " is active, but entry %d retired it"},
		{"a listed rotation's key adopted active", "active", func(t *testing.T, e *serviceEnv, key store.AgentKey) uint64 {
			e.appendEntry(t, identity.KindAgentKeyRotated, legacy, rotationRecord(t, legacy, key.PublicJWK, []string{"old-key"}))
			return e.appendEntry(t, identity.KindAgentAdopted, legacy, adoptionRecord(t, legacy, "active", key, store.KeyActive))
		}, "", "key old-key of agent " + legacy + " is active, but entry %d retired it"},
		{"an agent adopted revoked, made active", "revoked", func(t *testing.T, e *serviceEnv, key store.AgentKey) uint64 {
			return e.appendEntry(t, identity.KindAgentAdopted, legacy, adoptionRecord(t, legacy, "revoked", key, store.KeyActive))
		}, `UPDATE agents SET status = 'active' WHERE id = '` + legacy + `'`, "agent " + legacy + " is active, but entry %d adopted it revoked"},
		{"an agent adopted suspended, made active", "suspended", func(t *testing.T, e *serviceEnv, key store.AgentKey) uint64 {
			return e.appendEntry(t, identity.KindAgentAdopted, legacy, adoptionRecord(t, legacy, "suspended", key, store.KeyActive))
		}, `UPDATE agents SET status = 'active' WHERE id = '` + legacy + `'`, "agent " + legacy + " is active, but entry %d suspended it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newServiceEnv(t, "sqlite")
			e.agent(t, store.RiskLow)
			file := e.backend.(*sqlite.Store).TenantFile(e.org.ID)
			var key store.AgentKey
			e.inTenant(t, e.org.ID, func(ctx context.Context, tx store.TenantTx) error {
				agents, err := tx.Agents().List(ctx)
				if err != nil {
					return err
				}
				keys, err := tx.Agents().Keys(ctx, agents[0].ID)
				key = keys[0]
				return err
			})
			key.AgentID, key.KID = legacy, "old-key"
			sqlitetest.Plant(t, file,
				`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
				SELECT tenant_id, '`+legacy+`', 'old', 'usr_old', 'low', '`+tc.status+`', created_at, updated_at FROM agents`,
				`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at)
				SELECT tenant_id, '`+legacy+`', 'old-key', public_jwk, 'active', created_at FROM agent_keys`)
			at := tc.entries(t, e, key)
			// The rows bound as Adopter binds them, and each key a
			// rotation introduced as it stores it.
			stmts := []string{fmt.Sprintf(`UPDATE agents SET ledger_index = %d WHERE id = '%s'`, at, legacy),
				fmt.Sprintf(`UPDATE agent_keys SET ledger_index = %d WHERE agent_id = '%s'`, at, legacy),
				fmt.Sprintf(`INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at, ledger_index)
					SELECT tenant_id, agent_id, 'new-key', public_jwk, 'active', created_at, %d FROM agent_keys WHERE agent_id = '%s'`, at-1, legacy)}
			if !strings.Contains(tc.name, "rotation") {
				stmts = stmts[:2]
			}
			sqlitetest.Plant(t, file, stmts...)
			problem := func() string {
				rows := decision.NewRowLog()
				rep, err := e.ledger.CheckWith(context.Background(), e.log(), "", ledger.CheckOptions{CheckRecord: rows.Entry, CheckRows: rows.Rows})
				if err != nil || rep.Problem != nil {
					t.Fatalf("check: %v, %v", rep.Problem, err)
				}
				return rep.RowsProblem
			}
			if tc.tamper != "" {
				if got := problem(); got != "" {
					t.Fatalf("adopted as it was: %s", got)
				}
				sqlitetest.Tamper(t, file, tc.tamper)
			}
			want := tc.want
			if strings.Contains(want, "%d") {
				retiredBy := at
				if strings.Contains(tc.name, "rotation") {
					retiredBy = at - 1
				}
				want = fmt.Sprintf(want, retiredBy)
			}
			if got := problem(); !strings.Contains(got, want) {
				t.Fatalf("rows problem %q, want %q", got, want)
			}
		})
	}

	// An agent the log registered, adopted: the log fails at that entry.
	e := newServiceEnv(t, "sqlite")
	ag := e.agent(t, store.RiskHigh)
	at := e.appendEntry(t, identity.KindAgentAdopted, ag.ID, adoptionRecord(t, ag.ID, "active", store.AgentKey{}, ""))
	rows := decision.NewRowLog()
	rep, err := e.ledger.CheckWith(context.Background(), e.log(), "", ledger.CheckOptions{CheckRecord: rows.Entry, CheckRows: rows.Rows})
	if err != nil || rep.Problem == nil || rep.Problem.Index != at || !strings.Contains(rep.Problem.Reason, "adopted, but entry") {
		t.Fatalf("a registered agent adopted: %+v, %v", rep.Problem, err)
	}

	// A counterparty entry whose record's event is another kind's.
	e = newServiceEnv(t, "sqlite")
	rec, err := json.Marshal(decision.CounterpartyRecord{Event: "counterparty_adopted", CounterpartyID: "cp_aaaaaaaaaaaaaaaaaaaaaaaaaa", Name: "Old", Status: "verified"})
	if err != nil {
		t.Fatal(err)
	}
	at = e.appendEntry(t, decision.KindCounterpartyCreated, "cp_aaaaaaaaaaaaaaaaaaaaaaaaaa", rec)
	rows = decision.NewRowLog()
	rep, err = e.ledger.CheckWith(context.Background(), e.log(), "", ledger.CheckOptions{CheckRecord: rows.Entry, CheckRows: rows.Rows})
	if err != nil || rep.Problem == nil || rep.Problem.Index != at || !strings.Contains(rep.Problem.Reason, "or its event") {
		t.Fatalf("a counterparty entry of another event: %+v, %v", rep.Problem, err)
	}
}

// rotationRecord is an agent.key_rotated record of agentID introducing
// new-key, public; retired nil is a record from before d87bb85, which
// listed none.
func rotationRecord(t *testing.T, agentID, public string, retired []string) []byte {
	t.Helper()
	rec := map[string]any{"event": "agent_key_rotated", "agent_id": agentID, "key_id": "new-key", "public_jwk": json.RawMessage(public)}
	if retired != nil {
		rec["retired_key_ids"] = retired
	}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// adoptionRecord is an agent.adopted record of agentID, found with status,
// and key (none when its KID is empty) with keyStatus.
func adoptionRecord(t *testing.T, agentID, status string, key store.AgentKey, keyStatus store.KeyStatus) []byte {
	t.Helper()
	rec := identity.AgentRecord{Event: "agent_adopted", AgentID: agentID, Name: "old", Sponsor: "usr_old", RiskTier: store.RiskLow,
		Status: store.AgentStatus(status), Keys: []identity.AdoptedKey{}}
	if key.KID != "" {
		rec.Keys = append(rec.Keys, identity.AdoptedKey{KeyID: key.KID, PublicJWK: json.RawMessage(key.PublicJWK), Status: keyStatus})
	}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
