package postgres_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
	. "github.com/agentsigna/agentsigna/internal/store/postgres"
	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// Whoever holds the tenant role's credentials, but not the master key,
// is confined to no organization: setting app.tenant_id, with no MAC, a
// MAC under another key, another connection's MAC or another
// organization's, reads none of its rows and writes none.
func TestTenantBindingStopsTheRoleWithoutTheKey(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	ctx := context.Background()
	a := storetest.CreateTenant(t, s, "alpha")
	b := storetest.CreateTenant(t, s, "bravo")
	for _, tn := range []store.Tenant{a, b} {
		err := s.InTenantTx(ctx, tn.ID, func(ctx context.Context, tx store.TenantTx) error {
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
	conn := pgtest.Connect(t, db.TenantURL)
	other := pgtest.Connect(t, db.TenantURL)
	session, otherSession := sessionOf(t, conn), sessionOf(t, other)
	// The same pid, begun at another moment: a later backend that was
	// given a pid the MAC's backend had.
	parts := strings.Split(session, "/")
	if len(parts) != 3 || parts[0] != strconv.FormatUint(uint64(conn.PgConn().PID()), 10) || parts[2] != db.Name {
		t.Fatalf("app_session() = %q, want pid/start/database", session)
	}
	if µs, err := strconv.ParseInt(parts[1], 10, 64); err != nil || time.Since(time.UnixMicro(µs)).Abs() > time.Minute {
		t.Fatalf("app_session() = %q: its start is not this backend's, a moment ago", session)
	}
	reborn := parts[0] + "/1" + parts[1] + "/" + parts[2]
	wrongKey := make([]byte, BindingKeySize)
	if _, err := rand.Read(wrongKey); err != nil {
		t.Fatal(err)
	}

	// as runs fn in a rolled-back transaction of conn with app.tenant_id
	// set to bravo and app.tenant_mac to mac.
	as := func(t *testing.T, mac string, fn func(tx pgx.Tx)) {
		t.Helper()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true), set_config('app.tenant_mac', $2, true)`, b.ID, mac); err != nil {
			t.Fatal(err)
		}
		fn(tx)
	}
	bravoRows := func(tx pgx.Tx) int {
		var n int
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM tenant_settings) + (SELECT count(*) FROM ledger_entries)
			+ (SELECT count(*) FROM ledger_checkpoints)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// The control: bravo's own MAC for this connection opens bravo's rows,
	// so the refusals below are the binding's.
	as(t, TenantMAC(db.TenantKey, b.ID, session), func(tx pgx.Tx) {
		if n := bravoRows(tx); n < 3 {
			t.Fatalf("bound to bravo, the connection sees %d of its rows", n)
		}
	})
	for _, tc := range []struct{ name, mac string }{
		{"no MAC", ""},
		{"a MAC under another key", TenantMAC(wrongKey, b.ID, session)},
		{"another connection's MAC", TenantMAC(db.TenantKey, b.ID, otherSession)},
		{"the MAC of an earlier backend with this pid", TenantMAC(db.TenantKey, b.ID, reborn)},
		{"alpha's MAC", TenantMAC(db.TenantKey, a.ID, session)},
		{"the MAC in upper case", strings.ToUpper(TenantMAC(db.TenantKey, b.ID, session))},
		{"garbage", "' OR true --"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as(t, tc.mac, func(tx pgx.Tx) {
				var tenant *string
				if err := tx.QueryRow(ctx, `SELECT app_tenant(app_session())::text`).Scan(&tenant); err != nil || tenant != nil {
					t.Errorf("app_tenant() = %v, %v; want NULL", tenant, err)
				}
				if n := bravoRows(tx); n != 0 {
					t.Errorf("sees %d of bravo's rows", n)
				}
				tag, err := tx.Exec(ctx, `UPDATE tenant_settings SET value = 'pwned'`)
				if err != nil || tag.RowsAffected() != 0 {
					t.Errorf("update: %d rows, %v", tag.RowsAffected(), err)
				}
			})
			for _, stmt := range []string{
				`INSERT INTO tenant_settings (tenant_id, key, value) VALUES ('` + b.ID + `', 'planted', 'x')`,
				`INSERT INTO ledger_entries (tenant_id, idx, entry, leaf_hash, record)
					VALUES ('` + b.ID + `', 1, 'x', sha256('x'), 'x')`,
				`SELECT app_register_agent('` + store.NewID(store.PrefixAgent) + `', app_session())`,
				// The other connection's session, with a MAC made for it.
				`SELECT app_register_agent('` + store.NewID(store.PrefixAgent) + `', '` + otherSession + `')`,
			} {
				as(t, tc.mac, func(tx pgx.Tx) {
					if _, err := tx.Exec(ctx, stmt); sqlState(err) != "42501" {
						t.Errorf("%s: %v, want row-security or permission refusal 42501", strings.Fields(stmt)[0]+" "+strings.Fields(stmt)[1], err)
					}
				})
			}
		})
	}

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
		{platform, `SELECT app_tenant('x')`},
		{platform, `SELECT app_tenant_binding_installed()`},
	} {
		if _, err := tc.conn.Exec(ctx, tc.stmt); sqlState(err) != "42501" {
			t.Errorf("%s as %s: %v, want permission denied 42501", tc.stmt, tc.conn.Config().User, err)
		}
	}
}

// sessionOf is conn's app_session().
func sessionOf(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), `SELECT app_session()`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// The role sees the text of the service's statements (pg_stat_activity
// shows a role its own sessions'), never a MAC: it is a bound parameter.
func TestTenantBindingMACIsNotInStatementText(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 1)
	ctx := context.Background()
	b := storetest.CreateTenant(t, s, "bravo")
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.InTenantTx(ctx, b.ID, func(ctx context.Context, tx store.TenantTx) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	conn := pgtest.Connect(t, db.TenantURL)
	// A session's name is no secret: the role reads every one of its own.
	rows, err := conn.Query(ctx, `SELECT pid::text || '/' || (extract(epoch FROM backend_start) * 1000000)::bigint::text || '/' || datname,
		coalesce(query, '') FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()`)
	if err != nil {
		t.Fatal(err)
	}
	type activity struct {
		Session string
		Query   string
	}
	seen, err := pgx.CollectRows(rows, pgx.RowToStructByPos[activity])
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sawBinding := false
	for _, a := range seen {
		sawBinding = sawBinding || strings.Contains(a.Query, "app.tenant_mac")
		if mac := TenantMAC(db.TenantKey, b.ID, a.Session); strings.Contains(a.Query, mac) {
			t.Errorf("pg_stat_activity shows the MAC of backend %s: %s", a.Session, a.Query)
		}
	}
	// The control: the store's statement was there to read.
	if !sawBinding {
		t.Fatalf("the tenant role saw no statement of the store's: %+v", seen)
	}
}

// A store must be given the key, and the database's: another master key
// stops Open and Migrate; a binding the database does not take (a pooler's
// doing, or a key changed under a running store) fails each tenant
// transaction clearly, where it would otherwise read nothing.
func TestTenantBindingKeyRefusals(t *testing.T) {
	db := pgtest.New(t)
	s := openTest(t, db, 0)
	ctx := context.Background()
	acme := storetest.CreateTenant(t, s, "acme")

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
	// Migrating again with the key is a no-op, and the store still works.
	if err := Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatalf("Migrate again with the key: %v", err)
	}

	SetTenantKey(s, wrong)
	err := s.InTenantTx(ctx, acme.ID, func(context.Context, store.TenantTx) error {
		t.Error("ran in a transaction the database did not bind")
		return nil
	})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "tenant binding") {
		t.Errorf("InTenantTx unbound: %v, want ErrUnavailable naming the binding", err)
	}
	_, err = s.ReadDecisionInputs(ctx, acme.ID, store.DecisionInputsQuery{AgentID: store.NewID(store.PrefixAgent), Now: time.Now()})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "tenant binding") {
		t.Errorf("ReadDecisionInputs unbound: %v, want ErrUnavailable naming the binding", err)
	}
	// An organization that does not exist is still not found, bound or not.
	err = s.InTenantTx(ctx, "8a2b6f64-7c0e-4a53-9d55-2f1c9a0b7e41", func(context.Context, store.TenantTx) error { return nil })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown organization: %v, want ErrNotFound", err)
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
