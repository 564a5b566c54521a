// Package sqlitetest lets tests act as someone with write access to the data
// dir: it opens a store file directly, outside the store, drops its
// append-only triggers and runs statements — to prove tampering is detected.
// Only tests import it.
package sqlitetest

import (
	"context"
	"database/sql"
	"testing"

	_ "modernc.org/sqlite" // the "sqlite" driver
)

// Tamper drops every trigger in the file at path and runs stmts, in one
// transaction.
func Tamper(t testing.TB, path string, stmts ...string) {
	t.Helper()
	inTriggerlessTx(t, path, "tamper", stmts, false)
}

// Plant runs stmts in the file at path with its triggers set aside, and
// puts them back, all in one transaction: to plant rows that the triggers
// of today would refuse — one stored before a migration, say — and leave
// the triggers to judge what follows.
func Plant(t testing.TB, path string, stmts ...string) {
	t.Helper()
	inTriggerlessTx(t, path, "plant", stmts, true)
}

// inTriggerlessTx drops the file's triggers, runs stmts and, with putBack,
// creates the triggers again, in one transaction.
func inTriggerlessTx(t testing.TB, path, what string, stmts []string, putBack bool) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, `SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var names, defs []string
	for rows.Next() {
		var n, def string
		if err := rows.Scan(&n, &def); err != nil {
			t.Fatal(err)
		}
		names, defs = append(names, n), append(defs, def)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, err := tx.ExecContext(ctx, `DROP TRIGGER "`+n+`"`); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s %q: %v", what, s, err)
		}
	}
	for _, def := range defs {
		if !putBack {
			break
		}
		if _, err := tx.ExecContext(ctx, def); err != nil {
			t.Fatalf("put back %q: %v", def, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}
