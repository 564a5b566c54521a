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
	// API (SQLite: the organization's file; PostgreSQL: the tenant role with
	// app.tenant_id set to tenantID) — and reports rows affected.
	RawTenantExec func(ctx context.Context, b store.Backend, tenantID, stmt string) (int64, error)
	// RawPlatformExec does the same on the platform side.
	RawPlatformExec func(ctx context.Context, b store.Backend, stmt string) (int64, error)
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	t.Run("Platform", func(t *testing.T) { testPlatform(t, h) })
	t.Run("ResolveTenant", func(t *testing.T) { testResolve(t, h) })
	t.Run("Settings", func(t *testing.T) { testSettings(t, h) })
	t.Run("TenantTxRejectsBadTenants", func(t *testing.T) { testBadTenants(t, h) })
	t.Run("Rollback", func(t *testing.T) { testRollback(t, h) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, h) })
	t.Run("Ledger", func(t *testing.T) { testLedger(t, h) })
	t.Run("AppendOnly", func(t *testing.T) { testAppendOnly(t, h) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, h) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, h) })
}

func newBackend(t *testing.T, h Harness) store.Backend {
	t.Helper()
	b := h.New(t)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// CreateTenant creates an organization through the platform plane.
func CreateTenant(t *testing.T, b store.Backend, slug string) store.Tenant {
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
	_, err = b.ResolveTenant(ctx(t), "a' OR '1'='1")
	wantErr(t, "injection slug", err, store.ErrInvalid)
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

func leaf(i uint64, tenant string) store.LedgerEntry {
	e := []byte(fmt.Sprintf(`{"index":%d,"tenant":%q}`, i, tenant))
	h := sha256.Sum256(append([]byte{0}, e...))
	return store.LedgerEntry{Index: i, Entry: e, LeafHash: h[:]}
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
		return tx.AppendLedgerEntries(ctx, []store.LedgerEntry{leaf(0, "alpha"), leaf(1, "alpha"), leaf(2, "alpha")})
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
		if n, err := tx.LedgerSize(ctx); err != nil || n != 0 {
			return fmt.Errorf("bravo ledger size %d, %v", n, err)
		}
		if es, err := tx.LedgerEntries(ctx, 0, 100); err != nil || len(es) != 0 {
			return fmt.Errorf("bravo reads alpha's entries: %d, %v", len(es), err)
		}
		// Bravo's log starts at 0, independent of alpha's.
		if err := tx.AppendLedgerEntries(ctx, []store.LedgerEntry{leaf(0, "bravo")}); err != nil {
			return err
		}
		return tx.PutSetting(ctx, "secret", "bravo-only")
	}))
	must(b.InTenantTx(c, a.ID, func(ctx context.Context, tx store.TenantTx) error {
		s, err := tx.GetSetting(ctx, "secret")
		if err != nil || s.Value != "alpha-only" {
			return fmt.Errorf("alpha's setting changed by bravo: %+v, %v", s, err)
		}
		es, err := tx.LedgerEntries(ctx, 0, 100)
		if err != nil || len(es) != 3 {
			return fmt.Errorf("alpha entries: %d, %v", len(es), err)
		}
		for _, e := range es {
			if !strings.Contains(string(e.Entry), `"alpha"`) {
				return fmt.Errorf("alpha reads a foreign entry: %s", e.Entry)
			}
		}
		return nil
	}))
}

func testLedger(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	c := ctx(t)
	err := b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.AppendLedgerEntries(ctx, nil); err != nil {
			return fmt.Errorf("empty batch: %v", err)
		}
		batch := []store.LedgerEntry{leaf(0, "acme"), leaf(1, "acme")}
		if err := tx.AppendLedgerEntries(ctx, batch); err != nil {
			return err
		}
		if err := tx.AppendLedgerEntries(ctx, []store.LedgerEntry{leaf(2, "acme")}); err != nil {
			return err
		}
		n, err := tx.LedgerSize(ctx)
		if err != nil || n != 3 {
			return fmt.Errorf("size %d, %v", n, err)
		}
		es, err := tx.LedgerEntries(ctx, 1, 3)
		if err != nil || len(es) != 2 || es[0].Index != 1 || es[1].Index != 2 {
			return fmt.Errorf("range [1,3): %+v, %v", es, err)
		}
		want := leaf(1, "acme")
		if string(es[0].Entry) != string(want.Entry) || string(es[0].LeafHash) != string(want.LeafHash) || es[0].CreatedAt.IsZero() {
			return fmt.Errorf("entry 1 read back as %+v", es[0])
		}
		if es, err := tx.LedgerEntries(ctx, 3, ^uint64(0)); err != nil || len(es) != 0 {
			return fmt.Errorf("range past the end: %d, %v", len(es), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		batch  []store.LedgerEntry
		target error
	}{
		{"index already taken", []store.LedgerEntry{leaf(2, "acme")}, store.ErrConflict},
		{"gap", []store.LedgerEntry{leaf(7, "acme")}, store.ErrConflict},
		{"non-consecutive batch", []store.LedgerEntry{leaf(3, "acme"), leaf(5, "acme")}, store.ErrInvalid},
		{"short hash", []store.LedgerEntry{{Index: 3, Entry: []byte("x"), LeafHash: []byte{1}}}, store.ErrInvalid},
		{"empty entry", []store.LedgerEntry{{Index: 3, LeafHash: make([]byte, 32)}}, store.ErrInvalid},
		{"oversized entry", []store.LedgerEntry{{Index: 3, Entry: make([]byte, store.MaxLedgerEntry+1), LeafHash: make([]byte, 32)}}, store.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
				return tx.AppendLedgerEntries(ctx, tc.batch)
			})
			wantErr(t, tc.name, err, tc.target)
		})
	}
}

func testAppendOnly(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	c := ctx(t)
	err := b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.AppendLedgerEntries(ctx, []store.LedgerEntry{leaf(0, "acme"), leaf(1, "acme")})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`UPDATE ledger_entries SET idx = idx + 100`,
		`UPDATE ledger_entries SET entry = leaf_hash WHERE idx = 0`,
		`DELETE FROM ledger_entries WHERE idx = 1`,
		`DELETE FROM ledger_entries`,
	} {
		n, err := h.RawTenantExec(c, b, acme.ID, stmt)
		if err == nil {
			t.Errorf("%s: accepted (%d rows)", stmt, n)
		}
	}
	// Nothing changed.
	err = b.InTenantTx(c, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		es, err := tx.LedgerEntries(ctx, 0, 10)
		if err != nil {
			return err
		}
		if len(es) != 2 || string(es[0].Entry) != string(leaf(0, "acme").Entry) {
			return fmt.Errorf("ledger altered: %+v", es)
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
	errs := make(chan error, 2*workers)
	for _, tn := range tenants {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWorker {
					// Each worker appends at the current end of its log;
					// a racing worker's commit surfaces as ErrConflict and
					// is retried, never as a lost or duplicated index.
					for attempt := 0; ; attempt++ {
						err := b.InTenantTx(c, tn.ID, func(ctx context.Context, tx store.TenantTx) error {
							n, err := tx.LedgerSize(ctx)
							if err != nil {
								return err
							}
							if err := tx.PutSetting(ctx, fmt.Sprintf("w%d-%d", w, i), tn.Slug); err != nil {
								return err
							}
							return tx.AppendLedgerEntries(ctx, []store.LedgerEntry{leaf(n, tn.Slug)})
						})
						if err == nil {
							break
						}
						if !errors.Is(err, store.ErrConflict) || attempt > 1000 {
							errs <- err
							return
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, tn := range tenants {
		err := b.InTenantTx(c, tn.ID, func(ctx context.Context, tx store.TenantTx) error {
			es, err := tx.LedgerEntries(ctx, 0, 1000)
			if err != nil {
				return err
			}
			if len(es) != workers*perWorker {
				return fmt.Errorf("%s: %d entries, want %d", tn.Slug, len(es), workers*perWorker)
			}
			for i, e := range es {
				if e.Index != uint64(i) || !strings.Contains(string(e.Entry), tn.Slug) {
					return fmt.Errorf("%s: entry %d = %s", tn.Slug, i, e.Entry)
				}
			}
			list, err := tx.ListSettings(ctx)
			if err != nil || len(list) != workers*perWorker {
				return fmt.Errorf("%s: %d settings, %v", tn.Slug, len(list), err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func testClosed(t *testing.T, h Harness) {
	b := h.New(t)
	acme := CreateTenant(t, b, "acme")
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c := ctx(t)
	err := b.InTenantTx(c, acme.ID, func(context.Context, store.TenantTx) error { return nil })
	wantErr(t, "InTenantTx after Close", err, store.ErrUnavailable)
	err = b.InPlatformTx(c, func(context.Context, store.PlatformTx) error { return nil })
	wantErr(t, "InPlatformTx after Close", err, store.ErrUnavailable)
	wantErr(t, "Ping after Close", b.Ping(c), store.ErrUnavailable)
}
