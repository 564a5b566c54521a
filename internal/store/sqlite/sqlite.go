// Package sqlite is the embedded default store: DATA_DIR/platform.db for the
// platform plane and one file per organization under DATA_DIR/tenants/, so
// tenant isolation holds by construction — a tenant transaction opens only
// that organization's file. Files are created 0600 in 0700 directories and
// run in WAL mode with synchronous=FULL: a commit that returned is on disk.
//
// It must never open a tenant file for an id that is not a canonical UUID of
// an organization recorded in platform.db.
package sqlite

import (
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
	"sync/atomic"
	"time"

	"github.com/agentsigna/agentsigna/internal/osfile"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/migrations"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// Config configures the embedded store.
type Config struct {
	// DataDir holds platform.db and tenants/. Created 0700 if missing.
	DataDir string
	// BusyTimeout bounds how long a statement waits for another process's
	// lock on the same file, and how long opening a connection waits for
	// another process creating the file. Default 5s.
	BusyTimeout time.Duration
	// ReaderIdle closes a tenant file's read-only connection left unused
	// that long, so that quiet organizations hold no more than their
	// writer. Default one minute.
	ReaderIdle time.Duration
	Logger     *slog.Logger
}

// Store is the SQLite backend. It implements store.Backend.
type Store struct {
	dir         string
	busyTimeout time.Duration
	readerIdle  time.Duration
	log         *slog.Logger
	platform    *sql.DB
	// platformRead reads platform.db beside its writer: the directory
	// lookups every agent request makes (ResolveTenantID) do not queue
	// behind the platform log's batches.
	platformRead *sql.DB
	// tenantRefs remembers ResolveTenantID's answers; a platform
	// transaction that changed a tenant's status invalidates it.
	tenantRefs *store.TenantRefs

	mu      sync.Mutex
	tenants map[string]*sql.DB  // open tenant files, by tenant id
	opening map[string]*opening // files being opened, by tenant id
	opens   sync.WaitGroup      // those opens, which Close waits for
	readers map[string]*sql.DB  // their read-only pools (InTenantReadTx)
	dirty   map[string]bool     // files written since the last checkpoint pass
	closed  bool

	stopCheckpoints chan struct{}
	checkpoints     sync.WaitGroup
}

// checkpointEvery is how often the background checkpointer copies the
// tenant files' WAL into the files (see checkpointLoop).
const checkpointEvery = 250 * time.Millisecond

// walBackstop is the WAL size in pages at which a committing writer
// checkpoints itself, should the background checkpointer fall behind:
// 64 MiB of pageSize pages (32 MiB in a file created with 4 KiB pages).
const walBackstop = 64 << 20 / pageSize

// platformWALPages is platform.db's: about 4 MB, as SQLite's default of
// 1000 pages is at 4 KiB.
const platformWALPages = 4 << 20 / pageSize

// pageSize is the page size of the files this store creates; a file keeps
// the size it was created with. A decision's rows are mostly its two
// ledger entries and its own row, of 1-1.5 KB each: SQLite's default
// 4 KiB pages hold two of them and stay a third empty. With 8 KiB pages
// an allowed decision took 23% less file, for 19-30% more bytes written
// through the WAL, at the same speed (BenchmarkDecideAllowParallel/sqlite:
// file-B/op, written-B/op, ns/op). 16 KiB pages saved 25% of file for 66%
// more written.
const pageSize = 8192

// maxReaders bounds each tenant file's read-only connections: WAL readers
// run alongside each other and the one writer.
const maxReaders = 4

var _ store.Backend = (*Store)(nil)

// Open creates or opens the data dir, applies the platform migrations and
// returns the store. Tenant files are opened (and migrated) on first use.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("%w: sqlite: data dir is required", store.ErrInvalid)
	}
	if strings.ContainsAny(cfg.DataDir, "?#\x00") {
		return nil, fmt.Errorf("%w: sqlite: data dir may not contain '?', '#' or NUL", store.ErrInvalid)
	}
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = 5 * time.Second
	}
	if cfg.ReaderIdle <= 0 {
		cfg.ReaderIdle = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("sqlite: data dir: %w", err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "tenants")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("sqlite: create data dir: %w", err)
		}
		tightenDir(d, cfg.Logger)
	}
	// The store makes tenants/ itself: one that is a link, or another
	// user's, was put there, and the files made in it would be where that
	// user reads them.
	switch fi, err := os.Lstat(filepath.Join(dir, "tenants")); {
	case err != nil:
		return nil, fmt.Errorf("sqlite: data dir: %w", pathless(err))
	case !fi.IsDir():
		return nil, fmt.Errorf("%w: sqlite: the data dir's tenants is not a directory (a symbolic link, say): refusing to use it", store.ErrUnavailable)
	case ownedByOther(fi):
		return nil, fmt.Errorf("%w: sqlite: the data dir's tenants directory is owned by another user than this process's: refusing to use it", store.ErrUnavailable)
	}
	s := &Store{dir: dir, busyTimeout: cfg.BusyTimeout, readerIdle: cfg.ReaderIdle, log: cfg.Logger,
		tenantRefs: store.NewTenantRefs(store.TenantRefLifetime, nil),
		tenants:    map[string]*sql.DB{}, opening: map[string]*opening{}, readers: map[string]*sql.DB{}, dirty: map[string]bool{}}
	db, err := s.openFile(ctx, filepath.Join(dir, "platform.db"), migrations.SQLitePlatform, platformWALPages)
	if err != nil {
		return nil, err
	}
	s.platform = db
	if s.platformRead, err = s.open(ctx, filepath.Join(dir, "platform.db"), true, 0, nil); err != nil {
		_ = db.Close()
		return nil, err
	}
	s.stopCheckpoints = make(chan struct{})
	s.checkpoints.Add(1)
	go s.checkpointLoop()
	return s, nil
}

// checkpointLoop copies the WAL of each tenant file written since its
// last pass back into the file, from one of the file's reading connections
// (or its writer, when it has none), every checkpointEvery.
//
// SQLite's automatic checkpoint runs inside the commit that crosses the
// WAL threshold, on the file's one writing connection: that commit — a
// whole ledger batch of decisions — waits for pages to be copied and the
// database file to be fsynced. A PASSIVE checkpoint from another
// connection does the same work beside the writer, which then only
// checkpoints itself past walBackstop pages.
func (s *Store) checkpointLoop() {
	defer s.checkpoints.Done()
	// Ends a checkpoint under way when the store closes.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stopCheckpoints
		cancel()
	}()
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Every tenant file written since the last pass: from its readers
		// when it has them, else on its writer — a file nobody reads
		// through InTenantReadTx must not grow its WAL to walBackstop.
		// Quiet files are left alone, and their readers may close.
		s.mu.Lock()
		dbs := make(map[string]*sql.DB, len(s.dirty))
		for id := range s.dirty {
			db, ok := s.readers[id]
			if !ok {
				db = s.tenants[id]
			}
			if db != nil {
				dbs[id] = db
			}
		}
		clear(s.dirty)
		s.mu.Unlock()
		for id, db := range dbs {
			cctx, cancelOne := context.WithTimeout(ctx, 10*time.Second)
			var busy, frames, copied int
			err := db.QueryRowContext(cctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
			cancelOne()
			if err != nil && ctx.Err() == nil {
				s.log.Warn("sqlite: background checkpoint failed", slog.String("tenant", id), slog.Any("error", err))
			}
		}
	}
}

// DataDir is the absolute data directory.
func (s *Store) DataDir() string { return s.dir }

// openFile creates the file 0600 before SQLite sees it — SQLite gives the
// -wal and -shm files the mode of the main file — then opens, configures
// and migrates it.
//
// walPages is the WAL size at which a commit checkpoints: platformWALPages
// for platform.db, walBackstop for the tenant files, which the background
// checkpointer keeps short.
func (s *Store) openFile(ctx context.Context, path string, set migrations.Set, walPages int) (*sql.DB, error) {
	schema := new(atomic.Bool)
	db, err := s.open(ctx, path, false, walPages, schema)
	if err != nil {
		return nil, err
	}
	// The migrations alone change the schema (see authorize).
	schema.Store(true)
	err = migrate(ctx, db, set)
	schema.Store(false)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// open creates path 0600 if needed and opens it: for writing, one
// connection whose every transaction takes the write lock at BEGIN; read
// only, up to maxReaders connections with PRAGMA query_only, whose
// transactions read a snapshot and never wait for the writer (WAL).
func (s *Store) open(ctx context.Context, path string, readOnly bool, walPages int, schema *atomic.Bool) (*sql.DB, error) {
	if err := createOrCheckFile(path); err != nil {
		return nil, err
	}
	// So is a WAL (and its index) a crash left: SQLite goes on writing to
	// the one it finds, with whatever mode it has.
	for _, side := range []string{path + "-wal", path + "-shm"} {
		fi, err := os.Lstat(side)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return nil, fmt.Errorf("%w: sqlite: %s: %v", store.ErrUnavailable, filepath.Base(side), pathless(err))
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("sqlite: %s is not a regular file", filepath.Base(side))
		case ownedByOther(fi):
			// SQLite would write the pages of every commit into it.
			return nil, fmt.Errorf("%w: sqlite: %s is owned by another user than this process's: refusing to open it", store.ErrUnavailable, filepath.Base(side))
		case fi.Mode().Perm() != 0o600:
			if err := os.Chmod(side, 0o600); err != nil {
				return nil, fmt.Errorf("sqlite: chmod %s: %w", filepath.Base(side), pathless(err))
			}
		}
	}
	params := []string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", s.busyTimeout.Milliseconds()),
		// The page size counts only on a new file, and only until the WAL
		// switch writes its header: the driver applies the _journal_mode
		// key after every _pragma.
		fmt.Sprintf("_pragma=page_size(%d)", pageSize),
		"_journal_mode=WAL",
		"_pragma=synchronous(FULL)",
		"_pragma=foreign_keys(1)",
		"_pragma=trusted_schema(0)",
		// Statement and savepoint journals stay in memory: a decision batch
		// opens a savepoint per request, whose journal would otherwise spill
		// to a temporary file (a pwrite per page) past 64 KiB.
		"_pragma=temp_store(MEMORY)",
		// REPLACE deletes the row it conflicts with, and fires delete
		// triggers only with recursive triggers on: without, INSERT OR
		// REPLACE rewrote an entry, a decision or a key past the
		// append-only guards.
		"_pragma=recursive_triggers(1)",
		"_defensive=1", // no writable_schema: triggers cannot be switched off from SQL
	}
	conns := 1
	if readOnly {
		// Deferred BEGIN: a read transaction takes no lock until it reads,
		// then a WAL snapshot. query_only refuses every write.
		params = append(params, "_pragma=query_only(1)")
		conns = maxReaders
	} else {
		// Write transactions take the write lock at BEGIN (BEGIN
		// IMMEDIATE): cachingConn.BeginTx, told so below, not the
		// driver's _txlock, which it bypasses.
		params = append(params, fmt.Sprintf("_pragma=wal_autocheckpoint(%d)", walPages))
	}
	connector, err := newCachingConnector(path+"?"+strings.Join(params, "&"), s.busyTimeout, !readOnly, schema)
	if err != nil {
		return nil, fmt.Errorf("%w: sqlite: %v", store.ErrUnavailable, err)
	}
	db := sql.OpenDB(connector)
	// One writing connection per file: every transaction takes the write
	// lock at BEGIN (immediate), so more connections would only spin in
	// SQLite's busy handler; Go's pool queues them fairly instead.
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxIdleTime(0)
	if readOnly {
		// Readers of an organization that has gone quiet are closed: with
		// many organizations, file descriptors and statement caches would
		// otherwise stay at their busiest for good.
		db.SetConnMaxIdleTime(s.readerIdle)
	}
	db.SetConnMaxLifetime(0)
	return db, nil
}

// Ping checks that platform.db answers.
func (s *Store) Ping(ctx context.Context) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: closed", store.ErrUnavailable)
	}
	var one int
	if err := s.platform.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return mapErr(err)
	}
	return nil
}

// Close closes every open file. database/sql waits for connections in use.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stopCheckpoints)
	s.mu.Unlock()
	// The checkpointer takes s.mu, and so does an organization's file
	// being opened as it ends: wait for them with the lock released. The
	// file opened meanwhile is closed by its opener, which finds the store
	// closed, before the platform file it used is.
	s.checkpoints.Wait()
	s.opens.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for id, db := range s.readers {
		errs = append(errs, db.Close())
		delete(s.readers, id)
	}
	for id, db := range s.tenants {
		errs = append(errs, db.Close())
		delete(s.tenants, id)
	}
	errs = append(errs, s.platformRead.Close(), s.platform.Close())
	return errors.Join(errs...)
}

// InPlatformTx runs fn in a transaction on platform.db.
func (s *Store) InPlatformTx(ctx context.Context, fn func(context.Context, store.PlatformTx) error) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	p := &platformTx{}
	defer func() {
		// Even a failed commit may have changed the directory.
		if p.tenantsChanged {
			s.tenantRefs.Invalidate()
		}
	}()
	return inTx(ctx, s.platform, func(tx *sql.Tx) error {
		p.tx = tx
		return fn(ctx, p)
	})
}

// InPlatformReadTx runs fn in a read transaction on platform.db, from its
// query_only connections: one WAL snapshot, beside the writer.
func (s *Store) InPlatformReadTx(ctx context.Context, fn func(context.Context, store.PlatformTx) error) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	return inTx(ctx, s.platformRead, func(tx *sql.Tx) error {
		return fn(ctx, &platformTx{tx: tx})
	})
}

// InTenantTx runs fn in a transaction on the organization's own file.
func (s *Store) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	db, err := s.tenantDB(ctx, tenantID)
	if err != nil {
		return err
	}
	err = inTx(ctx, db, func(tx *sql.Tx) error {
		return fn(ctx, &tenantTx{tx: tx, tenantID: tenantID, platform: s.platform})
	})
	if err == nil {
		s.mu.Lock()
		s.dirty[tenantID] = true
		s.mu.Unlock()
	}
	return err
}

// InTenantReadTx runs fn in a read-only transaction on the organization's
// file, on one of its reading connections: it neither waits for nor holds
// up the file's writer.
func (s *Store) InTenantReadTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	db, err := s.tenantReadDB(ctx, tenantID)
	if err != nil {
		return err
	}
	return inTx(ctx, db, func(tx *sql.Tx) error {
		return fn(ctx, &tenantTx{tx: tx, tenantID: tenantID, platform: s.platform})
	})
}

// ResolveTenant returns the directory entry of the organization with slug.
func (s *Store) ResolveTenant(ctx context.Context, slug string) (store.TenantRef, error) {
	if err := store.CheckSlug(slug); err != nil {
		return store.TenantRef{}, err
	}
	if err := s.checkOpen(); err != nil {
		return store.TenantRef{}, err
	}
	var ref store.TenantRef
	var status string
	err := s.platformRead.QueryRowContext(ctx,
		`SELECT id, slug, status FROM tenants WHERE slug = ?`, slug).Scan(&ref.ID, &ref.Slug, &status)
	if err != nil {
		return store.TenantRef{}, mapErr(err)
	}
	ref.Status = store.TenantStatus(status)
	return ref, nil
}

// ResolveTenantID returns the directory entry of the organization with id,
// remembered for up to store.TenantRefLifetime (see store.TenantRefs).
func (s *Store) ResolveTenantID(ctx context.Context, id string) (store.TenantRef, error) {
	if err := store.CheckTenantID(id); err != nil {
		return store.TenantRef{}, err
	}
	if err := s.checkOpen(); err != nil {
		return store.TenantRef{}, err
	}
	return s.tenantRefs.Resolve(ctx, id, s.readTenantID)
}

func (s *Store) readTenantID(ctx context.Context, id string) (store.TenantRef, error) {
	var ref store.TenantRef
	var status string
	err := s.platformRead.QueryRowContext(ctx, `SELECT id, slug, status FROM tenants WHERE id = ?`, id).Scan(&ref.ID, &ref.Slug, &status)
	if err != nil {
		return store.TenantRef{}, mapErr(err)
	}
	ref.Status = store.TenantStatus(status)
	return ref, nil
}

// ResolveAgent reads the agent directory in platform.db.
func (s *Store) ResolveAgent(ctx context.Context, agentID string) (store.TenantRef, error) {
	if err := store.CheckID(store.PrefixAgent, agentID); err != nil {
		return store.TenantRef{}, err
	}
	if err := s.checkOpen(); err != nil {
		return store.TenantRef{}, err
	}
	var ref store.TenantRef
	var status string
	err := s.platformRead.QueryRowContext(ctx, `SELECT t.id, t.slug, t.status FROM agent_directory d JOIN tenants t ON t.id = d.tenant_id
		WHERE d.agent_id = ?`, agentID).Scan(&ref.ID, &ref.Slug, &status)
	if err != nil {
		return store.TenantRef{}, mapErr(err)
	}
	ref.Status = store.TenantStatus(status)
	return ref, nil
}

func (s *Store) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: closed", store.ErrUnavailable)
	}
	return nil
}

// tenantDB returns the open file of a known organization, creating and
// migrating it on first use. The id is validated before it becomes part of
// a path, and must be recorded in platform.db.
func (s *Store) tenantDB(ctx context.Context, tenantID string) (*sql.DB, error) {
	if err := store.CheckTenantID(tenantID); err != nil {
		return nil, err
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: closed", store.ErrUnavailable)
		}
		if db, ok := s.tenants[tenantID]; ok {
			s.mu.Unlock()
			return db, nil
		}
		op, waiting := s.opening[tenantID]
		if !waiting {
			op = &opening{done: make(chan struct{})}
			s.opening[tenantID] = op
			s.opens.Add(1)
		}
		s.mu.Unlock()
		if !waiting {
			return s.openTenant(ctx, tenantID, op)
		}
		// Another request opens it: wait for that, and only that. If it
		// failed (its own context ended, say), try again rather than take
		// its error for this request's.
		select {
		case <-op.done:
			if op.err == nil {
				return op.db, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// opening is an organization's file being opened, which the requests that
// need it meanwhile wait for.
type opening struct {
	done chan struct{}
	db   *sql.DB
	err  error
}

// openTenant opens, migrates and claims an organization's file, for
// tenantDB, without s.mu held: opening one organization's file waits on
// that file's locks (another process migrating or writing it, up to the
// busy timeout, twice), and every organization's requests take s.mu (found
// by review: one organization's file locked elsewhere stalled another's
// appends for 3.9 s). Close waits for it. Should it panic, its waiters
// are still released, with an error.
func (s *Store) openTenant(ctx context.Context, tenantID string, op *opening) (db *sql.DB, err error) {
	defer s.opens.Done()
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.opening, tenantID)
		if op.err == nil && s.closed {
			_ = op.db.Close()
			op.db, op.err = nil, fmt.Errorf("%w: closed", store.ErrUnavailable)
		}
		if op.err == nil {
			s.tenants[tenantID] = op.db
		}
		close(op.done)
		db, err = op.db, op.err
	}()
	op.err = fmt.Errorf("%w: sqlite: opening the organization's file failed", store.ErrUnavailable)
	op.db, op.err = s.openTenantFile(ctx, tenantID)
	return op.db, op.err
}

func (s *Store) openTenantFile(ctx context.Context, tenantID string) (*sql.DB, error) {
	var made int
	err := s.platform.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM tenant_files WHERE tenant_id = t.id) FROM tenants t WHERE t.id = ?`,
		tenantID).Scan(&made)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%w: tenant", store.ErrNotFound)
		}
		return nil, mapErr(err)
	}
	// A file the store made and cannot find (a volume not mounted, a
	// partial restore) is not made again empty: that would start the
	// organization's log over under its origin.
	if made == 1 {
		if _, err := os.Lstat(s.TenantFile(tenantID)); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: sqlite: the organization's database file %s is missing; restore it (a new, empty one would restart its log)",
				store.ErrUnavailable, filepath.Base(s.TenantFile(tenantID)))
		}
	}
	db, err := s.openFile(ctx, s.TenantFile(tenantID), migrations.SQLiteTenant, walBackstop)
	if err != nil {
		return nil, err
	}
	if err := claimTenantFile(ctx, db, tenantID); err != nil {
		_ = db.Close()
		return nil, err
	}
	if made == 0 {
		// Recorded once claimed; a file made before tenant_files existed
		// is recorded now.
		if _, err := s.platform.ExecContext(ctx, `INSERT INTO tenant_files (tenant_id, created_at) VALUES (?, ?) ON CONFLICT (tenant_id) DO NOTHING`,
			tenantID, formatTime(time.Now())); err != nil {
			_ = db.Close()
			return nil, mapErr(err)
		}
	}
	return db, nil
}

// tenantReadDB returns the read-only pool of a known organization's file,
// opening the file for writing first if needed (which checks the id and
// migrates and claims the file).
func (s *Store) tenantReadDB(ctx context.Context, tenantID string) (*sql.DB, error) {
	if _, err := s.tenantDB(ctx, tenantID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("%w: closed", store.ErrUnavailable)
	}
	if db, ok := s.readers[tenantID]; ok {
		return db, nil
	}
	db, err := s.open(ctx, s.TenantFile(tenantID), true, 0, nil)
	if err != nil {
		return nil, err
	}
	s.readers[tenantID] = db
	return db, nil
}

// TenantFile is the path of an organization's database file.
func (s *Store) TenantFile(tenantID string) string {
	return filepath.Join(s.dir, "tenants", tenantID+".db")
}

// claimTenantFile records the owner of a new file, or checks that an
// existing one belongs to tenantID: a file copied or renamed from another
// organization is refused rather than served.
func claimTenantFile(ctx context.Context, db *sql.DB, tenantID string) error {
	return inTx(ctx, db, func(tx *sql.Tx) error {
		var owner string
		err := tx.QueryRowContext(ctx, `SELECT tenant_id FROM tenant_meta WHERE singleton = 1`).Scan(&owner)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, `INSERT INTO tenant_meta (singleton, tenant_id, created_at) VALUES (1, ?, ?)`,
				tenantID, formatTime(time.Now()))
			return mapErr(err)
		case err != nil:
			return mapErr(err)
		case owner != tenantID:
			return fmt.Errorf("%w: tenant file belongs to another organization", store.ErrUnavailable)
		}
		return nil
	})
}

// inTx commits when fn returns nil and rolls back otherwise (also on panic).
func inTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	return mapErr(tx.Commit())
}

const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("sqlite: stored time %q: %w", s, err)
	}
	return t.UTC(), nil
}

// mapErr turns driver errors into store sentinels. The driver's message is
// kept only in the wrapped chain for logs, never as the sentinel's text.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		if se.Code() == sqlite3.SQLITE_READONLY { // query_only; not the READONLY_* variants
			return fmt.Errorf("%w: %w", store.ErrReadOnly, err)
		}
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_TRIGGER:
			// Only our triggers RAISE, and only to refuse a mutation.
			return fmt.Errorf("%w: %w", store.ErrAppendOnly, err)
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		case sqlite3.SQLITE_CONSTRAINT_CHECK:
			return fmt.Errorf("%w: %w", store.ErrInvalid, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			// The row referred to (an agent, a decision…) does not
			// exist in this organization — as PostgreSQL's 23503.
			return fmt.Errorf("%w: %w", store.ErrNotFound, err)
		}
		switch se.Code() & 0xff { // the primary result code
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_BUSY:
			// SQLite may have rolled the whole transaction back by itself
			// (even after a read): the statements after it would run one
			// by one in autocommit, each committing alone. The caller must
			// give the transaction up (a ledger batch fails whole).
			return fmt.Errorf("%w: %w: %w", store.ErrUnavailable, store.ErrTxAborted, err)
		}
	}
	if errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "database is closed") {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// createOrCheckFile creates the database file at path, 0600, or checks the
// one there: a regular file, not a symbolic link, that this process's user
// owns, made 0600 if it was looser (an earlier release, or a file made by
// hand). In a data dir another user may write in (a volume root granted
// through a group), a link planted in place of platform.db had SQLite put
// the database, and its WAL, beside the link's target, where that user
// read and wrote them, and os.Chmod tightened the target (found by
// review). Errors name the file, not the data dir (pathless): they reach
// logs.
func createOrCheckFile(path string) error {
	name := filepath.Base(path)
	lfi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		// O_EXCL creates no file through a link, dangling or not.
		f, cerr := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if cerr == nil {
			return f.Close()
		}
		if !errors.Is(cerr, fs.ErrExist) {
			return fmt.Errorf("%w: sqlite: create %s: %v", store.ErrUnavailable, name, pathless(cerr))
		}
		lfi, err = os.Lstat(path) // another process made it meanwhile
	}
	switch {
	case err != nil:
		return fmt.Errorf("%w: sqlite: %s: %v", store.ErrUnavailable, name, pathless(err))
	case !lfi.Mode().IsRegular():
		return fmt.Errorf("%w: sqlite: %s is not a regular file (a symbolic link, say): refusing to open it", store.ErrUnavailable, name)
	case ownedByOther(lfi):
		return fmt.Errorf("%w: sqlite: %s is owned by another user than this process's: refusing to open it", store.ErrUnavailable, name)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: sqlite: open %s: %v", store.ErrUnavailable, name, pathless(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: sqlite: %s: %v", store.ErrUnavailable, name, pathless(err))
	}
	if !os.SameFile(fi, lfi) {
		return fmt.Errorf("%w: sqlite: %s was replaced while it was opened: refusing to open it", store.ErrUnavailable, name)
	}
	if fi.Mode().Perm() != 0o600 {
		// It holds encrypted keys and the log.
		if err := f.Chmod(0o600); err != nil {
			return fmt.Errorf("sqlite: chmod %s: %w", name, pathless(err))
		}
	}
	return nil
}

func ownedByOther(fi fs.FileInfo) bool {
	_, other := osfile.OwnedByOther(fi)
	return other
}

// tightenDir makes a data directory that existed with another mode 0700,
// as files are made 0600: the tenants directory's names are the
// organizations' ids. Its setgid bit stays. A directory the process may
// write in but not chmod (a volume root owned by another user, which a
// group grants) is left as it is, with a warning: the files in it are
// 0600 all the same, and theirs (createOrCheckFile). Nothing is changed
// through a symbolic link: root would chmod whatever it points at (found
// by review: /etc, had a link named tenants pointed there). A link to a
// directory open beyond its owner gets the warning instead: whoever may
// write in it may rename or delete the files, master.key included (found
// by review: a data dir linked to a 0777 directory passed unremarked).
func tightenDir(d string, log *slog.Logger) {
	fi, err := os.Lstat(d)
	if err != nil || fi.Mode().Perm() == 0o700 && fi.Mode()&fs.ModeSymlink == 0 {
		return
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if target, err := os.Stat(d); err == nil && target.IsDir() && target.Mode().Perm() != 0o700 {
			log.Warn("sqlite: a data directory is a symbolic link to a directory open beyond its owner, and nothing is changed through a link; whoever may write in it may rename or delete its files",
				slog.String("dir", filepath.Base(d)), slog.String("mode", target.Mode().Perm().String()))
		}
		return
	}
	err = errors.New("owned by another user")
	if !ownedByOther(fi) {
		err = os.Chmod(d, 0o700|fi.Mode()&os.ModeSetgid)
	}
	if err != nil {
		log.Warn("sqlite: a data directory is open beyond its owner and cannot be tightened; its file names (organization ids) are visible",
			slog.String("dir", filepath.Base(d)), slog.String("mode", fi.Mode().Perm().String()), slog.Any("error", pathless(err)))
	}
}

// pathless is a file operation's error without the path it names.
func pathless(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}
