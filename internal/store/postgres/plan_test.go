package postgres_test

import (
	"context"
	"errors"
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
	plan := genericPlan(t, pgtest.Connect(t, db.AdminURL),
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
	plan := genericPlan(t, tenantConn(t, db, acme.ID), `stats(uuid, text, timestamptz, timestamptz) AS `+postgres.AgentStatsQuery,
		`stats('`+acme.ID+`', '`+agent.ID+`', '`+now.Add(-time.Hour).Format(time.RFC3339Nano)+`', '`+
			now.Add(-24*time.Hour).Format(time.RFC3339Nano)+`')`)
	if strings.Count(plan, "decisions_by_agent_time") != 2 || strings.Count(plan, "decisions_by_agent_seq") != 1 ||
		strings.Count(plan, "agent_tally_at <= $") != 2 || strings.Contains(plan, "Filter: (agent_tally_at") ||
		strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Sort") {
		t.Fatalf("agent stats plan:\n%s", plan)
	}
}

// The agent's latest tally, read by each decisions insert and by the
// stats, is one backward seek of decisions_by_agent_seq at every size of
// the table, in the plan a connection makes for its first executions and
// in the generic one, as the tenant role and without statistics. With
// the primary key led by tenant_id (before 0004), a connection planning
// while the organization had about a hundred decisions took the key for
// the organization's equality alone, read all its decisions and sorted
// them, and kept that plan.
func TestAgentTallyNeverScansTheOrganization(t *testing.T) {
	db := pgtest.New(t)
	withoutAutovacuum(t, db, "decisions", "agents", "counterparties", "counterparty_payments")
	s := openTest(t, db, 4)
	acme, agent := oneAgent(t, s)
	// Arrays of five decisions of the agent: a batch of the ledger writer.
	five := func(v string) string { return `'{` + strings.Repeat(v+`,`, 4) + v + `}'` }
	insert := `ins('` + acme.ID + `', '{dec_1,dec_2,dec_3,dec_4,dec_5}', ` + five(agent.ID) + `, ` + five("x") + `, ` + five("t") + `, ` +
		five("NULL") + `, ` + five("r") + `, ` + five("allow") + `, ` + five("[]") + `, ` + five("0") + `, ` + five("b") + `, ` +
		five("t") + `, ` + five("s") + `, ` + five("NULL") + `, ` + five(`"\\x00"`) + `, '{1,2,3,4,5}', ` + five("x") + `, ` +
		five("2026-11-26T00:00:00Z") + `)`
	stats := `stats('` + acme.ID + `', '` + agent.ID + `', '2026-11-26T00:00:00Z', '2026-11-25T00:00:00Z')`
	inputsCall := func(name, counterparty string) string {
		return name + `('` + acme.ID + `', '` + agent.ID + `', '2026-11-26T00:00:00Z', '2026-11-25T00:00:00Z', ` + counterparty + `)`
	}
	key := `key('` + acme.ID + `', '` + agent.ID + `', '\x` + strings.Repeat("00", 32) + `')`
	stored := 0
	for _, size := range []int{0, 50, 100, 125, 150, 300, 1000} {
		addDecisions(t, s, acme, agent, stored, size-stored, nil)
		stored = size
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			conn := tenantConn(t, db, acme.ID)
			// The insert sorts its own rows (u) for the running counts, and
			// nothing else.
			plan := cachedPlan(t, conn, mode, `ins(uuid, text[], text[], text[], text[], text[], text[], text[], text[], integer[], text[], text[], text[], bytea[], bytea[], bigint[], text[], timestamptz[]) AS `+postgres.InsertDecisionsSQL, insert)
			if strings.Count(plan, "Index Only Scan Backward using decisions_by_agent_seq") != 1 || strings.Count(plan, "Sort Key") != 1 ||
				!strings.Contains(plan, "Sort Key: u.agent_id, u.ord") || strings.Contains(plan, "decisions_pkey") || strings.Contains(plan, "Seq Scan") {
				t.Errorf("decisions insert at %d decisions, %s:\n%s", size, mode, plan)
			}
			plan = cachedPlan(t, conn, mode, `stats(uuid, text, timestamptz, timestamptz) AS `+postgres.AgentStatsQuery, stats)
			if strings.Count(plan, "Index Only Scan Backward using decisions_by_agent_seq") != 1 ||
				strings.Count(plan, "Index Only Scan Backward using decisions_by_agent_time") != 2 ||
				strings.Contains(plan, "Sort") || strings.Contains(plan, "decisions_pkey") || strings.Contains(plan, "Seq Scan") {
				t.Errorf("agent stats at %d decisions, %s:\n%s", size, mode, plan)
			}
			// The decision's inputs: the same three stats seeks, and one
			// key seek each for the agent, the counterparty and its count.
			plan = cachedPlan(t, conn, mode, `inputs(uuid, text, timestamptz, timestamptz, text) AS `+postgres.DecisionInputsSQL, inputsCall("inputs", "'cp_1'"))
			noCounterparty := cachedPlan(t, conn, mode, `inputs0(uuid, text, timestamptz, timestamptz, text) AS `+postgres.DecisionInputsSQL,
				inputsCall("inputs0", "NULL"))
			if strings.Contains(noCounterparty, "Seq Scan") || strings.Contains(noCounterparty, "Sort") || strings.Contains(noCounterparty, "decisions_pkey") {
				t.Errorf("decision inputs without a counterparty at %d decisions, %s:\n%s", size, mode, noCounterparty)
			}
			if strings.Count(plan, "Index Only Scan Backward using decisions_by_agent_seq") != 1 ||
				strings.Count(plan, "Index Only Scan Backward using decisions_by_agent_time") != 2 ||
				!strings.Contains(plan, "Index Scan using agents_pkey") || !strings.Contains(plan, "Index Scan using counterparties_pkey") ||
				!strings.Contains(plan, "Index Scan using counterparty_payments_pkey") ||
				strings.Contains(plan, "Sort") || strings.Contains(plan, "decisions_pkey") || strings.Contains(plan, "Seq Scan") {
				t.Errorf("decision inputs at %d decisions, %s:\n%s", size, mode, plan)
			}
			// The Idempotency-Key lookup: one seek of its own index, never
			// a walk of the agent's decisions nor of the organization's.
			plan = cachedPlan(t, conn, mode, `key(uuid, text, bytea) AS `+postgres.DecisionByKeySQL, key)
			if !strings.Contains(plan, "decisions_by_idempotency_key") ||
				strings.Contains(strings.ReplaceAll(plan, "One-Time Filter", ""), "Filter") {
				t.Errorf("idempotency key lookup at %d decisions, %s:\n%s", size, mode, plan)
			}
			conn.Close(context.Background())
		}
	}
}

// A case's writes find their one row by its key at every size, as the
// tenant role without statistics: Create the escalated decision by the
// decisions key, not by the agent's indexes (which match two of its
// equalities, and would read the agent's history); closing a case the
// case by the cases key with both columns, not by another index matching
// the organization alone (the pending cases' index, which its status
// condition admitted, did at every size until 0005 dropped it; the
// (tenant_id, decision_id) key remains).
func TestCaseWritesSeekTheirKeys(t *testing.T) {
	db := pgtest.New(t)
	withoutAutovacuum(t, db, "decisions", "cases")
	s := openTest(t, db, 4)
	acme, agent := oneAgent(t, s)
	create := `mkcase('` + acme.ID + `', 'case_1', 'dec_1', '` + agent.ID + `', 'pending', 1, '2026-11-27T00:00:00Z', '2026-11-26T00:00:00Z', '2026-11-26T00:00:00Z')`
	closeCase := `closecase('approved', '2026-11-26T00:00:00Z', '` + acme.ID + `', 'case_1')`
	stored := 0
	for _, size := range []int{0, 50, 100, 125, 150, 300, 1000} {
		addDecisions(t, s, acme, agent, stored, size-stored, func(ctx context.Context, tx store.TenantTx, d store.Decision) error {
			_, err := tx.Cases().Create(ctx, store.Case{DecisionID: d.ID, AgentID: agent.ID, Status: store.CasePending,
				ApprovalsRequired: 1, ExpiresAt: time.Now().Add(time.Hour), CreatedAt: time.Now()})
			return err
		})
		stored = size
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			conn := tenantConn(t, db, acme.ID)
			plan := cachedPlan(t, conn, mode, `mkcase(uuid, text, text, text, text, integer, timestamptz, timestamptz, timestamptz) AS `+postgres.InsertCaseSQL, create)
			if !strings.Contains(plan, "Index Scan using decisions_pkey") || strings.Contains(plan, "decisions_by_agent") {
				t.Errorf("case insert at %d cases, %s:\n%s", size, mode, plan)
			}
			plan = cachedPlan(t, conn, mode, `closecase(text, timestamptz, uuid, text) AS `+postgres.CloseCaseSQL, closeCase)
			bothColumns := strings.Contains(plan, "Index Cond: ((tenant_id = $3) AND (id = $4))") ||
				strings.Contains(plan, "Index Cond: ((tenant_id = '"+acme.ID+"'::uuid) AND (id = 'case_1'::text))")
			if !strings.Contains(plan, "Index Scan using cases_pkey") || strings.Contains(plan, "cases_tenant_id_decision_id_key") || !bothColumns {
				t.Errorf("case close at %d cases, %s:\n%s", size, mode, plan)
			}
			conn.Close(context.Background())
		}
	}
}

// A receipt found by its decision and a case by its id seek the index
// that holds both columns, at every size, as the tenant role without
// statistics; the other key of each table leads with tenant_id too, and
// would read the organization's rows for that equality alone. The rows
// are written behind the store's back (triggers and foreign keys off):
// only their keys matter to the plans.
func TestReceiptAndCaseLookupsSeekTheirKeys(t *testing.T) {
	db := pgtest.New(t)
	withoutAutovacuum(t, db, "receipts", "cases", "ledger_entries")
	s := openTest(t, db, 4)
	acme, agent := oneAgent(t, s)
	admin := pgtest.Connect(t, db.AdminURL)
	ctx := context.Background()
	if _, err := admin.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	// Distinct ids of the right shape for row i: its digits mapped into
	// the id alphabet, padded with a letter no digit maps to.
	id := func(prefix, pad string) string {
		return `'` + prefix + `_' || lpad(translate(i::text, '0189', 'abcd'), 26, '` + pad + `')`
	}
	stored := 0
	for _, size := range []int{0, 25, 50, 75, 100, 125, 150, 200, 300, 500, 1000, 3000} {
		_, err := admin.Exec(ctx, `INSERT INTO receipts (tenant_id, id, decision_id, ledger_index, created_at)
			SELECT $1, `+id("rct", "z")+`, `+id("dec", "z")+`, i, now() FROM generate_series($2::bigint, $3::bigint) i`,
			acme.ID, stored+1, size)
		if err != nil {
			t.Fatal(err)
		}
		_, err = admin.Exec(ctx, `INSERT INTO cases (tenant_id, id, decision_id, agent_id, status, approvals_required, expires_at, created_at, updated_at)
			SELECT $1, `+id("case", "z")+`, `+id("dec", "y")+`, $4, 'pending', 1, now(), now(), now() FROM generate_series($2::bigint, $3::bigint) i`,
			acme.ID, stored+1, size, agent.ID)
		if err != nil {
			t.Fatal(err)
		}
		stored = size
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			conn := tenantConn(t, db, acme.ID)
			plan := cachedPlan(t, conn, mode, `rcpt(uuid, text) AS `+postgres.ReceiptByDecisionSQL, `rcpt('`+acme.ID+`', 'dec_1')`)
			if !strings.Contains(plan, "Index Scan using receipts_tenant_id_decision_id_key on receipts") || strings.Contains(plan, "receipts_pkey") {
				t.Errorf("receipt by decision at %d receipts, %s:\n%s", size, mode, plan)
			}
			plan = cachedPlan(t, conn, mode, `getcase(uuid, text) AS `+postgres.CaseByIDSQL, `getcase('`+acme.ID+`', 'case_1')`)
			if !strings.Contains(plan, "Index Scan using cases_pkey") || strings.Contains(plan, "cases_tenant_id_decision_id_key") {
				t.Errorf("case by id at %d cases, %s:\n%s", size, mode, plan)
			}
			conn.Close(ctx)
		}
	}
}

// A batch's receipts find the ledger entries that hold their JWS by the
// primary key, one seek each, in the plan a pooled connection caches
// before any statistics: a join once hashed the organization's whole log
// there, and every batch slowed as the log grew.
func TestReceiptInsertSeeksItsEntries(t *testing.T) {
	db := pgtest.New(t)
	withoutAutovacuum(t, db, "ledger_entries")
	s := openTest(t, db, 4)
	acme := storetest.CreateTenant(t, s, "acme")
	err := s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := storetest.AppendBatch(ctx, tx.Log(), 3000, "acme")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// As the tenant role, under its row security, as the store runs it.
	plan := genericPlan(t, tenantConn(t, db, acme.ID), `receipts(uuid, text[], text[], text[], bigint[], timestamptz[], bigint, text) AS `+postgres.InsertReceiptsSQL,
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
	withoutAutovacuum(t, db, "decisions")
	s := openTest(t, db, 4)
	acme, agent = oneAgent(t, s)
	return acme, agent, addDecisions(t, s, acme, agent, 0, n, nil)
}

// oneAgent creates organization acme with one agent.
func oneAgent(t *testing.T, s *postgres.Store) (acme store.Tenant, agent store.Agent) {
	t.Helper()
	acme = storetest.CreateTenant(t, s, "acme")
	err := s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		agent, err = tx.Agents().Create(ctx, store.Agent{Name: "payer", Sponsor: "usr_1", RiskTier: store.RiskLow, LedgerIndex: new(uint64)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return acme, agent
}

// addDecisions stores n more decisions of agent, the first at ledger
// index from, and returns the last one's id. Denials, or with escalated
// escalations, each then passed to escalated in the same transaction.
func addDecisions(t *testing.T, s *postgres.Store, acme store.Tenant, agent store.Agent, from, n int,
	escalated func(context.Context, store.TenantTx, store.Decision) error) (last string) {
	t.Helper()
	err := s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		for i := range n {
			d := store.Decision{
				AgentID: agent.ID, Action: `{"type":"invoice.approve"}`, ActionType: "invoice.approve",
				Reason: "r", Outcome: store.OutcomeDeny, Reasons: []string{"no_authority"}, BaseRevision: "b",
				RequestSHA256: make([]byte, 32), LedgerIndex: uint64(from + i), Response: "{}", CreatedAt: time.Now(),
			}
			if escalated != nil {
				d.Outcome, d.Reasons, d.ApprovalsRequired = store.OutcomeEscalate, []string{"new_counterparty"}, 1
			}
			d, err := tx.Decisions().Insert(ctx, d)
			if err != nil {
				return err
			}
			if escalated != nil {
				if err := escalated(ctx, tx, d); err != nil {
					return err
				}
			}
			last = d.ID
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// withoutAutovacuum keeps autovacuum from analyzing tables during a plan
// test: the plans tested are those made without statistics, and a
// cluster with autovacuum on would otherwise make them with some, at a
// moment of its choosing.
func withoutAutovacuum(t *testing.T, db *pgtest.DB, tables ...string) {
	t.Helper()
	conn := pgtest.Connect(t, db.AdminURL)
	for _, table := range tables {
		if _, err := conn.Exec(context.Background(), `ALTER TABLE `+postgres.Ident(table)+` SET (autovacuum_enabled = false)`); err != nil {
			t.Fatal(err)
		}
	}
}

// tenantConn is a connection as the tenant role, confined to tenantID
// under its row security, as the store runs; closed with the test.
func tenantConn(t *testing.T, db *pgtest.DB, tenantID string) *pgx.Conn {
	t.Helper()
	conn := pgtest.Connect(t, db.AdminURL)
	for _, stmt := range []string{`SET ROLE ` + postgres.Ident(db.Roles.Tenant), `SELECT set_config('app.tenant_id', '` + tenantID + `', false)`} {
		if _, err := conn.Exec(context.Background(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := bindSession(context.Background(), conn, db.TenantKey); err != nil {
		t.Fatal(err)
	}
	return conn
}

// genericPlan prepares `PREPARE <prepare>` and returns the plan of
// `EXECUTE <execute>` as a cached plan would be made (generic, before any
// statistics), one node a line.
func genericPlan(t *testing.T, conn *pgx.Conn, prepare, execute string) string {
	t.Helper()
	return cachedPlan(t, conn, "force_generic_plan", prepare, execute)
}

// cachedPlan is genericPlan with the plan_cache_mode given: a connection
// plans a prepared statement for its first executions' values
// (force_custom_plan), then generically.
func cachedPlan(t *testing.T, conn *pgx.Conn, mode, prepare, execute string) string {
	t.Helper()
	ctx := context.Background()
	for _, stmt := range []string{`SET plan_cache_mode = ` + mode, `PREPARE ` + prepare} {
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

// A lookup by leaf hash seeks the leaf-hash index on its whole key, once
// per epoch, in the generic plan made without statistics: as the tenant
// role under its row security, and as the platform role. Before 0020 the
// epoch was the expression idx >> 12, which row security kept out of the
// index condition (>> is not leakproof), and every lookup read the
// organization's whole index.
func TestLeafHashLookupSeeksEachEpoch(t *testing.T) {
	db := pgtest.New(t)
	withoutAutovacuum(t, db, "ledger_entries", "platform_ledger_entries")
	s := openTest(t, db, 4)
	acme := storetest.CreateTenant(t, s, "acme")
	ctx := context.Background()
	var hit []byte
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if _, err := storetest.AppendBatch(ctx, tx.Log(), 3*4096, "acme"); err != nil {
			return err
		}
		es, err := tx.Log().Entries(ctx, 9000, 9001)
		if err == nil {
			hit = es[0].LeafHash
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InPlatformTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
		_, err := storetest.AppendBatch(ctx, tx.Log(), 2*4096, "platform")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	miss := `'\x` + strings.Repeat("00", 32) + `'`
	q, _ := postgres.LeafHashQuery(acme.ID, 2, nil)
	plan := genericPlan(t, tenantConn(t, db, acme.ID), `leaf(uuid, bytea, bigint) AS `+q, `leaf('`+acme.ID+`', `+miss+`, 2)`)
	if !strings.Contains(plan, "Nested Loop") || !strings.Contains(plan, "Index Cond: ((tenant_id = $1) AND (epoch = e.n) AND (leaf_hash = $2))") ||
		strings.Contains(plan, "Filter: (epoch") || strings.Contains(plan, "Filter: ((idx >> 12)") || strings.Contains(plan, "Seq Scan") {
		t.Fatalf("leaf-hash lookup plan:\n%s", plan)
	}
	q, _ = postgres.LeafHashQuery("", 1, nil)
	plan = genericPlan(t, pgtest.Connect(t, db.PlatformURL), `leaf(bytea, bigint) AS `+q, `leaf(`+miss+`, 1)`)
	if !strings.Contains(plan, "Nested Loop") || !strings.Contains(plan, "Index Cond: ((epoch = e.n) AND (leaf_hash = $1))") ||
		strings.Contains(plan, "Seq Scan") {
		t.Fatalf("the platform log's leaf-hash lookup plan:\n%s", plan)
	}
	// And it finds an entry of a later epoch, and nothing for a miss.
	err = s.InTenantReadTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if got, err := tx.Log().EntryByLeafHash(ctx, hit); err != nil || got.Index != 9000 {
			t.Errorf("lookup in epoch 2: %d, %v", got.Index, err)
		}
		if _, err := tx.Log().EntryByLeafHash(ctx, make([]byte, 32)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a miss: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
