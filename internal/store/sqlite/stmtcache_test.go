package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// openCaching opens a scratch file through the caching connector, with one
// connection as the store uses.
func openCaching(t *testing.T) *sql.DB {
	t.Helper()
	return openCachingDSN(t, filepath.Join(t.TempDir(), "t.db")+"?_pragma=journal_mode(WAL)", false)
}

// openCachingDSN opens dsn through the caching connector, one connection,
// write transactions immediate if so.
func openCachingDSN(t *testing.T, dsn string, immediate bool) *sql.DB {
	t.Helper()
	schema := new(atomic.Bool) // scratch files: the tests make their tables
	schema.Store(true)
	c, err := newCachingConnector(dsn, time.Second, immediate, schema)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// cachedQueries is the number of statements the pool's one connection holds.
func cachedQueries(t *testing.T, db *sql.DB) int {
	t.Helper()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n := -1
	if err := conn.Raw(func(dc any) error { n = len(dc.(*cachingConn).stmts); return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStmtCacheReusesStatements(t *testing.T) {
	ctx := context.Background()
	db := openCaching(t)
	// A script runs unprepared and is not cached.
	if _, err := db.ExecContext(ctx, `CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL); CREATE INDEX kv_v ON kv (v)`); err != nil {
		t.Fatal(err)
	}
	if n := cachedQueries(t, db); n != 0 {
		t.Fatalf("a script was cached: %d statements", n)
	}
	for i := range 50 {
		if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, i, "v"); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	for range 50 {
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM kv WHERE v = ?`, "v").Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	if n != 50 {
		t.Fatalf("count = %d, want 50", n)
	}
	if got := cachedQueries(t, db); got != 2 {
		t.Fatalf("%d cached statements for 2 distinct queries", got)
	}
	// A constraint failure leaves the statement usable.
	if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, 1, "dup"); err == nil {
		t.Fatal("duplicate key accepted")
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, 100, "w"); err != nil {
		t.Fatalf("the statement after a failure: %v", err)
	}
	// Bindings do not leak from one run to the next.
	var v string
	if err := db.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = ?`, 100).Scan(&v); err != nil || v != "w" {
		t.Fatalf("v = %q, %v", v, err)
	}
	if err := db.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = ?`, 7).Scan(&v); err != nil || v != "v" {
		t.Fatalf("v = %q, %v", v, err)
	}
}

// The same query run again while its first rows are still open (a nested
// read) must not reset the statement under them.
func TestStmtCacheNestedSameQuery(t *testing.T) {
	ctx := context.Background()
	db := openCaching(t)
	if _, err := db.ExecContext(ctx, `CREATE TABLE kv (k INTEGER PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, i, i*10); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	const q = `SELECT k, v FROM kv WHERE k >= ? ORDER BY k`
	outer, err := tx.QueryContext(ctx, q, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ks []int
	for outer.Next() {
		var k, v int
		if err := outer.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		ks = append(ks, k)
		// The same statement, inside the loop, with other arguments.
		var inner int
		if err := tx.QueryRowContext(ctx, q, 4).Scan(&inner, &v); err != nil || inner != 4 || v != 40 {
			t.Fatalf("inner read = %d %d, %v", inner, v, err)
		}
	}
	if err := outer.Err(); err != nil {
		t.Fatal(err)
	}
	outer.Close()
	if len(ks) != 5 || ks[4] != 4 {
		t.Fatalf("outer rows = %v, want 0..4", ks)
	}
}

// A statement prepared before the schema changed still runs: SQLite
// re-prepares it.
func TestStmtCacheAfterSchemaChange(t *testing.T) {
	ctx := context.Background()
	db := openCaching(t)
	if _, err := db.ExecContext(ctx, `CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	const q = `SELECT * FROM kv WHERE k = ?`
	if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (1, 'a')`); err != nil {
		t.Fatal(err)
	}
	var k int
	var v string
	if err := db.QueryRowContext(ctx, q, 1).Scan(&k, &v); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `ALTER TABLE kv ADD COLUMN w TEXT NOT NULL DEFAULT 'x'`); err != nil {
		t.Fatal(err)
	}
	var w string
	if err := db.QueryRowContext(ctx, q, 1).Scan(&k, &v, &w); err != nil || w != "x" {
		t.Fatalf("after ALTER: w = %q, %v", w, err)
	}
}

// A cancelled context still ends a cached statement's run.
func TestStmtCacheHonoursContext(t *testing.T) {
	db := openCaching(t)
	const q = `SELECT ?`
	var one int
	if err := db.QueryRowContext(context.Background(), q, 1).Scan(&one); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := db.QueryRowContext(ctx, q, 1).Scan(&one)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled query: %v", err)
	}
	if err := db.QueryRowContext(context.Background(), q, 2).Scan(&one); err != nil || one != 2 {
		t.Fatalf("after a cancel: %d, %v", one, err)
	}
}

// A full disk makes SQLite roll the whole transaction back under a
// savepoint: savepoint says so (ErrTxAborted) instead of carrying on, and
// nothing written before it in the transaction is committed by a later
// SAVEPOINT/RELEASE pair opening a transaction of its own.
func TestSavepointAfterTheTransactionRolledBack(t *testing.T) {
	ctx := context.Background()
	db := openCaching(t)
	if _, err := db.ExecContext(ctx, `CREATE TABLE kv (k INTEGER PRIMARY KEY, v BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var pages int
	if err := db.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	// The pool's one connection: the limit holds in the transaction below.
	if _, err := db.ExecContext(ctx, fmt.Sprintf(`PRAGMA max_page_count = %d`, pages+4)); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (0, x'00')`); err != nil {
		t.Fatal(err)
	}
	err = savepoint(ctx, tx, func(ctx context.Context) error {
		for i := 1; ; i++ {
			if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, zeroblob(4000))`, i); err != nil {
				return mapErr(err)
			}
			if i > 100 {
				return errors.New("the page limit never bit")
			}
		}
	})
	if !errors.Is(err, store.ErrTxAborted) {
		t.Fatalf("savepoint after SQLite rolled the transaction back: %v, want ErrTxAborted", err)
	}
	// What a caller that went on regardless would have done.
	_ = tx.Commit()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM kv`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows committed from a transaction SQLite rolled back", n)
	}
}

// openWriterAt opens path through the caching connector as a store's
// writing connection: one connection, write transactions immediate.
func openWriterAt(t *testing.T, path string) *sql.DB {
	t.Helper()
	return openCachingDSN(t, path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(50)&_pragma=foreign_keys(1)", true)
}

// The connection's own BEGIN, COMMIT and ROLLBACK (cachingConn.BeginTx)
// behave as the driver's: a write transaction holds the write lock from
// BEGIN, a read-only one takes none, and a COMMIT that fails leaves the
// connection out of the transaction, its writes undone.
func TestStmtCacheTransactions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	a, b := openWriterAt(t, path), openWriterAt(t, path)
	if _, err := a.ExecContext(ctx, `CREATE TABLE parent (id INTEGER PRIMARY KEY);
		CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}

	// BEGIN IMMEDIATE: b cannot begin while a's empty transaction is open.
	ta, err := a.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.BeginTx(ctx, nil); !isBusy(err) {
		t.Fatalf("a second writer began while the first held its transaction: %v", err)
	}
	// A read-only transaction begins beside it, and reads.
	tr, err := b.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("a read-only transaction beside a writer: %v", err)
	}
	var n int
	if err := tr.QueryRowContext(ctx, `SELECT count(*) FROM parent`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("read beside the writer: %d, %v", n, err)
	}
	if err := tr.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := ta.ExecContext(ctx, `INSERT INTO parent (id) VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if err := ta.Commit(); err != nil {
		t.Fatal(err)
	}

	// A COMMIT refused by a deferred foreign key: the writes are undone and
	// the connection begins again.
	tx, err := a.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO child (id, parent) VALUES (1, 99)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err == nil {
		t.Fatal("a COMMIT breaking a deferred foreign key succeeded")
	}
	if err := a.QueryRowContext(ctx, `SELECT count(*) FROM child`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after the failed COMMIT: %d child rows, %v", n, err)
	}
	// b can take the write lock: a's connection is out of its transaction.
	if _, err := b.ExecContext(ctx, `INSERT INTO parent (id) VALUES (2)`); err != nil {
		t.Fatalf("another writer after the failed COMMIT: %v", err)
	}
	if err := inTx(ctx, a, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO child (id, parent) VALUES (2, 2)`)
		return err
	}); err != nil {
		t.Fatalf("a transaction after the failed COMMIT: %v", err)
	}
	// Rollback undoes.
	tx, err = a.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO parent (id) VALUES (3)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := a.QueryRowContext(ctx, `SELECT count(*) FROM parent`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("after a rollback: %d parents, %v", n, err)
	}
}
