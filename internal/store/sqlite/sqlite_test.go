package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{DataDir: dir})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) store.Backend { return openTest(t, t.TempDir()) },
		RawTenantExec: func(ctx context.Context, b store.Backend, tenantID, stmt string) (int64, error) {
			db, err := b.(*Store).tenantDB(ctx, tenantID)
			if err != nil {
				return 0, err
			}
			res, err := db.ExecContext(ctx, stmt)
			if err != nil {
				return 0, mapErr(err)
			}
			return res.RowsAffected()
		},
		RawPlatformExec: func(ctx context.Context, b store.Backend, stmt string) (int64, error) {
			res, err := b.(*Store).platform.ExecContext(ctx, stmt)
			if err != nil {
				return 0, mapErr(err)
			}
			return res.RowsAffected()
		},
		Tamper: func(t *testing.T, b store.Backend, tenantID string, stmts ...string) {
			sqlitetest.Plant(t, b.(*Store).TenantFile(tenantID), stmts...)
		},
	})
}

// The append-only refusal is the database's, named as such.
func TestAppendOnlyIsTheTriggers(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	acme := storetest.CreateTenant(t, s, "acme")
	ctx := context.Background()
	db, err := s.tenantDB(ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO ledger_entries VALUES (?, 0, x'01', zeroblob(32), x'', '2026-01-01T00:00:00Z')`, acme.ID); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{`UPDATE ledger_entries SET entry = x'02'`, `DELETE FROM ledger_entries`} {
		_, err := db.ExecContext(ctx, stmt)
		if !errors.Is(mapErr(err), store.ErrAppendOnly) {
			t.Errorf("%s: %v, want ErrAppendOnly", stmt, err)
		}
	}
	// Nor can SQL on the app's own connection get around them: REPLACE
	// deletes the row it conflicts with (the delete trigger fires:
	// recursive triggers are on), the triggers cannot be dropped or the
	// schema made writable (the authorizer, and defensive mode), and no
	// other file can be attached — another organization's, or platform.db.
	other := storetest.CreateTenant(t, s, "other")
	if _, err := s.tenantDB(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`REPLACE INTO ledger_entries SELECT * FROM ledger_entries`,
		`INSERT OR REPLACE INTO ledger_entries SELECT * FROM ledger_entries`,
		`REPLACE INTO tenant_meta SELECT * FROM tenant_meta`,
		`DROP TRIGGER ledger_entries_no_delete`,
		`PRAGMA recursive_triggers = OFF`,
		`PRAGMA writable_schema = ON`,
		`DELETE FROM sqlite_schema WHERE type = 'trigger'`,
		`ATTACH DATABASE '` + s.TenantFile(other.ID) + `' AS other`,
		`ATTACH DATABASE '` + filepath.Join(s.DataDir(), "platform.db") + `' AS platform`,
		`CREATE TABLE mine (x)`,
		`CREATE TEMP TRIGGER t BEFORE INSERT ON ledger_entries BEGIN SELECT 1; END`,
		`ALTER TABLE ledger_entries RENAME TO old_entries`,
		`DROP TABLE assertion_jtis`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err == nil {
			t.Errorf("%s: accepted", stmt)
		}
	}
	// What the store itself runs on them stays allowed: the background
	// checkpointer's pragma, and reading one.
	var busy, frames, copied int
	if err := db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
		t.Errorf("wal_checkpoint refused: %v", err)
	}
	var fk int
	if err := db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("reading foreign_keys: %d, %v", fk, err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM ledger_entries WHERE entry = x'01'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the entry after the attempts: %d, %v", n, err)
	}
	// The platform file's own connection too.
	if _, err := s.platform.ExecContext(ctx, `INSERT INTO agent_directory (agent_id, tenant_id, created_at) VALUES (?, ?, ?)`,
		store.NewID(store.PrefixAgent), acme.ID, "2026-01-01T00:00:00Z"); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`REPLACE INTO tenants SELECT * FROM tenants`,
		`REPLACE INTO agent_directory SELECT * FROM agent_directory`,
		`ATTACH DATABASE '` + s.TenantFile(acme.ID) + `' AS acme`,
		`DROP TRIGGER tenants_no_delete`,
	} {
		if _, err := s.platform.ExecContext(ctx, stmt); err == nil {
			t.Errorf("platform: %s: accepted", stmt)
		}
	}
}

// A data directory that is a symbolic link is changed by nothing through
// the link, but one whose target is open beyond its owner is warned of:
// whoever may write in it may rename or delete master.key. A link to a
// private directory is not.
func TestLinkedDataDirIsWarnedOf(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o777, true}, {0o750, true}, {0o700, false}} {
		target := filepath.Join(t.TempDir(), "target")
		if err := os.Mkdir(target, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(target, tc.mode); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(t.TempDir(), "data")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		var logged bytes.Buffer
		s, err := Open(context.Background(), Config{DataDir: link, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if got := strings.Contains(logged.String(), "symbolic link to a directory open beyond its owner"); got != tc.warn {
			t.Errorf("a link to a %v directory: warned %v, want %v: %s", tc.mode, got, tc.warn, logged.String())
		}
		if strings.Contains(logged.String(), target) {
			t.Errorf("the warning names the path: %s", logged.String())
		}
		if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != tc.mode {
			t.Errorf("the target's mode changed through the link: %v, %v", fi.Mode().Perm(), err)
		}
	}
}

func TestFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	// Directories made by hand, open to everyone: tightened.
	if err := os.MkdirAll(filepath.Join(dir, "tenants"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "tenants")} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A setgid directory (a volume shared through its group) stays so.
	if err := os.Chmod(filepath.Join(dir, "tenants"), 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, dir)
	if fi, err := os.Stat(filepath.Join(dir, "tenants")); err != nil || fi.Mode()&os.ModeSetgid == 0 {
		t.Errorf("tenants: mode %v, %v; want its setgid bit kept", fi.Mode(), err)
	}
	acme := storetest.CreateTenant(t, s, "acme")
	err := s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.PutSetting(ctx, "k", "v")
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "tenants")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, %v; want 0700", d, fi.Mode().Perm(), err)
		}
	}
	tenantFile := s.TenantFile(acme.ID)
	if filepath.Dir(tenantFile) != filepath.Join(dir, "tenants") {
		t.Fatalf("tenant file at %s", tenantFile)
	}
	for _, f := range []string{filepath.Join(dir, "platform.db"), tenantFile, tenantFile + "-wal", tenantFile + "-shm"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(f), fi.Mode().Perm())
		}
	}
	var mode string
	var sync int
	db, _ := s.tenantDB(context.Background(), acme.ID)
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v", mode, err)
	}
	if err := db.QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
		t.Errorf("synchronous = %d, %v; want 2 (FULL)", sync, err)
	}
	// Savepoint journals in memory: a decision batch's per-request
	// savepoints would otherwise write every page twice, once to a temp file.
	var temp int
	if err := db.QueryRow(`PRAGMA temp_store`).Scan(&temp); err != nil || temp != 2 {
		t.Errorf("temp_store = %d, %v; want 2 (MEMORY)", temp, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A looser mode left by hand is tightened on the next open.
	if err := os.Chmod(filepath.Join(dir, "platform.db"), 0o644); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	if fi, _ := os.Stat(filepath.Join(dir, "platform.db")); fi.Mode().Perm() != 0o600 {
		t.Errorf("platform.db not tightened: %v", fi.Mode().Perm())
	}

	// So is that of a WAL and its index left beside it, as a crash (or a
	// copy of a live store) leaves them: SQLite writes on in the WAL it
	// finds, whatever its mode.
	storetest.CreateTenant(t, s, "beta")
	crashed := t.TempDir()
	for _, f := range []string{"platform.db", "platform.db-wal", "platform.db-shm"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(crashed, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(crashed, "platform.db-wal")); err != nil || fi.Size() == 0 {
		t.Fatalf("no WAL to leave behind: %v, %v", fi, err)
	}
	c := openTest(t, crashed)
	defer c.Close()
	if _, err := c.ResolveTenant(context.Background(), "beta"); err != nil {
		t.Fatalf("the copy lost what its WAL held: %v", err)
	}
	for _, f := range []string{"platform.db", "platform.db-wal", "platform.db-shm"} {
		if fi, err := os.Stat(filepath.Join(crashed, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s not tightened: %v, %v", f, fi, err)
		}
	}
	// A WAL that is not a file (a symlink, to anywhere) is refused.
	linked := t.TempDir()
	if err := os.Symlink(filepath.Join(t.TempDir(), "elsewhere"), filepath.Join(linked, "platform.db-wal")); err != nil {
		t.Fatal(err)
	}
	if l, err := Open(context.Background(), Config{DataDir: linked}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		if err == nil {
			l.Close()
		}
		t.Errorf("a symlinked WAL: %v, want a refusal", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	acme := storetest.CreateTenant(t, s, "acme")
	put := func(s *Store) error {
		return s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			return tx.PutSetting(ctx, "k", "v")
		})
	}
	if err := put(s); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, dir)
	defer s.Close()
	err := s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		got, err := tx.GetSetting(ctx, "k")
		if err != nil || got.Value != "v" {
			t.Errorf("after reopen: %+v, %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Files the store creates have pageSize pages and are in WAL mode; a file
// created with other pages keeps them, is switched to WAL, and serves as
// before.
func TestPageSizeOfFiles(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	layout := func(db *sql.DB) (size int, mode string) {
		t.Helper()
		if err := db.QueryRowContext(ctx, `SELECT page_size, journal_mode FROM pragma_page_size, pragma_journal_mode`).Scan(&size, &mode); err != nil {
			t.Fatal(err)
		}
		return size, mode
	}
	fresh, old := storetest.CreateTenant(t, s, "fresh"), storetest.CreateTenant(t, s, "old")
	oldTenantFile(t, s.TenantFile(old.ID), old.ID)
	raw, err := sql.Open("sqlite", s.TenantFile(old.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	oldSize, _ := layout(raw)
	raw.Close()
	if oldSize == pageSize {
		t.Fatalf("the old file was made with %d-byte pages, the store's own size", oldSize)
	}

	want := map[string]int{"platform.db": pageSize, fresh.Slug: pageSize, old.Slug: oldSize}
	if size, mode := layout(s.platform); size != want["platform.db"] || mode != "wal" {
		t.Errorf("platform.db: %d-byte pages, journal mode %s", size, mode)
	}
	for _, org := range []store.Tenant{fresh, old} {
		err := s.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
			return tx.PutSetting(ctx, "k", org.Slug)
		})
		if err != nil {
			t.Fatalf("%s: %v", org.Slug, err)
		}
		err = s.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
			got, err := tx.GetSetting(ctx, "k")
			if err != nil || got.Value != org.Slug {
				t.Errorf("%s: read back %+v, %v", org.Slug, got, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		db, err := s.tenantDB(ctx, org.ID)
		if err != nil {
			t.Fatal(err)
		}
		if size, mode := layout(db); size != want[org.Slug] || mode != "wal" {
			t.Errorf("%s: %d-byte pages, journal mode %s; want %d and wal", org.Slug, size, mode, want[org.Slug])
		}
	}
}

// Two processes sharing a data directory may open an organization's file
// for the first time at once. The one that finds the file still empty
// while the other writes its WAL header is refused by SQLite at once,
// without its busy handler (it holds a read lock and wants the write
// lock); opening it waits, as a statement would, and both processes then
// work on the one file.
func TestTwoStoresCreateOneTenantFile(t *testing.T) {
	dir := t.TempDir()
	first, second := openTest(t, dir), openTest(t, dir)
	defer first.Close()
	defer second.Close()
	ctx := context.Background()
	for i := range 40 {
		org := storetest.CreateTenant(t, first, fmt.Sprintf("org-%d", i))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for n, s := range []*Store{first, second} {
			wg.Go(func() {
				<-start
				err := s.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
					return tx.PutSetting(ctx, fmt.Sprint("store-", n), "here")
				})
				if err != nil {
					t.Errorf("store %d, first open of %s: %v", n, org.Slug, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		for _, s := range []*Store{first, second} {
			err := s.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
				for n := range 2 {
					if got, err := tx.GetSetting(ctx, fmt.Sprint("store-", n)); err != nil || got.Value != "here" {
						t.Errorf("%s: store %d's write: %+v, %v", org.Slug, n, got, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// The wait for a file being created is bounded, by the busy timeout and
// by the caller's context, and ends when the other process lets go.
func TestOpeningAFileBeingCreatedGivesUp(t *testing.T) {
	dir := t.TempDir()
	const timeout = 300 * time.Millisecond
	s, err := Open(context.Background(), Config{DataDir: dir, BusyTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	org := storetest.CreateTenant(t, s, "acme")
	// Another process has created the file and holds the write lock on it
	// before it has written anything.
	if err := os.WriteFile(s.TenantFile(org.ID), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	creator, err := sql.Open("sqlite", s.TenantFile(org.ID)+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer creator.Close()
	tx, err := creator.Begin()
	if err != nil {
		t.Fatal(err)
	}
	putIn := func(ctx context.Context, s *Store) error {
		return s.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
			return tx.PutSetting(ctx, "k", "v")
		})
	}
	put := func(ctx context.Context) error { return putIn(ctx, s) }

	began := time.Now()
	err = put(context.Background())
	if waited := time.Since(began); err == nil || waited < timeout {
		t.Fatalf("open under another's write lock: %v after %v, want a refusal after the busy timeout (%v)", err, waited, timeout)
	}
	if !strings.Contains(err.Error(), "SQLITE_BUSY") {
		t.Errorf("refusal %q does not say the file is locked", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := put(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("open with a context that ends first: %v, want its deadline", err)
	}

	// A store that waits longer gets the file once the other process
	// lets go of it during the wait.
	patient, err := Open(context.Background(), Config{DataDir: dir, BusyTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer patient.Close()
	released := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		released <- tx.Rollback()
	}()
	if err := putIn(context.Background(), patient); err != nil {
		t.Fatalf("open while the lock is released: %v", err)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if err := put(context.Background()); err != nil {
		t.Fatalf("open once the lock is released: %v", err)
	}
}

// A tenant file copied under another organization's name is refused, not
// served as that organization's data.
func TestSwappedTenantFileRefused(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	a := storetest.CreateTenant(t, s, "alpha")
	b := storetest.CreateTenant(t, s, "bravo")
	err := s.InTenantTx(context.Background(), a.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.PutSetting(ctx, "secret", "alpha")
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw, err := os.ReadFile(s.TenantFile(a.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.TenantFile(b.ID), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	err = s.InTenantTx(context.Background(), b.ID, func(ctx context.Context, tx store.TenantTx) error {
		t.Error("bravo's transaction ran on alpha's file")
		return nil
	})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("swapped file: %v, want ErrUnavailable", err)
	}
}

// A tenant file that cannot be opened is an outage whose error names the
// file, not where the data dir is: it reaches logs.
func TestTenantFileErrorNamesNoPath(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	a := storetest.CreateTenant(t, s, "alpha")
	s.Close()
	file := s.TenantFile(a.ID)
	for _, f := range []string{file, file + "-wal", file + "-shm"} {
		_ = os.Remove(f)
	}
	if err := os.Mkdir(file, 0o700); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	err := s.InTenantTx(context.Background(), a.ID, func(context.Context, store.TenantTx) error { return nil })
	if !errors.Is(err, store.ErrUnavailable) || strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), filepath.Base(file)) {
		t.Fatalf("error %v: want ErrUnavailable naming %s and not %s", err, filepath.Base(file), dir)
	}
}

func TestOpenRejectsBadDataDir(t *testing.T) {
	for _, dir := range []string{"", "data?mode=memory", "data#x"} {
		if _, err := Open(context.Background(), Config{DataDir: dir}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Open(%q): %v, want ErrInvalid", dir, err)
		}
	}
}

// Committed pages reach the tenant file without a writer checkpointing:
// the background checkpointer copies them from the WAL (a writer alone
// would leave them there until walBackstop pages).
func TestBackgroundCheckpoint(t *testing.T) {
	t.Run("with readers", func(t *testing.T) { testBackgroundCheckpoint(t, true) })
	// A file only ever written is checkpointed on its writer.
	t.Run("writer only", func(t *testing.T) { testBackgroundCheckpoint(t, false) })
}

func testBackgroundCheckpoint(t *testing.T, readers bool) {
	ctx := context.Background()
	s := openTest(t, t.TempDir())
	defer s.Close()
	acme := storetest.CreateTenant(t, s, "acme")
	// Open the file (and its readers), then note its size.
	open := s.InTenantTx
	if readers {
		open = s.InTenantReadTx
	}
	if err := open(ctx, acme.ID, func(context.Context, store.TenantTx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * checkpointEvery)
	before, err := os.Stat(s.TenantFile(acme.ID))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 3000)
	for i := range 100 {
		if err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			return tx.PutSetting(ctx, fmt.Sprintf("k%03d", i), big)
		}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		after, err := os.Stat(s.TenantFile(acme.ID))
		if err != nil {
			t.Fatal(err)
		}
		if after.Size() >= before.Size()+100*3000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant file %d bytes after 300 kB committed (was %d): the WAL was not checkpointed", after.Size(), before.Size())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Close stops the checkpointer and returns.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// An organization's readers are closed once it goes quiet.
func TestIdleReadersClose(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{DataDir: t.TempDir(), ReaderIdle: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acme := storetest.CreateTenant(t, s, "acme")
	// Several reads at once open several readers.
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range maxReaders {
		wg.Go(func() {
			_ = s.InTenantReadTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
				_, err := tx.ListSettings(ctx)
				<-release
				return err
			})
		})
	}
	db, err := s.tenantReadDB(ctx, acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for db.Stats().OpenConnections < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := db.Stats().OpenConnections; n < 2 {
		t.Fatalf("%d readers open under concurrent reads", n)
	}
	for db.Stats().OpenConnections > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d readers still open after the organization went quiet", db.Stats().OpenConnections)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An error after which SQLite may have rolled the whole transaction back
// by itself (a full disk here; an I/O error, no memory, a lock refused)
// is ErrTxAborted, so that no caller runs more statements as if the
// transaction were open: they would each commit alone. A constraint is
// its statement's failure alone.
func TestErrorsThatEndTheTransaction(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "full.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (b BLOB, x INTEGER CHECK (x > 0))`); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA max_page_count = 4`); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `INSERT INTO t VALUES (NULL, 0)`)
	if mapped := mapErr(err); errors.Is(mapped, store.ErrTxAborted) || !errors.Is(mapped, store.ErrInvalid) {
		t.Errorf("a CHECK: %v, want ErrInvalid alone", mapped)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO t VALUES (zeroblob(1 << 20), 1)`)
	if mapped := mapErr(err); !errors.Is(mapped, store.ErrTxAborted) || !errors.Is(mapped, store.ErrUnavailable) {
		t.Fatalf("database full: %v, want ErrTxAborted and ErrUnavailable", mapped)
	}
}

// An organization's file the store made and can no longer find (a volume
// not mounted, a partial restore) is refused, not made again empty: an
// empty file would start the organization's log over under its origin.
// A file made before the store recorded them is recorded when opened.
func TestMissingTenantFileIsNotRemade(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := openTest(t, dir)
	acme := storetest.CreateTenant(t, s, "acme")
	put := func(s *Store) error {
		return s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			return tx.PutSetting(ctx, "k", "v")
		})
	}
	if err := put(s); err != nil {
		t.Fatal(err)
	}
	var recorded int
	if err := s.platform.QueryRowContext(ctx, `SELECT count(*) FROM tenant_files WHERE tenant_id = ?`, acme.ID).Scan(&recorded); err != nil || recorded != 1 {
		t.Fatalf("tenant_files rows for acme: %d, %v", recorded, err)
	}
	path := s.TenantFile(acme.ID)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	s = openTest(t, dir)
	defer s.Close()
	if err := put(s); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("acme's file gone: %v, want ErrUnavailable saying it is missing", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a new file was made: %v", err)
	}
	// Another organization, never opened, gets its file as before.
	beta := storetest.CreateTenant(t, s, "beta")
	if err := s.InTenantTx(ctx, beta.ID, func(ctx context.Context, tx store.TenantTx) error { return tx.PutSetting(ctx, "k", "v") }); err != nil {
		t.Fatalf("beta's first file: %v", err)
	}
}
