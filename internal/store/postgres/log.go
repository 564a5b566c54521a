package postgres

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/agentsigna/agentsigna/internal/store"
)

// logScope names one log's tables: a tenant's (row security already confines
// them; statements also name tenant_id so the primary key is used) or the
// platform's (platform_*, granted to the platform role only).
type logScope struct {
	prefix   string // "" or "platform_"
	tenantID string // "" for the platform log
}

func (s logScope) table(name string) string { return s.prefix + name }

// where builds " WHERE [tenant_id = $1 AND] cond" with cond's placeholders
// written as ? and numbered here.
func (s logScope) where(cond string, args ...any) (string, []any) {
	if s.tenantID != "" {
		if cond == "" {
			cond = "tenant_id = ?"
		} else {
			cond = "tenant_id = ? AND " + cond
		}
		args = append([]any{s.tenantID}, args...)
	}
	if cond == "" {
		return "", args
	}
	return " WHERE " + number(cond), args
}

// number rewrites ? placeholders as $1, $2, …
func number(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

type logTx struct {
	tx pgx.Tx
	logScope
}

// logLockClass is the first key of the advisory lock that serialises the
// writers of one log across replicas ("ALOG"); the second is the tenant.
const logLockClass = 0x414c4f47

func (l *logTx) LockLog(ctx context.Context) error {
	var err error
	if l.tenantID == "" {
		_, err = l.tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, 0)`, int32(logLockClass))
	} else {
		// hashtext collisions between tenants only serialise more than
		// needed; they never let two writers of one log in together.
		_, err = l.tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, int32(logLockClass), l.tenantID)
	}
	return mapErr(err)
}

const checkpointColumns = `size, root, range_hashes, last_leaf_hash, note, created_at`

func (l *logTx) LatestCheckpoint(ctx context.Context) (store.LedgerCheckpoint, error) {
	w, args := l.where("")
	return scanCheckpoint(l.tx.QueryRow(ctx, `SELECT `+checkpointColumns+` FROM `+l.table("ledger_checkpoints")+w+` ORDER BY size DESC LIMIT 1`, args...))
}

func (l *logTx) Checkpoint(ctx context.Context, size uint64) (store.LedgerCheckpoint, error) {
	if size > math.MaxInt64 {
		return store.LedgerCheckpoint{}, store.ErrNotFound
	}
	w, args := l.where("size = ?", int64(size))
	return scanCheckpoint(l.tx.QueryRow(ctx, `SELECT `+checkpointColumns+` FROM `+l.table("ledger_checkpoints")+w, args...))
}

func (l *logTx) CheckpointSizes(ctx context.Context) ([]uint64, error) {
	w, args := l.where("")
	rows, err := l.tx.Query(ctx, `SELECT size FROM `+l.table("ledger_checkpoints")+w+` ORDER BY size`, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	sizes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (uint64, error) {
		var n int64
		err := r.Scan(&n)
		return uint64(n), err
	})
	return sizes, mapErr(err)
}

func scanCheckpoint(row pgx.Row) (store.LedgerCheckpoint, error) {
	var cp store.LedgerCheckpoint
	var size int64
	var rng []byte
	if err := row.Scan(&size, &cp.Root, &rng, &cp.LastLeafHash, &cp.Note, &cp.CreatedAt); err != nil {
		return store.LedgerCheckpoint{}, mapErr(err)
	}
	cp.Size = uint64(size)
	cp.CreatedAt = cp.CreatedAt.UTC()
	var err error
	cp.RangeHashes, err = store.SplitHashes(rng)
	return cp, err
}

// AppendLog sends the whole batch in one round trip: a size check and three
// array inserts, pipelined.
func (l *logTx) AppendLog(ctx context.Context, entries []store.LedgerEntry, nodes []store.LedgerNode, cp store.LedgerCheckpoint) error {
	if err := store.CheckLogBatch(entries, nodes, cp); err != nil {
		return err
	}
	idx := make([]int64, len(entries))
	leaves, hashes, records := make([][]byte, len(entries)), make([][]byte, len(entries)), make([][]byte, len(entries))
	for i, e := range entries {
		idx[i], leaves[i], hashes[i], records[i] = int64(e.Index), e.Entry, e.LeafHash, e.Record
		if records[i] == nil {
			records[i] = []byte{}
		}
	}
	tenantCol, tenantVal := "", ""
	var lead []any
	if l.tenantID != "" {
		tenantCol, tenantVal = "tenant_id, ", "$5, "
		lead = []any{l.tenantID}
	}
	b := &pgx.Batch{}
	// The insert only happens if the batch starts exactly at the current
	// size: no gap, no overlap.
	b.Queue(`INSERT INTO `+l.table("ledger_entries")+` (`+tenantCol+`idx, entry, leaf_hash, record)
		SELECT `+tenantVal+`i, e, h, r FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[]) AS b(i, e, h, r)
		WHERE (SELECT coalesce(max(idx) + 1, 0) FROM `+l.table("ledger_entries")+scopeOnly(l.logScope, 5)+`) = $1[1]`,
		append([]any{idx, leaves, hashes, records}, lead...)...).Exec(func(tag pgconn.CommandTag) error {
		if tag.RowsAffected() != int64(len(entries)) {
			return fmt.Errorf("%w: log moved past %d", store.ErrConflict, entries[0].Index)
		}
		return nil
	})
	if len(nodes) > 0 {
		levels, nidx, nhash := make([]int16, len(nodes)), make([]int64, len(nodes)), make([][]byte, len(nodes))
		for i, n := range nodes {
			levels[i], nidx[i], nhash[i] = int16(n.Level), int64(n.Index), n.Hash
		}
		tv := ""
		if l.tenantID != "" {
			tv = "$4, "
		}
		b.Queue(`INSERT INTO `+l.table("ledger_nodes")+` (`+tenantCol+`level, idx, hash)
			SELECT `+tv+`lv, i, h FROM unnest($1::smallint[], $2::bigint[], $3::bytea[]) AS b(lv, i, h)`,
			append([]any{levels, nidx, nhash}, lead...)...)
	}
	tv := ""
	if l.tenantID != "" {
		tv = "$6, "
	}
	b.Queue(`INSERT INTO `+l.table("ledger_checkpoints")+` (`+tenantCol+`size, root, range_hashes, last_leaf_hash, note)
		VALUES (`+tv+`$1, $2, $3, $4, $5)`,
		append([]any{int64(cp.Size), cp.Root, store.JoinHashes(cp.RangeHashes), cp.LastLeafHash, cp.Note}, lead...)...)
	return mapErr(l.tx.SendBatch(ctx, b).Close())
}

// scopeOnly is the tenant filter alone, with its placeholder number.
func scopeOnly(s logScope, n int) string {
	if s.tenantID == "" {
		return ""
	}
	return " WHERE tenant_id = $" + strconv.Itoa(n)
}

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
	q := `SELECT idx, entry, leaf_hash, record, created_at FROM ` + l.table("ledger_entries") + w + ` ORDER BY idx`
	if maxBytes < math.MaxInt {
		// The bound in SQL: closing the rows early would still have the
		// server send, and pgx read, the whole range. octet_length reads a
		// stored value's size, not the value. The first row has nothing
		// before it: one at least.
		args = append(args, int64(max(maxBytes, 1)))
		q = `SELECT idx, entry, leaf_hash, record, created_at FROM (
			SELECT idx, entry, leaf_hash, record, created_at, sum(octet_length(entry) + octet_length(record)) OVER (ORDER BY idx)
				- (octet_length(entry) + octet_length(record)) AS before
			FROM ` + l.table("ledger_entries") + w + `) e
			WHERE before < $` + strconv.Itoa(len(args)) + ` ORDER BY idx`
	}
	rows, err := l.tx.Query(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.LedgerEntry, error) { return scanEntry(r) })
	return out, mapErr(err)
}

func scanEntry(row pgx.Row) (store.LedgerEntry, error) {
	var e store.LedgerEntry
	var idx int64
	if err := row.Scan(&idx, &e.Entry, &e.LeafHash, &e.Record, &e.CreatedAt); err != nil {
		return store.LedgerEntry{}, mapErr(err)
	}
	e.Index = uint64(idx)
	e.CreatedAt = e.CreatedAt.UTC()
	return e, nil
}

// EntryByLeafHash probes each 4,096-entry epoch of the leaf-hash index,
// keyed by the epoch (idx >> 12) first so that appends do not scatter
// across it.
func (l *logTx) EntryByLeafHash(ctx context.Context, leafHash []byte) (store.LedgerEntry, error) {
	w, args := l.where("")
	var size int64
	if err := l.tx.QueryRow(ctx, `SELECT coalesce(max(idx) + 1, 0) FROM `+l.table("ledger_entries")+w, args...).Scan(&size); err != nil {
		return store.LedgerEntry{}, mapErr(err)
	}
	if size == 0 {
		return store.LedgerEntry{}, store.ErrNotFound
	}
	q, args := l.leafHashQuery((size-1)>>12, leafHash)
	return scanEntry(l.tx.QueryRow(ctx, q, args...))
}

// leafHashQuery finds a leaf hash in epochs 0 to last, one seek of the
// index on its whole key (tenant_id, epoch, leaf_hash) per epoch, in the
// plans PostgreSQL makes without statistics too. The epoch is a stored
// column (0020): a condition on the expression idx >> 12 was a filter
// under row security, >> not being leakproof. The LIMIT in the lateral
// subquery keeps the planner from flattening it into a join, which it
// made a hash join over an index scan of the organization's whole key
// range; TestLeafHashLookupSeeksEachEpoch holds it to the plan.
func (l *logTx) leafHashQuery(last int64, leafHash []byte) (string, []any) {
	w, args := l.where("epoch = e.n AND leaf_hash = ?", leafHash)
	q := `SELECT l.idx, l.entry, l.leaf_hash, l.record, l.created_at
		FROM generate_series(0, $` + strconv.Itoa(len(args)+1) + `::bigint) AS e(n)
		CROSS JOIN LATERAL (SELECT idx, entry, leaf_hash, record, created_at FROM ` + l.table("ledger_entries") + w + ` ORDER BY idx LIMIT 1) l
		ORDER BY l.idx LIMIT 1`
	return q, append(args, last)
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
	w, args := l.where("level = ? AND idx >= ? AND idx < ?", int16(level), f, t)
	return l.hashes(ctx, `SELECT hash FROM `+l.table("ledger_nodes")+w+` ORDER BY idx`, args)
}

func (l *logTx) hashes(ctx context.Context, q string, args []any) ([][]byte, error) {
	rows, err := l.tx.Query(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	return out, mapErr(err)
}

type keyTx struct {
	tx pgx.Tx
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
	var retired *time.Time
	if !key.RetiredAt.IsZero() {
		retired = &key.RetiredAt
	}
	cols, ph := keyColumns, "$1, $2, $3, $4, $5, $6, $7, $8"
	args := []any{key.KID, string(key.Purpose), key.Algorithm, key.PublicKey, key.SealedPrivate, string(key.Status), key.CreatedAt, retired}
	if k.tenantID != "" {
		cols, ph = "tenant_id, "+cols, "$9, "+ph
		args = append(args, k.tenantID)
	}
	// DO NOTHING, not an error: the transaction stays usable, so a caller
	// that lost a race to create the first key can read the winner's.
	// Against a concurrent, uncommitted insert of an active key of the
	// purpose, this waits for that transaction's end.
	tag, err := k.tx.Exec(ctx, `INSERT INTO `+k.table("signing_keys")+` (`+cols+`) VALUES (`+ph+`) ON CONFLICT DO NOTHING`, args...)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return store.SigningKeyConflict(key)
	}
	return nil
}

func (k *keyTx) SigningKeys(ctx context.Context, purpose store.KeyPurpose) ([]store.SigningKey, error) {
	w, args := k.where("purpose = ?", string(purpose))
	rows, err := k.tx.Query(ctx, `SELECT `+keyColumns+` FROM `+k.table("signing_keys")+w+` ORDER BY created_at, kid`, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.SigningKey, error) {
		var key store.SigningKey
		var purpose, status string
		var retired *time.Time
		if err := r.Scan(&key.KID, &purpose, &key.Algorithm, &key.PublicKey, &key.SealedPrivate, &status, &key.CreatedAt, &retired); err != nil {
			return key, err
		}
		key.Purpose, key.Status = store.KeyPurpose(purpose), store.KeyStatus(status)
		key.CreatedAt = key.CreatedAt.UTC()
		if retired != nil {
			key.RetiredAt = retired.UTC()
		}
		return key, nil
	})
	return out, mapErr(err)
}

func (k *keyTx) RetireSigningKey(ctx context.Context, kid string, at time.Time) error {
	w, args := k.where("kid = ? AND status = 'active'", kid)
	// The SET placeholder follows the WHERE ones.
	q := `UPDATE ` + k.table("signing_keys") + ` SET status = 'retired', retired_at = $` + strconv.Itoa(len(args)+1) + w
	tag, err := k.tx.Exec(ctx, q, append(args, at)...)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: active signing key", store.ErrNotFound)
	}
	return nil
}
