package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// maxCachedStmts bounds one connection's statement cache. The store's
// queries are a fixed set of constant strings, well under this; a query past
// the bound simply runs unprepared.
const maxCachedStmts = 256

// cachingConnector opens connections that keep their prepared statements.
//
// modernc's connection prepares (parses and plans) every statement it is
// given through ExecContext or QueryContext and finalizes it afterwards;
// under load that parsing was a quarter of the decision path's CPU. The
// store issues a small fixed set of constant queries, so each connection
// prepares a query the first time it sees it and reuses the statement after
// that, as database/sql's own Stmt would — without the Stmt's need for a
// connection outside the transaction, which with one connection per file
// would deadlock.
type cachingConnector struct {
	driver.Connector
	// busyTimeout bounds how long Connect waits out a file that another
	// process is creating (see Connect).
	busyTimeout time.Duration
	// immediate: write transactions begin with BEGIN IMMEDIATE.
	immediate bool
	// schema, while true, lets the connections change the schema (see
	// authorize); nil: never.
	schema *atomic.Bool
}

// immediate: write transactions begin with BEGIN IMMEDIATE (see
// cachingConn.BeginTx; the driver's _txlock is not used). schema: see
// authorize.
func newCachingConnector(dsn string, busyTimeout time.Duration, immediate bool, schema *atomic.Bool) (driver.Connector, error) {
	c, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	return cachingConnector{c, busyTimeout, immediate, schema}, nil
}

// authorize is every connection's SQLite authorizer, for what SQL on the
// app's own connections could otherwise do past the triggers and the
// file-per-organization split: ATTACH another organization's file or
// platform.db (refused always), drop or create a trigger, table, index or
// view, alter a table, or set a PRAGMA (recursive_triggers off, say, which
// REPLACE needs to fire the delete guards). Schema changes and setting a
// pragma are allowed only while schema is true, which the store sets for
// its migrations alone; the connection's own pragmas run before the
// authorizer is installed. Reading a pragma (no value given), and PRAGMA
// wal_checkpoint, the background checkpointer's, are always allowed.
func authorize(schema *atomic.Bool) sqlite.AuthorizerFn {
	return func(action sqlite.AuthorizerActionCode, arg1, arg2, _, _ string) sqlite.AuthorizerReturnCode {
		switch action {
		case sqlite.AuthAttach, sqlite.AuthDetach:
			return sqlite.AuthorizerDeny
		case sqlite.AuthPragma:
			if arg2 == "" || strings.EqualFold(arg1, "wal_checkpoint") {
				return sqlite.AuthorizerOK
			}
		case sqlite.AuthCreateIndex, sqlite.AuthCreateTable, sqlite.AuthCreateTrigger, sqlite.AuthCreateView,
			sqlite.AuthCreateTempIndex, sqlite.AuthCreateTempTable, sqlite.AuthCreateTempTrigger, sqlite.AuthCreateTempView,
			sqlite.AuthDropIndex, sqlite.AuthDropTable, sqlite.AuthDropTrigger, sqlite.AuthDropView,
			sqlite.AuthDropTempIndex, sqlite.AuthDropTempTable, sqlite.AuthDropTempTrigger, sqlite.AuthDropTempView,
			sqlite.AuthAlterTable, sqlite.AuthCreateVTable, sqlite.AuthDropVTable:
		default:
			return sqlite.AuthorizerOK
		}
		if schema != nil && schema.Load() {
			return sqlite.AuthorizerOK
		}
		return sqlite.AuthorizerDeny
	}
}

// The interfaces of modernc's connection that database/sql uses.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.SessionResetter
	driver.Validator
	driver.Pinger
}

// Connect opens a connection, waiting out a file that another process is
// creating.
//
// Opening runs PRAGMA journal_mode=WAL. On a file another process has just
// created, still empty, that pragma reads it under a shared lock and then
// needs the write lock to write the header; while the other process holds
// that lock, SQLite refuses with SQLITE_BUSY at once, without calling the
// busy handler, since waiting while holding a read lock could deadlock.
// Once the header is written the refusal cannot recur, so Connect retries
// it, on a doubling schedule, until the busy timeout has passed since the
// first attempt or ctx is done, as a statement would wait. An attempt may
// itself wait in SQLite's busy handler (for a lock other than this one),
// so the whole can take longer than the busy timeout, not more than twice.
func (c cachingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	deadline := time.Now().Add(c.busyTimeout)
	dc, err := c.Connector.Connect(ctx)
	for delay := time.Millisecond; isBusy(err); delay = min(2*delay, 100*time.Millisecond) {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		t := time.NewTimer(min(delay, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		dc, err = c.Connector.Connect(ctx)
	}
	if err != nil {
		return nil, err
	}
	inner, ok := dc.(sqliteConn)
	authz, ok2 := dc.(sqlite.AuthorizerRegisterer)
	if !ok || !ok2 {
		_ = dc.Close()
		return nil, fmt.Errorf("sqlite: driver connection %T lacks an interface the store needs", dc)
	}
	if err := authz.RegisterAuthorizer(authorize(c.schema)); err != nil {
		_ = dc.Close()
		return nil, err
	}
	return &cachingConn{sqliteConn: inner, stmts: map[string]*cachedStmt{}, immediate: c.immediate}, nil
}

// isBusy reports SQLite's refusal to take a lock (SQLITE_BUSY), not one of
// its extended codes (BUSY_SNAPSHOT, BUSY_RECOVERY…), which mean other
// things.
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_BUSY
}

// cachingConn is one connection and its statements. database/sql uses a
// connection from one goroutine at a time, so the cache needs no lock.
type cachingConn struct {
	sqliteConn
	stmts map[string]*cachedStmt
	// immediate: the connection's write transactions take the write lock
	// at BEGIN.
	immediate bool
}

type stmtRunner interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

type cachedStmt struct {
	stmt stmtRunner
	// busy while rows read from the statement are open: running it again
	// then would reset it under them, so the query runs uncached instead.
	busy bool
}

// cacheable: one statement, no script. Scripts (the migrations) and
// anything else with a ';' run as before, unprepared.
func cacheable(query string) bool { return !strings.Contains(query, ";") }

// stmt returns the connection's prepared statement for query, preparing it
// on first use; nil when query is not cached.
func (c *cachingConn) stmt(ctx context.Context, query string) (*cachedStmt, error) {
	if s, ok := c.stmts[query]; ok {
		if s.busy {
			return nil, nil
		}
		return s, nil
	}
	if len(c.stmts) >= maxCachedStmts || !cacheable(query) {
		return nil, nil
	}
	ds, err := c.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	st, ok := ds.(stmtRunner)
	if !ok {
		_ = ds.Close()
		return nil, nil
	}
	s := &cachedStmt{stmt: st}
	c.stmts[query] = s
	return s, nil
}

// detach checks ctx, then drops its cancellation for the call into the
// driver. modernc watches a cancellable context with a goroutine of its
// own for every statement, to interrupt it mid-step: some ten goroutines
// per decision, most on the ledger writer's critical path (an execution
// trace under load showed them and the context cancels at a third of that
// goroutine's scheduling delay). The store's statements are short and
// local, so a context that ends is honoured between statements instead,
// and by database/sql, which watches it per transaction and per rows; a
// wait for another process's lock stays bounded by the busy timeout.
func detach(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

// BeginTx begins a transaction with the connection's own prepared BEGIN,
// as modernc's BeginTx would but without preparing BEGIN and COMMIT again
// for every transaction (2% of the decision path's CPU under load): BEGIN
// IMMEDIATE on a writing connection (newCachingConnector's immediate)
// unless the transaction is read-only, BEGIN otherwise. SQLite has no
// isolation levels to choose; modernc ignores them too.
func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	ctx, err := detach(ctx)
	if err != nil {
		return nil, err
	}
	begin := "BEGIN"
	if c.immediate && !opts.ReadOnly {
		begin = "BEGIN IMMEDIATE"
	}
	if _, err := c.ExecContext(ctx, begin, nil); err != nil {
		return nil, err
	}
	return cachedTx{c}, nil
}

// cachedTx ends a transaction BeginTx began, with prepared statements.
type cachedTx struct{ c *cachingConn }

// Commit commits. A COMMIT that fails may leave the transaction open (a
// lock it waited for in vain, a deferred constraint); database/sql expects
// the connection to be out of it after Commit, so a ROLLBACK follows every
// failed COMMIT. Where SQLite had already rolled back (an I/O error), that
// ROLLBACK fails with no transaction active, and its error is not the
// caller's. modernc's Commit asks sqlite3_get_autocommit first, to the
// same end.
func (t cachedTx) Commit() error {
	_, err := t.c.ExecContext(context.Background(), "COMMIT", nil)
	if err != nil {
		_, _ = t.c.ExecContext(context.Background(), "ROLLBACK", nil)
	}
	return err
}

func (t cachedTx) Rollback() error {
	_, err := t.c.ExecContext(context.Background(), "ROLLBACK", nil)
	return err
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	ctx, err := detach(ctx)
	if err != nil {
		return nil, err
	}
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.sqliteConn.ExecContext(ctx, query, args)
	}
	return s.stmt.ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	ctx, err := detach(ctx)
	if err != nil {
		return nil, err
	}
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.sqliteConn.QueryContext(ctx, query, args)
	}
	rows, err := s.stmt.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	s.busy = true
	return &cachedRows{Rows: rows, stmt: s}, nil
}

// Close finalizes the cached statements, then closes the connection.
func (c *cachingConn) Close() error {
	var errs []error
	for q, s := range c.stmts {
		errs = append(errs, s.stmt.Close())
		delete(c.stmts, q)
	}
	errs = append(errs, c.sqliteConn.Close())
	return errors.Join(errs...)
}

// cachedRows frees its statement for the next query when closed.
type cachedRows struct {
	driver.Rows
	stmt *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.stmt.busy = false
	return err
}
