// Package postgres is the shared-database store: one PostgreSQL database for
// every organization, isolated by the database itself. Every tenant table has
// tenant_id, ENABLE and FORCE ROW LEVEL SECURITY and a policy on
// current_setting('app.tenant_id') that holds only in a session the service
// bound (binding.go: a MAC under a key derived from the master key, which
// no app role can read); each tenant transaction sets it with
// set_config(…, true), which lasts only until the transaction ends, so a
// pooled connection never carries one tenant into the next borrower.
//
// The process connects as two roles that own nothing, belong to no role and
// cannot bypass row security: a tenant role (no grant on platform tables)
// and a platform role (no grant on tenant tables). Open refuses a superuser,
// a BYPASSRLS, CREATEROLE or REPLICATION role, a member of any role (the
// owner role, the other plane's, pg_database_owner, pg_read_all_data…), an
// owner of anything in the database, a role that may CREATE in a schema, a
// role set on connect over another login, or one role for both planes. Schema changes happen only in Migrate, as a separate owner role.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/migrations"
)

// Config names the two app roles' connection strings.
type Config struct {
	// TenantURL connects as the tenant role (--database-url).
	TenantURL string
	// PlatformURL connects as the platform role (--platform-database-url).
	PlatformURL string
	// TenantKey binds the tenant plane's connections, without which row
	// security confines them to no organization (binding.go):
	// BindingKeySize bytes, derived from the master key under
	// BindingKeyPurpose. Required; Open keeps its own copy.
	TenantKey []byte
	// MaxConns per pool; 0 keeps pgx's default.
	MaxConns int32
	Logger   *slog.Logger
}

// Store is the PostgreSQL backend. It implements store.Backend.
type Store struct {
	tenant   *pgxpool.Pool
	platform *pgxpool.Pool
	key      []byte // Config.TenantKey
	log      *slog.Logger
	// tenantRefs remembers ResolveTenantID's answers; a platform
	// transaction that changed a tenant's status invalidates it.
	tenantRefs *store.TenantRefs
	// closed: Close was called; the remembered answers are not given out.
	closed atomic.Bool
}

var _ store.Backend = (*Store)(nil)

// Open connects both pools and checks, before serving anything, that the
// roles are safe to run as and the schema is this binary's.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.TenantURL == "" || cfg.PlatformURL == "" {
		return nil, fmt.Errorf("%w: postgres: both the tenant and the platform database URL are required", store.ErrInvalid)
	}
	if err := checkBindingKey(cfg.TenantKey); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tenant, err := newPool(ctx, cfg.TenantURL, cfg.MaxConns)
	if err != nil {
		return nil, fmt.Errorf("postgres: tenant pool: %w", err)
	}
	platform, err := newPool(ctx, cfg.PlatformURL, cfg.MaxConns)
	if err != nil {
		tenant.Close()
		return nil, fmt.Errorf("postgres: platform pool: %w", err)
	}
	s := &Store{tenant: tenant, platform: platform, key: slices.Clone(cfg.TenantKey), log: cfg.Logger,
		tenantRefs: store.NewTenantRefs(store.TenantRefLifetime, nil)}
	// The schema first: a database an older binary migrated says "run
	// migrate", which also settles what older migrations left to the roles
	// (TEMPORARY, for one); then the roles, which must pass either way.
	if err := checkSchema(ctx, tenant); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.checkRoles(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.checkBinding(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func newPool(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors can quote the URL, password included.
		return nil, fmt.Errorf("%w: invalid database URL", store.ErrInvalid)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	if cfg.ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeSimpleProtocol {
		// The simple protocol writes arguments into the statement text,
		// which every session of the role reads in pg_stat_activity: the
		// MAC that binds a connection among them.
		return nil, fmt.Errorf("%w: default_query_exec_mode=simple_protocol: the store sends its tenant binding as bound parameters", store.ErrInvalid)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, mapErr(err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, mapErr(err)
	}
	return pool, nil
}

// checkRoles refuses to serve as a role that would make row security or
// the split between the planes decorative: a connection whose current
// role is not the role it logged in as (a superuser URL with
// options=-c role=…, where RESET ROLE gives the superuser back), a role
// appRoleProblems finds unsafe, or the same role on both planes.
func (s *Store) checkRoles(ctx context.Context) error {
	var names [2]string
	for i, plane := range []struct {
		name string
		pool *pgxpool.Pool
	}{{"tenant", s.tenant}, {"platform", s.platform}} {
		var session, current string
		var sessionPrivileged bool
		err := plane.pool.QueryRow(ctx, `SELECT session_user, current_user,
			(SELECT r.rolsuper OR r.rolbypassrls FROM pg_roles r WHERE r.rolname = session_user)`).
			Scan(&session, &current, &sessionPrivileged)
		if err != nil {
			return mapErr(err)
		}
		// When they are one role, appRoleProblems below judges it.
		if session != current {
			login := "role"
			if sessionPrivileged {
				login = "superuser or BYPASSRLS role"
			}
			return fmt.Errorf("%w: postgres: the %s plane logs in as %s %q but acts as %q (a role set on connect, "+
				"which RESET ROLE undoes); log in as the app role itself", store.ErrInvalid, plane.name, login, session, current)
		}
		problems, err := appRoleProblems(ctx, plane.pool, current)
		if err != nil {
			return err
		}
		if len(problems) > 0 {
			return fmt.Errorf("%w: postgres: the %s plane's role %q %s; connect as the app roles created by `agentsigna migrate`",
				store.ErrInvalid, plane.name, current, strings.Join(problems, "; "))
		}
		names[i] = current
	}
	if names[0] == names[1] {
		return fmt.Errorf("%w: postgres: the tenant and platform planes must use different roles (both are %q)", store.ErrInvalid, names[0])
	}
	return nil
}

// appRoleProblemsSQL reads what appRoleProblems judges, for role $1 in the
// current database. Membership is pg_has_role's: direct, through other
// roles, and pg_database_owner's for the database's owner. Ownership is
// pg_shdepend's, which records every object a role owns (tables, schemas,
// functions, types, the database itself), bar temporary tables another
// session of the role may hold, and large objects: any role may create
// one (lo_create is PUBLIC's), and owning one gives no way past row
// security, so counting them let whoever holds an app role stop every
// later start and migration with one call. The tenant binding's objects
// (migration 0018; NULL, so not held, before it) are judged by the
// privileges that would undo it: any on the key's table (read the key, or
// plant one), USAGE or UPDATE on app_bound_sessions (mark a session bound),
// any on app_session_names (draw or set a name).
const appRoleProblemsSQL = `SELECT r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolreplication,
	ARRAY(SELECT m.rolname::text FROM pg_roles m
		WHERE m.oid <> r.oid AND pg_has_role(r.oid, m.oid, 'MEMBER') ORDER BY 1),
	ARRAY(SELECT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_shdepend d
		WHERE d.refclassid = 'pg_authid'::regclass AND d.refobjid = r.oid AND d.deptype = 'o'
		AND (d.dbid = db.oid OR d.classid = 'pg_database'::regclass AND d.objid = db.oid)
		AND NOT EXISTS (SELECT 1 FROM pg_class c
			WHERE d.classid = 'pg_class'::regclass AND c.oid = d.objid AND c.relpersistence = 't')
		AND d.classid <> 'pg_largeobject'::regclass
		ORDER BY 1),
	ARRAY(SELECT n.nspname::text FROM pg_namespace n WHERE has_schema_privilege(r.oid, n.oid, 'CREATE') ORDER BY 1),
	has_database_privilege(r.oid, db.oid, 'TEMPORARY'), has_database_privilege(r.oid, db.oid, 'CREATE'),
	ARRAY(SELECT o.name FROM (VALUES
		('app_tenant_binding', has_table_privilege(r.oid, to_regclass('public.app_tenant_binding'),
			'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')),
		('app_bound_sessions', has_sequence_privilege(r.oid, to_regclass('public.app_bound_sessions'), 'USAGE, UPDATE')),
		('app_session_names', has_sequence_privilege(r.oid, to_regclass('public.app_session_names'), 'SELECT, USAGE, UPDATE'))
	) AS o (name, held) WHERE o.held)
	FROM pg_roles r, pg_database db
	WHERE r.rolname = $1 AND db.datname = current_database()`

// appRoleProblems says what would let app role name get around row
// security, the append-only triggers or the split between the planes;
// nothing for the roles Migrate creates, which have no attributes, belong
// to no role, own nothing and create nothing. Open checks the role each
// plane acts as; Migrate checks the app roles it is given.
//
// A member of any role is refused, not only of the dangerous ones: a
// member may SET ROLE to it, and every role worth joining is one — the
// owner role or pg_database_owner (drop or alter the tables), the other
// plane's role, pg_read_all_data / pg_write_all_data (past row security).
// CREATEROLE lets a role grant itself the owner role; REPLICATION lets it
// read every organization's changes from the WAL; CREATE on a schema lets
// it plant a function or table the other plane's queries would resolve to;
// TEMPORARY lets it plant a temporary table that the next organization's
// queries on the same pooled connection would resolve to (pg_temp is
// searched first), entries and checkpoints included; CREATE on the
// database lets it create a schema named after the other plane's role,
// which comes first on that role's search_path ("$user", public). A
// privilege on the tenant binding's objects lets it bind a session without
// the master key; a default privilege of the owner's, or GRANT … ON ALL
// …, gives one without a word.
func appRoleProblems(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string) ([]string, error) {
	var super, bypass, createRole, replication, temporary, createSchemas bool
	var memberOf, owns, createIn, binding []string
	err := q.QueryRow(ctx, appRoleProblemsSQL, name).
		Scan(&super, &bypass, &createRole, &replication, &memberOf, &owns, &createIn, &temporary, &createSchemas, &binding)
	if err != nil {
		return nil, mapErr(err)
	}
	if super {
		// A superuser is a member of every role and may do anything.
		return []string{"is a superuser"}, nil
	}
	var problems []string
	if bypass {
		problems = append(problems, "bypasses row security (BYPASSRLS)")
	}
	if createRole {
		problems = append(problems, "has CREATEROLE, so it may grant itself the owner role")
	}
	if replication {
		problems = append(problems, "has REPLICATION, so it may read every change from the WAL")
	}
	if len(memberOf) > 0 {
		them := "them"
		if len(memberOf) == 1 {
			them = "it"
		}
		p := "is a member of " + listed("role", memberOf) + ", so it may act as " + them
		if slices.Contains(memberOf, "pg_database_owner") {
			p += " (pg_database_owner: it owns the database or belongs to its owner)"
		}
		problems = append(problems, p)
	}
	if len(owns) > 0 {
		problems = append(problems, "owns "+listed("", owns))
	}
	if len(createIn) > 0 {
		problems = append(problems, "may create objects in "+listed("schema", createIn))
	}
	if temporary {
		problems = append(problems, "may create temporary tables (TEMPORARY on the database), which would shadow the service's own on a pooled connection")
	}
	if createSchemas {
		problems = append(problems, "may create schemas (CREATE on the database): one named after the other plane's role comes first on that role's search_path, and its tables would shadow the service's own")
	}
	if len(binding) > 0 {
		problems = append(problems, "holds privileges on the tenant binding's "+listed("", binding)+
			", with which it may bind a session without the master key")
	}
	return problems, nil
}

// listed names at most a few of things, each after kind, quoted when kind
// is set (pg_describe_object's descriptions carry their own).
func listed(kind string, things []string) string {
	const most = 4
	var b strings.Builder
	for i, t := range things[:min(len(things), most)] {
		if i > 0 {
			b.WriteString(", ")
		}
		if kind != "" {
			fmt.Fprintf(&b, "%s %q", kind, t)
		} else {
			b.WriteString(t)
		}
	}
	if len(things) > most {
		fmt.Fprintf(&b, " and %d more", len(things)-most)
	}
	return b.String()
}

// checkSchema fails with ErrSchema unless the database is at this binary's
// latest migration.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	want, err := migrations.Latest(migrations.Postgres)
	if err != nil {
		return err
	}
	var have int
	err = pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&have)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("%w: the database has no schema; run `agentsigna migrate`", store.ErrSchema)
	}
	if err != nil {
		return mapErr(err)
	}
	if have != want {
		return fmt.Errorf("%w: database at version %d, this binary needs %d; run `agentsigna migrate`", store.ErrSchema, have, want)
	}
	return checkApplied(ctx, pool)
}

// Ping checks both pools.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.tenant.Ping(ctx); err != nil {
		return mapErr(err)
	}
	return mapErr(s.platform.Ping(ctx))
}

// Close closes both pools, waiting for connections in use.
func (s *Store) Close() error {
	s.closed.Store(true)
	s.tenant.Close()
	s.platform.Close()
	return nil
}

// writeTx is every read-write transaction's: READ COMMITTED, said rather
// than left to the server's or role's default_transaction_isolation. The
// writes rely on it: a batch that takes the log's lock then reads the
// newest checkpoint must see what the batch before it committed, and a
// signing key's creator that lost to another transaction must see the
// winner's key when it reads again. Under REPEATABLE READ or SERIALIZABLE
// (some PostgreSQL-compatible databases' default) both would read a
// snapshot from before.
//
// It says READ WRITE too: a role may set its own defaults (ALTER ROLE
// … SET default_transaction_read_only = on needs no other privilege), and
// one that did would otherwise refuse every write of the service.
var writeTx = pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadWrite}

// InTenantTx runs fn with app.tenant_id set for this transaction only, on
// a bound connection (binding.go). The same round trip checks that the
// organization exists, through the directory function (the tenant role has
// no grant on tenants).
func (s *Store) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	return s.inTenantTx(ctx, tenantID, writeTx, fn)
}

// InTenantReadTx is InTenantTx in a READ ONLY transaction, which under
// MVCC neither waits for nor holds up the organization's writers. It is
// REPEATABLE READ: every statement sees the one snapshot taken by the
// first, as store.TenantStore promises (READ COMMITTED took one per
// statement, and a ledger check that read the checkpoints and then the
// entries saw entries a batch had committed in between). A read-only
// transaction never fails to serialize.
func (s *Store) InTenantReadTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	return s.inTenantTx(ctx, tenantID, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// setTenantSQL confines the rest of the transaction to organization $1 and
// says whether it exists; on a connection that lost its binding, it fails
// (currval, as the policies would).
const setTenantSQL = `SELECT set_config('app.tenant_id', $1::text, true) IS NOT NULL
	AND currval('app_bound_sessions') > 0
	AND EXISTS (SELECT 1 FROM app_tenant_directory(NULL, $1::uuid))`

func (s *Store) inTenantTx(ctx context.Context, tenantID string, opts pgx.TxOptions, fn func(context.Context, store.TenantTx) error) (err error) {
	if err := store.CheckTenantID(tenantID); err != nil {
		return err
	}
	conn, err := s.tenant.Acquire(ctx)
	if err != nil {
		return mapErr(err)
	}
	defer conn.Release()
	if err := s.bindConn(ctx, conn.Conn()); err != nil {
		return err
	}
	defer func() { forgetBinding(conn.Conn(), err) }()
	return inTx(ctx, conn, opts, func(tx pgx.Tx) error {
		var found bool
		err := tx.QueryRow(ctx, setTenantSQL, tenantID).Scan(&found)
		if err != nil {
			return mapErr(err)
		}
		if !found {
			return fmt.Errorf("%w: tenant", store.ErrNotFound)
		}
		return fn(ctx, &tenantTx{tx: tx, tenantID: tenantID})
	})
}

// InPlatformTx runs fn as the platform role.
func (s *Store) InPlatformTx(ctx context.Context, fn func(context.Context, store.PlatformTx) error) error {
	p := &platformTx{}
	defer func() {
		// Even a failed commit may have changed the directory.
		if p.tenantsChanged {
			s.tenantRefs.Invalidate()
		}
	}()
	return inTx(ctx, s.platform, writeTx, func(tx pgx.Tx) error {
		p.tx = tx
		return fn(ctx, p)
	})
}

// InPlatformReadTx is InPlatformTx in a REPEATABLE READ, READ ONLY
// transaction, as InTenantReadTx is InTenantTx's.
func (s *Store) InPlatformReadTx(ctx context.Context, fn func(context.Context, store.PlatformTx) error) error {
	return inTx(ctx, s.platform, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return fn(ctx, &platformTx{tx: tx})
	})
}

// ResolveTenant reads one organization's directory entry as the tenant role.
func (s *Store) ResolveTenant(ctx context.Context, slug string) (store.TenantRef, error) {
	if err := store.CheckSlug(slug); err != nil {
		return store.TenantRef{}, err
	}
	var ref store.TenantRef
	var status string
	err := s.tenant.QueryRow(ctx, `SELECT id::text, slug, status FROM app_tenant_directory($1, NULL)`, slug).
		Scan(&ref.ID, &ref.Slug, &status)
	if err != nil {
		return store.TenantRef{}, mapErr(err)
	}
	ref.Status = store.TenantStatus(status)
	return ref, nil
}

// ResolveTenantID is ResolveTenant by id, through the same function,
// remembered for up to store.TenantRefLifetime (see store.TenantRefs).
func (s *Store) ResolveTenantID(ctx context.Context, id string) (store.TenantRef, error) {
	if err := store.CheckTenantID(id); err != nil {
		return store.TenantRef{}, err
	}
	if s.closed.Load() {
		return store.TenantRef{}, fmt.Errorf("%w: postgres: the store is closed", store.ErrUnavailable)
	}
	return s.tenantRefs.Resolve(ctx, id, s.readTenantID)
}

func (s *Store) readTenantID(ctx context.Context, id string) (store.TenantRef, error) {
	var ref store.TenantRef
	var status string
	err := s.tenant.QueryRow(ctx, `SELECT id::text, slug, status FROM app_tenant_directory(NULL, $1::uuid)`, id).
		Scan(&ref.ID, &ref.Slug, &status)
	if err != nil {
		return store.TenantRef{}, mapErr(err)
	}
	ref.Status = store.TenantStatus(status)
	return ref, nil
}

// ResolveAgent reads the agent directory through app_agent_tenant, as the
// tenant role.
func (s *Store) ResolveAgent(ctx context.Context, agentID string) (store.TenantRef, error) {
	if err := store.CheckID(store.PrefixAgent, agentID); err != nil {
		return store.TenantRef{}, err
	}
	var ref store.TenantRef
	var status string
	err := s.tenant.QueryRow(ctx, `SELECT id::text, slug, status FROM app_agent_tenant($1)`, agentID).Scan(&ref.ID, &ref.Slug, &status)
	if err != nil {
		return store.TenantRef{}, mapErr(err)
	}
	ref.Status = store.TenantStatus(status)
	return ref, nil
}

// inTx commits when fn returns nil and rolls back otherwise (also on panic).
// on is a pool, or a connection acquired from one.
func inTx(ctx context.Context, on interface {
	BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
}, opts pgx.TxOptions, fn func(pgx.Tx) error) (err error) {
	tx, err := on.BeginTx(ctx, opts)
	if err != nil {
		return mapErr(err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	return mapErr(tx.Commit(ctx))
}

// mapErr turns driver errors into store sentinels, keeping the original in
// the chain for logs only.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	// Before the server's error codes: a connection the server refused
	// (too many connections, shutting down) is a ConnectError around one.
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if outage(pgErr.Code) {
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		switch pgErr.Code {
		case "40001", "40P01", "55P03", "57014":
			// serialization_failure, deadlock_detected, lock_not_available,
			// query_canceled (a statement timeout; a cancelled context is
			// returned above): contention, which a retry may not meet,
			// and the transaction is gone — as SQLite's BUSY.
			return fmt.Errorf("%w: %w: %w", store.ErrUnavailable, store.ErrTxAborted, err)
		case "25P02": // in_failed_sql_transaction: an earlier statement failed it
			return fmt.Errorf("%w: %w", store.ErrTxAborted, err)
		case "AS001": // raised by app_refuse_mutation
			return fmt.Errorf("%w: %w", store.ErrAppendOnly, err)
		case "23505": // unique_violation
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		case "23514", "22P02", "22001": // check_violation, invalid_text_representation, string_data_right_truncation
			return fmt.Errorf("%w: %w", store.ErrInvalid, err)
		case "23503": // foreign_key_violation: the tenant does not exist
			return fmt.Errorf("%w: %w", store.ErrNotFound, err)
		case "25006": // read_only_sql_transaction
			return fmt.Errorf("%w: %w", store.ErrReadOnly, err)
		case "55000": // object_not_in_prerequisite_state
			if notBound(pgErr) {
				return fmt.Errorf("%w: %w: %w", store.ErrUnavailable, errNotBound, err)
			}
		}
		return err
	}
	if errors.Is(err, pgx.ErrTxCommitRollback) {
		// COMMIT answered ROLLBACK: a statement had failed the transaction
		// and its error was not heeded, as with 25P02.
		return fmt.Errorf("%w: %w", store.ErrTxAborted, err)
	}
	if pgconn.SafeToRetry(err) || errors.Is(err, pgx.ErrTxClosed) || isConnErr(err) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// outage reports whether a server error code says the database, not the
// request, is at fault: connection exceptions (class 08, but for a
// protocol violation, which is this code's), insufficient resources (53:
// too many connections, a full disk) and the server shutting down or
// restarting (57P01-57P03).
func outage(code string) bool {
	return strings.HasPrefix(code, "08") && code != "08P01" || strings.HasPrefix(code, "53") ||
		code == "57P01" || code == "57P02" || code == "57P03"
}

// isConnErr reports the client-side outages mapErr meets after the
// server's codes (a ConnectError is taken before them).
func isConnErr(err error) bool {
	// puddle's ErrClosedPool is not re-exported by pgxpool.
	return pgconn.Timeout(err) || strings.Contains(err.Error(), "closed pool")
}
