package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
)

// logScope names one log's tables: a tenant's (in its own file, every row
// also carrying tenant_id) or the platform's (platform_* in platform.db).
type logScope struct {
	prefix   string // "" or "platform_"
	tenantID string // "" for the platform log
}

func (s logScope) table(name string) string { return s.prefix + name }

// where prefixes a condition with the tenant filter when there is one.
func (s logScope) where(cond string, args ...any) (string, []any) {
	if s.tenantID == "" {
		if cond == "" {
			return "", args
		}
		return " WHERE " + cond, args
	}
	if cond == "" {
		return " WHERE tenant_id = ?", []any{s.tenantID}
	}
	return " WHERE tenant_id = ? AND " + cond, append([]any{s.tenantID}, args...)
}

// cols returns the insert column list and values with tenant_id first when
// scoped.
func (s logScope) cols(names string, vals ...any) (string, string, []any) {
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(vals)), ", ")
	if s.tenantID == "" {
		return names, ph, vals
	}
	return "tenant_id, " + names, "?, " + ph, append([]any{s.tenantID}, vals...)
}

type logTx struct {
	tx *sql.Tx
	logScope
}

// LockLog is a no-op: every transaction took the file's write lock at BEGIN
// IMMEDIATE, which already serialises writers across processes.
func (l *logTx) LockLog(context.Context) error { return nil }

const checkpointColumns = `size, root, range_hashes, last_leaf_hash, note, created_at`

func (l *logTx) LatestCheckpoint(ctx context.Context) (store.LedgerCheckpoint, error) {
	w, args := l.where("")
	return scanCheckpoint(l.tx.QueryRowContext(ctx,
		`SELECT `+checkpointColumns+` FROM `+l.table("ledger_checkpoints")+w+` ORDER BY size DESC LIMIT 1`, args...))
}

func (l *logTx) Checkpoint(ctx context.Context, size uint64) (store.LedgerCheckpoint, error) {
	if size > math.MaxInt64 {
		return store.LedgerCheckpoint{}, store.ErrNotFound
	}
	w, args := l.where("size = ?", int64(size))
	return scanCheckpoint(l.tx.QueryRowContext(ctx, `SELECT `+checkpointColumns+` FROM `+l.table("ledger_checkpoints")+w, args...))
}

func (l *logTx) CheckpointSizes(ctx context.Context) ([]uint64, error) {
	w, args := l.where("")
	rows, err := l.tx.QueryContext(ctx, `SELECT size FROM `+l.table("ledger_checkpoints")+w+` ORDER BY size`, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return nil, mapErr(err)
		}
		out = append(out, uint64(n))
	}
	return out, mapErr(rows.Err())
}

func scanCheckpoint(row scanner) (store.LedgerCheckpoint, error) {
	var cp store.LedgerCheckpoint
	var size int64
	var rng []byte
	var created string
	if err := row.Scan(&size, &cp.Root, &rng, &cp.LastLeafHash, &cp.Note, &created); err != nil {
		return store.LedgerCheckpoint{}, mapErr(err)
	}
	cp.Size = uint64(size)
	var err error
	if cp.RangeHashes, err = store.SplitHashes(rng); err != nil {
		return store.LedgerCheckpoint{}, err
	}
	cp.CreatedAt, err = parseTime(created)
	return cp, err
}

func (l *logTx) AppendLog(ctx context.Context, entries []store.LedgerEntry, nodes []store.LedgerNode, cp store.LedgerCheckpoint) error {
	if err := store.CheckLogBatch(entries, nodes, cp); err != nil {
		return err
	}
	var size int64
	w, args := l.where("")
	if err := l.tx.QueryRowContext(ctx, `SELECT coalesce(max(idx) + 1, 0) FROM `+l.table("ledger_entries")+w, args...).Scan(&size); err != nil {
		return mapErr(err)
	}
	if entries[0].Index != uint64(size) {
		return fmt.Errorf("%w: log is at size %d, batch starts at %d", store.ErrConflict, size, entries[0].Index)
	}
	now := formatTime(time.Now())
	rows := make([][]any, len(entries))
	for i, e := range entries {
		_, _, rows[i] = l.cols("", int64(e.Index), e.Entry, e.LeafHash, nonNil(e.Record), now)
	}
	if err := l.insertRows(ctx, "ledger_entries", "idx, entry, leaf_hash, record, created_at", rows); err != nil {
		return err
	}
	rows = rows[:0]
	for _, n := range nodes {
		_, _, vals := l.cols("", int64(n.Level), int64(n.Index), n.Hash)
		rows = append(rows, vals)
	}
	if err := l.insertRows(ctx, "ledger_nodes", "level, idx, hash", rows); err != nil {
		return err
	}
	names, ph, vals := l.cols(checkpointColumns, int64(cp.Size), cp.Root, store.JoinHashes(cp.RangeHashes), cp.LastLeafHash, cp.Note, now)
	_, err := l.tx.ExecContext(ctx, `INSERT INTO `+l.table("ledger_checkpoints")+` (`+names+`) VALUES (`+ph+`)`, vals...)
	return mapErr(err)
}

// insertRows inserts rows, each with the tenant id first when scoped.
func (l *logTx) insertRows(ctx context.Context, table, columns string, rows [][]any) error {
	names, _, _ := l.cols(columns)
	return insertRows(ctx, l.tx, l.table(table), names, rows, "")
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// clampRange turns [from, to) into int64 bounds the database can compare.
func clampRange(from, to uint64) (int64, int64, error) {
	if to < from {
		return 0, 0, fmt.Errorf("%w: range [%d, %d)", store.ErrInvalid, from, to)
	}
	to = min(to, math.MaxInt64)
	from = min(from, to)
	return int64(from), int64(to), nil
}

func (l *logTx) Entries(ctx context.Context, from, to uint64) ([]store.LedgerEntry, error) {
	return l.EntriesWithin(ctx, from, to, math.MaxInt)
}

func (l *logTx) EntriesWithin(ctx context.Context, from, to uint64, maxBytes int) ([]store.LedgerEntry, error) {
	f, t, err := clampRange(from, to)
	if err != nil {
		return nil, err
	}
	w, args := l.where("idx >= ? AND idx < ?", f, t)
	rows, err := l.tx.QueryContext(ctx, `SELECT idx, entry, leaf_hash, record, created_at FROM `+l.table("ledger_entries")+w+` ORDER BY idx`, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.LedgerEntry
	for n := 0; (len(out) == 0 || n < maxBytes) && rows.Next(); {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		n += len(e.Entry) + len(e.Record)
	}
	return out, mapErr(rows.Err())
}

func scanEntry(row scanner) (store.LedgerEntry, error) {
	var e store.LedgerEntry
	var idx int64
	var created string
	if err := row.Scan(&idx, &e.Entry, &e.LeafHash, &e.Record, &created); err != nil {
		return store.LedgerEntry{}, mapErr(err)
	}
	e.Index = uint64(idx)
	var err error
	e.CreatedAt, err = parseTime(created)
	return e, err
}

// leafHashEpoch is the shift of the leaf-hash index's leading key, idx >>
// 12: random leaf hashes are then inserted within one small subtree of
// 4,096 entries instead of across the whole index, which kept a batch's
// WAL writes (and so its commit time) from growing with the log. A lookup
// probes each epoch: ~250 index seeks at a million entries.
const leafHashEpoch = 12

func (l *logTx) EntryByLeafHash(ctx context.Context, leafHash []byte) (store.LedgerEntry, error) {
	var size int64
	w, args := l.where("")
	if err := l.tx.QueryRowContext(ctx, `SELECT coalesce(max(idx) + 1, 0) FROM `+l.table("ledger_entries")+w, args...).Scan(&size); err != nil {
		return store.LedgerEntry{}, mapErr(err)
	}
	if size == 0 {
		return store.LedgerEntry{}, store.ErrNotFound
	}
	q, args := l.leafHashQuery(size, leafHash)
	return scanEntry(l.tx.QueryRowContext(ctx, q, args...))
}

// leafHashQuery probes every epoch of a log of size entries (> 0), one
// seek of the epoch index each, on its whole key. INDEXED BY forces the
// index (without statistics the planner would rather scan), and CROSS JOIN
// the loop's order: epochs outside, so that each probe has its epoch. With
// a plain JOIN, SQLite put the entries outside and read the organization's
// whole index, a cost that grew with the log (found by review: 150 ms at
// 2^20 entries, for any agent asking for a leaf hash).
func (l *logTx) leafHashQuery(size int64, leafHash []byte) (string, []any) {
	cond, args := l.where("(idx >> 12) = e.n AND leaf_hash = ?", leafHash)
	q := `WITH RECURSIVE e(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM e WHERE n < ?)
		SELECT idx, entry, leaf_hash, record, created_at FROM e CROSS JOIN ` + l.table("ledger_entries") +
		` INDEXED BY ` + l.table("ledger_entries_by_leaf_hash") + cond + ` ORDER BY idx LIMIT 1`
	return q, append([]any{(size - 1) >> leafHashEpoch}, args...)
}

func (l *logTx) LeafHashes(ctx context.Context, from, to uint64) ([][]byte, error) {
	f, t, err := clampRange(from, to)
	if err != nil {
		return nil, err
	}
	w, args := l.where("idx >= ? AND idx < ?", f, t)
	return l.hashes(ctx, `SELECT leaf_hash FROM `+l.table("ledger_entries")+w+` ORDER BY idx`, args)
}

func (l *logTx) Nodes(ctx context.Context, level uint, from, to uint64) ([][]byte, error) {
	f, t, err := clampRange(from, to)
	if err != nil {
		return nil, err
	}
	w, args := l.where("level = ? AND idx >= ? AND idx < ?", int64(level), f, t)
	return l.hashes(ctx, `SELECT hash FROM `+l.table("ledger_nodes")+w+` ORDER BY idx`, args)
}

func (l *logTx) hashes(ctx context.Context, q string, args []any) ([][]byte, error) {
	rows, err := l.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			return nil, mapErr(err)
		}
		out = append(out, h)
	}
	return out, mapErr(rows.Err())
}

// keyTx stores signing keys in the same scope as the log.
type keyTx struct {
	tx *sql.Tx
	logScope
}

const keyColumns = `kid, purpose, algorithm, public_key, sealed_private, status, created_at, retired_at`

func (k *keyTx) InsertSigningKey(ctx context.Context, key store.SigningKey) error {
	if err := store.CheckSigningKey(key); err != nil {
		return err
	}
	if key.CreatedAt.IsZero() {
		key.CreatedAt = time.Now()
	}
	var retired any
	if !key.RetiredAt.IsZero() {
		retired = formatTime(key.RetiredAt)
	}
	names, ph, vals := k.cols(keyColumns, key.KID, string(key.Purpose), key.Algorithm, key.PublicKey, key.SealedPrivate,
		string(key.Status), formatTime(key.CreatedAt), retired)
	// DO NOTHING, not an error, as on PostgreSQL (where it keeps the
	// transaction usable).
	res, err := k.tx.ExecContext(ctx, `INSERT INTO `+k.table("signing_keys")+` (`+names+`) VALUES (`+ph+`) ON CONFLICT DO NOTHING`, vals...)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.SigningKeyConflict(key)
	}
	return nil
}

func (k *keyTx) SigningKeys(ctx context.Context, purpose store.KeyPurpose) ([]store.SigningKey, error) {
	w, args := k.where("purpose = ?", string(purpose))
	rows, err := k.tx.QueryContext(ctx, `SELECT `+keyColumns+` FROM `+k.table("signing_keys")+w+` ORDER BY created_at, kid`, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.SigningKey
	for rows.Next() {
		var key store.SigningKey
		var purpose, status, created string
		var retired sql.NullString
		if err := rows.Scan(&key.KID, &purpose, &key.Algorithm, &key.PublicKey, &key.SealedPrivate, &status, &created, &retired); err != nil {
			return nil, mapErr(err)
		}
		key.Purpose, key.Status = store.KeyPurpose(purpose), store.KeyStatus(status)
		if key.CreatedAt, err = parseTime(created); err != nil {
			return nil, err
		}
		if retired.Valid {
			if key.RetiredAt, err = parseTime(retired.String); err != nil {
				return nil, err
			}
		}
		out = append(out, key)
	}
	return out, mapErr(rows.Err())
}

func (k *keyTx) RetireSigningKey(ctx context.Context, kid string, at time.Time) error {
	w, args := k.where("kid = ? AND status = 'active'", kid)
	res, err := k.tx.ExecContext(ctx, `UPDATE `+k.table("signing_keys")+` SET status = 'retired', retired_at = ?`+w,
		append([]any{formatTime(at)}, args...)...)
	if err != nil {
		return mapErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: active signing key", store.ErrNotFound)
	}
	return nil
}
