package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// The leaf-hash lookup must seek the epoch index, never scan the log.
func TestLeafHashLookupUsesTheIndex(t *testing.T) {
	s, acme, db := withLog(t, 10000)
	ctx := context.Background()
	// One seek per epoch on the index's whole key: an index searched on
	// tenant_id alone is read whole, at a cost that grows with the log.
	q, args := (&logTx{logScope: logScope{tenantID: acme.ID}}).leafHashQuery(10000, make([]byte, 32))
	joined := queryPlan(t, db, q, args...)
	if !strings.Contains(joined, "SEARCH ledger_entries USING INDEX ledger_entries_by_leaf_hash (tenant_id=? AND <expr>=? AND leaf_hash=?)") ||
		strings.Contains(joined, "SCAN ledger_entries") {
		t.Fatalf("plan:\n%s", joined)
	}
	q, args = (&logTx{logScope: platformScope}).leafHashQuery(10000, make([]byte, 32))
	joined = queryPlan(t, s.platform, q, args...)
	if !strings.Contains(joined, "SEARCH platform_ledger_entries USING INDEX platform_ledger_entries_by_leaf_hash (<expr>=? AND leaf_hash=?)") ||
		strings.Contains(joined, "SCAN platform_ledger_entries") {
		t.Fatalf("the platform log's plan:\n%s", joined)
	}
	// And it finds entries in later epochs.
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		es, err := tx.Log().Entries(ctx, 9000, 9001)
		if err != nil {
			return err
		}
		got, err := tx.Log().EntryByLeafHash(ctx, es[0].LeafHash)
		if err != nil || got.Index != 9000 {
			t.Errorf("lookup in epoch 2: %d, %v", got.Index, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// An agent's stats are five seeks of one covering index, never a scan of
// its decisions, a sort or a temporary table: their cost does not grow
// with how many it made.
func TestAgentStatsSeeksTheIndexes(t *testing.T) {
	_, acme, db := withLog(t, 0)
	hourStart, dayStart := windowStarts(time.Now())
	plan := queryPlan(t, db, agentStatsQuery, acme.ID, store.NewID(store.PrefixAgent), hourStart, dayStart)
	// Two seeks to the newest row, three to the newest at or before a
	// window's start: a range bounded by the time, not a walk back
	// through the agent's rows.
	const seek = "SEARCH decisions USING COVERING INDEX decisions_by_agent_time (tenant_id=? AND agent_id=?"
	if strings.Count(plan, seek+")") != 2 || strings.Count(plan, seek+" AND agent_tally_at<?)") != 3 ||
		strings.Contains(plan, "SCAN decisions") || strings.Contains(plan, "TEMP B-TREE") || strings.Contains(plan, "MATERIALIZE") {
		t.Fatalf("plan:\n%s", plan)
	}
}

// A batch's receipts find the ledger entries that hold their JWS by key,
// one seek each, never a scan of the log.
func TestReceiptInsertSeeksItsEntries(t *testing.T) {
	_, acme, db := withLog(t, 3000)
	args := []any{"rct_1", "dec_1", 5, "a.b.c", "t", "rct_2", "dec_2", 6, "d.e.f", "t", acme.ID}
	plan := queryPlan(t, db, insertReceiptsSQL(2), args...)
	if !strings.Contains(plan, "SEARCH e USING INDEX sqlite_autoindex_ledger_entries_1 (tenant_id=? AND idx=?)") ||
		strings.Contains(plan, "SCAN e") || strings.Contains(plan, "AUTOMATIC") {
		t.Fatalf("plan:\n%s", plan)
	}
}

// withLog opens a store (closed with the test) with organization acme,
// whose log holds n entries (none: not even written to), and returns
// acme's file.
func withLog(t *testing.T, n int) (*Store, store.Tenant, *sql.DB) {
	t.Helper()
	s := openTest(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	acme := storetest.CreateTenant(t, s, "acme")
	ctx := context.Background()
	if n > 0 {
		err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			_, err := storetest.AppendBatch(ctx, tx.Log(), n, "acme")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := s.tenantDB(ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	return s, acme, db
}

// queryPlan is SQLite's EXPLAIN QUERY PLAN of q, one step a line.
func queryPlan(t *testing.T, db *sql.DB, q string, args ...any) string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// The decision's inputs are seeks: the key by its index, the agent and the
// counterparty by their keys, the stats as agentStatsQuery reads them.
// Every seek starts with tenant_id=?: on SQLite each organization has its
// own file, so the conformance test's other-organization case passes even
// without that condition, and this plan is what pins it.
func TestDecisionInputsSeekTheIndexes(t *testing.T) {
	_, acme, db := withLog(t, 0)
	hourStart, dayStart := windowStarts(time.Now())
	plan := queryPlan(t, db, decisionInputsQuery, acme.ID, store.NewID(store.PrefixAgent),
		hourStart, dayStart, make([]byte, 32), store.NewID(store.PrefixCounterparty))
	for _, want := range []string{
		"SEARCH decisions USING INDEX decisions_by_idempotency_key (tenant_id=? AND agent_id=? AND idempotency_key_sha256=?)",
		"SEARCH a USING INDEX sqlite_autoindex_agents_1 (tenant_id=? AND id=?)",
		"SEARCH c USING INDEX sqlite_autoindex_counterparties_1 (tenant_id=? AND id=?)",
		"SEARCH counterparty_payments USING INDEX sqlite_autoindex_counterparty_payments_1 (tenant_id=? AND counterparty_id=?)",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("no %q in the plan", want)
		}
	}
	const seek = "SEARCH decisions USING COVERING INDEX decisions_by_agent_time (tenant_id=? AND agent_id=?"
	if strings.Count(plan, seek+")") != 2 || strings.Count(plan, seek+" AND agent_tally_at<?)") != 3 {
		t.Error("the stats are not agentStatsQuery's five seeks")
	}
	for _, bad := range []string{"SCAN a", "SCAN c", "SCAN decisions", "SCAN counterparty", "TEMP B-TREE", "MATERIALIZE"} {
		if strings.Contains(plan, bad) {
			t.Errorf("%q in the plan", bad)
		}
	}
	if t.Failed() {
		t.Logf("plan:\n%s", plan)
	}
}
