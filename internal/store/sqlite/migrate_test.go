package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// A file whose applied migration differs from this binary's — built by an
// earlier pre-release schema, changed in place since — is refused with
// ErrSchema at open, not found out by the first write that needs a new
// column. So is a file from before digests were recorded.
func TestOpenRefusesAnotherSchema(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper string
	}{
		{"different digest", `UPDATE schema_migrations SET sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'`},
		{"no digests recorded", `ALTER TABLE schema_migrations DROP COLUMN sha256`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir)
			acme := storetest.CreateTenant(t, s, "acme")
			// The tenant file is made on first use.
			if err := s.InTenantTx(context.Background(), acme.ID, func(context.Context, store.TenantTx) error { return nil }); err != nil {
				t.Fatal(err)
			}
			tenantFile := s.TenantFile(acme.ID)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for _, file := range []string{tenantFile, filepath.Join(dir, "platform.db")} {
				tamper(t, file, tc.tamper)
				s, err := Open(context.Background(), Config{DataDir: dir})
				if err == nil {
					// platform.db is fine: the tenant file is opened on
					// first use.
					err = s.InTenantTx(context.Background(), acme.ID, func(context.Context, store.TenantTx) error { return nil })
					_ = s.Close()
				}
				if !errors.Is(err, store.ErrSchema) || !strings.Contains(err.Error(), "empty data directory") {
					t.Fatalf("%s tampered: %v, want ErrSchema naming the way out", filepath.Base(file), err)
				}
			}
		})
	}
}

// A bookkeeping table from before digests, still empty (a first open cut
// short), gains the column and the file opens.
func TestEmptyMigrationsTableGainsDigests(t *testing.T) {
	dir := t.TempDir()
	tamper(t, filepath.Join(dir, "platform.db"), `CREATE TABLE schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT`)
	s := openTest(t, dir)
	defer s.Close()
	storetest.CreateTenant(t, s, "acme")
}

func tamper(t *testing.T, file, stmt string) {
	t.Helper()
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}
