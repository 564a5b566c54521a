package sqlite

import (
	"context"
	"database/sql"
	"math/bits"
	"strings"
)

// maxRowsPerInsert bounds one multi-row INSERT: 256 rows of the widest
// table (decisions, 21 columns) stay far below SQLite's 32,766 bound
// parameters.
const maxRowsPerInsert = 256

// insertRows inserts rows, each one value per column, with multi-row
// INSERT statements: one statement per chunk instead of one call through
// database/sql per row, which dominated a batch's time. onConflict, when
// not empty, follows the VALUES list (an upsert clause).
//
// Chunks hold a power of two of rows (13 rows go as 8, 4 and 1), so a
// table has at most nine statement texts, and the connection's statement
// cache keeps each prepared instead of filling with one text per batch
// size.
func insertRows(ctx context.Context, tx *sql.Tx, table, columns string, rows [][]any, onConflict string) error {
	if len(rows) == 0 {
		return nil
	}
	ph := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(rows[0])), ", ") + ")"
	for len(rows) > 0 {
		n := chunkRows(len(rows))
		part := rows[:n]
		rows = rows[n:]
		var q strings.Builder
		q.WriteString("INSERT INTO " + table + " (" + columns + ") VALUES ")
		args := make([]any, 0, n*len(part[0]))
		for i, r := range part {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(ph)
			args = append(args, r...)
		}
		if onConflict != "" {
			q.WriteString(" " + onConflict)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return mapErr(err)
		}
	}
	return nil
}

// chunkRows is how many of remaining rows the next multi-row statement
// takes: the largest power of two not above them, at most
// maxRowsPerInsert.
func chunkRows(remaining int) int {
	return min(maxRowsPerInsert, 1<<(bits.Len(uint(remaining))-1))
}
