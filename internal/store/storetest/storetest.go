// Package storetest is the conformance suite every store.Backend passes:
// CRUD through the interfaces, tenant isolation, append-only refusal by the
// database itself, and concurrent transactions. A backend's own test calls
// Run with a Harness; no backend may skip isolation or append-only.
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// Harness adapts one backend to the suite.
type Harness struct {
	// New returns a fresh, empty backend, closed by the suite.
	New func(t *testing.T) store.Backend
	// RawTenantExec runs one statement on a tenant's data the way an
	// attacker with the app's database access would — around the store's
	// API (SQLite: the organization's file; PostgreSQL: the tenant role,
	// its session bound as the store binds it, which takes the master key,
	// with app.tenant_id set to tenantID) — and reports rows affected.
	RawTenantExec func(ctx context.Context, b store.Backend, tenantID, stmt string) (int64, error)
	// RawPlatformExec does the same on the platform side.
	RawPlatformExec func(ctx context.Context, b store.Backend, stmt string) (int64, error)
	// Tamper runs statements on a tenant's data as whoever owns the
	// database, past every trigger and row security (SQLite: the
	// organization's file opened apart, its triggers set aside and put
	// back in the same transaction; PostgreSQL: the superuser, with
	// session_replication_role = replica), failing t on error: to plant
	// rows the store no longer writes, such as an agent stored before
	// agents named their entry. The triggers judge what follows.
	Tamper func(t *testing.T, b store.Backend, tenantID string, stmts ...string)
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	t.Run("Platform", func(t *testing.T) { testPlatform(t, h) })
	t.Run("ResolveTenant", func(t *testing.T) { testResolve(t, h) })
	t.Run("Settings", func(t *testing.T) { testSettings(t, h) })
	t.Run("TenantTxRejectsBadTenants", func(t *testing.T) { testBadTenants(t, h) })
	t.Run("Rollback", func(t *testing.T) { testRollback(t, h) })
	t.Run("Savepoint", func(t *testing.T) { testSavepoint(t, h) })
	t.Run("ReadTx", func(t *testing.T) { testReadTx(t, h) })
	t.Run("PlatformReadTx", func(t *testing.T) { testPlatformReadTx(t, h) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, h) })
	t.Run("Logs", func(t *testing.T) { testLogs(t, h) })
	t.Run("Policies", func(t *testing.T) { testPolicies(t, h) })
	t.Run("AppendOnly", func(t *testing.T) { testAppendOnly(t, h) })
	t.Run("Agents", func(t *testing.T) { testAgents(t, h) })
	t.Run("AgentKeys", func(t *testing.T) { testAgentKeys(t, h) })
	t.Run("AdoptAgents", func(t *testing.T) { testAdoptAgents(t, h) })
	t.Run("AgentDirectory", func(t *testing.T) { testAgentDirectory(t, h) })
	t.Run("AssertionJTIs", func(t *testing.T) { testJTIs(t, h) })
	t.Run("Counterparties", func(t *testing.T) { testCounterparties(t, h) })
	t.Run("AdoptCounterparties", func(t *testing.T) { testAdoptCounterparties(t, h) })
	t.Run("Decisions", func(t *testing.T) { testDecisions(t, h) })
	t.Run("Record", func(t *testing.T) { testRecord(t, h) })
	t.Run("PaymentsCount", func(t *testing.T) { testPaymentsCount(t, h) })
	t.Run("AgentStats", func(t *testing.T) { testAgentStats(t, h) })
	t.Run("DecisionInputs", func(t *testing.T) { testDecisionInputs(t, h) })
	t.Run("Receipts", func(t *testing.T) { testReceipts(t, h) })
	t.Run("Cases", func(t *testing.T) { testCases(t, h) })
	t.Run("Pages", func(t *testing.T) { testPages(t, h) })
	t.Run("RecordIsolation", func(t *testing.T) { testRecordIsolation(t, h) })
	t.Run("RecordsAppendOnly", func(t *testing.T) { testRecordsAppendOnly(t, h) })
	t.Run("RecordRaces", func(t *testing.T) { testRecordRaces(t, h) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, h) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, h) })
}

func newBackend(t *testing.T, h Harness) store.Backend {
	t.Helper()
	b := h.New(t)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// CreateTenant creates an organization through the platform plane.
func CreateTenant(t testing.TB, b store.Backend, slug string) store.Tenant {
	t.Helper()
	var out store.Tenant
	err := b.InPlatformTx(ctx(t), func(ctx context.Context, tx store.PlatformTx) error {
		var err error
		out, err = tx.CreateTenant(ctx, store.Tenant{Slug: slug, Name: "Org " + slug})
		return err
	})
	if err != nil {
		t.Fatalf("CreateTenant(%q): %v", slug, err)
	}
	return out
}

func wantErr(t *testing.T, what string, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: got error %v, want %v", what, err, sentinel)
	}
}

func testPlatform(t *testing.T, h Harness) {
	b := newBackend(t, h)
	c := ctx(t)
	before := time.Now().Add(-time.Minute)
	acme := CreateTenant(t, b, "acme")
	if err := store.CheckTenantID(acme.ID); err != nil {
		t.Fatalf("generated id %q: %v", acme.ID, err)
	}
	if acme.Status != store.TenantActive || acme.CreatedAt.Before(before) || acme.CreatedAt.After(time.Now().Add(time.Minute)) {
		t.Fatalf("created tenant = %+v", acme)
	}
	CreateTenant(t, b, "beta")

	err := b.InPlatformTx(c, func(ctx context.Context, tx store.PlatformTx) error {
		got, err := tx.GetTenant(ctx, acme.ID)
		if err != nil {
			return err
		}
		if got.Slug != "acme" || got.Name != "Org acme" || got.Status != store.TenantActive || !got.CreatedAt.Equal(acme.CreatedAt) {
			return fmt.Errorf("GetTenant = %+v, created %+v", got, acme)
		}
		bySlug, err := tx.GetTenantBySlug(ctx, "acme")
		if err != nil || bySlug.ID != acme.ID {
			return fmt.Errorf("GetTenantBySlug = %+v, %v", bySlug, err)
		}
		list, err := tx.ListTenants(ctx)
		if err != nil || len(list) != 2 || list[0].Slug != "acme" || list[1].Slug != "beta" {
			return fmt.Errorf("ListTenants = %+v, %v", list, err)
		}
		if err := tx.SetTenantStatus(ctx, acme.ID, store.TenantSuspended); err != nil {
			return err
		}
		got, err = tx.GetTenant(ctx, acme.ID)
		if err != nil || got.Status != store.TenantSuspended {
			return fmt.Errorf("after suspend: %+v, %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		fn     func(ctx context.Context, tx store.PlatformTx) error
		target error
	}{
		{"duplicate slug", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.CreateTenant(ctx, store.Tenant{Slug: "acme", Name: "again"})
			return err
		}, store.ErrConflict},
		{"duplicate id", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.CreateTenant(ctx, store.Tenant{ID: acme.ID, Slug: "gamma", Name: "again"})
			return err
		}, store.ErrConflict},
		{"bad slug", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.CreateTenant(ctx, store.Tenant{Slug: "../Acme", Name: "x"})
			return err
		}, store.ErrInvalid},
		{"empty name", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.CreateTenant(ctx, store.Tenant{Slug: "delta", Name: " "})
			return err
		}, store.ErrInvalid},
		// The name is shown to platform admins and printed one line per
		// organization: no escape sequence, override or line break.
		{"name with an escape sequence", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.CreateTenant(ctx, store.Tenant{Slug: "delta", Name: "Delta\x1b[2J"})
			return err
		}, store.ErrInvalid},
		{"name with a bidi override", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.CreateTenant(ctx, store.Tenant{Slug: "delta", Name: "Delta \u202eCNI"})
			return err
		}, store.ErrInvalid},
		{"name with a line separator", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.CreateTenant(ctx, store.Tenant{Slug: "delta", Name: "Delta\u2028acme\tactive"})
			return err
		}, store.ErrInvalid},
		{"invisible name", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.CreateTenant(ctx, store.Tenant{Slug: "delta", Name: "\u200b\u2060"})
			return err
		}, store.ErrInvalid},
		{"name not UTF-8", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.CreateTenant(ctx, store.Tenant{Slug: "delta", Name: "Delta \xff"})
			return err
		}, store.ErrInvalid},
		{"long name", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.CreateTenant(ctx, store.Tenant{Slug: "delta", Name: strings.Repeat("n", store.MaxTenantName+1)})
			return err
		}, store.ErrInvalid},
		{"bad status", func(ctx context.Context, tx store.PlatformTx) error {
			return tx.SetTenantStatus(ctx, acme.ID, "deleted")
		}, store.ErrInvalid},
		{"unknown id", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.GetTenant(ctx, store.NewTenantID())
			return err
		}, store.ErrNotFound},
		{"unknown slug", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.GetTenantBySlug(ctx, "nobody")
			return err
		}, store.ErrNotFound},
		{"status of unknown", func(ctx context.Context, tx store.PlatformTx) error {
			return tx.SetTenantStatus(ctx, store.NewTenantID(), store.TenantActive)
		}, store.ErrNotFound},
		{"malformed id", func(ctx context.Context, tx store.PlatformTx) error {
			_, err := tx.GetTenant(ctx, strings.ToUpper(acme.ID))
			return err
		}, store.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, tc.name, b.InPlatformTx(c, tc.fn), tc.target)
		})
	}
}

func testResolve(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	ref, err := b.ResolveTenant(ctx(t), "acme")
	if err != nil || ref.ID != acme.ID || ref.Slug != "acme" || ref.Status != store.TenantActive {
		t.Fatalf("ResolveTenant = %+v, %v", ref, err)
	}
	_, err = b.ResolveTenant(ctx(t), "nobody")
	wantErr(t, "unknown slug", err, store.ErrNotFound)
	byID, err := b.ResolveTenantID(ctx(t), acme.ID)
	if err != nil || byID != ref {
		t.Fatalf("ResolveTenantID = %+v, %v", byID, err)
	}
	_, err = b.ResolveTenantID(ctx(t), store.NewTenantID())
	wantErr(t, "unknown id", err, store.ErrNotFound)
	_, err = b.ResolveTenantID(ctx(t), "../platform")
	wantErr(t, "malformed id", err, store.ErrInvalid)
	_, err = b.ResolveTenant(ctx(t), "a' OR '1'='1")
	wantErr(t, "injection slug", err, store.ErrInvalid)

	// The store remembers entries by id (store.TenantRefs): a status it
	// changes itself is seen at once, even just after a read.
	setStatus := func(status store.TenantStatus) {
		t.Helper()
		if _, err := b.ResolveTenantID(ctx(t), acme.ID); err != nil {
			t.Fatal(err)
		}
		if err := b.InPlatformTx(ctx(t), func(ctx context.Context, tx store.PlatformTx) error {
			return tx.SetTenantStatus(ctx, acme.ID, status)
		}); err != nil {
			t.Fatal(err)
		}
		if got, err := b.ResolveTenantID(ctx(t), acme.ID); err != nil || got.Status != status {
			t.Fatalf("ResolveTenantID right after setting %s = %+v, %v", status, got, err)
		}
	}
	setStatus(store.TenantSuspended)
	setStatus(store.TenantActive)

	// A change made elsewhere (another process or replica) is seen within
	// store.TenantRefLifetime.
	if _, err := b.ResolveTenantID(ctx(t), acme.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := h.RawPlatformExec(ctx(t), b, `UPDATE tenants SET status = 'suspended' WHERE slug = 'acme'`); err != nil || n != 1 {
		t.Fatalf("suspend acme elsewhere: %d rows, %v", n, err)
	}
	deadline := time.Now().Add(store.TenantRefLifetime + time.Second)
	for {
		got, err := b.ResolveTenantID(ctx(t), acme.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status == store.TenantSuspended {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a suspension made elsewhere not seen after %v: %+v", store.TenantRefLifetime+time.Second, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testSettings(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	c := ctx(t)
	err := b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if tx.TenantID() != acme.ID {
			return fmt.Errorf("TenantID = %q", tx.TenantID())
		}
		if err := tx.PutSetting(ctx, "b", "2"); err != nil {
			return err
		}
		if err := tx.PutSetting(ctx, "a", "1"); err != nil {
			return err
		}
		return tx.PutSetting(ctx, "a", "one") // upsert
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		s, err := tx.GetSetting(ctx, "a")
		if err != nil || s.Value != "one" || s.UpdatedAt.IsZero() {
			return fmt.Errorf("GetSetting(a) = %+v, %v", s, err)
		}
		list, err := tx.ListSettings(ctx)
		if err != nil || len(list) != 2 || list[0].Key != "a" || list[1].Key != "b" || list[1].Value != "2" {
			return fmt.Errorf("ListSettings = %+v, %v", list, err)
		}
		if err := tx.DeleteSetting(ctx, "b"); err != nil {
			return err
		}
		if _, err := tx.GetSetting(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("deleted setting: %v", err)
		}
		if err := tx.DeleteSetting(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete twice: %v", err)
		}
		if err := tx.PutSetting(ctx, "", "x"); !errors.Is(err, store.ErrInvalid) {
			return fmt.Errorf("empty key: %v", err)
		}
		if err := tx.PutSetting(ctx, "big", strings.Repeat("x", store.MaxSettingValue+1)); !errors.Is(err, store.ErrInvalid) {
			return fmt.Errorf("oversized value: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testBadTenants(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	called := false
	fn := func(context.Context, store.TenantTx) error { called = true; return nil }
	for _, tc := range []struct {
		id     string
		target error
	}{
		{store.NewTenantID(), store.ErrNotFound},
		{"", store.ErrInvalid},
		{"../platform", store.ErrInvalid},
		{"../../etc/passwd", store.ErrInvalid},
		{strings.ToUpper(acme.ID), store.ErrInvalid},
		{"{" + acme.ID + "}", store.ErrInvalid},
		{"urn:uuid:" + acme.ID, store.ErrInvalid},
		{acme.ID + "\x00", store.ErrInvalid},
		{"' OR '1'='1", store.ErrInvalid},
	} {
		wantErr(t, fmt.Sprintf("InTenantTx(%q)", tc.id), b.InTenantTx(ctx(t), tc.id, fn), tc.target)
	}
	if called {
		t.Fatal("fn ran for a tenant that does not exist")
	}
}

// A failed savepoint undoes its own writes only — also after a constraint
// violation, which in PostgreSQL aborts the transaction unless rolled back
// to the savepoint — and the transaction goes on and commits.
func testSavepoint(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	c := ctx(t)
	boom := errors.New("boom")
	cp := store.Counterparty{ID: store.NewID(store.PrefixCounterparty), Name: "Supplier", LedgerIndex: ledgerIndex(0)}
	err := b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.PutSetting(ctx, "before", "v"); err != nil {
			return err
		}
		if _, err := tx.Counterparties().Create(ctx, cp); err != nil {
			return err
		}
		err := tx.Savepoint(ctx, func(ctx context.Context) error {
			if err := tx.PutSetting(ctx, "undone", "v"); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			return fmt.Errorf("failed savepoint returned %v, want its own error", err)
		}
		err = tx.Savepoint(ctx, func(ctx context.Context) error {
			if err := tx.PutSetting(ctx, "undone-too", "v"); err != nil {
				return err
			}
			_, err := tx.Counterparties().Create(ctx, cp)
			return err
		})
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("duplicate counterparty in a savepoint: %v, want ErrConflict", err)
		}
		// Nested: the inner one fails, the outer one keeps its write.
		err = tx.Savepoint(ctx, func(ctx context.Context) error {
			if err := tx.PutSetting(ctx, "outer", "v"); err != nil {
				return err
			}
			if err := tx.Savepoint(ctx, func(ctx context.Context) error {
				if err := tx.PutSetting(ctx, "inner", "v"); err != nil {
					return err
				}
				return boom
			}); !errors.Is(err, boom) {
				return fmt.Errorf("inner savepoint: %v", err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.PutSetting(ctx, "after", "v")
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		list, err := tx.ListSettings(ctx)
		if err != nil {
			return err
		}
		var keys []string
		for _, s := range list {
			keys = append(keys, s.Key)
		}
		slices.Sort(keys)
		if want := []string{"after", "before", "outer"}; !slices.Equal(keys, want) {
			return fmt.Errorf("settings after the savepoints: %v, want %v", keys, want)
		}
		_, err = tx.Counterparties().Get(ctx, cp.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A read transaction sees what was committed, refuses every write, and
// runs while a writer holds the organization's write transaction open —
// without seeing its uncommitted rows.
func testReadTx(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	other := CreateTenant(t, b, "other")
	c := ctx(t)
	if err := b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.PutSetting(ctx, "committed", "v")
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.InTenantTx(c, other.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.PutSetting(ctx, "other-org", "v")
	}); err != nil {
		t.Fatal(err)
	}
	read := func(tenantID string) ([]string, error) {
		var keys []string
		err := b.InTenantReadTx(c, tenantID, func(ctx context.Context, tx store.TenantTx) error {
			list, err := tx.ListSettings(ctx)
			for _, s := range list {
				keys = append(keys, s.Key)
			}
			return err
		})
		return keys, err
	}
	if keys, err := read(acme.ID); err != nil || !slices.Equal(keys, []string{"committed"}) {
		t.Fatalf("read tx: %v, %v", keys, err)
	}
	if keys, err := read(other.ID); err != nil || !slices.Equal(keys, []string{"other-org"}) {
		t.Fatalf("read tx of the other organization: %v, %v", keys, err)
	}
	err := b.InTenantReadTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.PutSetting(ctx, "written", "v")
	})
	wantErr(t, "a write in a read transaction", err, store.ErrReadOnly)
	err = b.InTenantReadTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := tx.Counterparties().Create(ctx, store.Counterparty{Name: "Sneaky", LedgerIndex: ledgerIndex(0)})
		return err
	})
	wantErr(t, "an insert in a read transaction", err, store.ErrReadOnly)
	// One snapshot throughout: a commit between two reads is not seen.
	err = b.InTenantReadTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		for i := range 2 {
			list, err := tx.ListSettings(ctx)
			if err != nil {
				return err
			}
			if len(list) != 1 || list[0].Key != "committed" {
				return fmt.Errorf("read %d of one read transaction: %v", i+1, list)
			}
			if i == 0 {
				if err := b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
					return tx.PutSetting(ctx, "meanwhile", "v")
				}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a read transaction beside a commit: %v", err)
	}
	if err := b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.DeleteSetting(ctx, "meanwhile")
	}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "a malformed tenant id", b.InTenantReadTx(c, "not-a-uuid", func(context.Context, store.TenantTx) error { return nil }), store.ErrInvalid)
	wantErr(t, "an unknown tenant", b.InTenantReadTx(c, "8c2b7f0e-3c4d-4e5f-8a9b-0c1d2e3f4a5b", func(context.Context, store.TenantTx) error { return nil }), store.ErrNotFound)

	// A writer holds its transaction open; reads go on beside it.
	keys, err := readBesideWriter(t, "a read transaction", func(wrote func()) error {
		return b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			if err := tx.PutSetting(ctx, "uncommitted", "v"); err != nil {
				return err
			}
			wrote()
			return nil
		})
	}, func() ([]string, error) { return read(acme.ID) })
	if err != nil || !slices.Equal(keys, []string{"committed"}) {
		t.Fatalf("read beside an open writer: %v, %v (want only the committed row)", keys, err)
	}
	if keys, err := read(acme.ID); err != nil || !slices.Equal(keys, []string{"committed", "uncommitted"}) {
		t.Fatalf("read after the writer committed: %v, %v", keys, err)
	}
}

// The platform's read transaction likewise sees what was committed,
// refuses every write, and runs beside an open platform writer without
// seeing its uncommitted rows.
func testPlatformReadTx(t *testing.T, h Harness) {
	b := newBackend(t, h)
	CreateTenant(t, b, "acme")
	c := ctx(t)
	read := func() ([]string, error) {
		var slugs []string
		err := b.InPlatformReadTx(c, func(ctx context.Context, tx store.PlatformTx) error {
			list, err := tx.ListTenants(ctx)
			for _, tn := range list {
				slugs = append(slugs, tn.Slug)
			}
			return err
		})
		slices.Sort(slugs)
		return slugs, err
	}
	if slugs, err := read(); err != nil || !slices.Equal(slugs, []string{"acme"}) {
		t.Fatalf("platform read tx: %v, %v", slugs, err)
	}
	err := b.InPlatformReadTx(c, func(ctx context.Context, tx store.PlatformTx) error {
		_, err := tx.CreateTenant(ctx, store.Tenant{Slug: "sneaky", Name: "Sneaky"})
		return err
	})
	wantErr(t, "a write in a platform read transaction", err, store.ErrReadOnly)
	// One snapshot throughout: a commit between two reads is not seen.
	err = b.InPlatformReadTx(c, func(ctx context.Context, tx store.PlatformTx) error {
		for i := range 2 {
			list, err := tx.ListTenants(ctx)
			if err != nil {
				return err
			}
			if len(list) != 1 {
				return fmt.Errorf("read %d of one platform read transaction: %v", i+1, list)
			}
			if i == 0 {
				CreateTenant(t, b, "gamma")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a platform read transaction beside a commit: %v", err)
	}

	slugs, err := readBesideWriter(t, "a platform read transaction", func(wrote func()) error {
		return b.InPlatformTx(c, func(ctx context.Context, tx store.PlatformTx) error {
			if err := tx.Log().LockLog(ctx); err != nil {
				return err
			}
			if _, err := tx.CreateTenant(ctx, store.Tenant{Slug: "beta", Name: "Org beta"}); err != nil {
				return err
			}
			wrote()
			return nil
		})
	}, read)
	if err != nil || !slices.Equal(slugs, []string{"acme", "gamma"}) {
		t.Fatalf("platform read beside an open writer: %v, %v (want only the committed tenant)", slugs, err)
	}
	if slugs, err := read(); err != nil || !slices.Equal(slugs, []string{"acme", "beta", "gamma"}) {
		t.Fatalf("platform read after the writer committed: %v, %v", slugs, err)
	}
}

// readBesideWriter runs write, which calls wrote once it has written and
// before it commits, and meanwhile read, which must not wait for it; then
// lets the writer commit, and returns what read saw.
func readBesideWriter(t *testing.T, what string, write func(wrote func()) error, read func() ([]string, error)) ([]string, error) {
	t.Helper()
	written, release, finished := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		var once sync.Once
		signal := func() { once.Do(func() { close(written) }) }
		defer signal() // a write that fails before wrote
		finished <- write(func() { signal(); <-release })
	}()
	<-written
	done := make(chan struct{})
	var got []string
	var err error
	go func() {
		defer close(done)
		got, err = read()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatalf("%s waited for the writer", what)
	}
	close(release)
	if werr := <-finished; werr != nil {
		t.Fatal(werr)
	}
	return got, err
}

func testRollback(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	c := ctx(t)
	boom := errors.New("boom")
	err := b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.PutSetting(ctx, "k", "v"); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "fn error", err, boom)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic inside the transaction was swallowed")
			}
		}()
		_ = b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			if err := tx.PutSetting(ctx, "p", "v"); err != nil {
				return err
			}
			panic("inside tx")
		})
	}()
	err = b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		list, err := tx.ListSettings(ctx)
		if err != nil {
			return err
		}
		if len(list) != 0 {
			return fmt.Errorf("rolled-back writes are visible: %+v", list)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.InPlatformTx(c, func(ctx context.Context, tx store.PlatformTx) error {
		if _, err := tx.CreateTenant(ctx, store.Tenant{Slug: "ghost", Name: "Ghost"}); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "platform fn error", err, boom)
	if _, err := b.ResolveTenant(c, "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rolled-back tenant resolves: %v", err)
	}
}

func leaf(i uint64, tag string) store.LedgerEntry {
	e := []byte(fmt.Sprintf(`{"index":%d,"tag":%q}`, i, tag))
	h := sha256.Sum256(append([]byte{0}, e...))
	return store.LedgerEntry{Index: i, Entry: e, LeafHash: h[:], Record: []byte("record " + tag)}
}

// batch builds n entries from index from, a level-8 node when the batch
// completes one, and a checkpoint closing it. The hashes are stand-ins: the
// store checks shapes, the ledger checks the tree.
func batch(from uint64, n int, tag string) ([]store.LedgerEntry, []store.LedgerNode, store.LedgerCheckpoint) {
	var es []store.LedgerEntry
	var nodes []store.LedgerNode
	for i := range uint64(n) {
		es = append(es, leaf(from+i, tag))
		if (from+i+1)%256 == 0 {
			h := sha256.Sum256([]byte(fmt.Sprint("node", from+i)))
			nodes = append(nodes, store.LedgerNode{Level: 8, Index: (from + i) / 256, Hash: h[:]})
		}
	}
	last := es[len(es)-1]
	root := sha256.Sum256([]byte(fmt.Sprint("root", tag, from+uint64(n))))
	return es, nodes, store.LedgerCheckpoint{
		Size: from + uint64(n), Root: root[:], RangeHashes: [][]byte{root[:]},
		LastLeafHash: last.LeafHash, Note: []byte(fmt.Sprintf("note %s %d", tag, from+uint64(n))),
	}
}

// AppendBatch appends a batch the way the ledger does: lock, read the head,
// write at the head.
func AppendBatch(ctx context.Context, log store.LogTx, n int, tag string) (uint64, error) {
	return appendBatch(ctx, log, n, tag, nil)
}

// appendRecord appends one entry whose record is rec, as AppendBatch does,
// and returns its index: a receipt names the entry that holds its JWS.
func appendRecord(ctx context.Context, log store.LogTx, rec string) (uint64, error) {
	return appendBatch(ctx, log, 1, "record", []byte(rec))
}

// appendBatch is AppendBatch, with every record rec when it is not nil.
func appendBatch(ctx context.Context, log store.LogTx, n int, tag string, rec []byte) (uint64, error) {
	if err := log.LockLog(ctx); err != nil {
		return 0, err
	}
	var size uint64
	cp, err := log.LatestCheckpoint(ctx)
	switch {
	case err == nil:
		size = cp.Size
	case !errors.Is(err, store.ErrNotFound):
		return 0, err
	}
	es, nodes, next := batch(size, n, tag)
	if rec != nil {
		for i := range es {
			es[i].Record = rec
		}
	}
	return size, log.AppendLog(ctx, es, nodes, next)
}

func testIsolation(t *testing.T, h Harness) {
	b := newBackend(t, h)
	a := CreateTenant(t, b, "alpha")
	bb := CreateTenant(t, b, "bravo")
	c := ctx(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.InTenantTx(c, a.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.PutSetting(ctx, "secret", "alpha-only"); err != nil {
			return err
		}
		if err := tx.Keys().InsertSigningKey(ctx, testKey("alpha-log")); err != nil {
			return err
		}
		_, err := AppendBatch(ctx, tx.Log(), 3, "alpha")
		return err
	}))
	must(b.InTenantTx(c, bb.ID, func(ctx context.Context, tx store.TenantTx) error {
		if _, err := tx.GetSetting(ctx, "secret"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("bravo reads alpha's setting: %v", err)
		}
		if list, err := tx.ListSettings(ctx); err != nil || len(list) != 0 {
			return fmt.Errorf("bravo lists %+v, %v", list, err)
		}
		if err := tx.DeleteSetting(ctx, "secret"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("bravo deletes alpha's setting: %v", err)
		}
		if _, err := tx.Log().LatestCheckpoint(ctx); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("bravo sees a checkpoint: %v", err)
		}
		if es, err := tx.Log().Entries(ctx, 0, 100); err != nil || len(es) != 0 {
			return fmt.Errorf("bravo reads alpha's entries: %d, %v", len(es), err)
		}
		if hs, err := tx.Log().LeafHashes(ctx, 0, 100); err != nil || len(hs) != 0 {
			return fmt.Errorf("bravo reads alpha's leaf hashes: %d, %v", len(hs), err)
		}
		if _, err := tx.Log().EntryByLeafHash(ctx, leaf(0, "alpha").LeafHash); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("bravo finds alpha's entry by hash: %v", err)
		}
		if ks, err := tx.Keys().SigningKeys(ctx, store.PurposeLog); err != nil || len(ks) != 0 {
			return fmt.Errorf("bravo reads alpha's keys: %d, %v", len(ks), err)
		}
		if err := tx.Keys().RetireSigningKey(ctx, "alpha-log", time.Now()); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("bravo retires alpha's key: %v", err)
		}
		// Bravo's log starts at 0, independent of alpha's.
		if size, err := AppendBatch(ctx, tx.Log(), 1, "bravo"); err != nil || size != 0 {
			return fmt.Errorf("bravo's first batch at %d: %v", size, err)
		}
		return tx.PutSetting(ctx, "secret", "bravo-only")
	}))
	must(b.InTenantTx(c, a.ID, func(ctx context.Context, tx store.TenantTx) error {
		s, err := tx.GetSetting(ctx, "secret")
		if err != nil || s.Value != "alpha-only" {
			return fmt.Errorf("alpha's setting changed by bravo: %+v, %v", s, err)
		}
		es, err := tx.Log().Entries(ctx, 0, 100)
		if err != nil || len(es) != 3 {
			return fmt.Errorf("alpha entries: %d, %v", len(es), err)
		}
		for _, e := range es {
			if !strings.Contains(string(e.Entry), `"alpha"`) {
				return fmt.Errorf("alpha reads a foreign entry: %s", e.Entry)
			}
		}
		if ks, err := tx.Keys().SigningKeys(ctx, store.PurposeLog); err != nil || len(ks) != 1 || ks[0].Status != store.KeyActive {
			return fmt.Errorf("alpha's key: %+v, %v", ks, err)
		}
		return nil
	}))
	// The platform log is a third, separate log.
	must(b.InPlatformTx(c, func(ctx context.Context, tx store.PlatformTx) error {
		if _, err := tx.Log().LatestCheckpoint(ctx); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("platform log sees a tenant checkpoint: %v", err)
		}
		if size, err := AppendBatch(ctx, tx.Log(), 2, "platform"); err != nil || size != 0 {
			return fmt.Errorf("platform's first batch at %d: %v", size, err)
		}
		if ks, err := tx.Keys().SigningKeys(ctx, store.PurposeLog); err != nil || len(ks) != 0 {
			return fmt.Errorf("platform reads tenant keys: %d, %v", len(ks), err)
		}
		return nil
	}))
	must(b.InTenantTx(c, a.ID, func(ctx context.Context, tx store.TenantTx) error {
		if cp, err := tx.Log().LatestCheckpoint(ctx); err != nil || cp.Size != 3 {
			return fmt.Errorf("alpha's head after the platform appended: %+v, %v", cp, err)
		}
		return nil
	}))
}

// errRollback ends a transaction whose expected refusal spent it.
var errRollback = errors.New("rollback")

func testKey(kid string) store.SigningKey {
	return store.SigningKey{KID: kid, Purpose: store.PurposeLog, Algorithm: "Ed25519",
		PublicKey: []byte("public " + kid), SealedPrivate: []byte("sealed " + kid), Status: store.KeyActive}
}

// testLogs runs the log checks on every log kind: a tenant's and the
// platform's.
func testLogs(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	for _, lg := range []struct {
		name string
		in   func(ctx context.Context, fn func(context.Context, store.LogTx, store.KeyTx) error) error
	}{
		{"tenant", func(ctx context.Context, fn func(context.Context, store.LogTx, store.KeyTx) error) error {
			return b.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error { return fn(ctx, tx.Log(), tx.Keys()) })
		}},
		{"platform", func(ctx context.Context, fn func(context.Context, store.LogTx, store.KeyTx) error) error {
			return b.InPlatformTx(ctx, func(ctx context.Context, tx store.PlatformTx) error { return fn(ctx, tx.Log(), tx.Keys()) })
		}},
	} {
		t.Run(lg.name, func(t *testing.T) {
			c := ctx(t)
			err := lg.in(c, func(ctx context.Context, log store.LogTx, _ store.KeyTx) error {
				if sizes, err := log.CheckpointSizes(ctx); err != nil || len(sizes) != 0 {
					return fmt.Errorf("empty log has checkpoints %v, %v", sizes, err)
				}
				if _, err := AppendBatch(ctx, log, 255, lg.name); err != nil {
					return err
				}
				if _, err := AppendBatch(ctx, log, 2, lg.name); err != nil { // crosses 256: one level-8 node
					return err
				}
				cp, err := log.LatestCheckpoint(ctx)
				if err != nil || cp.Size != 257 || len(cp.RangeHashes) != 1 || cp.CreatedAt.IsZero() {
					return fmt.Errorf("latest checkpoint %+v, %v", cp, err)
				}
				if string(cp.Note) != fmt.Sprintf("note %s 257", lg.name) || string(cp.LastLeafHash) != string(leaf(256, lg.name).LeafHash) {
					return fmt.Errorf("checkpoint read back as %q", cp.Note)
				}
				if first, err := log.Checkpoint(ctx, 255); err != nil || first.Size != 255 {
					return fmt.Errorf("checkpoint 255: %+v, %v", first, err)
				}
				if _, err := log.Checkpoint(ctx, 256); !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("checkpoint at an unsigned size: %v", err)
				}
				if _, err := log.Checkpoint(ctx, ^uint64(0)); !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("checkpoint at max uint64: %v", err)
				}
				if sizes, err := log.CheckpointSizes(ctx); err != nil || fmt.Sprint(sizes) != "[255 257]" {
					return fmt.Errorf("checkpoint sizes %v, %v", sizes, err)
				}
				es, err := log.Entries(ctx, 254, 256)
				if err != nil || len(es) != 2 || es[0].Index != 254 || es[1].Index != 255 {
					return fmt.Errorf("entries [254,256): %+v, %v", es, err)
				}
				want := leaf(255, lg.name)
				if string(es[1].Entry) != string(want.Entry) || string(es[1].LeafHash) != string(want.LeafHash) ||
					string(es[1].Record) != string(want.Record) || es[1].CreatedAt.IsZero() {
					return fmt.Errorf("entry 255 read back as %+v", es[1])
				}
				if es, err := log.Entries(ctx, 257, ^uint64(0)); err != nil || len(es) != 0 {
					return fmt.Errorf("entries past the end: %d, %v", len(es), err)
				}
				// EntriesWithin stops after the entry that reaches its bound,
				// and returns one at least.
				size := len(es[0].Entry) + len(es[0].Record) // entry 254: those of [100, 200) are its size
				for _, tc := range []struct {
					maxBytes int
					want     int
				}{{0, 1}, {1, 1}, {size, 1}, {size + 1, 2}, {5*size + 1, 6}, {1 << 30, 100}} {
					got, err := log.EntriesWithin(ctx, 100, 200, tc.maxBytes)
					if err != nil || len(got) != tc.want || got[0].Index != 100 || got[len(got)-1].Index != uint64(99+tc.want) {
						return fmt.Errorf("entries [100,200) within %d bytes: %d, %v; want %d", tc.maxBytes, len(got), err, tc.want)
					}
				}
				if es, err := log.EntriesWithin(ctx, 257, 300, 1); err != nil || len(es) != 0 {
					return fmt.Errorf("entries past the end within a bound: %d, %v", len(es), err)
				}
				if _, err := log.Entries(ctx, 5, 4); !errors.Is(err, store.ErrInvalid) {
					return fmt.Errorf("inverted range: %v", err)
				}
				hs, err := log.LeafHashes(ctx, 0, 300)
				if err != nil || len(hs) != 257 || string(hs[256]) != string(leaf(256, lg.name).LeafHash) {
					return fmt.Errorf("leaf hashes: %d, %v", len(hs), err)
				}
				nodes, err := log.Nodes(ctx, 8, 0, 10)
				if err != nil || len(nodes) != 1 || len(nodes[0]) != 32 {
					return fmt.Errorf("level-8 nodes: %d, %v", len(nodes), err)
				}
				got, err := log.EntryByLeafHash(ctx, leaf(7, lg.name).LeafHash)
				if err != nil || got.Index != 7 {
					return fmt.Errorf("entry by leaf hash: %+v, %v", got, err)
				}
				if _, err := log.EntryByLeafHash(ctx, make([]byte, 32)); !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("unknown leaf hash: %v", err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name   string
				from   uint64
				n      int
				mutate func(es []store.LedgerEntry, cp *store.LedgerCheckpoint)
				target error
			}{
				{"index already taken", 256, 1, nil, store.ErrConflict},
				{"gap", 300, 1, nil, store.ErrConflict},
				{"non-consecutive", 257, 2, func(es []store.LedgerEntry, _ *store.LedgerCheckpoint) { es[1].Index = 260 }, store.ErrInvalid},
				{"short hash", 257, 1, func(es []store.LedgerEntry, _ *store.LedgerCheckpoint) { es[0].LeafHash = []byte{1} }, store.ErrInvalid},
				{"empty entry", 257, 1, func(es []store.LedgerEntry, _ *store.LedgerCheckpoint) { es[0].Entry = nil }, store.ErrInvalid},
				{"oversized entry", 257, 1, func(es []store.LedgerEntry, _ *store.LedgerCheckpoint) {
					es[0].Entry = make([]byte, store.MaxLedgerEntry+1)
				}, store.ErrInvalid},
				{"checkpoint not closing the batch", 257, 1, func(_ []store.LedgerEntry, cp *store.LedgerCheckpoint) { cp.Size++ }, store.ErrInvalid},
				{"checkpoint without a note", 257, 1, func(_ []store.LedgerEntry, cp *store.LedgerCheckpoint) { cp.Note = nil }, store.ErrInvalid},
			} {
				t.Run(tc.name, func(t *testing.T) {
					es, nodes, cp := batch(tc.from, tc.n, lg.name)
					if tc.mutate != nil {
						tc.mutate(es, &cp)
					}
					err := lg.in(c, func(ctx context.Context, log store.LogTx, _ store.KeyTx) error {
						return log.AppendLog(ctx, es, nodes, cp)
					})
					wantErr(t, tc.name, err, tc.target)
				})
			}
			t.Run("keys", func(t *testing.T) {
				// Each refusal in its own transaction: after a database
				// error the transaction is spent (PostgreSQL aborts it), and
				// callers must return the error.
				steps := []struct {
					name string
					fn   func(ctx context.Context, keys store.KeyTx) error
				}{
					{"insert", func(ctx context.Context, keys store.KeyTx) error {
						k2 := testKey("k2")
						k2.Purpose = store.PurposeReceipt
						if err := keys.InsertSigningKey(ctx, testKey("k1")); err != nil {
							return err
						}
						return keys.InsertSigningKey(ctx, k2)
					}},
					{"duplicate kid", func(ctx context.Context, keys store.KeyTx) error {
						err := keys.InsertSigningKey(ctx, testKey("k1"))
						if !errors.Is(err, store.ErrConflict) {
							return fmt.Errorf("duplicate kid: %v", err)
						}
						return errRollback
					}},
					{"bad purpose", func(ctx context.Context, keys store.KeyTx) error {
						bad := testKey("k3")
						bad.Purpose = "everything"
						if err := keys.InsertSigningKey(ctx, bad); !errors.Is(err, store.ErrInvalid) {
							return fmt.Errorf("bad purpose: %v", err)
						}
						return nil
					}},
					{"list and retire", func(ctx context.Context, keys store.KeyTx) error {
						ks, err := keys.SigningKeys(ctx, store.PurposeLog)
						if err != nil || len(ks) != 1 || ks[0].KID != "k1" || string(ks[0].SealedPrivate) != "sealed k1" || ks[0].CreatedAt.IsZero() {
							return fmt.Errorf("log keys %+v, %v", ks, err)
						}
						return keys.RetireSigningKey(ctx, "k1", time.Now())
					}},
					{"retire twice", func(ctx context.Context, keys store.KeyTx) error {
						if err := keys.RetireSigningKey(ctx, "k1", time.Now()); !errors.Is(err, store.ErrNotFound) {
							return fmt.Errorf("retire twice: %v", err)
						}
						return nil
					}},
					{"retired", func(ctx context.Context, keys store.KeyTx) error {
						ks, err := keys.SigningKeys(ctx, store.PurposeLog)
						if err != nil || len(ks) != 1 || ks[0].Status != store.KeyRetired || ks[0].RetiredAt.IsZero() {
							return fmt.Errorf("after retiring: %+v, %v", ks, err)
						}
						return nil
					}},
					{"one active key a purpose", func(ctx context.Context, keys store.KeyTx) error {
						if err := keys.InsertSigningKey(ctx, testKey("k4")); err != nil {
							return fmt.Errorf("the retired key's successor: %w", err)
						}
						if err := keys.InsertSigningKey(ctx, testKey("k5")); !errors.Is(err, store.ErrConflict) {
							return fmt.Errorf("a second active log key: %v", err)
						}
						retired := testKey("k6")
						retired.Status, retired.RetiredAt = store.KeyRetired, time.Now()
						if err := keys.InsertSigningKey(ctx, retired); err != nil {
							return fmt.Errorf("a retired key beside the active one: %w", err)
						}
						token := testKey("k7")
						token.Purpose = store.PurposeToken
						if err := keys.InsertSigningKey(ctx, token); err != nil {
							return fmt.Errorf("an active key of another purpose: %w", err)
						}
						// The refusal left the transaction usable.
						ks, err := keys.SigningKeys(ctx, store.PurposeLog)
						if err != nil || len(ks) != 3 || ks[0].KID != "k1" || ks[1].KID != "k4" || ks[1].Status != store.KeyActive || ks[2].KID != "k6" {
							return fmt.Errorf("log keys after a refused second active one: %+v, %v", ks, err)
						}
						return nil
					}},
					{"retire, then the successor", func(ctx context.Context, keys store.KeyTx) error {
						if err := keys.RetireSigningKey(ctx, "k4", time.Now()); err != nil {
							return err
						}
						if err := keys.InsertSigningKey(ctx, testKey("k5")); err != nil {
							return fmt.Errorf("the successor: %w", err)
						}
						ks, err := keys.SigningKeys(ctx, store.PurposeLog)
						var active []string
						for _, k := range ks {
							if k.Status == store.KeyActive {
								active = append(active, k.KID)
							}
						}
						if err != nil || len(ks) != 4 || !slices.Equal(active, []string{"k5"}) {
							return fmt.Errorf("after a rotation: %+v, %v", ks, err)
						}
						return nil
					}},
				}
				for _, step := range steps {
					err := lg.in(c, func(ctx context.Context, _ store.LogTx, keys store.KeyTx) error { return step.fn(ctx, keys) })
					if err != nil && !errors.Is(err, errRollback) {
						t.Fatalf("%s: %v", step.name, err)
					}
				}
			})
			t.Run("first keys at once", func(t *testing.T) {
				// Two transactions each create the first receipt key. The
				// second is refused once the first commits (on PostgreSQL
				// its insert waits for that; SQLite's BEGIN IMMEDIATE
				// waits), and then reads the first's key.
				receiptKey := func(kid string) store.SigningKey {
					k := testKey(kid)
					k.Purpose = store.PurposeReceipt
					return k
				}
				// The receipt key of step "insert" above goes first.
				if err := lg.in(c, func(ctx context.Context, _ store.LogTx, keys store.KeyTx) error {
					return keys.RetireSigningKey(ctx, "k2", time.Now())
				}); err != nil {
					t.Fatal(err)
				}
				inserted, commit, first := make(chan struct{}), make(chan struct{}), make(chan error, 1)
				var rollback chan struct{}
				go func() {
					first <- lg.in(c, func(ctx context.Context, _ store.LogTx, keys store.KeyTx) error {
						defer func() { <-commit }()
						defer close(inserted)
						return keys.InsertSigningKey(ctx, receiptKey("first"))
					})
				}()
				<-inserted
				time.AfterFunc(100*time.Millisecond, func() { close(commit) })
				var ks []store.SigningKey
				err := lg.in(c, func(ctx context.Context, _ store.LogTx, keys store.KeyTx) error {
					if err := keys.InsertSigningKey(ctx, receiptKey("second")); !errors.Is(err, store.ErrConflict) {
						return fmt.Errorf("the second first key: %v", err)
					}
					var err error
					ks, err = keys.SigningKeys(ctx, store.PurposeReceipt)
					return err
				})
				if ferr := <-first; ferr != nil {
					t.Fatalf("the first key: %v", ferr)
				}
				if err != nil || len(ks) != 2 || ks[1].KID != "first" || ks[1].Status != store.KeyActive {
					t.Fatalf("the second transaction: %v; it read %+v", err, ks)
				}

				// A first key whose transaction rolls back leaves room: the
				// other creator's key is stored.
				if err := lg.in(c, func(ctx context.Context, _ store.LogTx, keys store.KeyTx) error {
					return keys.RetireSigningKey(ctx, "first", time.Now())
				}); err != nil {
					t.Fatal(err)
				}
				inserted, rollback, first = make(chan struct{}), make(chan struct{}), make(chan error, 1)
				go func() {
					first <- lg.in(c, func(ctx context.Context, _ store.LogTx, keys store.KeyTx) error {
						err := keys.InsertSigningKey(ctx, receiptKey("rolled-back"))
						close(inserted)
						<-rollback
						if err != nil {
							return err
						}
						return errRollback
					})
				}()
				<-inserted
				time.AfterFunc(100*time.Millisecond, func() { close(rollback) })
				err = lg.in(c, func(ctx context.Context, _ store.LogTx, keys store.KeyTx) error {
					if err := keys.InsertSigningKey(ctx, receiptKey("after")); err != nil {
						return fmt.Errorf("the key after a rolled-back one: %w", err)
					}
					var err error
					ks, err = keys.SigningKeys(ctx, store.PurposeReceipt)
					return err
				})
				if ferr := <-first; !errors.Is(ferr, errRollback) {
					t.Fatalf("the rolled-back key: %v", ferr)
				}
				if err != nil || len(ks) != 3 || ks[2].KID != "after" || ks[2].Status != store.KeyActive {
					t.Fatalf("after a rolled-back first key: %v; read %+v", err, ks)
				}
			})
		})
	}
}

func testBundle(rev string) store.PolicyBundle {
	raw := []byte("tar.gz of " + rev)
	d := sha256.Sum256(raw)
	idx := uint64(len(rev)) // any entry's index
	return store.PolicyBundle{Revision: rev, Digest: d[:], Bundle: raw, Manifest: `{"revision":"` + rev + `","roots":["tenant"]}`, UploadedBy: "usr_author", LedgerIndex: &idx}
}

func testPolicies(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	beta := CreateTenant(t, b, "beta")
	c := ctx(t)
	steps := []struct {
		name   string
		tenant store.Tenant
		fn     func(ctx context.Context, p store.PolicyTx) error
	}{
		{"nothing active yet", acme, func(ctx context.Context, p store.PolicyTx) error {
			if _, _, err := p.ActiveBundle(ctx); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("active bundle of a new org: %v", err)
			}
			return nil
		}},
		{"upload two revisions", acme, func(ctx context.Context, p store.PolicyTx) error {
			if err := p.InsertBundle(ctx, testBundle("v1")); err != nil {
				return err
			}
			return p.InsertBundle(ctx, testBundle("v2"))
		}},
		{"same revision again", acme, func(ctx context.Context, p store.PolicyTx) error {
			if err := p.InsertBundle(ctx, testBundle("v1")); !errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("duplicate revision: %v", err)
			}
			return errRollback
		}},
		{"invalid bundle", acme, func(ctx context.Context, p store.PolicyTx) error {
			bad := testBundle("v3")
			bad.Digest = nil
			if err := p.InsertBundle(ctx, bad); !errors.Is(err, store.ErrInvalid) {
				return fmt.Errorf("bundle without digest: %v", err)
			}
			unbound := testBundle("v3")
			unbound.LedgerIndex = nil
			if err := p.InsertBundle(ctx, unbound); !errors.Is(err, store.ErrInvalid) {
				return fmt.Errorf("bundle naming no ledger entry: %v", err)
			}
			return nil
		}},
		{"activate unknown revision", acme, func(ctx context.Context, p store.PolicyTx) error {
			idx := uint64(0)
			if _, err := p.Activate(ctx, store.PolicyActivation{Revision: "v9", ActivatedBy: "usr_a", LedgerIndex: &idx}); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("activate unknown: %v", err)
			}
			return errRollback
		}},
		{"activate, then roll back", acme, func(ctx context.Context, p store.PolicyTx) error {
			at := func(i uint64) *uint64 { return &i }
			for _, a := range []store.PolicyActivation{
				{Revision: "v1", ActivatedBy: "usr_a", ApprovedBy: "usr_b", LedgerIndex: at(3)},
				{Revision: "v2", ActivatedBy: "usr_a", ApprovedBy: "usr_b", LedgerIndex: at(0), Seq: 2},
				{Revision: "v1", ActivatedBy: "usr_b", ApprovedBy: "usr_a", Rollback: true, LedgerIndex: at(1 << 40)},
			} {
				if _, err := p.Activate(ctx, a); err != nil {
					return err
				}
			}
			return nil
		}},
		{"read back", acme, func(ctx context.Context, p store.PolicyTx) error {
			act, bundle, err := p.ActiveBundle(ctx)
			if err != nil || act.Seq != 3 || act.Revision != "v1" || !act.Rollback || string(bundle.Bundle) != "tar.gz of v1" ||
				act.LedgerIndex == nil || *act.LedgerIndex != 1<<40 {
				return fmt.Errorf("active: %+v %q, %v", act, bundle.Bundle, err)
			}
			acts, err := p.Activations(ctx)
			if err != nil || len(acts) != 3 || acts[1].Revision != "v2" || acts[0].ApprovedBy != "usr_b" || acts[0].ActivatedAt.IsZero() ||
				acts[0].LedgerIndex == nil || *acts[0].LedgerIndex != 3 || acts[1].LedgerIndex == nil || *acts[1].LedgerIndex != 0 {
				return fmt.Errorf("activations %+v, %v", acts, err)
			}
			list, err := p.Bundles(ctx)
			if err != nil || len(list) != 2 || list[0].Bundle != nil || list[0].UploadedAt.IsZero() || len(list[0].Digest) != 32 ||
				list[0].LedgerIndex == nil || *list[0].LedgerIndex != 2 || bundle.LedgerIndex == nil || *bundle.LedgerIndex != 2 {
				return fmt.Errorf("bundles %+v, %v", list, err)
			}
			at := func(i uint64) *uint64 { return &i }
			if err := p.AddVerificationKey(ctx, store.PolicyVerificationKey{KID: "ci", PublicPEM: "-----BEGIN PUBLIC KEY-----", Algorithm: "PS256", LedgerIndex: at(7)}); err != nil {
				return err
			}
			if err := p.AddVerificationKey(ctx, store.PolicyVerificationKey{KID: "old", PublicPEM: "-----BEGIN PUBLIC KEY-----", LedgerIndex: at(1 << 40)}); err != nil {
				return err
			}
			ks, err := p.VerificationKeys(ctx)
			if err != nil || len(ks) != 2 || ks[0].KID != "ci" || ks[0].Algorithm != "PS256" || ks[1].KID != "old" || ks[1].Algorithm != "" ||
				ks[0].LedgerIndex == nil || *ks[0].LedgerIndex != 7 || ks[1].LedgerIndex == nil || *ks[1].LedgerIndex != 1<<40 {
				return fmt.Errorf("verification keys %+v, %v", ks, err)
			}

			return nil
		}},
		// An activation names its ledger entry and takes the next seq: a
		// writer cannot leave the entry out or jump ahead.
		{"an activation's seq and entry", acme, func(ctx context.Context, p store.PolicyTx) error {
			at := func(i uint64) *uint64 { return &i }
			if _, err := p.Activate(ctx, store.PolicyActivation{Revision: "v2", ActivatedBy: "usr_a"}); !errors.Is(err, store.ErrInvalid) {
				return fmt.Errorf("an activation naming no entry: %v", err)
			}
			if _, err := p.Activate(ctx, store.PolicyActivation{Revision: "v2", ActivatedBy: "usr_a", LedgerIndex: at(1 << 63)}); !errors.Is(err, store.ErrInvalid) {
				return fmt.Errorf("a ledger index past the column: %v", err)
			}
			a, err := p.Activate(ctx, store.PolicyActivation{Revision: "v2", ActivatedBy: "usr_a", ApprovedBy: "usr_b", Seq: 4, LedgerIndex: at(9)})
			if err != nil || a.Seq != 4 {
				return fmt.Errorf("the next seq given: %+v, %v", a, err)
			}
			if _, err := p.Activate(ctx, store.PolicyActivation{Revision: "v1", ActivatedBy: "usr_a", Seq: 1 << 62, LedgerIndex: at(10)}); !errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("a seq far ahead: %v", err)
			}
			return errRollback
		}},
		// Only the algorithms a bundle signature may use.
		{"a key for HS256 is refused", acme, func(ctx context.Context, p store.PolicyTx) error {
			idx := uint64(8)
			if err := p.AddVerificationKey(ctx, store.PolicyVerificationKey{KID: "hmac", PublicPEM: "x", Algorithm: "HS256", LedgerIndex: &idx}); err == nil {
				return errors.New("a key for HS256 was stored")
			}
			return errRollback
		}},
		// A key names the entry that registers it.
		{"a key naming no entry is refused", acme, func(ctx context.Context, p store.PolicyTx) error {
			if err := p.AddVerificationKey(ctx, store.PolicyVerificationKey{KID: "k", PublicPEM: "-----BEGIN PUBLIC KEY-----"}); !errors.Is(err, store.ErrInvalid) {
				return fmt.Errorf("a key naming no entry: %v", err)
			}
			past := uint64(1 << 63)
			if err := p.AddVerificationKey(ctx, store.PolicyVerificationKey{KID: "k", PublicPEM: "-----BEGIN PUBLIC KEY-----", LedgerIndex: &past}); !errors.Is(err, store.ErrInvalid) {
				return fmt.Errorf("a ledger index past the column: %v", err)
			}
			return errRollback
		}},
		{"another organization sees none of it", beta, func(ctx context.Context, p store.PolicyTx) error {
			if _, _, err := p.ActiveBundle(ctx); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("beta sees an active bundle: %v", err)
			}
			if _, err := p.Bundle(ctx, "v1"); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("beta reads acme's bundle: %v", err)
			}
			if list, err := p.Bundles(ctx); err != nil || len(list) != 0 {
				return fmt.Errorf("beta lists %d bundles, %v", len(list), err)
			}
			if ks, err := p.VerificationKeys(ctx); err != nil || len(ks) != 0 {
				return fmt.Errorf("beta sees keys: %d, %v", len(ks), err)
			}
			idx := uint64(0)
			if _, err := p.Activate(ctx, store.PolicyActivation{Revision: "v1", ActivatedBy: "usr_x", LedgerIndex: &idx}); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("beta activates acme's revision: %v", err)
			}
			return errRollback
		}},
	}
	for _, st := range steps {
		err := b.InTenantTx(c, st.tenant.ID, func(ctx context.Context, tx store.TenantTx) error { return st.fn(ctx, tx.Policies()) })
		if err != nil && !errors.Is(err, errRollback) {
			t.Fatalf("%s: %v", st.name, err)
		}
	}
	for _, stmt := range []string{
		`UPDATE policy_bundles SET manifest = '{}'`,
		`DELETE FROM policy_bundles`,
		`UPDATE policy_activations SET revision = 'v2'`,
		`DELETE FROM policy_activations`,
		`UPDATE policy_verification_keys SET public_pem = 'evil'`,
	} {
		if n, err := h.RawTenantExec(c, b, acme.ID, stmt); err == nil {
			t.Errorf("%s: accepted (%d rows)", stmt, n)
		}
	}
}

func testAppendOnly(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	c := ctx(t)
	// Each store also has a retired receipt key, the only one of its
	// purpose: nothing but its retirement being final keeps it retired.
	retired := testKey("r")
	retired.Purpose = store.PurposeReceipt
	err := b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.Keys().InsertSigningKey(ctx, testKey("k")); err != nil {
			return err
		}
		if err := tx.Keys().InsertSigningKey(ctx, retired); err != nil {
			return err
		}
		if err := tx.Keys().RetireSigningKey(ctx, "r", time.Now()); err != nil {
			return err
		}
		_, err := AppendBatch(ctx, tx.Log(), 256, "acme")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = b.InPlatformTx(c, func(ctx context.Context, tx store.PlatformTx) error {
		if err := tx.Keys().InsertSigningKey(ctx, testKey("k")); err != nil {
			return err
		}
		if err := tx.Keys().InsertSigningKey(ctx, retired); err != nil {
			return err
		}
		if err := tx.Keys().RetireSigningKey(ctx, "r", time.Now()); err != nil {
			return err
		}
		_, err := AppendBatch(ctx, tx.Log(), 256, "platform")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tamper := []string{
		`UPDATE %sledger_entries SET idx = idx + 1000`,
		`UPDATE %sledger_entries SET entry = leaf_hash WHERE idx = 0`,
		`UPDATE %sledger_entries SET record = leaf_hash WHERE idx = 1`,
		`DELETE FROM %sledger_entries WHERE idx = 1`,
		`DELETE FROM %sledger_entries`,
		`UPDATE %sledger_nodes SET hash = hash`,
		`DELETE FROM %sledger_nodes`,
		`UPDATE %sledger_checkpoints SET note = root`,
		`DELETE FROM %sledger_checkpoints`,
		`UPDATE %ssigning_keys SET public_key = sealed_private`,
		`UPDATE %ssigning_keys SET kid = 'other'`,
		`UPDATE %ssigning_keys SET status = 'active', retired_at = NULL WHERE status = 'retired'`,
		`DELETE FROM %ssigning_keys`,
	}
	for _, stmt := range tamper {
		if n, err := h.RawTenantExec(c, b, acme.ID, fmt.Sprintf(stmt, "")); err == nil {
			t.Errorf("tenant: %s: accepted (%d rows)", fmt.Sprintf(stmt, ""), n)
		}
		if n, err := h.RawPlatformExec(c, b, fmt.Sprintf(stmt, "platform_")); err == nil {
			t.Errorf("platform: %s: accepted (%d rows)", fmt.Sprintf(stmt, "platform_"), n)
		}
	}
	// Nothing changed.
	err = b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		es, err := tx.Log().Entries(ctx, 0, 1000)
		if err != nil {
			return err
		}
		if len(es) != 256 || string(es[0].Entry) != string(leaf(0, "acme").Entry) {
			return fmt.Errorf("ledger altered: %d entries", len(es))
		}
		ks, err := tx.Keys().SigningKeys(ctx, store.PurposeLog)
		if err != nil || len(ks) != 1 || string(ks[0].PublicKey) != "public k" {
			return fmt.Errorf("keys altered: %+v, %v", ks, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Organizations are suspended, never deleted or renamed.
	for _, stmt := range []string{
		`DELETE FROM tenants`,
		`UPDATE tenants SET slug = 'renamed'`,
	} {
		if n, err := h.RawPlatformExec(c, b, stmt); err == nil {
			t.Errorf("%s: accepted (%d rows)", stmt, n)
		}
	}
	if ref, err := b.ResolveTenant(c, "acme"); err != nil || ref.ID != acme.ID {
		t.Fatalf("tenant altered: %+v, %v", ref, err)
	}
}

func testConcurrent(t *testing.T, h Harness) {
	b := newBackend(t, h)
	tenants := []store.Tenant{CreateTenant(t, b, "alpha"), CreateTenant(t, b, "bravo")}
	c := ctx(t)
	const workers, perWorker = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, 3*workers)
	run := func(in func(func(context.Context, store.LogTx) error) error, tag string) {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perWorker {
					// LockLog serialises writers of one log: no worker
					// may ever see a conflict, whatever the interleaving.
					if err := in(func(ctx context.Context, log store.LogTx) error {
						_, err := AppendBatch(ctx, log, 1, tag)
						return err
					}); err != nil {
						errs <- fmt.Errorf("%s: %w", tag, err)
						return
					}
				}
			}()
		}
	}
	for _, tn := range tenants {
		run(func(fn func(context.Context, store.LogTx) error) error {
			return b.InTenantTx(c, tn.ID, func(ctx context.Context, tx store.TenantTx) error { return fn(ctx, tx.Log()) })
		}, tn.Slug)
	}
	run(func(fn func(context.Context, store.LogTx) error) error {
		return b.InPlatformTx(c, func(ctx context.Context, tx store.PlatformTx) error { return fn(ctx, tx.Log()) })
	}, "platform")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	check := func(tag string, log store.LogTx, ctx context.Context) error {
		es, err := log.Entries(ctx, 0, 1000)
		if err != nil {
			return err
		}
		if len(es) != workers*perWorker {
			return fmt.Errorf("%s: %d entries, want %d", tag, len(es), workers*perWorker)
		}
		for i, e := range es {
			if e.Index != uint64(i) || !strings.Contains(string(e.Entry), tag) {
				return fmt.Errorf("%s: entry %d = %s", tag, i, e.Entry)
			}
		}
		sizes, err := log.CheckpointSizes(ctx)
		if err != nil || len(sizes) != workers*perWorker {
			return fmt.Errorf("%s: %d checkpoints, %v", tag, len(sizes), err)
		}
		return nil
	}
	for _, tn := range tenants {
		if err := b.InTenantTx(c, tn.ID, func(ctx context.Context, tx store.TenantTx) error { return check(tn.Slug, tx.Log(), ctx) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.InPlatformTx(c, func(ctx context.Context, tx store.PlatformTx) error { return check("platform", tx.Log(), ctx) }); err != nil {
		t.Fatal(err)
	}
}

func testClosed(t *testing.T, h Harness) {
	b := h.New(t)
	acme := CreateTenant(t, b, "acme")
	// Remembered (store.TenantRefs), yet not given out once closed.
	if _, err := b.ResolveTenantID(ctx(t), acme.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c := ctx(t)
	_, err0 := b.ResolveTenantID(c, acme.ID)
	wantErr(t, "ResolveTenantID after Close", err0, store.ErrUnavailable)
	err := b.InTenantTx(c, acme.ID, func(context.Context, store.TenantTx) error { return nil })
	wantErr(t, "InTenantTx after Close", err, store.ErrUnavailable)
	err = b.InPlatformTx(c, func(context.Context, store.PlatformTx) error { return nil })
	wantErr(t, "InPlatformTx after Close", err, store.ErrUnavailable)
	err = b.InTenantReadTx(c, acme.ID, func(context.Context, store.TenantTx) error { return nil })
	wantErr(t, "InTenantReadTx after Close", err, store.ErrUnavailable)
	err = b.InPlatformReadTx(c, func(context.Context, store.PlatformTx) error { return nil })
	wantErr(t, "InPlatformReadTx after Close", err, store.ErrUnavailable)
	wantErr(t, "Ping after Close", b.Ping(c), store.ErrUnavailable)
}

// HoldWriter holds tenantID's store for writing, with its log's lock, as a
// ledger batch does while it commits, until the test calls the returned
// release (which waits for the transaction to end). On the embedded store
// that is the file's one writing connection.
func HoldWriter(t testing.TB, b store.TenantStore, tenantID string) (release func()) {
	t.Helper()
	return hold(t, func(fn func(context.Context, store.LogTx) error) error {
		return b.InTenantTx(context.Background(), tenantID, func(ctx context.Context, tx store.TenantTx) error {
			return fn(ctx, tx.Log())
		})
	})
}

// HoldPlatformWriter is HoldWriter for the platform's store and log.
func HoldPlatformWriter(t testing.TB, b store.PlatformStore) (release func()) {
	t.Helper()
	return hold(t, func(fn func(context.Context, store.LogTx) error) error {
		return b.InPlatformTx(context.Background(), func(ctx context.Context, tx store.PlatformTx) error {
			return fn(ctx, tx.Log())
		})
	})
}

// hold runs a write transaction (in) that locks its log and waits for
// release.
func hold(t testing.TB, in func(fn func(context.Context, store.LogTx) error) error) (release func()) {
	t.Helper()
	held, stop, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- in(func(ctx context.Context, lt store.LogTx) error {
			if err := lt.LockLog(ctx); err != nil {
				return err
			}
			close(held)
			<-stop
			return nil
		})
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("holding the store for writing: %v", err)
	}
	return func() {
		close(stop)
		if err := <-done; err != nil {
			t.Errorf("holding the store for writing: %v", err)
		}
	}
}
