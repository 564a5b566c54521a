package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/postgres"
	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// The foreign-key check of a receipt or case finds its decision by
// (tenant_id, id) with a plan made once per connection, often before the
// table is analyzed. Only the primary key may serve it: an index leading
// with tenant_id alone was once taken at equal cost, and the check then
// filtered every decision of the organization by id.
func TestDecisionLookupUsesThePrimaryKey(t *testing.T) {
	db := pgtest.New(t)
	acme, _, last := decisionsOfOneAgent(t, db, 300)
	// The foreign-key check's query, as PostgreSQL's RI triggers write it.
	plan := genericPlan(t, adminConn(t, db),
		`fk AS SELECT 1 FROM ONLY public.decisions x WHERE tenant_id OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.=) $2 FOR KEY SHARE OF x`,
		`fk('`+acme.ID+`', '`+last+`')`)
	if !strings.Contains(plan, "decisions_pkey") {
		t.Fatalf("the decision lookup of a foreign-key check does not use the primary key:\n%s", plan)
	}
}

// An agent's stats are three index seeks, never a scan of its decisions
// nor a sort: their cost does not grow with how many it made. Planned
// generically and without statistics, as the tenant role under its row
// security, on an agent with thousands of decisions: as a pooled
// connection plans it when its cached plan was invalidated, or when it is
// new, on a table that has grown since. With 300 decisions the plan was
// right and with 4,000 it was not, before 0003.
func TestAgentStatsSeeksTheIndexes(t *testing.T) {
	db := pgtest.New(t)
	acme, agent, _ := decisionsOfOneAgent(t, db, 4000)
	now := time.Now().UTC()
	conn := adminConn(t, db)
	for _, stmt := range []string{`SET ROLE ` + postgres.Ident(db.Roles.Tenant), `SELECT set_config('app.tenant_id', '` + acme.ID + `', false)`} {
		if _, err := conn.Exec(context.Background(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	plan := genericPlan(t, conn, `stats(uuid, text, timestamptz, timestamptz) AS `+postgres.AgentStatsQuery,
		`stats('`+acme.ID+`', '`+agent.ID+`', '`+now.Add(-time.Hour).Format(time.RFC3339Nano)+`', '`+
			now.Add(-24*time.Hour).Format(time.RFC3339Nano)+`')`)
	if strings.Count(plan, "decisions_by_agent_time") != 2 || strings.Count(plan, "decisions_by_agent_seq") != 1 ||
		strings.Count(plan, "agent_tally_at <= $") != 2 || strings.Contains(plan, "Filter: (agent_tally_at") ||
		strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Sort") {
		t.Fatalf("agent stats plan:\n%s", plan)
	}
}

// A batch's receipts find the ledger entries that hold their JWS by the
// primary key, one seek each, in the plan a pooled connection caches
// before any statistics: a join once hashed the organization's whole log
// there, and every batch slowed as the log grew.
func TestReceiptInsertSeeksItsEntries(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 4)
	acme := storetest.CreateTenant(t, s, "acme")
	err := s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := storetest.AppendBatch(ctx, tx.Log(), 3000, "acme")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := adminConn(t, db)
	// As the tenant role, under its row security, as the store runs it.
	for _, stmt := range []string{`SET ROLE ` + postgres.Ident(db.Roles.Tenant), `SELECT set_config('app.tenant_id', '` + acme.ID + `', false)`} {
		if _, err := conn.Exec(context.Background(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	plan := genericPlan(t, conn, `receipts(uuid, text[], text[], text[], bigint[], timestamptz[], bigint, text) AS `+postgres.InsertReceiptsSQL,
		`receipts('`+acme.ID+`', '{rct_1}', '{dec_1}', '{a.b.c}', '{5}', '{2026-11-26T00:00:00Z}', 1, 'not in the ledger')`)
	if !strings.Contains(plan, "Index Scan using ledger_entries_pkey on ledger_entries") || strings.Contains(plan, "Hash") ||
		strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Bitmap") {
		t.Fatalf("receipt insert plan:\n%s", plan)
	}
}

// decisionsOfOneAgent stores n decisions of one agent of a new
// organization, and returns them with the last decision's id.
func decisionsOfOneAgent(t *testing.T, db *pgtest.DB, n int) (acme store.Tenant, agent store.Agent, last string) {
	t.Helper()
	s := openTest(t, db, 4)
	acme = storetest.CreateTenant(t, s, "acme")
	err := s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if agent, err = tx.Agents().Create(ctx, store.Agent{Name: "payer", Sponsor: "usr_1", RiskTier: store.RiskLow}); err != nil {
			return err
		}
		for i := range n {
			d, err := tx.Decisions().Insert(ctx, store.Decision{
				AgentID: agent.ID, Action: `{"type":"invoice.approve"}`, ActionType: "invoice.approve",
				Reason: "r", Outcome: store.OutcomeDeny, Reasons: []string{"no_authority"}, BaseRevision: "b",
				RequestSHA256: make([]byte, 32), LedgerIndex: uint64(i), Response: "{}", CreatedAt: time.Now(),
			})
			if err != nil {
				return err
			}
			last = d.ID
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return acme, agent, last
}

// adminConn is a connection as the database's owner, closed with the test.
func adminConn(t *testing.T, db *pgtest.DB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), db.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// genericPlan prepares `PREPARE <prepare>` and returns the plan of
// `EXECUTE <execute>` as a cached plan would be made (generic, before any
// statistics), one node a line.
func genericPlan(t *testing.T, conn *pgx.Conn, prepare, execute string) string {
	t.Helper()
	ctx := context.Background()
	for _, stmt := range []string{`SET plan_cache_mode = force_generic_plan`, `PREPARE ` + prepare} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	rows, err := conn.Query(ctx, `EXPLAIN EXECUTE `+execute, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
