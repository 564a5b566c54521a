package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
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
	s := openTest(t, db, 4)
	ctx := context.Background()
	acme := storetest.CreateTenant(t, s, "acme")
	var agent store.Agent
	var last string
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if agent, err = tx.Agents().Create(ctx, store.Agent{Name: "payer", Sponsor: "usr_1", RiskTier: store.RiskLow}); err != nil {
			return err
		}
		for i := range 300 {
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
	conn, err := pgx.Connect(ctx, db.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The foreign-key check's query, as PostgreSQL's RI triggers write it,
	// planned generically as a cached plan is.
	for _, stmt := range []string{
		`SET plan_cache_mode = force_generic_plan`,
		`PREPARE fk AS SELECT 1 FROM ONLY public.decisions x WHERE tenant_id OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.=) $2 FOR KEY SHARE OF x`,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := conn.Query(ctx, `EXPLAIN EXECUTE fk('`+acme.ID+`', '`+last+`')`, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if !strings.Contains(plan, "decisions_pkey") {
		t.Fatalf("the decision lookup of a foreign-key check does not use the primary key:\n%s", plan)
	}
}
