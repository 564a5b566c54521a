package postgres_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/migrations"
	. "github.com/agentsigna/agentsigna/internal/store/postgres"
	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

func openTest(t testing.TB, db *pgtest.DB, maxConns int32) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{TenantURL: db.TenantURL, PlatformURL: db.PlatformURL, TenantKey: db.TenantKey, MaxConns: maxConns})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// bindSession binds q's session as the store binds its connections.
func bindSession(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, key []byte) error {
	var session string
	if err := q.QueryRow(ctx, `SELECT app_session()`).Scan(&session); err != nil {
		return err
	}
	var bound bool
	if err := q.QueryRow(ctx, `SELECT app_bind_session($1)`, SessionMAC(key, session)).Scan(&bound); err != nil || !bound {
		return fmt.Errorf("bind the session: %v, %w", bound, err)
	}
	return nil
}

// bindTenant confines the rest of tx to organization tenantID as the
// store does: a bound session, and app.tenant_id.
func bindTenant(ctx context.Context, tx pgx.Tx, key []byte, tenantID string) error {
	if err := bindSession(ctx, tx, key); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, tenantID)
	return err
}

// rawTenantExec runs stmt on a fresh connection as the tenant role,
// confined to tenantID as the store confines its transactions — what
// anyone holding the tenant plane's credentials and the master key could
// do without the store.
func rawTenantExec(ctx context.Context, db *pgtest.DB, tenantID, stmt string) (int64, error) {
	conn, err := pgx.Connect(ctx, db.TenantURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int64
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := bindTenant(ctx, tx, db.TenantKey, tenantID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, stmt)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

func TestConformance(t *testing.T) {
	// Every subtest gets its own database (pgtest.New): creating one costs
	// ~0.1 s here, and no subtest can see another's rows.
	urls := map[store.Backend]*pgtest.DB{}
	var mu sync.Mutex
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Backend {
			db := pgtest.New(t)
			s, err := Open(context.Background(), db.Config())
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			mu.Lock()
			urls[s] = db
			mu.Unlock()
			return s
		},
		RawTenantExec: func(ctx context.Context, b store.Backend, tenantID, stmt string) (int64, error) {
			mu.Lock()
			db := urls[b]
			mu.Unlock()
			return rawTenantExec(ctx, db, tenantID, stmt)
		},
		RawPlatformExec: func(ctx context.Context, b store.Backend, stmt string) (int64, error) {
			mu.Lock()
			db := urls[b]
			mu.Unlock()
			conn, err := pgx.Connect(ctx, db.PlatformURL)
			if err != nil {
				return 0, err
			}
			defer conn.Close(context.Background())
			tag, err := conn.Exec(ctx, stmt)
			return tag.RowsAffected(), err
		},
		Tamper: func(t *testing.T, b store.Backend, _ string, stmts ...string) {
			mu.Lock()
			db := urls[b]
			mu.Unlock()
			db.Tamper(t, stmts...)
		},
	})
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// violated is the constraint a foreign-key violation names, or "".
func violated(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" {
		return pgErr.ConstraintName
	}
	return ""
}

// seedSecret gives organization tn a setting "secret" (its slug) and a
// log entry.
func seedSecret(t *testing.T, s *Store, tn store.Tenant) {
	t.Helper()
	err := s.InTenantTx(context.Background(), tn.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.PutSetting(ctx, "secret", tn.Slug); err != nil {
			return err
		}
		_, err := storetest.AppendBatch(ctx, tx.Log(), 1, tn.Slug)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Raw SQL as the tenant role, around the store, confined as the store
// confines it (TestTenantBinding is the attacker without the key): bound
// to A, unbound, or to garbage, none of B's rows are visible or writable.
func TestRawSQLIsolation(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	ctx := context.Background()
	a := storetest.CreateTenant(t, s, "alpha")
	b := storetest.CreateTenant(t, s, "bravo")
	for _, tn := range []store.Tenant{a, b} {
		seedSecret(t, s, tn)
	}

	conn := pgtest.Connect(t, db.TenantURL)
	countB := func(tx pgx.Tx) (int, error) {
		var n int
		err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM tenant_settings WHERE tenant_id = $1)
			+ (SELECT count(*) FROM ledger_entries WHERE tenant_id = $1)`, b.ID).Scan(&n)
		return n, err
	}
	inTx := func(t *testing.T, setting *string, fn func(tx pgx.Tx)) {
		t.Helper()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if setting != nil {
			if err := bindTenant(ctx, tx, db.TenantKey, *setting); err != nil {
				t.Fatal(err)
			}
		} else if err := bindSession(ctx, tx, db.TenantKey); err != nil {
			t.Fatal(err)
		}
		fn(tx)
	}
	str := func(s string) *string { return &s }

	t.Run("set to A", func(t *testing.T) {
		inTx(t, str(a.ID), func(tx pgx.Tx) {
			if n, err := countB(tx); err != nil || n != 0 {
				t.Errorf("B rows visible: %d, %v", n, err)
			}
			var total int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM tenant_settings`).Scan(&total); err != nil || total != 1 {
				t.Errorf("A sees %d settings, %v; want only its own", total, err)
			}
			for _, stmt := range []string{
				`UPDATE tenant_settings SET value = 'pwned' WHERE tenant_id = '` + b.ID + `'`,
				`DELETE FROM tenant_settings WHERE tenant_id = '` + b.ID + `'`,
			} {
				tag, err := tx.Exec(ctx, stmt)
				if err != nil || tag.RowsAffected() != 0 {
					t.Errorf("%s: %d rows, %v", stmt, tag.RowsAffected(), err)
				}
			}
		})
		inTx(t, str(a.ID), func(tx pgx.Tx) {
			_, err := tx.Exec(ctx, `INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, 'planted', 'x')`, b.ID)
			if sqlState(err) != "42501" {
				t.Errorf("insert of a row for B: %v, want row-security violation 42501", err)
			}
		})
		inTx(t, str(a.ID), func(tx pgx.Tx) {
			// Moving one of A's rows to B is an insert into B by another name.
			_, err := tx.Exec(ctx, `UPDATE tenant_settings SET tenant_id = $1`, b.ID)
			if sqlState(err) != "42501" {
				t.Errorf("re-homing A's row to B: %v, want 42501", err)
			}
		})
	})
	t.Run("unset", func(t *testing.T) {
		inTx(t, nil, func(tx pgx.Tx) {
			var n int
			if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM tenant_settings) + (SELECT count(*) FROM ledger_entries)`).Scan(&n); err != nil || n != 0 {
				t.Errorf("unset tenant sees %d rows, %v", n, err)
			}
			_, err := tx.Exec(ctx, `INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, 'planted', 'x')`, b.ID)
			if sqlState(err) != "42501" {
				t.Errorf("insert with no tenant: %v, want 42501", err)
			}
		})
	})
	t.Run("empty after a finished transaction", func(t *testing.T) {
		// A transaction-local setting leaves '' (not NULL) behind on the
		// session; that must match nothing.
		inTx(t, str(a.ID), func(pgx.Tx) {})
		var v string
		if err := conn.QueryRow(ctx, `SELECT current_setting('app.tenant_id', true)`).Scan(&v); err != nil || v != "" {
			t.Fatalf("after tx: %q, %v", v, err)
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM tenant_settings`).Scan(&n); err != nil || n != 0 {
			t.Errorf("empty setting sees %d rows, %v", n, err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		for _, g := range []string{"garbage", "' OR true --", b.ID + "x", "00000000-0000-0000-0000-000000000000"} {
			inTx(t, str(g), func(tx pgx.Tx) {
				n, err := countB(tx)
				if err == nil && n != 0 {
					t.Errorf("app.tenant_id=%q sees %d of B's rows", g, n)
				}
			})
			inTx(t, str(g), func(tx pgx.Tx) {
				if _, err := tx.Exec(ctx, `INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, 'planted', 'x')`, b.ID); err == nil {
					t.Errorf("app.tenant_id=%q inserted a row for B", g)
				}
			})
		}
	})
	t.Run("B unchanged", func(t *testing.T) {
		err := s.InTenantTx(ctx, b.ID, func(ctx context.Context, tx store.TenantTx) error {
			list, err := tx.ListSettings(ctx)
			if err != nil {
				return err
			}
			if len(list) != 1 || list[0].Key != "secret" || list[0].Value != "bravo" {
				t.Errorf("B's settings now %+v", list)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// A receipt or a case names a decision of its own organization: the
// database refuses one naming another's, to the tenant role writing rows
// itself, whatever the store's code checks first. The foreign keys that
// say so were made again by 0004, with the decisions key.
func TestReceiptsAndCasesNameOwnDecisions(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	ctx := context.Background()
	type org struct {
		tenant   store.Tenant
		agent    store.Agent
		decision store.Decision
	}
	var orgs []org
	for _, slug := range []string{"alpha", "bravo"} {
		o := org{tenant: storetest.CreateTenant(t, s, slug)}
		err := s.InTenantTx(ctx, o.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
			var err error
			if o.agent, err = tx.Agents().Create(ctx, store.Agent{Name: "payer", Sponsor: "usr_1", RiskTier: store.RiskLow, LedgerIndex: new(uint64)}); err != nil {
				return err
			}
			o.decision, err = tx.Decisions().Insert(ctx, store.Decision{
				AgentID: o.agent.ID, Action: `{"type":"payment.send"}`, ActionType: "payment.send",
				Reason: "r", Outcome: store.OutcomeEscalate, Reasons: []string{"new_counterparty"}, ApprovalsRequired: 1,
				BaseRevision: "b", RequestSHA256: make([]byte, 32), Response: "{}", CreatedAt: time.Now(),
			})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		orgs = append(orgs, o)
	}
	alpha, bravo := orgs[0], orgs[1]

	conn := pgtest.Connect(t, db.TenantURL)
	insert := func(decisionID string) (receiptErr, caseErr error) {
		t.Helper()
		for _, stmt := range []struct {
			sql  string
			args []any
			err  *error
		}{
			{`INSERT INTO receipts (tenant_id, id, decision_id, ledger_index, created_at) VALUES ($1, $2, $3, 0, now())`,
				[]any{alpha.tenant.ID, store.NewID(store.PrefixReceipt), decisionID}, &receiptErr},
			{`INSERT INTO cases (tenant_id, id, decision_id, agent_id, status, approvals_required, expires_at, created_at, updated_at)
				VALUES ($1, $2, $3, $4, 'pending', 1, now() + interval '1 day', now(), now())`,
				[]any{alpha.tenant.ID, store.NewID(store.PrefixCase), decisionID, alpha.agent.ID}, &caseErr},
		} {
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := bindTenant(ctx, tx, db.TenantKey, alpha.tenant.ID); err != nil {
				t.Fatal(err)
			}
			_, *stmt.err = tx.Exec(ctx, stmt.sql, stmt.args...)
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return receiptErr, caseErr
	}
	// The same rows naming alpha's own decision go in: what refuses
	// bravo's is the reference, not the rows' shape or the role's grants.
	if rErr, cErr := insert(alpha.decision.ID); rErr != nil || cErr != nil {
		t.Fatalf("alpha's receipt and case of its own decision: %v, %v", rErr, cErr)
	}
	rErr, cErr := insert(bravo.decision.ID)
	if violated(rErr) != "receipts_tenant_id_decision_id_fkey" {
		t.Errorf("alpha's receipt of bravo's decision: %v, want a violation of receipts_tenant_id_decision_id_fkey", rErr)
	}
	if violated(cErr) != "cases_tenant_id_decision_id_fkey" {
		t.Errorf("alpha's case of bravo's decision: %v, want a violation of cases_tenant_id_decision_id_fkey", cErr)
	}
}

// The plane roles are separated by grants, not by convention.
func TestRoleGrants(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	acme := storetest.CreateTenant(t, s, "acme")
	ctx := context.Background()
	tenantConn := pgtest.Connect(t, db.TenantURL)
	platformConn := pgtest.Connect(t, db.PlatformURL)
	for _, tc := range []struct {
		conn *pgx.Conn
		stmt string
	}{
		{tenantConn, `SELECT count(*) FROM tenants`},
		{tenantConn, `INSERT INTO tenants (id, slug, name, status) VALUES (gen_random_uuid(), 'evil', 'Evil', 'active')`},
		{tenantConn, `UPDATE tenants SET status = 'active'`},
		{tenantConn, `UPDATE ledger_entries SET idx = idx + 1`},
		{tenantConn, `DELETE FROM ledger_entries`},
		{tenantConn, `TRUNCATE ledger_entries`},
		{tenantConn, `CREATE TABLE mine (x int)`},
		{tenantConn, `SELECT count(*) FROM platform_ledger_entries`},
		{tenantConn, `SELECT count(*) FROM agent_directory`},
		{tenantConn, `INSERT INTO agent_directory (agent_id, tenant_id) VALUES ('agt_x', '` + acme.ID + `')`},
		{platformConn, `SELECT * FROM app_agent_tenant('agt_x')`},
		{tenantConn, `SELECT count(*) FROM platform_signing_keys`},
		{tenantConn, `UPDATE signing_keys SET sealed_private = public_key`},
		{tenantConn, `DELETE FROM signing_keys`},
		{tenantConn, `UPDATE ledger_checkpoints SET note = root`},
		{tenantConn, `ALTER TABLE tenant_settings DISABLE ROW LEVEL SECURITY`},
		{tenantConn, `UPDATE decisions SET outcome = 'allow'`},
		{tenantConn, `DELETE FROM decisions`},
		{tenantConn, `TRUNCATE decisions`},
		{tenantConn, `UPDATE receipts SET ledger_index = ledger_index + 1`},
		{tenantConn, `DELETE FROM receipts`},
		{tenantConn, `UPDATE agents SET name = 'x'`},
		{tenantConn, `UPDATE agents SET sponsor = 'x'`},
		{tenantConn, `DELETE FROM agents`},
		{tenantConn, `UPDATE agent_keys SET public_jwk = '{}'`},
		{tenantConn, `DELETE FROM agent_keys`},
		{tenantConn, `UPDATE counterparties SET name = 'x'`},
		{tenantConn, `DELETE FROM counterparties`},
		{tenantConn, `UPDATE cases SET approvals_required = 1`},
		{tenantConn, `DELETE FROM cases`},
		{tenantConn, `TRUNCATE assertion_jtis`},
		{tenantConn, `SET ROLE ` + Ident(db.Roles.Owner)},
		{platformConn, `SELECT count(*) FROM tenant_settings`},
		{platformConn, `SELECT count(*) FROM ledger_entries`},
		{platformConn, `SELECT count(*) FROM ledger_checkpoints`},
		{platformConn, `SELECT count(*) FROM signing_keys`},
		{platformConn, `SELECT count(*) FROM agents`},
		{platformConn, `SELECT count(*) FROM agent_keys`},
		{platformConn, `SELECT count(*) FROM assertion_jtis`},
		{platformConn, `SELECT count(*) FROM counterparties`},
		{platformConn, `SELECT count(*) FROM decisions`},
		{platformConn, `SELECT count(*) FROM receipts`},
		{platformConn, `SELECT count(*) FROM cases`},
		{platformConn, `UPDATE platform_ledger_entries SET entry = leaf_hash`},
		{platformConn, `DELETE FROM platform_ledger_checkpoints`},
		{platformConn, `INSERT INTO tenant_settings (tenant_id, key, value) VALUES ('` + acme.ID + `', 'k', 'v')`},
		{platformConn, `DELETE FROM tenants`},
		{platformConn, `UPDATE tenants SET slug = 'renamed'`},
		{platformConn, `SELECT * FROM app_tenant_directory('acme', NULL)`},
		{platformConn, `CREATE TABLE mine (x int)`},
		{platformConn, `SELECT count(*) FROM agent_directory`},
		{tenantConn, `CREATE TEMP TABLE ledger_entries (LIKE public.ledger_entries)`},
		{platformConn, `CREATE TEMP TABLE platform_ledger_entries (LIKE public.platform_ledger_entries)`},
	} {
		_, err := tc.conn.Exec(ctx, tc.stmt)
		if code := sqlState(err); code != "42501" {
			t.Errorf("%s as %s: %v (SQLSTATE %q), want permission denied 42501", tc.stmt, tc.conn.Config().User, err, code)
		}
	}
}

// The tenant role, writing policy_activations itself, can neither leave
// out an activation's ledger entry nor take a seq ahead of the next: the
// table's trigger refuses both, and the role cannot turn it off.
func TestActivationsInOrderForAnyWriter(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	acme := storetest.CreateTenant(t, s, "acme")
	ctx := context.Background()
	raw := []byte("a bundle")
	sum := sha256.Sum256(raw)
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		idx := uint64(0)
		return tx.Policies().InsertBundle(ctx, store.PolicyBundle{Revision: "v1", Digest: sum[:], Bundle: raw, Manifest: "{}", UploadedBy: "usr_a", LedgerIndex: &idx})
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := pgtest.Connect(t, db.TenantURL)
	for _, tc := range []struct {
		stmt string
		code string
	}{
		{`INSERT INTO policy_activations (tenant_id, seq, revision, rollback, activated_by, approved_by) VALUES ($1, 1, 'v1', false, 'a', 'b')`, "23514"},
		{`INSERT INTO policy_activations (tenant_id, seq, revision, rollback, activated_by, approved_by, ledger_index) VALUES ($1, 9223372036854775807, 'v1', false, 'a', 'b', 0)`, "23505"},
		{`ALTER TABLE policy_activations DISABLE TRIGGER policy_activations_in_order`, "42501"},
	} {
		if code := sqlState(execAsTenant(t, db, conn, acme.ID, tc.stmt)); code != tc.code {
			t.Errorf("%s: SQLSTATE %q, want %s", tc.stmt, code, tc.code)
		}
	}
}

// An agent or agent key row the tenant role writes behind the service's
// back names a ledger entry, as the service's own do (the token endpoint
// proves a key's, the decision service an agent's), and keeps the entry it
// was stored with; a suspended agent is not reinstated, and a tier only
// rises.
func TestAgentRowsNameTheirEntryForAnyWriter(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	acme := storetest.CreateTenant(t, s, "acme")
	ctx := context.Background()
	var agent, sleeper store.Agent
	idx := uint64(3)
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if agent, err = tx.Agents().Create(ctx, store.Agent{Name: "Payer", Sponsor: "usr_a", RiskTier: store.RiskLow, LedgerIndex: new(uint64)}); err != nil {
			return err
		}
		if sleeper, err = tx.Agents().Create(ctx, store.Agent{Name: "Sleeper", Sponsor: "usr_a", RiskTier: store.RiskHigh,
			Status: store.AgentSuspended, LedgerIndex: new(uint64)}); err != nil {
			return err
		}
		_, err = tx.Agents().AddKey(ctx, store.AgentKey{AgentID: agent.ID, KID: "k1", LedgerIndex: &idx,
			PublicJWK: `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1"}`})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := pgtest.Connect(t, db.TenantURL)
	insert := `INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at%s) VALUES ($1, '` + agent.ID + `', 'planted', '{"kty":"OKP"}', 'active', now()%s)`
	for _, tc := range []struct {
		stmt string
		code string
	}{
		{fmt.Sprintf(insert, "", ""), "23514"},
		{fmt.Sprintf(insert, ", ledger_index", ", NULL"), "23514"},
		// It may name an entry for a row that names none (0019), never
		// change or unname one.
		{`UPDATE agent_keys SET ledger_index = 0 WHERE kid = 'k1'`, "AS001"},
		{`UPDATE agent_keys SET ledger_index = NULL WHERE kid = 'k1'`, "AS001"},
		{`ALTER TABLE agent_keys DISABLE TRIGGER agent_keys_name_their_entry`, "42501"},
		{`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at) VALUES ($1, '` +
			store.NewID(store.PrefixAgent) + `', 'Planted', 'usr_a', 'low', 'active', now(), now())`, "23514"},
		{`UPDATE agents SET ledger_index = 1 WHERE id = '` + agent.ID + `'`, "AS001"},
		{`UPDATE agents SET ledger_index = NULL WHERE id = '` + agent.ID + `'`, "AS001"},
		{`UPDATE agents SET status = 'active' WHERE id = '` + sleeper.ID + `'`, "AS001"},
		{`UPDATE agents SET risk_tier = 'low' WHERE id = '` + sleeper.ID + `'`, "AS001"},
		{`UPDATE agents SET risk_tier = 'critical' WHERE id = '` + sleeper.ID + `'`, ""},
		{`ALTER TABLE agents DISABLE TRIGGER agents_entry_is_final`, "42501"},
		// Naming an entry, it is stored: the reader proves the entry.
		{fmt.Sprintf(insert, ", ledger_index", ", 0"), ""},
	} {
		if code := sqlState(execAsTenant(t, db, conn, acme.ID, tc.stmt)); code != tc.code {
			t.Errorf("%s: SQLSTATE %q, want %q", tc.stmt, code, tc.code)
		}
	}
	// The owner cannot move a key to another entry either.
	owner := pgtest.Connect(t, db.AdminURL)
	if _, err := owner.Exec(ctx, `UPDATE agent_keys SET ledger_index = 0 WHERE kid = 'k1'`); sqlState(err) != "AS001" {
		t.Errorf("the owner moved a key's entry: %v", err)
	}
}

// A counterparty row the tenant role writes behind the service's back
// names a ledger entry, as the service's own do (the decision service
// then proves a verified one), keeps it, and becomes verified only as it
// was recorded: blocking one is allowed.
func TestCounterpartiesNameTheirEntryForAnyWriter(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	acme := storetest.CreateTenant(t, s, "acme")
	ctx := context.Background()
	idx := uint64(3)
	var cp store.Counterparty
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		cp, err = tx.Counterparties().Create(ctx, store.Counterparty{Name: "Vendor", Status: store.CounterpartyNew, LedgerIndex: &idx})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := pgtest.Connect(t, db.TenantURL)
	insert := `INSERT INTO counterparties (tenant_id, id, name, status, created_at, updated_at%s) VALUES ($1, '` +
		store.NewID(store.PrefixCounterparty) + `', 'Mallory', 'verified', now(), now()%s)`
	for _, tc := range []struct {
		stmt string
		code string
	}{
		{fmt.Sprintf(insert, "", ""), "23514"},
		{fmt.Sprintf(insert, ", ledger_index", ", NULL"), "23514"},
		{`UPDATE counterparties SET status = 'verified' WHERE id = '` + cp.ID + `'`, "AS001"},
		// It may name an entry for a row that names none (0019), never
		// change or unname one.
		{`UPDATE counterparties SET ledger_index = 0 WHERE id = '` + cp.ID + `'`, "AS001"},
		{`UPDATE counterparties SET ledger_index = NULL WHERE id = '` + cp.ID + `'`, "AS001"},
		{`ALTER TABLE counterparties DISABLE TRIGGER counterparties_entry_is_final`, "42501"},
		{`UPDATE counterparties SET status = 'blocked' WHERE id = '` + cp.ID + `'`, ""},
		// Naming an entry, it is stored: the reader proves the entry.
		{fmt.Sprintf(insert, ", ledger_index", ", 0"), ""},
	} {
		if code := sqlState(execAsTenant(t, db, conn, acme.ID, tc.stmt)); code != tc.code {
			t.Errorf("%s: SQLSTATE %q, want %q", tc.stmt, code, tc.code)
		}
	}
}

// The tenant role may name an entry for an agent, key or counterparty
// that names none (0019: what Adopt does), a retired key included, but
// with nothing else of what the triggers refuse.
func TestAdoptionForAnyWriter(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	acme := storetest.CreateTenant(t, s, "acme")
	ctx := context.Background()
	var agent store.Agent
	var cp store.Counterparty
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if agent, err = tx.Agents().Create(ctx, store.Agent{Name: "Old", Sponsor: "usr_a", RiskTier: store.RiskHigh, LedgerIndex: new(uint64)}); err != nil {
			return err
		}
		if _, err = tx.Agents().AddKey(ctx, store.AgentKey{AgentID: agent.ID, KID: "old", LedgerIndex: new(uint64),
			PublicJWK: `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"old"}`}); err != nil {
			return err
		}
		if err := tx.Agents().RetireKey(ctx, agent.ID, "old", time.Time{}); err != nil {
			return err
		}
		cp, err = tx.Counterparties().Create(ctx, store.Counterparty{Name: "Old Vendor", LedgerIndex: new(uint64)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Tamper(t, `UPDATE agents SET ledger_index = NULL WHERE id = '`+agent.ID+`'`,
		`UPDATE agent_keys SET ledger_index = NULL WHERE kid = 'old'`,
		`UPDATE counterparties SET ledger_index = NULL WHERE id = '`+cp.ID+`'`)
	conn := pgtest.Connect(t, db.TenantURL)
	for _, tc := range []struct {
		stmt string
		code string
	}{
		{`UPDATE agents SET ledger_index = 7 WHERE id = '` + agent.ID + `'`, ""},
		{`UPDATE agents SET ledger_index = -1 WHERE id = '` + agent.ID + `'`, "23514"},
		{`UPDATE agents SET ledger_index = 7, risk_tier = 'low' WHERE id = '` + agent.ID + `'`, "AS001"},
		{`UPDATE agents SET ledger_index = 7, name = 'New' WHERE id = '` + agent.ID + `'`, "42501"},
		{`UPDATE agent_keys SET ledger_index = 7 WHERE kid = 'old'`, ""},
		{`UPDATE agent_keys SET ledger_index = 7, status = 'active', retired_at = NULL WHERE kid = 'old'`, "AS001"},
		{`UPDATE agent_keys SET ledger_index = 7, retired_at = now() - interval '1 day' WHERE kid = 'old'`, "AS001"},
		{`UPDATE agent_keys SET retired_at = now() - interval '1 day' WHERE kid = 'old'`, "AS001"},
		{`UPDATE counterparties SET ledger_index = 7 WHERE id = '` + cp.ID + `'`, ""},
		{`UPDATE counterparties SET ledger_index = 7, status = 'verified' WHERE id = '` + cp.ID + `'`, "AS001"},
	} {
		if code := sqlState(execAsTenant(t, db, conn, acme.ID, tc.stmt)); code != tc.code {
			t.Errorf("%s: SQLSTATE %q, want %q", tc.stmt, code, tc.code)
		}
	}
	// ledger_index alone: the policy tables' rows never change.
	admin := pgtest.Connect(t, db.AdminURL)
	for _, tc := range []struct {
		table string
		want  bool
	}{{"agents", true}, {"agent_keys", true}, {"counterparties", true}, {"policy_bundles", false}, {"policy_verification_keys", false}} {
		var held bool
		if err := admin.QueryRow(ctx, `SELECT has_column_privilege($1, $2, 'ledger_index', 'UPDATE')`, db.Roles.Tenant, tc.table).Scan(&held); err != nil || held != tc.want {
			t.Errorf("UPDATE (ledger_index) on %s: %v, %v; want %v", tc.table, held, err, tc.want)
		}
	}
	if _, err := admin.Exec(ctx, `UPDATE agent_keys SET ledger_index = 8 WHERE kid = 'old'`); err != nil {
		t.Fatalf("the owner naming a retired key's entry: %v", err)
	}
	if _, err := admin.Exec(ctx, `UPDATE agent_keys SET ledger_index = 9 WHERE kid = 'old'`); sqlState(err) != "AS001" {
		t.Errorf("the owner moved an adopted key's entry: %v", err)
	}
}

// execAsTenant runs stmt in a rolled-back transaction of conn confined
// to organization tenantID, its session bound with db's key — or, with db
// nil, with app.tenant_id set and nothing else, which is what the role can
// do without the key ($1, if stmt has it, is tenantID).
func execAsTenant(t *testing.T, db *pgtest.DB, conn *pgx.Conn, tenantID, stmt string) error {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if db != nil {
		err = bindTenant(ctx, tx, db.TenantKey, tenantID)
	} else {
		_, err = tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, tenantID)
	}
	if err != nil {
		t.Fatal(err)
	}
	var args []any
	if strings.Contains(stmt, "$1") {
		args = append(args, tenantID)
	}
	_, err = tx.Exec(ctx, stmt, args...)
	return err
}

// Every table that carries tenant_id has row security enabled and forced,
// with policies that ask for a bound session — so a future migration
// cannot forget it.
func TestEveryTenantTableHasRowSecurity(t *testing.T) {
	db := pgtest.New(t)
	conn := pgtest.Connect(t, db.AdminURL)
	rows, err := conn.Query(context.Background(), `
		SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
		       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid),
		       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid
		        AND NOT (pg_get_expr(p.polqual, p.polrelid) LIKE '%currval(''app_bound_sessions''::regclass)%'
		         AND pg_get_expr(p.polwithcheck, p.polrelid) LIKE '%currval(''app_bound_sessions''::regclass)%')),
		       pg_get_userbyid(c.relowner)
		FROM pg_class c
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var name, owner string
		var rls, force bool
		var policies, unbound int
		if err := rows.Scan(&name, &rls, &force, &policies, &unbound, &owner); err != nil {
			t.Fatal(err)
		}
		// Platform tables that name a tenant without holding its data:
		// granted to the platform role only, read by the tenant role through
		// SECURITY DEFINER functions. Each one is listed here on purpose.
		if name == "agent_directory" {
			continue
		}
		seen++
		if !rls || !force || policies == 0 {
			t.Errorf("%s: rls=%v force=%v policies=%d", name, rls, force, policies)
		}
		// A policy that does not ask for a bound session would trust a
		// setting any session may make.
		if unbound != 0 {
			t.Errorf("%s: %d policies do not ask for a bound session", name, unbound)
		}
		if owner != db.Roles.Owner {
			t.Errorf("%s owned by %s, want %s", name, owner, db.Roles.Owner)
		}
	}
	if seen < 2 {
		t.Fatalf("found %d tenant tables; the catalog query is wrong", seen)
	}
	var super, bypass bool
	for _, r := range []string{db.Roles.Tenant, db.Roles.Platform, db.Roles.Owner} {
		if err := conn.QueryRow(context.Background(), `SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1`, r).Scan(&super, &bypass); err != nil || super || bypass {
			t.Errorf("role %s: super=%v bypassrls=%v %v", r, super, bypass, err)
		}
	}
}

// The owner role is stopped by the trigger, not only by missing grants.
func TestAppendOnlyTriggerStopsOwner(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	acme := storetest.CreateTenant(t, s, "acme")
	ctx := context.Background()
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := storetest.AppendBatch(ctx, tx.Log(), 1, "acme")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := pgtest.Connect(t, db.AdminURL)
	for _, stmt := range []string{`UPDATE ledger_entries SET idx = 5`, `DELETE FROM ledger_entries`, `TRUNCATE ledger_entries`, `DELETE FROM tenants`} {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+Ident(db.Roles.Owner)); err != nil {
				return err
			}
			if err := bindTenant(ctx, tx, db.TenantKey, acme.ID); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, stmt)
			return err
		})
		if !errors.Is(MapErr(err), store.ErrAppendOnly) {
			t.Errorf("owner %s: %v, want the append-only trigger", stmt, err)
		}
	}
}

// The owner role is stopped by the record guards too: decisions and
// receipts are written once, fixed columns stay fixed, and revocation,
// retirement and closing a case are final.
func TestRecordGuardsStopOwner(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	acme := storetest.CreateTenant(t, s, "acme")
	storetest.SeedRecords(t, s, acme.ID)
	ctx := context.Background()
	conn := pgtest.Connect(t, db.AdminURL)
	for _, stmt := range []string{
		`UPDATE decisions SET outcome = 'allow'`,
		`DELETE FROM decisions WHERE outcome = 'deny'`,
		`UPDATE receipts SET ledger_index = ledger_index + 1`,
		`DELETE FROM receipts`,
		`TRUNCATE receipts`,
		`UPDATE agents SET name = 'Renamed'`,
		`UPDATE agents SET tenant_id = gen_random_uuid()`,
		`UPDATE agents SET status = 'active' WHERE status = 'revoked'`,
		`DELETE FROM agents WHERE status = 'revoked'`,
		`UPDATE agent_keys SET public_jwk = '{}'`,
		`UPDATE agent_keys SET status = 'active', retired_at = NULL WHERE status = 'retired'`,
		`DELETE FROM agent_keys`,
		`TRUNCATE agent_keys`,
		`UPDATE counterparties SET name = 'Mallory Ltd'`,
		`DELETE FROM counterparties`,
		`UPDATE cases SET approvals_required = approvals_required + 1`,
		`UPDATE cases SET status = 'pending' WHERE status <> 'pending'`,
		`DELETE FROM cases`,
		`TRUNCATE cases`,
	} {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+Ident(db.Roles.Owner)); err != nil {
				return err
			}
			if err := bindTenant(ctx, tx, db.TenantKey, acme.ID); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, stmt)
			return err
		})
		if !errors.Is(MapErr(err), store.ErrAppendOnly) {
			t.Errorf("owner %s: %v, want the guard trigger", stmt, err)
		}
	}
}

// A pooled connection that served tenant A carries nothing into the next
// borrower.
func TestPoolDoesNotLeakTenant(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 1) // one connection: every borrower gets the same session
	ctx := context.Background()
	a := storetest.CreateTenant(t, s, "alpha")
	b := storetest.CreateTenant(t, s, "bravo")
	err := s.InTenantTx(ctx, a.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.PutSetting(ctx, "secret", "alpha")
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := TenantPool(s).QueryRow(ctx, `SELECT count(*) FROM tenant_settings`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("next borrower outside a tenant tx sees %d rows, %v", n, err)
	}
	err = s.InTenantTx(ctx, b.ID, func(ctx context.Context, tx store.TenantTx) error {
		list, err := tx.ListSettings(ctx)
		if err != nil || len(list) != 0 {
			t.Errorf("bravo on alpha's connection sees %+v, %v", list, err)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// ReadDecisionInputs' batch is one implicit transaction: its setting
	// lapses with it, whether the tenant was found or not.
	var agent store.Agent
	err = s.InTenantTx(ctx, a.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		agent, err = tx.Agents().Create(ctx, store.Agent{Name: "payer", Sponsor: "usr_1", RiskTier: store.RiskLow, LedgerIndex: new(uint64)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{a.ID, "8a2b6f64-7c0e-4a53-9d55-2f1c9a0b7e41"} {
		in, err := s.ReadDecisionInputs(ctx, tenant, store.DecisionInputsQuery{AgentID: agent.ID, Now: time.Now()})
		if tenant == a.ID && (err != nil || in.Agent == nil || in.Agent.ID != agent.ID) {
			t.Fatalf("alpha reads its agent: %+v, %v", in, err)
		}
		var setting string
		if err := TenantPool(s).QueryRow(ctx, `SELECT current_setting('app.tenant_id', true)`).Scan(&setting); err != nil || setting != "" {
			t.Fatalf("after ReadDecisionInputs(%s) the connection keeps app.tenant_id %q, %v", tenant, setting, err)
		}
		if err := TenantPool(s).QueryRow(ctx, `SELECT count(*) FROM agents`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("after ReadDecisionInputs(%s) the next borrower sees %d agents, %v", tenant, n, err)
		}
	}
}

// Each case is a role Open once accepted and the role then got around row
// security or the split between the planes (a security review's proofs),
// or a near relative. Each gets its own database; setup runs as the
// superuser before Open and returns the URLs to open (the app roles' when
// nil). The refusal is ErrInvalid, names the problem and carries no
// password.
func TestOpenRefusesUnsafeRoles(t *testing.T) {
	ctx := context.Background()
	both := func(t *testing.T, db *pgtest.DB) (string, string) { return db.TenantURL, db.PlatformURL }
	for _, tc := range []struct {
		name  string
		stmts []string // as the superuser; see roleSQL
		urls  func(t *testing.T, db *pgtest.DB) (tenant, platform string)
		want  []string // in the error, after roleSQL
	}{
		{name: "superuser for both",
			urls: func(t *testing.T, db *pgtest.DB) (string, string) { return db.AdminURL, db.AdminURL },
			want: []string{"superuser"}},
		{name: "superuser tenant plane",
			urls: func(t *testing.T, db *pgtest.DB) (string, string) { return db.AdminURL, db.PlatformURL },
			want: []string{"superuser"}},
		{name: "same role on both planes",
			urls: func(t *testing.T, db *pgtest.DB) (string, string) { return db.TenantURL, db.TenantURL },
			want: []string{"different roles"}},
		{name: "missing platform URL",
			urls: func(t *testing.T, db *pgtest.DB) (string, string) { return db.TenantURL, "" },
			want: []string{"both"}},
		{name: "tenant role has BYPASSRLS",
			stmts: []string{`ALTER ROLE {tenant} BYPASSRLS`},
			want:  []string{`"{tenant}"`, "BYPASSRLS"}},
		// SET ROLE pg_database_owner, then DROP TABLE ledger_entries.
		{name: "tenant role owns the database",
			stmts: []string{`ALTER DATABASE {db} OWNER TO {tenant}`},
			want:  []string{`"{tenant}"`, `role "pg_database_owner"`, "database {db}"}},
		// The admin Migrate's doc describes, given as --database-url: it
		// read tenants, lifted FORCE ROW LEVEL SECURITY and the append-only
		// trigger, and rewrote ledger rows.
		{name: "migration admin as the tenant plane",
			urls: func(t *testing.T, db *pgtest.DB) (string, string) {
				admin := db.Role(t, "admin", "LOGIN CREATEROLE NOSUPERUSER NOBYPASSRLS")
				roleSQL(t, db, `GRANT {owner} TO `+Ident(admin), `ALTER DATABASE {db} OWNER TO `+Ident(admin))
				adminURL := db.Login(t, admin)
				if err := Migrate(ctx, adminURL, db.Roles, db.TenantKey); err != nil {
					t.Fatalf("Migrate as the admin its doc describes: %v", err)
				}
				return adminURL, db.PlatformURL
			},
			want: []string{"CREATEROLE", `role "{owner}"`, `role "pg_database_owner"`, "database {db}"}},
		// SET LOCAL ROLE owner, then DISABLE TRIGGER and DELETE the ledger.
		{name: "tenant role a member of the owner role",
			stmts: []string{`GRANT {owner} TO {tenant}`},
			want:  []string{`"{tenant}"`, `role "{owner}"`}},
		{name: "tenant role a member of the owner role through another",
			stmts: []string{`CREATE ROLE {prefix}_mid NOLOGIN`, `GRANT {owner} TO {prefix}_mid`, `GRANT {prefix}_mid TO {tenant}`},
			want:  []string{`"{tenant}"`, `role "{owner}"`, `role "{prefix}_mid"`}},
		// SET ROLE platform, then read tenants.
		{name: "tenant role a member of the platform role",
			stmts: []string{`GRANT {platform} TO {tenant}`},
			want:  []string{`"{tenant}"`, `role "{platform}"`}},
		{name: "platform role a member of the tenant role",
			stmts: []string{`GRANT {tenant} TO {platform}`},
			want:  []string{`"{platform}"`, `role "{tenant}"`}},
		// SET ROLE pg_read_all_data, then read tenant_settings.
		{name: "platform role a member of pg_read_all_data",
			stmts: []string{`GRANT pg_read_all_data TO {platform}`},
			want:  []string{`"{platform}"`, `role "pg_read_all_data"`}},
		{name: "platform role a member of pg_write_all_data",
			stmts: []string{`GRANT pg_write_all_data TO {platform}`},
			want:  []string{`"{platform}"`, `role "pg_write_all_data"`}},
		// current_user was the tenant role, session_user the superuser:
		// SET ROLE NONE, then every organization's rows.
		{name: "superuser logs in and sets the tenant role on connect",
			urls: func(t *testing.T, db *pgtest.DB) (string, string) {
				u, err := url.Parse(db.AdminURL)
				if err != nil {
					t.Fatal(err)
				}
				u.RawQuery = url.Values{"options": {"-c role=" + db.Roles.Tenant}}.Encode()
				return strings.ReplaceAll(u.String(), "+", "%20"), db.PlatformURL
			},
			want: []string{`acts as "{tenant}"`}},
		{name: "tenant role owns a schema ahead of public on its search_path",
			stmts: []string{`CREATE SCHEMA {tenant} AUTHORIZATION {tenant}`},
			want:  []string{`"{tenant}"`, "schema {tenant}"}},
		{name: "platform role owns a function the tenant role calls",
			stmts: []string{`ALTER FUNCTION app_agent_tenant(text) OWNER TO {platform}`},
			want:  []string{`"{platform}"`, "function app_agent_tenant(text)"}},
		{name: "platform role owns a table",
			stmts: []string{`ALTER TABLE tenants OWNER TO {platform}`},
			want:  []string{`"{platform}"`, "table tenants"}},
		{name: "tenant role may create in public",
			stmts: []string{`GRANT CREATE ON SCHEMA public TO {tenant}`},
			want:  []string{`"{tenant}"`, `schema "public"`}},
		// CREATE TEMP TABLE ledger_entries (LIKE public.ledger_entries):
		// the next organization on the connection appends to it.
		{name: "tenant role may create temporary tables",
			stmts: []string{`GRANT TEMPORARY ON DATABASE {db} TO {tenant}`},
			want:  []string{`"{tenant}"`, "temporary tables"}},
		{name: "every role may create temporary tables, as by default",
			stmts: []string{`GRANT TEMPORARY ON DATABASE {db} TO PUBLIC`},
			want:  []string{"temporary tables"}},
		// CREATE SCHEMA {platform} AUTHORIZATION … is refused to a role
		// not a member of {platform}, but a schema of its own, named after
		// the platform role and granted to it, comes first on the platform
		// role's search_path.
		{name: "tenant role may create schemas",
			stmts: []string{`GRANT CREATE ON DATABASE {db} TO {tenant}`},
			want:  []string{`"{tenant}"`, "may create schemas"}},
		{name: "every role may create schemas",
			stmts: []string{`GRANT CREATE ON DATABASE {db} TO PUBLIC`},
			want:  []string{"may create schemas"}},
		{name: "tenant role has CREATEROLE",
			stmts: []string{`ALTER ROLE {tenant} CREATEROLE`},
			want:  []string{`"{tenant}"`, "CREATEROLE"}},
		{name: "platform role has REPLICATION",
			stmts: []string{`ALTER ROLE {platform} REPLICATION`},
			want:  []string{`"{platform}"`, "REPLICATION"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := pgtest.New(t)
			roleSQL(t, db, tc.stmts...)
			urls := tc.urls
			if urls == nil {
				urls = both
			}
			tenant, platform := urls(t, db)
			s, err := Open(ctx, Config{TenantURL: tenant, PlatformURL: platform, TenantKey: db.TenantKey})
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			t.Logf("refused: %v", err)
			for _, w := range tc.want {
				if w = roleReplacer(db).Replace(w); !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want it to say %s", err, w)
				}
			}
			for _, raw := range []string{tenant, platform} {
				if u, _ := url.Parse(raw); u != nil {
					if pw, ok := u.User.Password(); ok && strings.Contains(err.Error(), pw) {
						t.Errorf("the refusal carries a password: %v", err)
					}
				}
			}
		})
	}
	db := pgtest.New(t)
	_, err := Open(ctx, Config{TenantURL: "postgres://u:hunter2@[bad", PlatformURL: db.PlatformURL, TenantKey: db.TenantKey})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad URL error leaks or passes: %v", err)
	}
}

// roleReplacer fills in {db}, {prefix}, {owner}, {tenant} and {platform}
// with db's names, quoted as identifiers where they are (all are plain
// lower-case names, which need no quotes, so one replacement fits both
// SQL and error text).
func roleReplacer(db *pgtest.DB) *strings.Replacer {
	return strings.NewReplacer(
		"{db}", db.Name,
		"{prefix}", strings.TrimSuffix(db.Roles.Owner, "_owner"),
		"{owner}", db.Roles.Owner,
		"{tenant}", db.Roles.Tenant,
		"{platform}", db.Roles.Platform,
	)
}

// roleSQL runs stmts as the superuser in db, after roleReplacer. A role
// named {prefix}_x is dropped with db's.
func roleSQL(t *testing.T, db *pgtest.DB, stmts ...string) {
	t.Helper()
	conn := pgtest.Connect(t, db.AdminURL)
	for _, stmt := range stmts {
		if strings.HasPrefix(stmt, "CREATE ROLE {prefix}_") {
			suffix, _, _ := strings.Cut(strings.TrimPrefix(stmt, "CREATE ROLE {prefix}_"), " ")
			db.Role(t, suffix, "")
		}
		stmt = roleReplacer(db).Replace(stmt)
		if _, err := conn.Exec(context.Background(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

// An app role may set its own defaults, default_transaction_read_only
// among them; the service's writes say READ WRITE, so they still write.
func TestWritesWhateverTheRolesDefaultAccessMode(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	for _, u := range []string{db.TenantURL, db.PlatformURL} {
		conn := pgtest.Connect(t, u)
		if _, err := conn.Exec(ctx, `ALTER ROLE CURRENT_USER SET default_transaction_read_only = on`); err != nil {
			t.Fatalf("an app role sets its own default: %v", err)
		}
	}
	s := openTest(t, db, 0)
	org := storetest.CreateTenant(t, s, "alpha") // the platform role writes
	err := s.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.PutSetting(ctx, "k", "v")
	})
	if err != nil {
		t.Fatalf("the tenant role writes: %v", err)
	}
}

// A large object the tenant role creates (lo_create is every role's)
// gives it no way past row security: Open and Migrate still accept the
// role, where one call stopped every later start and migration.
func TestLargeObjectOfAnAppRoleIsNoProblem(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	conn := pgtest.Connect(t, db.TenantURL)
	var oid uint32
	if err := conn.QueryRow(ctx, `SELECT lo_create(0)`).Scan(&oid); err != nil || oid == 0 {
		t.Fatalf("lo_create as the tenant role: %d, %v", oid, err)
	}
	s, err := Open(ctx, db.Config())
	if err != nil {
		t.Fatalf("open with the tenant role owning large object %d: %v", oid, err)
	}
	s.Close()
	if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatalf("migrate with the tenant role owning large object %d: %v", oid, err)
	}
}

// The roles Migrate makes belong to no role and have nothing Open
// refuses: Open accepts them as made.
func TestMigrateMakesRolesOpenAccepts(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewEmpty(t)
	roles := Roles{Owner: db.Role(t, "new_owner", ""), Tenant: db.Role(t, "new_tenant", ""), Platform: db.Role(t, "new_platform", "")}
	if err := Migrate(ctx, db.AdminURL, roles, db.TenantKey); err != nil {
		t.Fatal(err)
	}
	conn := pgtest.Connect(t, db.AdminURL)
	var members int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_roles r, pg_roles m
		WHERE r.rolname = ANY($1) AND m.oid <> r.oid AND pg_has_role(r.oid, m.oid, 'MEMBER')`,
		[]string{roles.Owner, roles.Tenant, roles.Platform}).Scan(&members)
	if err != nil || members != 0 {
		t.Fatalf("the roles Migrate made belong to %d roles, %v", members, err)
	}
	s, err := Open(ctx, Config{TenantURL: db.Login(t, roles.Tenant), PlatformURL: db.Login(t, roles.Platform), TenantKey: db.TenantKey})
	if err != nil {
		t.Fatalf("Open as the roles Migrate made: %v", err)
	}
	s.Close()
}

// A database whose every role may create schemas and temporary tables
// (granted to PUBLIC) is tightened by Migrate, so that Open accepts its
// app roles.
func TestMigrateRevokesDatabaseCreate(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewEmpty(t)
	roleSQL(t, db, `GRANT CREATE, TEMPORARY ON DATABASE {db} TO PUBLIC`)
	if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, db.Config())
	if err != nil {
		t.Fatalf("Open after Migrate: %v", err)
	}
	s.Close()
}

func TestOpenRefusesStaleSchema(t *testing.T) {
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	// Roles exist (pgtest made them) but no migration ran.
	conn := pgtest.Connect(t, db.AdminURL)
	if _, err := conn.Exec(ctx, `GRANT CONNECT ON DATABASE `+Ident(db.Name)+` TO `+Ident(db.Roles.Tenant)+`, `+Ident(db.Roles.Platform)); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctx, db.Config())
	if !errors.Is(err, store.ErrSchema) {
		t.Fatalf("Open before migrate: %v, want ErrSchema", err)
	}
	if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, db.Config())
	if err != nil {
		t.Fatalf("Open after migrate: %v", err)
	}
	s.Close()
}

// A database whose applied migration differs from this binary's — built
// by an earlier pre-release schema, changed in place since — is refused
// by both Migrate and Open with ErrSchema; so is one from before digests
// were recorded.
func TestRefusesAnotherSchema(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper string
	}{
		{"different digest", `UPDATE schema_migrations SET sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'`},
		{"no digests recorded", `ALTER TABLE schema_migrations DROP COLUMN sha256`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := pgtest.New(t)
			ctx := context.Background()
			conn := pgtest.Connect(t, db.AdminURL)
			if _, err := conn.Exec(ctx, tc.tamper); err != nil {
				t.Fatal(err)
			}
			if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); !errors.Is(err, store.ErrSchema) || !strings.Contains(err.Error(), "recreate the database") {
				t.Fatalf("Migrate: %v, want ErrSchema naming the way out", err)
			}
			s, err := Open(ctx, db.Config())
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, store.ErrSchema) {
				t.Fatalf("Open: %v, want ErrSchema", err)
			}
		})
	}
}

// An empty bookkeeping table from before digests (a first migrate cut
// short) gains the column, and migrate goes on.
func TestEmptyMigrationsTableGainsDigests(t *testing.T) {
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	conn := pgtest.Connect(t, db.AdminURL)
	for _, stmt := range []string{
		`CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
		`ALTER TABLE schema_migrations OWNER TO ` + Ident(db.Roles.Owner),
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatal(err)
	}
	var sum string
	if err := conn.QueryRow(ctx, `SELECT sha256 FROM schema_migrations WHERE version = 1`).Scan(&sum); err != nil || len(sum) != 64 {
		t.Fatalf("recorded digest %q, %v", sum, err)
	}
}

func TestMigrateConcurrentAndIdempotent(t *testing.T) {
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	var n int
	conn := pgtest.Connect(t, db.AdminURL)
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != latestPostgres(t) {
		t.Fatalf("schema_migrations has %d rows, %v", n, err)
	}
	bad := db.Roles
	bad.Tenant = "Robert'); DROP TABLE students;--"
	if err := Migrate(ctx, db.AdminURL, bad, db.TenantKey); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad role name: %v", err)
	}
}

// Roles are the server's, so a migrator of another database can create
// one of ours while Migrate runs: its CREATE ROLE then waits on the
// catalog and fails with a unique violation, which Migrate takes as the
// role made elsewhere (checked all the same), not as its own failure.
func TestMigrateLosingTheRoleRace(t *testing.T) {
	for _, tc := range []struct {
		name, attrs string
		refused     bool
	}{
		{"to a role like its own", "NOLOGIN NOSUPERUSER NOBYPASSRLS", false},
		// The winner's role is checked as a role found would be.
		{"to a role that bypasses row security", "NOLOGIN NOSUPERUSER BYPASSRLS", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := pgtest.NewEmpty(t)
			ctx := context.Background()
			roles := db.Roles
			roles.Owner = db.Role(t, "racing_owner", "") // a name nobody has made yet
			other := pgtest.Connect(t, db.AdminURL)
			tx, err := other.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, `CREATE ROLE `+pgx.Identifier{roles.Owner}.Sanitize()+` `+tc.attrs); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- Migrate(ctx, db.AdminURL, roles, db.TenantKey) }()
			// Migrate does not see the uncommitted role: its CREATE ROLE waits.
			watch := pgtest.Connect(t, db.AdminURL)
			waiting := false
			for deadline := time.Now().Add(10 * time.Second); !waiting && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				var n int
				if err := watch.QueryRow(ctx,
					`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'CREATE ROLE%'`).Scan(&n); err != nil {
					t.Fatal(err)
				}
				waiting = n > 0
			}
			if !waiting {
				t.Fatal("Migrate's CREATE ROLE never waited on the other transaction's")
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			err = <-done
			switch {
			case tc.refused && !errors.Is(err, store.ErrInvalid):
				t.Fatalf("Migrate after losing the race to a privileged role: %v, want ErrInvalid", err)
			case !tc.refused && err != nil:
				t.Fatalf("Migrate after losing the race for a role: %v", err)
			}
		})
	}
}

// Migrate refuses app roles that exist already and Open would refuse,
// before it migrates anything.
func TestMigrateRefusesPrivilegedAppRole(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stmts []string // as the superuser; see roleSQL
		want  []string // in the error, after roleSQL
	}{
		{"tenant role has BYPASSRLS", []string{`ALTER ROLE {tenant} BYPASSRLS`}, []string{`"{tenant}"`}},
		{"tenant role owns the database", []string{`ALTER DATABASE {db} OWNER TO {tenant}`},
			[]string{`"{tenant}"`, `role "pg_database_owner"`, "database {db}"}},
		{"tenant role a member of the owner role", []string{`GRANT {owner} TO {tenant}`}, []string{`"{tenant}"`, `role "{owner}"`}},
		{"tenant role a member of the platform role", []string{`GRANT {platform} TO {tenant}`}, []string{`"{tenant}"`, `role "{platform}"`}},
		{"platform role a member of pg_read_all_data", []string{`GRANT pg_read_all_data TO {platform}`},
			[]string{`"{platform}"`, `role "pg_read_all_data"`}},
		{"tenant role has CREATEROLE", []string{`ALTER ROLE {tenant} CREATEROLE`}, []string{`"{tenant}"`, "CREATEROLE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := pgtest.NewEmpty(t)
			ctx := context.Background()
			roleSQL(t, db, tc.stmts...)
			err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey)
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("Migrate: %v, want ErrInvalid", err)
			}
			for _, w := range tc.want {
				if w = roleReplacer(db).Replace(w); !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want it to say %s", err, w)
				}
			}
			var migrated bool
			if err := pgtest.Connect(t, db.AdminURL).QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&migrated); err != nil || migrated {
				t.Errorf("Migrate refused but made schema_migrations (%v, %v)", migrated, err)
			}
		})
	}
}

// latestPostgres is the number of PostgreSQL migrations this binary has.
func latestPostgres(t *testing.T) int {
	t.Helper()
	n, err := migrations.Latest(migrations.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// 0004 makes the decisions key again, and with it the foreign keys of
// receipts and cases: made again, they check every stored row, under the
// forced row security that would otherwise hide them all from the
// migrating owner. A receipt or a case naming no decision stops the
// upgrade.
func TestDecisionsKeyMigrationChecksEveryReference(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dangling string // the table whose row names a decision that is not stored
		violated string // the foreign key that stops the upgrade
	}{
		{"every receipt and case names a stored decision", "", ""},
		{"a receipt names no decision", "receipts", "receipts_tenant_id_decision_id_fkey"},
		{"a case names no decision", "cases", "cases_tenant_id_decision_id_fkey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := migratedTo(t, 3)
			ctx := context.Background()
			tenant := oldTenant
			agent, allowed, escalated := store.NewID(store.PrefixAgent), store.NewID(store.PrefixDecision), store.NewID(store.PrefixDecision)
			named := map[string]string{"receipts": allowed, "cases": escalated}
			if tc.dangling != "" {
				named[tc.dangling] = store.NewID(store.PrefixDecision)
			}
			decision := func(id, outcome string) string {
				return `INSERT INTO decisions (tenant_id, id, agent_id, action, action_type, reason, outcome, reasons, approvals_required,
					base_revision, tenant_revision, tenant_bundle_sha256, request_sha256, ledger_index, response, created_at,
					agent_seq, agent_denials, agent_tally_at)
					VALUES ('` + tenant + `', '` + id + `', '` + agent + `', '{}', 'payment.send', 'r', '` + outcome + `', '[]', 1, 'b', '', '',
					'\x` + strings.Repeat("00", 32) + `', 0, '{}', now(), ` + map[string]string{"allow": "1", "escalate": "2"}[outcome] + `, 0, now())`
			}
			// As the superuser with triggers off: the only way such a row
			// gets in under the old keys.
			db.Tamper(t,
				`INSERT INTO tenants (id, slug, name, status) VALUES ('`+tenant+`', 'acme', 'Acme', 'active')`,
				`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
					VALUES ('`+tenant+`', '`+agent+`', 'payer', 'usr_1', 'low', 'active', now(), now())`,
				decision(allowed, "allow"), decision(escalated, "escalate"),
				`INSERT INTO receipts (tenant_id, id, decision_id, ledger_index, created_at)
					VALUES ('`+tenant+`', '`+store.NewID(store.PrefixReceipt)+`', '`+named["receipts"]+`', 1, now())`,
				`INSERT INTO cases (tenant_id, id, decision_id, agent_id, status, approvals_required, expires_at, created_at, updated_at)
					VALUES ('`+tenant+`', '`+store.NewID(store.PrefixCase)+`', '`+named["cases"]+`', '`+agent+`', 'pending', 1, now() + interval '1 day', now(), now())`,
			)

			err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey)
			admin := pgtest.Connect(t, db.AdminURL)
			var version int
			var key string
			if qerr := admin.QueryRow(ctx, `SELECT (SELECT max(version) FROM schema_migrations),
				(SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'decisions_pkey')`).Scan(&version, &key); qerr != nil {
				t.Fatal(qerr)
			}
			if tc.dangling != "" {
				if violated(err) != tc.violated || version != 3 || key != "PRIMARY KEY (tenant_id, id)" {
					t.Fatalf("a refused upgrade: %v; version %d, %s", err, version, key)
				}
				return
			}
			if err != nil || version != latestPostgres(t) || key != "PRIMARY KEY (id, tenant_id)" {
				t.Fatalf("the upgrade: %v; version %d, %s", err, version, key)
			}
		})
	}
}

// A database from before 0002 (receipts kept their JWS a second time)
// upgrades: the column goes, and each receipt reads back the same JWS from
// its ledger entry. A database where a receipt is not its entry's record
// is refused and left at version 1, column and all — which also shows the
// check sees the rows that forced row security hides from the owner.
func TestReceiptsMigrationKeepsEveryJWS(t *testing.T) {
	const jws = storetest.FakeJWS
	for _, tc := range storetest.ReceiptUpgrades {
		t.Run(tc.Name, func(t *testing.T) {
			db := migratedTo(t, 1)
			ctx := context.Background()
			admin := pgtest.Connect(t, db.AdminURL) // a superuser: row security does not apply
			tenant := oldTenant
			agent, decision, receipt := store.NewID(store.PrefixAgent), store.NewID(store.PrefixDecision), store.NewID(store.PrefixReceipt)
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{`INSERT INTO tenants (id, slug, name, status) VALUES ($1, 'acme', 'Acme', 'active')`, []any{tenant}},
				{`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
					VALUES ($1, $2, 'payer', 'usr_1', 'low', 'active', now(), now())`, []any{tenant, agent}},
				{`INSERT INTO decisions (tenant_id, id, agent_id, action, action_type, reason, outcome, reasons, approvals_required,
					base_revision, tenant_revision, tenant_bundle_sha256, request_sha256, ledger_index, response, created_at,
					agent_seq, agent_denials, agent_tally_at)
					VALUES ($1, $2, $3, '{}', 'payment.send', 'r', 'allow', '[]', 0, 'b', '', '', $4, 0, '{}', now(), 1, 0, now())`,
					[]any{tenant, decision, agent, make([]byte, 32)}},
				{`INSERT INTO ledger_entries (tenant_id, idx, entry, leaf_hash, record) VALUES ($1, 1, 'entry', $2, convert_to($3, 'UTF8'))`,
					[]any{tenant, make([]byte, 32), tc.Record}},
				{`INSERT INTO receipts (tenant_id, id, decision_id, jws, ledger_index, created_at) VALUES ($1, $2, $3, $4, 1, now())`,
					[]any{tenant, receipt, decision, jws}},
			} {
				if _, err := admin.Exec(ctx, q.sql, q.args...); err != nil {
					t.Fatalf("%s: %v", q.sql, err)
				}
			}

			err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey)
			var version int
			var jwsColumn bool
			if qerr := admin.QueryRow(ctx, `SELECT max(version), EXISTS (SELECT 1 FROM information_schema.columns
				WHERE table_name = 'receipts' AND column_name = 'jws') FROM schema_migrations`).Scan(&version, &jwsColumn); qerr != nil {
				t.Fatal(qerr)
			}
			if !tc.OK {
				var kept string
				qerr := admin.QueryRow(ctx, `SELECT jws FROM receipts`).Scan(&kept)
				if err == nil || !strings.Contains(err.Error(), "a stored receipt is not the record of its ledger entry") ||
					version != 1 || !jwsColumn || kept != jws || qerr != nil {
					t.Fatalf("a refused upgrade: %v; version %d, jws column %v, receipt %q (%v)", err, version, jwsColumn, kept, qerr)
				}
				return
			}
			if err != nil || version != latestPostgres(t) || jwsColumn {
				t.Fatalf("the upgrade: %v; version %d, jws column %v", err, version, jwsColumn)
			}
			s, err := Open(ctx, db.Config())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var got store.Receipt
			err = s.InTenantReadTx(ctx, tenant, func(ctx context.Context, tx store.TenantTx) error {
				var err error
				got, err = tx.Receipts().ByDecision(ctx, decision)
				return err
			})
			if err != nil || got.ID != receipt || got.JWS != jws || got.LedgerIndex != 1 {
				t.Fatalf("the receipt after the upgrade: %+v, %v", got, err)
			}
		})
	}
}

// A database from before 0006 (nothing kept a purpose's active signing key
// unique) upgrades: of doubled receipt or token keys the newest stays
// active and the others are retired, still listed — rows the migrating
// owner sees although row security is forced. Two active log keys — which
// is the log? — are refused, and the database is left at version 5.
func TestOneActiveKeyMigration(t *testing.T) {
	type key struct {
		kid, purpose, status, created string
	}
	const t1, t2 = "2026-11-26T00:00:01Z", "2026-11-26T00:00:02Z"
	for _, tc := range []struct {
		name   string
		keys   []key
		active map[string]string // purpose → the kid active after the upgrade; nil: refused
	}{
		{"doubled receipt and token keys", []key{
			{"log-1", "log", "active", t1},
			{"r-retired", "receipt", "retired", t1},
			{"r-old", "receipt", "active", t1}, {"r-new", "receipt", "active", t2},
			// One instant: the greater kid is the newer, as SigningKeys orders them.
			{"t-a", "token", "active", t1}, {"t-b", "token", "active", t1},
			// A retired key newer than the active ones (clocks differ)
			// retires none of them.
			{"t-retired", "token", "retired", t2},
		}, map[string]string{"log": "log-1", "receipt": "r-new", "token": "t-b"}},
		{"two active log keys", []key{{"log-1", "log", "active", t1}, {"log-2", "log", "active", t2}}, nil},
		{"two active platform log keys", []key{{"platform-1", "log", "active", t1}, {"platform-2", "log", "active", t2}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := migratedTo(t, 5)
			ctx := context.Background()
			admin := pgtest.Connect(t, db.AdminURL) // a superuser: row security does not apply
			tenant := oldTenant
			if _, err := admin.Exec(ctx, `INSERT INTO tenants (id, slug, name, status) VALUES ($1, 'acme', 'Acme', 'active')`, tenant); err != nil {
				t.Fatal(err)
			}
			table := "signing_keys"
			for _, k := range tc.keys {
				q := `INSERT INTO signing_keys (tenant_id, kid, purpose, algorithm, public_key, sealed_private, status, created_at, retired_at)
					VALUES ($1, $2, $3, 'Ed25519', 'public', 'sealed', $4, $5, CASE WHEN $4 = 'retired' THEN $5::timestamptz END)`
				args := []any{tenant, k.kid, k.purpose, k.status, k.created}
				if strings.HasPrefix(k.kid, "platform-") {
					table = "platform_signing_keys"
					q = `INSERT INTO platform_signing_keys (kid, purpose, algorithm, public_key, sealed_private, status, created_at)
						VALUES ($1, $2, 'Ed25519', 'public', 'sealed', $3, $4)`
					args = []any{k.kid, k.purpose, k.status, k.created}
				}
				if _, err := admin.Exec(ctx, q, args...); err != nil {
					t.Fatal(err)
				}
			}

			err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey)
			var version, activeRows int
			if qerr := admin.QueryRow(ctx, `SELECT (SELECT max(version) FROM schema_migrations),
				(SELECT count(*) FROM `+table+` WHERE status = 'active')`).Scan(&version, &activeRows); qerr != nil {
				t.Fatal(qerr)
			}
			if tc.active == nil {
				if err == nil || !strings.Contains(err.Error(), "two active log keys") || version != 5 || activeRows != 2 {
					t.Fatalf("a refused upgrade: %v; version %d, %d active keys", err, version, activeRows)
				}
				return
			}
			if err != nil || version != latestPostgres(t) {
				t.Fatalf("the upgrade: %v; version %d", err, version)
			}
			s, err := Open(ctx, db.Config())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			n := 0
			err = s.InTenantReadTx(ctx, tenant, func(ctx context.Context, tx store.TenantTx) error {
				for _, p := range []store.KeyPurpose{store.PurposeLog, store.PurposeReceipt, store.PurposeToken} {
					ks, err := tx.Keys().SigningKeys(ctx, p)
					if err != nil {
						return err
					}
					for _, k := range ks {
						n++
						wantActive := tc.active[string(p)] == k.KID
						if (k.Status == store.KeyActive) != wantActive || (k.Status == store.KeyRetired) == k.RetiredAt.IsZero() {
							t.Errorf("%s key %s after the upgrade: %s, retired at %v", p, k.KID, k.Status, k.RetiredAt)
						}
					}
				}
				return nil
			})
			if err != nil || n != len(tc.keys) {
				t.Fatalf("%d keys listed after the upgrade, want all %d: %v", n, len(tc.keys), err)
			}
		})
	}
}

// A database from before 0007 (one jti namespace per organization) keeps
// its remembered jtis: a replay of one is still refused, while another
// agent may now use the same jti.
func TestJTIsPerAgentMigration(t *testing.T) {
	db := migratedTo(t, 6)
	ctx := context.Background()
	admin := pgtest.Connect(t, db.AdminURL) // a superuser: row security does not apply
	tenant := oldTenant
	one, two := store.NewID(store.PrefixAgent), store.NewID(store.PrefixAgent)
	digest := sha256.Sum256([]byte("job-42"))
	later := time.Now().Add(5 * time.Minute)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO tenants (id, slug, name, status) VALUES ($1, 'acme', 'Acme', 'active')`, []any{tenant}},
		{`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at) VALUES ($1, $2, 'One', 'usr_s', 'low', 'active', now(), now())`, []any{tenant, one}},
		{`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at) VALUES ($1, $2, 'Two', 'usr_s', 'low', 'active', now(), now())`, []any{tenant, two}},
		{`INSERT INTO assertion_jtis (tenant_id, jti_sha256, agent_id, expires_at) VALUES ($1, $2, $3, $4)`, []any{tenant, digest[:], one, later}},
	} {
		if _, err := admin.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatal(err)
	}
	// A row is taken over by its own agent only: the tenant role may no
	// longer change agent_id, still expires_at.
	var agentID, expiresAt bool
	if err := admin.QueryRow(ctx, `SELECT has_column_privilege($1, 'assertion_jtis', 'agent_id', 'UPDATE'),
		has_column_privilege($1, 'assertion_jtis', 'expires_at', 'UPDATE')`, db.Roles.Tenant).Scan(&agentID, &expiresAt); err != nil || agentID || !expiresAt {
		t.Fatalf("the tenant role may update agent_id %v, expires_at %v (%v)", agentID, expiresAt, err)
	}
	s, err := Open(ctx, db.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.InTenantTx(ctx, tenant, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.AssertionJTIs().Remember(ctx, one, digest[:], later); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("a replay of a jti remembered before the upgrade: %v, want ErrConflict", err)
		}
		return tx.AssertionJTIs().Remember(ctx, two, digest[:], later)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A database from before rows named their ledger entry (version 12: an
// agent, its active and retired keys, a verified counterparty) upgrades
// with those rows naming none, and the tenant role can then adopt each
// once (0019): named an entry, never renamed, the retired key staying
// retired with its time. The path ledger adopt takes on a real upgrade,
// as TestRowsFromBeforeTheBindingAreAdoptedAfterUpgrade on SQLite.
func TestRowsFromBeforeTheBindingAreAdoptedAfterUpgrade(t *testing.T) {
	db := migratedTo(t, 12)
	ctx := context.Background()
	admin := pgtest.Connect(t, db.AdminURL)
	tenant := oldTenant
	agentID, cpID := store.NewID(store.PrefixAgent), store.NewID(store.PrefixCounterparty)
	at := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	const key = `INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO tenants (id, slug, name, status) VALUES ($1, 'acme', 'Acme', 'active')`, []any{tenant}},
		{`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
			VALUES ($1, $2, 'Agent', 'usr_sponsor', 'low', 'active', $3, $3)`, []any{tenant, agentID, at}},
		{key, []any{tenant, agentID, "k-old", `{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"k-old"}`, "retired", at, at}},
		{key, []any{tenant, agentID, "k-new", `{"kty":"OKP","crv":"Ed25519","x":"BBBB","kid":"k-new"}`, "active", at, nil}},
		{`INSERT INTO counterparties (tenant_id, id, name, status, created_at, updated_at) VALUES ($1, $2, 'Vendor', 'verified', $3, $3)`,
			[]any{tenant, cpID, at}},
	} {
		if _, err := admin.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, db.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.UpgradedRowsAdopt(t, s, tenant, agentID, cpID, at)
}

// Read-write transactions are READ COMMITTED whatever the roles' default
// says (some PostgreSQL-compatible databases default to SERIALIZABLE): a
// signing key's losing creator, and a log batch after its lock, read what
// others committed after their transaction began.
func TestWritesAreReadCommitted(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	admin := pgtest.Connect(t, db.AdminURL)
	for _, role := range []string{db.Roles.Tenant, db.Roles.Platform} {
		if _, err := admin.Exec(ctx, `ALTER ROLE `+Ident(role)+` IN DATABASE `+Ident(db.Name)+` SET default_transaction_isolation = 'serializable'`); err != nil {
			t.Fatal(err)
		}
	}
	var def string
	if err := pgtest.Connect(t, db.TenantURL).QueryRow(ctx, `SHOW default_transaction_isolation`).Scan(&def); err != nil || def != "serializable" {
		t.Fatalf("the tenant role's default: %q, %v", def, err)
	}
	s := openTest(t, db, 0)
	acme := storetest.CreateTenant(t, s, "acme")
	for _, kind := range []struct {
		name string
		in   func(fn func(context.Context, store.KeyTx) error) error
	}{
		{"tenant", func(fn func(context.Context, store.KeyTx) error) error {
			return s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error { return fn(ctx, tx.Keys()) })
		}},
		{"platform", func(fn func(context.Context, store.KeyTx) error) error {
			return s.InPlatformTx(ctx, func(ctx context.Context, tx store.PlatformTx) error { return fn(ctx, tx.Keys()) })
		}},
	} {
		t.Run(kind.name, func(t *testing.T) {
			looked, committed := make(chan struct{}), make(chan error, 1)
			go func() {
				<-looked
				committed <- kind.in(func(ctx context.Context, keys store.KeyTx) error {
					return keys.InsertSigningKey(ctx, store.SigningKey{KID: "r1", Purpose: store.PurposeReceipt, Algorithm: "Ed25519",
						PublicKey: []byte("public"), SealedPrivate: []byte("sealed"), Status: store.KeyActive})
				})
			}()
			var before, after []store.SigningKey
			err := kind.in(func(ctx context.Context, keys store.KeyTx) error {
				var err error
				if before, err = keys.SigningKeys(ctx, store.PurposeReceipt); err != nil {
					return err
				}
				close(looked)
				if err := <-committed; err != nil {
					return err
				}
				after, err = keys.SigningKeys(ctx, store.PurposeReceipt)
				return err
			})
			if err != nil || len(before) != 0 || len(after) != 1 {
				t.Fatalf("keys seen before another transaction committed one: %d, after: %d (%v)", len(before), len(after), err)
			}
		})
	}
}

// Outages are ErrUnavailable (a 503), not errors of the request: a
// session the server terminated, a connection it refused for want of
// slots, and the other codes that say the database is at fault.
func TestOutagesAreUnavailable(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	ctx := context.Background()
	admin := pgtest.Connect(t, db.AdminURL)

	conn, err := TenantPool(s).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var pid int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `SELECT 1`)
	if !errors.Is(MapErr(err), store.ErrUnavailable) {
		t.Errorf("a terminated session: %v (%s), want ErrUnavailable", err, sqlState(err))
	}

	if _, err := admin.Exec(ctx, `ALTER ROLE `+Ident(db.Roles.Tenant)+` CONNECTION LIMIT 0`); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec(ctx, `ALTER ROLE `+Ident(db.Roles.Tenant)+` CONNECTION LIMIT -1`)
	_, err = pgx.Connect(ctx, db.TenantURL)
	if !errors.Is(MapErr(err), store.ErrUnavailable) {
		t.Errorf("a connection refused for want of slots: %v (%s), want ErrUnavailable", err, sqlState(err))
	}

	for _, code := range []string{"08006", "53100", "57P03"} {
		if err := MapErr(&pgconn.PgError{Code: code}); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("SQLSTATE %s: %v, want ErrUnavailable", code, err)
		}
	}
	// The request's faults stay the request's, whatever their text says.
	if err := MapErr(&pgconn.PgError{Code: "23505", Message: "closed pool"}); !errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a unique violation: %v, want ErrConflict only", err)
	}
	if err := MapErr(&pgconn.PgError{Code: "08P01"}); errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a protocol violation (ours): %v, not an outage", err)
	}
}

// Contention (a deadlock, a serialization failure, a lock or statement
// timeout) is the store's passing state, not the request's fault: 503, and
// the transaction is gone (ErrTxAborted), as SQLite's BUSY. A real
// deadlock between two organization transactions, then each code.
func TestContentionIsUnavailable(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 4)
	ten := storetest.CreateTenant(t, s, "alpha").ID
	ctx := context.Background()
	for _, k := range []string{"a", "b"} {
		if err := s.InTenantTx(ctx, ten, func(ctx context.Context, tx store.TenantTx) error { return tx.PutSetting(ctx, k, "0") }); err != nil {
			t.Fatal(err)
		}
	}
	// Each holds one row, then both wait for the other's: one is chosen,
	// the other commits.
	var wg sync.WaitGroup
	var holding sync.WaitGroup
	holding.Add(2)
	errs := make([]error, 2)
	for i, order := range [][2]string{{"a", "b"}, {"b", "a"}} {
		wg.Go(func() {
			held := false
			defer func() {
				if !held {
					holding.Done() // failed before: the other must not wait
				}
			}()
			errs[i] = s.InTenantTx(ctx, ten, func(ctx context.Context, tx store.TenantTx) error {
				if err := tx.PutSetting(ctx, order[0], "1"); err != nil {
					return err
				}
				held = true
				holding.Done()
				holding.Wait()
				return tx.PutSetting(ctx, order[1], "1")
			})
		})
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("deadlock: %v and %v; want one chosen, the other committed", errs[0], errs[1])
	}
	if failed := errors.Join(errs...); !errors.Is(failed, store.ErrUnavailable) || !errors.Is(failed, store.ErrTxAborted) || sqlState(failed) != "40P01" {
		t.Errorf("deadlock: %v (%s), want ErrUnavailable and ErrTxAborted", failed, sqlState(failed))
	}
	for _, code := range []string{"40001", "40P01", "55P03", "57014"} {
		if err := MapErr(&pgconn.PgError{Code: code}); !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, store.ErrTxAborted) {
			t.Errorf("SQLSTATE %s: %v, want ErrUnavailable and ErrTxAborted", code, err)
		}
	}
	// A statement after a failed one, or a COMMIT that rolled back: the
	// transaction is gone, but the failure was an earlier statement's,
	// not the database's.
	if err := MapErr(&pgconn.PgError{Code: "25P02"}); !errors.Is(err, store.ErrTxAborted) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("SQLSTATE 25P02: %v, want ErrTxAborted only", err)
	}
	if err := MapErr(pgx.ErrTxCommitRollback); !errors.Is(err, store.ErrTxAborted) || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("a COMMIT that rolled back: %v, want ErrTxAborted only", err)
	}
}

// migratedTo is an empty database migrated to version only: a database an
// earlier release left, for a migration test to put old rows in (as the
// superuser, pgtest.Connect(t, db.AdminURL): row security does not apply)
// before Migrate upgrades it.
func migratedTo(t *testing.T, version int) *pgtest.DB {
	t.Helper()
	db := pgtest.NewEmpty(t)
	if err := MigrateTo(context.Background(), db.AdminURL, db.Roles, db.TenantKey, version); err != nil {
		t.Fatal(err)
	}
	return db
}

// oldTenant is the organization migration tests write old rows for.
const oldTenant = "5f0c2b1e-8a3d-4c6e-9b7a-1d2e3f405162"

// withParam is url with the run-time parameter name=value added.
func withParam(t *testing.T, raw, name, value string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(name, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// The service's sessions carry limits the server enforces, whatever the
// client does: a statement that runs too long is cancelled, and a
// transaction left idle is ended, with its locks. They are the app roles'
// defaults, which migrate sets unless an administrator set the role's
// own (kept), so that they are no startup parameters, which a connection
// pooler may refuse; a database URL may still set its own.
func TestSessionLimits(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	s := openTest(t, db, 0)
	for name, pool := range map[string]*pgxpool.Pool{"tenant": TenantPool(s), "platform": PlatformPool(s)} {
		var statement, idle string
		err := pool.QueryRow(ctx, `SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')`).Scan(&statement, &idle)
		if err != nil || statement != "30s" || idle != "1min" {
			t.Errorf("%s pool: statement_timeout %q, idle_in_transaction_session_timeout %q, %v; want 30s and 1min", name, statement, idle, err)
		}
	}
	var startup bool
	if err := TenantPool(s).QueryRow(ctx, `SELECT source = 'user' FROM pg_settings WHERE name = 'statement_timeout'`).Scan(&startup); err != nil || !startup {
		t.Errorf("statement_timeout's source: user %v, %v; want the role's default", startup, err)
	}

	// An administrator's own setting of the role survives a migration.
	admin := pgtest.Connect(t, db.AdminURL)
	if _, err := admin.Exec(ctx, `ALTER ROLE `+Ident(db.Roles.Tenant)+` SET statement_timeout = '5s'`); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatal(err)
	}
	again := openTest(t, db, 0)
	var statement string
	if err := TenantPool(again).QueryRow(ctx, `SELECT current_setting('statement_timeout')`).Scan(&statement); err != nil || statement != "5s" {
		t.Errorf("after the administrator's 5s and a migration: statement_timeout %q, %v", statement, err)
	}

	short, err := Open(ctx, Config{
		TenantURL:   withParam(t, withParam(t, db.TenantURL, "statement_timeout", "200ms"), "idle_in_transaction_session_timeout", "200ms"),
		PlatformURL: db.PlatformURL,
		TenantKey:   db.TenantKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	_, err = TenantPool(short).Exec(ctx, `SELECT pg_sleep(5)`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("a statement past the URL's statement_timeout: %v, want 57014 query_canceled", err)
	}
	if mapped := MapErr(err); !errors.Is(mapped, store.ErrUnavailable) || !errors.Is(mapped, store.ErrTxAborted) {
		t.Errorf("a statement timeout maps to %v, want ErrUnavailable and ErrTxAborted", mapped)
	}

	tx, err := TenantPool(short).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := tx.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("a transaction idle past idle_in_transaction_session_timeout went on")
	}
}

// The tenant role, whatever its client, stores no policy bundle (0016) and
// no bundle verification key (0017) that names no ledger entry, and changes
// none: a row inserted behind the service's back must name its entry,
// which an activation (a bundle's upload) or an upload or activation (a
// key's registration) proves.
func TestPolicyRowsNameTheirEntryForAnyWriter(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	acme := storetest.CreateTenant(t, s, "acme")
	conn := pgtest.Connect(t, db.TenantURL)
	for _, table := range []struct{ name, insert, trigger string }{
		{"policy_bundles", `INSERT INTO policy_bundles (tenant_id, revision, digest, bundle, manifest, signed, uploaded_by%s)
			VALUES ($1, 'evil', sha256('x'), 'x', '{}', false, 'usr_mallory'%s)`, "policy_bundles_name_their_entry"},
		{"policy_verification_keys", `INSERT INTO policy_verification_keys (tenant_id, kid, public_pem, algorithm%s)
			VALUES ($1, 'evil', '-----BEGIN PUBLIC KEY-----', 'ES256'%s)`, "policy_verification_keys_name_their_entry"},
	} {
		for _, tc := range []struct {
			stmt string
			code string
		}{
			{fmt.Sprintf(table.insert, "", ""), "23514"},
			{fmt.Sprintf(table.insert, ", ledger_index", ", NULL"), "23514"},
			{fmt.Sprintf(table.insert, ", ledger_index", ", -1"), "23514"},
			{`ALTER TABLE ` + table.name + ` DISABLE TRIGGER ` + table.trigger, "42501"},
			{`DROP TRIGGER ` + table.trigger + ` ON ` + table.name, "42501"},
			// Naming an entry, it is stored: the service proves the entry.
			{fmt.Sprintf(table.insert, ", ledger_index", ", 0"), ""},
			{`UPDATE ` + table.name + ` SET ledger_index = 1`, "42501"}, // no UPDATE grant
		} {
			if code := sqlState(execAsTenant(t, db, conn, acme.ID, tc.stmt)); code != tc.code {
				t.Errorf("%s: SQLSTATE %q, want %q", tc.stmt, code, tc.code)
			}
		}
	}
}
