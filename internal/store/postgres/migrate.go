package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/migrations"
)

// Roles names the three roles of a deployment.
type Roles struct {
	Owner    string // NOLOGIN; owns the schema; used only by Migrate
	Tenant   string // LOGIN; the tenant plane (--database-url)
	Platform string // LOGIN; the platform plane (--platform-database-url)
}

// DefaultRoles derives the three role names from a prefix ("agentsigna" →
// agentsigna_owner, agentsigna_tenant, agentsigna_platform).
func DefaultRoles(prefix string) Roles {
	return Roles{Owner: prefix + "_owner", Tenant: prefix + "_tenant", Platform: prefix + "_platform"}
}

var roleName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (r Roles) validate() error {
	for _, n := range []string{r.Owner, r.Tenant, r.Platform} {
		if !roleName.MatchString(n) {
			return fmt.Errorf("%w: role name %q: use lower-case letters, digits and _", store.ErrInvalid, n)
		}
	}
	if r.Owner == r.Tenant || r.Owner == r.Platform || r.Tenant == r.Platform {
		return fmt.Errorf("%w: the owner, tenant and platform roles must differ", store.ErrInvalid)
	}
	return nil
}

// migrationLock is the advisory lock key that serialises concurrent
// migrators ("AGSIGNA" in ASCII).
const migrationLock = 0x4147_5349_474e_41

// Migrate creates the roles if missing and applies pending migrations as the
// owner role, then binds the organizations' rows to tenantKey (binding.go;
// BindingKeySize bytes derived from the master key under
// BindingKeyPurpose): it installs the key on a database that has none, and
// refuses a key other than the one installed. adminURL must connect as a
// superuser, or as a role with CREATEROLE that is a member of the owner
// role (which Open refuses as an app role). Existing app roles that Open would refuse are refused here
// too, before any migration. Safe to run concurrently and repeatedly. The
// app roles are created LOGIN without a password: set one (ALTER ROLE …
// PASSWORD) where the server is not on trusted local auth.
func Migrate(ctx context.Context, adminURL string, roles Roles, tenantKey []byte) error {
	return migrateTo(ctx, adminURL, roles, tenantKey, 0)
}

// migrateTo is Migrate up to version upTo (0: all of them); tests build
// databases of an earlier version with it, to upgrade them.
func migrateTo(ctx context.Context, adminURL string, roles Roles, tenantKey []byte, upTo int) error {
	if err := roles.validate(); err != nil {
		return err
	}
	if err := checkBindingKey(tenantKey); err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return fmt.Errorf("%w: invalid admin database URL", store.ErrInvalid)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres migrate: connect: %w", mapErr(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))

	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("postgres migrate: lock: %w", mapErr(err))
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLock)) //nolint:errcheck // released on close anyway

	if err := ensureRoles(ctx, conn, roles); err != nil {
		return err
	}
	list, err := migrations.List(migrations.Postgres)
	if err != nil {
		return err
	}
	target := list
	if upTo > 0 && upTo < len(list) {
		target = list[:upTo]
	}
	owner := ident(roles.Owner)
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// The binding's key goes to the database in this transaction, as
		// bound parameters: where the admin may, it keeps the server from
		// logging them whatever logging is on.
		if _, err := tx.Exec(ctx, `SELECT set_config(name, value, true) FROM (VALUES ('log_statement', 'none'),
			('log_min_duration_statement', '-1'), ('log_min_duration_sample', '-1'), ('log_parameter_max_length', '0'),
			('log_parameter_max_length_on_error', '0'), ('debug_print_plan', 'off')) AS s (name, value)
			WHERE current_setting('is_superuser') = 'on'`); err != nil {
			return fmt.Errorf("postgres migrate: quiet the log: %w", mapErr(err))
		}
		// Everything below is created by, and owned by, the owner role.
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+owner); err != nil {
			return fmt.Errorf("postgres migrate: become owner role: %w", mapErr(err))
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now(),
			sha256     text NOT NULL)`); err != nil {
			return fmt.Errorf("postgres migrate: migrations table: %w", mapErr(err))
		}
		// A table from before digests were recorded gains the column if
		// empty; with versions applied, checkApplied refuses it.
		var hasDigest, applied bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = 'schema_migrations' AND column_name = 'sha256'),
			EXISTS (SELECT 1 FROM schema_migrations)`).Scan(&hasDigest, &applied); err != nil {
			return mapErr(err)
		}
		if !hasDigest && !applied {
			if _, err := tx.Exec(ctx, `ALTER TABLE schema_migrations ADD COLUMN sha256 text NOT NULL DEFAULT ''`); err != nil {
				return mapErr(err)
			}
		}
		if err := checkApplied(ctx, tx); err != nil {
			return err
		}
		// Both app roles read the version to refuse a stale schema.
		if _, err := tx.Exec(ctx, `GRANT SELECT ON schema_migrations TO `+ident(roles.Tenant)+`, `+ident(roles.Platform)); err != nil {
			return mapErr(err)
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
			return mapErr(err)
		}
		if have > len(list) {
			return fmt.Errorf("%w: database at version %d is newer than this binary (%d)", store.ErrSchema, have, len(list))
		}
		for _, m := range target[min(have, len(target)):] {
			sql := strings.NewReplacer(
				"{{owner_role}}", owner,
				"{{tenant_role}}", ident(roles.Tenant),
				"{{platform_role}}", ident(roles.Platform),
			).Replace(m.SQL)
			if _, err := tx.Exec(ctx, sql); err != nil {
				return fmt.Errorf("postgres migrate: %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)`, m.Version, m.Name, m.SHA256); err != nil {
				return mapErr(err)
			}
		}
		if err := installBinding(ctx, tx, tenantKey); err != nil {
			return fmt.Errorf("postgres migrate: tenant binding: %w", err)
		}
		return nil
	})
}

// ensureRoles creates missing roles with the least attributes and refuses
// existing ones that could bypass row security: an owner role that is a
// superuser or BYPASSRLS, and app roles appRoleProblems finds unsafe (a
// member of any role, an owner of anything here — the database included —
// and the rest). It grants no role membership: the app roles belong to
// none.
func ensureRoles(ctx context.Context, conn *pgx.Conn, roles Roles) error {
	for _, r := range []struct {
		name  string
		login bool
	}{{roles.Owner, false}, {roles.Tenant, true}, {roles.Platform, true}} {
		var super, bypass bool
		err := conn.QueryRow(ctx, `SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1`, r.name).Scan(&super, &bypass)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			login := "NOLOGIN"
			if r.login {
				login = "LOGIN"
			}
			if _, err := conn.Exec(ctx, `CREATE ROLE `+ident(r.name)+` `+login+
				` NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION`); err != nil {
				if !createdElsewhere(err) {
					return fmt.Errorf("postgres migrate: create role %s: %w", r.name, err)
				}
				// Another migrator (of this database, or of another on the
				// same server: roles are the server's) made it first: its
				// role passes the same check as one found.
				if err := conn.QueryRow(ctx, `SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1`, r.name).Scan(&super, &bypass); err != nil {
					return fmt.Errorf("postgres migrate: read roles: %w", mapErr(err))
				}
				if super || bypass {
					return fmt.Errorf("%w: role %q is a superuser or bypasses row security; it may not serve AgentSigna", store.ErrInvalid, r.name)
				}
			}
		case err != nil:
			return fmt.Errorf("postgres migrate: read roles: %w", mapErr(err))
		case super || bypass:
			return fmt.Errorf("%w: role %q is a superuser or bypasses row security; it may not serve AgentSigna", store.ErrInvalid, r.name)
		}
	}
	var db string
	if err := conn.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		return mapErr(err)
	}
	apps := ident(roles.Tenant) + ", " + ident(roles.Platform)
	for _, stmt := range []string{
		`GRANT CONNECT ON DATABASE ` + ident(db) + ` TO ` + apps,
		// A temporary table shadows public's of the same name for the
		// rest of its session (pg_temp comes first on the search_path),
		// and a pooled connection outlives the transaction that made it:
		// the next organization's queries would read and write it. The
		// service makes none; PUBLIC has TEMPORARY by default.
		`REVOKE TEMPORARY ON DATABASE ` + ident(db) + ` FROM PUBLIC, ` + apps,
		// A schema named after a role comes first on its search_path
		// ("$user", public): an app role that may create one could plant
		// tables the other plane's queries resolve to. PUBLIC has no
		// CREATE on a database by default; an app role must not either.
		`REVOKE CREATE ON DATABASE ` + ident(db) + ` FROM PUBLIC, ` + apps,
		`REVOKE CREATE ON SCHEMA public FROM PUBLIC`,
		`GRANT USAGE, CREATE ON SCHEMA public TO ` + ident(roles.Owner),
		`GRANT USAGE ON SCHEMA public TO ` + apps,
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("postgres migrate: grants: %w", err)
		}
	}
	for _, name := range []string{roles.Tenant, roles.Platform} {
		for _, limit := range sessionLimits {
			if err := ensureRoleDefault(ctx, conn, name, limit.name, limit.value); err != nil {
				return err
			}
		}
	}
	// The app roles, found or made above, must be what Open will accept.
	// Checked after the grants, which take CREATE on public from PUBLIC
	// where an older database still gives it.
	for _, name := range []string{roles.Tenant, roles.Platform} {
		problems, err := appRoleProblems(ctx, conn, name)
		if err != nil {
			return fmt.Errorf("postgres migrate: read roles: %w", err)
		}
		if len(problems) > 0 {
			return fmt.Errorf("%w: role %q %s; it may not serve AgentSigna", store.ErrInvalid, name, strings.Join(problems, "; "))
		}
	}
	return nil
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// sessionLimits bound, on the server, what one of the service's sessions
// may hold, whatever its client does: a cancelled context closes pgx's
// connection, and the server goes on running a statement until it next
// writes to it, with its locks. Every statement the service runs is
// short: a decision's read, a ledger batch, a chunk of an export or a
// verification. A transaction idle that long is a leak, and its locks
// would stall its organization's ledger. They are the app roles'
// defaults (ALTER ROLE … SET), so that a connection pooler that refuses
// unknown startup parameters still connects, and a setting of the role's
// that an administrator made is kept.
var sessionLimits = []struct{ name, value string }{
	{"statement_timeout", "30s"},
	{"idle_in_transaction_session_timeout", "60s"},
}

// ensureRoleDefault sets role's default of parameter to value, unless the
// role has a default of its own for it (in every database, or this one).
func ensureRoleDefault(ctx context.Context, conn *pgx.Conn, role, parameter, value string) error {
	var set bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (
		SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) c
		WHERE r.rolname = $1 AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
		AND c LIKE $2 || '=%')`, role, parameter).Scan(&set)
	if err != nil {
		return fmt.Errorf("postgres migrate: read role settings: %w", mapErr(err))
	}
	if set {
		return nil
	}
	// Not a parameter placeholder: ALTER ROLE takes none. Both names and
	// values are this package's constants.
	if _, err := conn.Exec(ctx, `ALTER ROLE `+ident(role)+` SET `+parameter+` = '`+value+`'`); err != nil {
		return fmt.Errorf("postgres migrate: set %s of role %s: %w", parameter, role, err)
	}
	return nil
}

// checkApplied refuses a database whose applied migrations differ from
// this binary's (migrations.CheckApplied). A table from before digests has
// no sha256 column: the error may come from Query or, in some query
// modes, from reading the rows.
func checkApplied(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) error {
	applied := map[int]string{}
	rows, err := q.Query(ctx, `SELECT version, sha256 FROM schema_migrations`)
	if err == nil {
		var v int
		var sum string
		_, err = pgx.ForEachRow(rows, []any{&v, &sum}, func() error { applied[v] = sum; return nil })
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42703" { // undefined_column: no digests recorded
		return fmt.Errorf("%w: postgres: migrations were applied without digests, by an earlier pre-release build "+
			"whose schema may differ; recreate the database", store.ErrSchema)
	}
	if err != nil {
		return mapErr(err)
	}
	if err := migrations.CheckApplied(migrations.Postgres, applied); err != nil {
		return fmt.Errorf("%w: postgres: %v; recreate the database", store.ErrSchema, err)
	}
	return nil
}

// createdElsewhere tells a CREATE ROLE that lost to a concurrent one: the
// role was there by the time it ran (42710 duplicate_object), or was being
// created by a transaction that committed while it waited on the catalog's
// unique index (23505 unique_violation; "already exists" is then only in
// the error's detail).
func createdElsewhere(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42710" || pe.Code == "23505")
}
