// Package teststore opens a fresh store of either kind for a test: the
// same Backend behind an embedded data directory or a PostgreSQL database
// of its own. Test-only.
package teststore

import (
	"context"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/postgres"
	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
)

// Kinds are the stores, in the order tests run them.
var Kinds = []string{"sqlite", "postgres"}

// Open returns a fresh, empty store of kind ("sqlite": in a temporary data
// directory; "postgres": in a database and roles of its own, see pgtest,
// which skips or fails the test without PostgreSQL), closed with the test.
func Open(t testing.TB, kind string) store.Backend {
	t.Helper()
	b, _ := OpenPlantable(t, kind)
	return b
}

// Planter runs stmts against an organization's rows as someone who can
// write the store behind the service's back: on SQLite in the
// organization's file with its triggers set aside (sqlitetest.Plant), on
// PostgreSQL as the database's owner with triggers off (pgtest.DB.Tamper).
// Statements must be SQL both stores take.
type Planter func(t testing.TB, tenantID string, stmts ...string)

// OpenPlantable is Open, with the Planter of the store it opens.
func OpenPlantable(t testing.TB, kind string) (store.Backend, Planter) {
	t.Helper()
	ctx := context.Background()
	switch kind {
	case "sqlite":
		s, err := sqlite.Open(ctx, sqlite.Config{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, func(t testing.TB, tenantID string, stmts ...string) {
			t.Helper()
			sqlitetest.Plant(t, s.TenantFile(tenantID), stmts...)
		}
	case "postgres":
		db := pgtest.New(t)
		s, err := postgres.Open(ctx, db.Config())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, func(t testing.TB, _ string, stmts ...string) {
			t.Helper()
			db.Tamper(t, stmts...)
		}
	}
	t.Fatalf("teststore: unknown store %q", kind)
	return nil, nil
}
