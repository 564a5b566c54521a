package ledger_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/postgres"
	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
)

const origin = "agentsigna.test"

// env is one backend with an organization and a ledger over it.
type env struct {
	kind    string
	backend store.Backend
	master  *secrets.MasterKey
	ledger  *ledger.Ledger
	tenant  store.Tenant
	log     ledger.Log
	// tamper runs statements on the tenant's tables as someone who owns
	// the database, triggers off. %[1]s in a statement is the tenant id.
	tamper func(t testing.TB, stmts ...string)
	// another opens a second store (a second process / pool) on the same data.
	another func(t testing.TB) store.Backend
}

var kinds = []string{"sqlite", "postgres"}

func newEnv(t testing.TB, kind string, cfg ledger.Config) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{kind: kind}
	switch kind {
	case "sqlite":
		dir := t.TempDir()
		open := func(t testing.TB) store.Backend {
			s, err := sqlite.Open(ctx, sqlite.Config{DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		e.backend = open(t)
		e.another = open
		e.tamper = func(t testing.TB, stmts ...string) {
			for i := range stmts {
				stmts[i] = fmt.Sprintf(stmts[i], e.tenant.ID)
			}
			sqlitetest.Tamper(t, e.backend.(*sqlite.Store).TenantFile(e.tenant.ID), stmts...)
		}
	case "postgres":
		db := pgtest.New(t)
		open := func(t testing.TB) store.Backend {
			s, err := postgres.Open(ctx, db.Config())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		e.backend = open(t)
		e.another = open
		e.tamper = func(t testing.TB, stmts ...string) {
			for i := range stmts {
				stmts[i] = fmt.Sprintf(stmts[i], e.tenant.ID)
			}
			db.Tamper(t, stmts...)
		}
	}
	var err error
	if e.master, err = secrets.GenerateMasterKey(); err != nil {
		t.Fatal(err)
	}
	e.tenant = storetest.CreateTenant(t, e.backend, "acme")
	e.ledger = e.newLedger(t, e.backend, cfg)
	e.log = e.ledger.TenantLog(e.tenant.ID, e.tenant.Slug)
	return e
}

func (e *env) newLedger(t testing.TB, b store.Backend, cfg ledger.Config) *ledger.Ledger {
	t.Helper()
	kr, err := signing.NewKeyring(e.master)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tenants, cfg.Platform, cfg.Keys, cfg.Origin = b, b, kr, origin
	l, err := ledger.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func newBenchEnv(b *testing.B, kind string) *env { return newEnv(b, kind, ledger.Config{}) }
