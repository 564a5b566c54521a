// Package pgtest gives a test its own PostgreSQL database and roles, migrated
// and dropped when the test ends. The server comes from
// AGENTSIGNA_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres,
// a superuser). When it cannot be reached the test is skipped with a clear
// message — unless AGENTSIGNA_TEST_POSTGRES=required (set by CI), which makes
// it a failure.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/store/postgres"
)

// DefaultURL is used when AGENTSIGNA_TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres"

// DB is one test's database.
type DB struct {
	Name        string
	Roles       postgres.Roles
	AdminURL    string // the superuser, connected to this database
	TenantURL   string // the tenant role
	PlatformURL string // the platform role
	// TenantKey binds the store's tenant transactions (postgres.Config):
	// one random key per database, which every store opened on it shares.
	TenantKey []byte

	base     string   // the server's URL, for roles made after NewEmpty
	password string   // the one password of every role pgtest logs in as
	extra    []string // more roles to drop, after the database
}

// New creates a randomly named database and role set, migrates it, and drops
// both at cleanup.
func New(t testing.TB) *DB {
	t.Helper()
	db := NewEmpty(t)
	db.migrate(t)
	return db
}

// migrate migrates db with its binding key.
func (db *DB) migrate(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := postgres.Migrate(ctx, db.AdminURL, db.Roles, db.TenantKey); err != nil {
		t.Fatalf("pgtest: migrate: %v", err)
	}
}

// NewWithMasterKey is New for a test that drives the binary: the database
// is migrated with the binding key the binary derives from masterKey (the
// base64 it is given as AGENTSIGNA_MASTER_KEY).
func NewWithMasterKey(t testing.TB, masterKey string) *DB {
	t.Helper()
	m, err := secrets.ParseMasterKey(masterKey)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	db := NewEmpty(t)
	if db.TenantKey, err = m.DeriveKey(postgres.BindingKeyPurpose); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	db.migrate(t)
	return db
}

// NewEmpty is New without the migration: roles and schema do not exist yet.
func NewEmpty(t testing.TB) *DB {
	t.Helper()
	base := os.Getenv("AGENTSIGNA_TEST_DATABASE_URL")
	if base == "" {
		base = DefaultURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		msg := "PostgreSQL is not reachable at " + redact(base) + " (set AGENTSIGNA_TEST_DATABASE_URL): " + err.Error()
		if os.Getenv("AGENTSIGNA_TEST_POSTGRES") == "required" {
			t.Fatalf("pgtest: AGENTSIGNA_TEST_POSTGRES=required but %s", msg)
		}
		t.Skipf("pgtest: skipping: %s", msg)
	}
	defer admin.Close(context.Background())

	suffix := randomHex(t, 6)
	db := &DB{Name: "agentsigna_test_" + suffix, Roles: postgres.DefaultRoles("ast_" + suffix)}
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{db.Name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() { db.drop(t, base) })

	password := randomHex(t, 16)
	db.base, db.password = base, password
	// Roles are created here, with a password, so the URLs work whatever
	// the server's auth method; Migrate finds them and keeps them.
	for _, r := range []struct {
		name, attrs string
	}{
		{db.Roles.Owner, "NOLOGIN"},
		{db.Roles.Tenant, "LOGIN PASSWORD '" + password + "'"},
		{db.Roles.Platform, "LOGIN PASSWORD '" + password + "'"},
	} {
		if _, err := admin.Exec(ctx, `CREATE ROLE `+pgx.Identifier{r.name}.Sanitize()+` `+r.attrs+
			` NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT`); err != nil {
			t.Fatalf("pgtest: create role: %v", err)
		}
	}
	db.TenantKey = make([]byte, postgres.BindingKeySize)
	if _, err := rand.Read(db.TenantKey); err != nil {
		t.Fatal(err)
	}
	db.AdminURL = withDB(t, base, db.Name, nil)
	db.TenantURL = withDB(t, base, db.Name, url.UserPassword(db.Roles.Tenant, password))
	db.PlatformURL = withDB(t, base, db.Name, url.UserPassword(db.Roles.Platform, password))
	return db
}

// Config is what opens a store on this database as its app roles.
func (db *DB) Config() postgres.Config {
	return postgres.Config{TenantURL: db.TenantURL, PlatformURL: db.PlatformURL, TenantKey: db.TenantKey}
}

func (db *DB) drop(t testing.TB, base string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Errorf("pgtest: cleanup: %v", err)
		return
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{db.Name}.Sanitize()+` WITH (FORCE)`); err != nil {
		t.Errorf("pgtest: drop database: %v", err)
	}
	for _, r := range append([]string{db.Roles.Tenant, db.Roles.Platform, db.Roles.Owner}, db.extra...) {
		if _, err := admin.Exec(ctx, `DROP ROLE IF EXISTS `+pgx.Identifier{r}.Sanitize()); err != nil {
			t.Errorf("pgtest: drop role %s: %v", r, err)
		}
	}
}

// Role names one more role for this database (the role set's prefix, then
// "_" and suffix) and drops it with the others, after the database. With
// attrs it also creates the role (Login then gives it a password);
// without, the test or Migrate creates it.
func (db *DB) Role(t testing.TB, suffix, attrs string) string {
	t.Helper()
	name := strings.TrimSuffix(db.Roles.Owner, "_owner") + "_" + suffix
	db.extra = append(db.extra, name)
	if attrs != "" {
		db.exec(t, `CREATE ROLE `+pgx.Identifier{name}.Sanitize()+` `+attrs)
	}
	return name
}

// Login gives role name the password pgtest gives its roles and returns a
// URL that logs in to this database as it.
func (db *DB) Login(t testing.TB, name string) string {
	t.Helper()
	db.exec(t, `ALTER ROLE `+pgx.Identifier{name}.Sanitize()+` PASSWORD '`+db.password+`'`)
	return withDB(t, db.base, db.Name, url.UserPassword(name, db.password))
}

func (db *DB) exec(t testing.TB, stmt string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.AdminURL)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, stmt); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// Connect opens a raw connection (for tests that must go around the store).
func Connect(t testing.TB, connURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func withDB(t testing.TB, base, name string, user *url.Userinfo) string {
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("pgtest: AGENTSIGNA_TEST_DATABASE_URL is not a URL")
	}
	u.Path = "/" + name
	if user != nil {
		u.User = user
	}
	return u.String()
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Tamper runs stmts as the superuser with triggers disabled
// (session_replication_role = replica) and row security bypassed: what an
// attacker owning the database could do, to prove tampering is detected.
func (db *DB) Tamper(t testing.TB, stmts ...string) {
	t.Helper()
	conn := Connect(t, db.AdminURL)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("tamper %q: %v", s, err)
		}
	}
}
