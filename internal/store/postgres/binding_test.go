package postgres_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
	. "github.com/agentsigna/agentsigna/internal/store/postgres"
	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// Whoever holds the tenant role's credentials, but not the master key, is
// confined to no organization: setting app.tenant_id reads and writes
// nothing, and no MAC they can offer (none, another key's, an ended
// session's, one for an earlier name of theirs, garbage) binds their
// session.
func TestTenantBindingStopsTheRoleWithoutTheKey(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	ctx := context.Background()
	b := storetest.CreateTenant(t, s, "bravo")
	seedSecret(t, s, b)
	conn := pgtest.Connect(t, db.TenantURL)
	// A MAC that reached a server log names a session that has ended; no
	// session draws its name again.
	other, err := pgx.Connect(ctx, db.TenantURL)
	if err != nil {
		t.Fatal(err)
	}
	ended := sessionOf(t, other)
	other.Close(ctx)
	earlier := sessionOf(t, conn)
	session := sessionOf(t, conn)
	if parts := strings.Split(session, "/"); len(parts) != 2 || parts[1] != db.Name || session == earlier || session == ended {
		t.Fatalf("app_session() drew %q, %q, %q; want three names, number/%s", ended, earlier, session, db.Name)
	}
	wrongKey := make([]byte, BindingKeySize)
	if _, err := rand.Read(wrongKey); err != nil {
		t.Fatal(err)
	}

	// unbound checks that conn, with app.tenant_id set to bravo, reads
	// and writes none of bravo's rows: every statement on a tenant table
	// fails, as does registering an agent.
	unbound := func(t *testing.T) {
		t.Helper()
		for _, stmt := range []string{
			`SELECT count(*) FROM tenant_settings`,
			`SELECT count(*) FROM ledger_entries WHERE tenant_id = $1`,
			`UPDATE tenant_settings SET value = 'pwned'`,
			`INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, 'planted', 'x')`,
			`INSERT INTO ledger_entries (tenant_id, idx, entry, leaf_hash, record) VALUES ($1, 1, 'x', sha256('x'), 'x')`,
			`SELECT app_register_agent('` + store.NewID(store.PrefixAgent) + `')`,
		} {
			err := execAsTenant(t, nil, conn, b.ID, stmt)
			if sqlState(err) != "55000" || !errors.Is(MapErr(err), store.ErrUnavailable) {
				t.Errorf("%s: %v, want 55000 (no bound session), which the store calls unavailable", stmt, err)
			}
		}
	}
	unbound(t)
	for _, tc := range []struct{ name, mac string }{
		{"no MAC", ""},
		{"a MAC under another key", SessionMAC(wrongKey, session)},
		{"an ended session's MAC", SessionMAC(db.TenantKey, ended)},
		{"the MAC of this session's earlier name", SessionMAC(db.TenantKey, earlier)},
		{"the MAC in upper case", strings.ToUpper(SessionMAC(db.TenantKey, session))},
		{"garbage", "' OR true --"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bound bool
			if err := conn.QueryRow(ctx, `SELECT app_bind_session($1)`, tc.mac).Scan(&bound); err != nil || bound {
				t.Errorf("app_bind_session: %v, %v; want false", bound, err)
			}
			unbound(t)
		})
	}
	// Nor may the role mark its session bound itself, or name it.
	for _, stmt := range []string{
		`SELECT nextval('app_bound_sessions')`,
		`SELECT setval('app_bound_sessions', 1)`,
		`ALTER SEQUENCE app_bound_sessions RESTART`,
		`SELECT currval('app_session_names')`,
		`SELECT setval('app_session_names', 1)`,
		`SELECT nextval('app_session_names')`,
	} {
		if _, err := conn.Exec(ctx, stmt); sqlState(err) != "42501" {
			t.Errorf("%s: %v, want permission denied 42501", stmt, err)
		}
	}
	unbound(t)

	// A session that drew no name binds with no MAC: there is nothing to
	// make one over.
	fresh := pgtest.Connect(t, db.TenantURL)
	if _, err := fresh.Exec(ctx, `SELECT app_bind_session($1)`, SessionMAC(db.TenantKey, session)); sqlState(err) != "55000" ||
		errors.Is(MapErr(err), store.ErrUnavailable) {
		t.Errorf("binding a session that drew no name: %v, want 55000, and not called the store's unbound connection", err)
	}

	// The control: the session's own MAC binds it, and bravo's rows are
	// then there to read, so the refusals above are the binding's.
	var bound bool
	if err := conn.QueryRow(ctx, `SELECT app_bind_session($1)`, SessionMAC(db.TenantKey, session)).Scan(&bound); err != nil || !bound {
		t.Fatalf("the session's own MAC: %v, %v", bound, err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM tenant_settings) + (SELECT count(*) FROM ledger_entries)`).Scan(&n); err != nil || n < 2 {
		t.Fatalf("bound, the session sees %d of bravo's rows, %v", n, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Bound, it still registers agents only for an organization, and only
	// ids of the service's form.
	if _, err := conn.Exec(ctx, `SELECT app_register_agent('`+store.NewID(store.PrefixAgent)+`')`); sqlState(err) != "42501" {
		t.Errorf("registering an agent for no organization: %v, want 42501", err)
	}
	for _, id := range []string{"agt_x", "usr_" + strings.TrimPrefix(store.NewID(store.PrefixAgent), "agt_"), "agt_ZZZZZZZZZZZZZZZZZZZZZZZZZZ"} {
		if err := execAsTenant(t, nil, conn, b.ID, `SELECT app_register_agent('`+id+`')`); sqlState(err) != "23514" {
			t.Errorf("registering agent id %q: %v, want check violation 23514", id, err)
		}
	}
	// Discarding the session's sequence state unbinds it again.
	if _, err := conn.Exec(ctx, `DISCARD SEQUENCES`); err != nil {
		t.Fatal(err)
	}
	unbound(t)

	// The key itself is out of reach: no app role reads, writes or
	// replaces it, or calls the functions that read it but as granted.
	platform := pgtest.Connect(t, db.PlatformURL)
	pads := `decode(repeat('00', 64), 'hex'), decode(repeat('00', 64), 'hex')`
	for _, tc := range []struct {
		conn *pgx.Conn
		stmt string
	}{
		{conn, `SELECT * FROM app_tenant_binding`},
		{conn, `INSERT INTO app_tenant_binding (ipad, opad) VALUES (` + pads + `)`},
		{conn, `DELETE FROM app_tenant_binding`},
		{platform, `SELECT * FROM app_tenant_binding`},
		{platform, `INSERT INTO app_tenant_binding (ipad, opad) VALUES (` + pads + `)`},
		{platform, `DELETE FROM app_tenant_binding`},
		{platform, `SELECT app_bind_session('x')`},
		{platform, `SELECT app_tenant_binding_installed()`},
		{platform, `SELECT nextval('app_bound_sessions')`},
		{platform, `SELECT app_session()`},
	} {
		if _, err := tc.conn.Exec(ctx, tc.stmt); sqlState(err) != "42501" {
			t.Errorf("%s as %s: %v, want permission denied 42501", tc.stmt, tc.conn.Config().User, err)
		}
	}
}

// sessionOf draws a name for conn's session (app_session()).
func sessionOf(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), `SELECT app_session()`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// A store must be given the key, and the database's: another master key
// stops Open and Migrate; a connection that lost its binding (a pooler's
// doing) fails each tenant transaction clearly.
func TestTenantBindingKeyRefusals(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	for _, key := range [][]byte{nil, make([]byte, BindingKeySize-1), make([]byte, BindingKeySize+1)} {
		cfg := db.Config()
		cfg.TenantKey = key
		if _, err := Open(ctx, cfg); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "binding key") {
			t.Errorf("Open with a %d-byte key: %v, want ErrInvalid saying a binding key is required", len(key), err)
		}
		if err := Migrate(ctx, db.AdminURL, db.Roles, key); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "binding key") {
			t.Errorf("Migrate with a %d-byte key: %v, want ErrInvalid saying a binding key is required", len(key), err)
		}
	}
	wrong := make([]byte, BindingKeySize)
	if _, err := rand.Read(wrong); err != nil {
		t.Fatal(err)
	}
	cfg := db.Config()
	cfg.TenantKey = wrong
	if _, err := Open(ctx, cfg); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "master key is not the one") {
		t.Errorf("Open with another key: %v, want ErrInvalid naming the master key", err)
	}
	if err := Migrate(ctx, db.AdminURL, db.Roles, wrong); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "master key is not the one") {
		t.Errorf("Migrate with another key: %v, want ErrInvalid naming the master key", err)
	}
	// Migrating again with the key is a no-op, and the store works.
	if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatalf("Migrate again with the key: %v", err)
	}
	s := openTest(t, db, 1) // one connection: the one unbound below
	acme := storetest.CreateTenant(t, s, "acme")
	if err := s.InTenantTx(ctx, acme.ID, func(context.Context, store.TenantTx) error { return nil }); err != nil {
		t.Fatal(err)
	}

	// What a pooler that resets sessions between clients would do.
	if _, err := TenantPool(s).Exec(ctx, `DISCARD SEQUENCES`); err != nil {
		t.Fatal(err)
	}
	err := s.InTenantTx(ctx, acme.ID, func(context.Context, store.TenantTx) error {
		t.Error("ran in a transaction on a connection no longer bound")
		return nil
	})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "not bound") {
		t.Errorf("InTenantTx unbound: %v, want ErrUnavailable saying the connection is not bound", err)
	}
	// The store binds the connection again on its next use.
	if err := s.InTenantTx(ctx, acme.ID, func(context.Context, store.TenantTx) error { return nil }); err != nil {
		t.Errorf("InTenantTx after an unbound one: %v", err)
	}
	if _, err := TenantPool(s).Exec(ctx, `DISCARD SEQUENCES`); err != nil {
		t.Fatal(err)
	}
	q := store.DecisionInputsQuery{AgentID: store.NewID(store.PrefixAgent), Now: time.Now()}
	_, err = s.ReadDecisionInputs(ctx, acme.ID, q)
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "not bound") {
		t.Errorf("ReadDecisionInputs unbound: %v, want ErrUnavailable saying the connection is not bound", err)
	}
	if _, err := s.ReadDecisionInputs(ctx, acme.ID, q); err != nil {
		t.Errorf("ReadDecisionInputs after an unbound one: %v", err)
	}

	// A database whose key is gone (only a superuser past the
	// append-only trigger takes it) says to migrate, which installs the
	// key it is given.
	db.Tamper(t, `DELETE FROM app_tenant_binding`)
	if _, err := Open(ctx, db.Config()); !errors.Is(err, store.ErrSchema) || !strings.Contains(err.Error(), "run `agentsigna migrate` with the master key") {
		t.Errorf("Open with no key installed: %v, want ErrSchema saying to migrate", err)
	}
	if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatalf("Migrate with no key installed: %v", err)
	}
	again := openTest(t, db, 1)
	if err := again.InTenantTx(ctx, acme.ID, func(context.Context, store.TenantTx) error { return nil }); err != nil {
		t.Errorf("after Migrate installed the key again: %v", err)
	}
}

// A grant to an app role on the binding's objects would undo it: 0018
// revokes what the owner's default privileges gave, and Open and Migrate
// refuse a grant made after.
func TestTenantBindingRefusesGrantsOnItsObjects(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewEmpty(t)
	admin := pgtest.Connect(t, db.AdminURL)
	owner, tenant := Ident(db.Roles.Owner), Ident(db.Roles.Tenant)
	for _, stmt := range []string{
		`ALTER DEFAULT PRIVILEGES FOR ROLE ` + owner + ` IN SCHEMA public GRANT ALL ON SEQUENCES TO ` + tenant,
		`ALTER DEFAULT PRIVILEGES FOR ROLE ` + owner + ` IN SCHEMA public GRANT SELECT ON TABLES TO ` + tenant,
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatalf("Migrate under the owner's default privileges: %v", err)
	}
	s := openTest(t, db, 0)
	b := storetest.CreateTenant(t, s, "bravo")
	seedSecret(t, s, b)
	conn := pgtest.Connect(t, db.TenantURL)
	for _, stmt := range []string{`SELECT nextval('app_bound_sessions')`, `SELECT * FROM app_tenant_binding`} {
		if _, err := conn.Exec(ctx, stmt); sqlState(err) != "42501" {
			t.Errorf("%s, after default privileges: %v, want permission denied 42501", stmt, err)
		}
	}

	for _, grant := range []struct{ stmt, want string }{
		{`GRANT USAGE ON SEQUENCE app_bound_sessions TO ` + tenant, "app_bound_sessions"},
		{`GRANT SELECT ON app_tenant_binding TO ` + tenant, "app_tenant_binding"},
		{`GRANT UPDATE ON SEQUENCE app_session_names TO ` + Ident(db.Roles.Platform), "app_session_names"},
	} {
		t.Run(grant.want, func(t *testing.T) {
			if _, err := admin.Exec(ctx, grant.stmt); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if _, err := admin.Exec(ctx, strings.Replace(strings.Replace(grant.stmt, "GRANT", "REVOKE", 1), " TO ", " FROM ", 1)); err != nil {
					t.Fatal(err)
				}
			}()
			if _, err := Open(ctx, db.Config()); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), grant.want) {
				t.Errorf("Open after %s: %v, want ErrInvalid naming %s", grant.stmt, err, grant.want)
			}
			if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), grant.want) {
				t.Errorf("Migrate after %s: %v, want ErrInvalid naming %s", grant.stmt, err, grant.want)
			}
		})
	}
}

// What would put a MAC where the role reads it is refused or undone: the
// simple protocol (arguments in the statement text) and the role's own
// defaults that dump plans, with their parameters, to the server log.
func TestTenantBindingKeepsMACsOutOfSight(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	for _, plane := range []string{"tenant", "platform"} {
		cfg := db.Config()
		if plane == "tenant" {
			cfg.TenantURL += "?default_query_exec_mode=simple_protocol"
		} else {
			cfg.PlatformURL += "?default_query_exec_mode=simple_protocol"
		}
		if _, err := Open(ctx, cfg); !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "simple_protocol") {
			t.Errorf("Open with the %s plane on the simple protocol: %v, want ErrInvalid naming it", plane, err)
		}
	}

	// The role turns plan dumps on for itself (no other privilege needed).
	conn := pgtest.Connect(t, db.TenantURL)
	for _, stmt := range []string{`ALTER ROLE CURRENT_USER SET debug_print_plan = on`,
		`ALTER ROLE CURRENT_USER SET log_parameter_max_length_on_error = -1`} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	s := openTest(t, db, 1) // one connection: the one checked below
	acme := storetest.CreateTenant(t, s, "acme")
	if err := s.InTenantTx(ctx, acme.ID, func(context.Context, store.TenantTx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	var plan, onError string
	if err := TenantPool(s).QueryRow(ctx, `SELECT current_setting('debug_print_plan'), current_setting('log_parameter_max_length_on_error')`).
		Scan(&plan, &onError); err != nil {
		t.Fatal(err)
	}
	if plan != "off" || onError != "0" {
		t.Errorf("the store's session has debug_print_plan %s, log_parameter_max_length_on_error %s; want off, 0", plan, onError)
	}
	// The control: a session of the role's own has them on.
	other := pgtest.Connect(t, db.TenantURL)
	if err := other.QueryRow(ctx, `SELECT current_setting('debug_print_plan')`).Scan(&plan); err != nil || plan != "on" {
		t.Fatalf("a new session of the role: debug_print_plan %s, %v; the role's default did not take", plan, err)
	}
}
