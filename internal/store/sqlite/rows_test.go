package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store"
)

// insertRows writes every row exactly once whatever the count, in chunks
// of a power of two: a table keeps a few statement texts in the
// connection's cache, not one per batch size.
func TestInsertRowsChunks(t *testing.T) {
	db := openCaching(t)
	ctx := context.Background()
	if _, err := db.Exec(`CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	// A first transaction caches BEGIN and COMMIT (cachingConn.BeginTx).
	if err := inTx(ctx, db, func(*sql.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	before := cachedQueries(t, db)
	next := 0
	sizes := []int{0, 255, 256, 257, 600}
	for n := 1; n <= 40; n++ {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		rows := make([][]any, n)
		for i := range rows {
			rows[i] = []any{next, "v"}
			next++
		}
		err := inTx(ctx, db, func(tx *sql.Tx) error { return insertRows(ctx, tx, "t", "k, v", rows, "") })
		if err != nil {
			t.Fatalf("%d rows: %v", n, err)
		}
		var count, sum int
		if err := db.QueryRow(`SELECT count(*), coalesce(sum(k), 0) FROM t`).Scan(&count, &sum); err != nil {
			t.Fatal(err)
		}
		if count != next || sum != next*(next-1)/2 {
			t.Fatalf("after %d more rows: %d rows with key sum %d; want %d and %d", n, count, sum, next, next*(next-1)/2)
		}
	}
	// 1, 2, 4, … 256 rows: nine texts at most, whatever the batch sizes
	// (the SELECT above is one more).
	if got := cachedQueries(t, db) - before; got > 10 {
		t.Errorf("%d statements cached for one table's inserts; want at most 9 and the count query", got)
	}

	// An upsert clause follows the VALUES list; a refused row fails the
	// statement with the store's error.
	err := inTx(ctx, db, func(tx *sql.Tx) error {
		return insertRows(ctx, tx, "t", "k, v", [][]any{{0, "x"}, {1, "y"}}, `ON CONFLICT (k) DO UPDATE SET v = excluded.v`)
	})
	if err != nil {
		t.Fatal(err)
	}
	var v string
	if err := db.QueryRow(`SELECT v FROM t WHERE k = 1`).Scan(&v); err != nil || v != "y" {
		t.Fatalf("upserted row: %q, %v", v, err)
	}
	err = inTx(ctx, db, func(tx *sql.Tx) error {
		return insertRows(ctx, tx, "t", "k, v", [][]any{{next, "new"}, {0, "taken"}}, "")
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a taken key: %v, want ErrConflict", err)
	}
	var count int
	if err := db.QueryRow(`SELECT count(*) FROM t WHERE k = ?`, next).Scan(&count); err != nil || count != 0 {
		t.Fatalf("the refused statement's other row: %d, %v", count, err)
	}
}
