package ledger_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// Someone with write access to the database alters, deletes or reorders
// rows behind the triggers' back; Check names the entry.
func TestCheckFindsTampering(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			for _, tc := range []struct {
				name  string
				stmts []string
				index uint64
				want  string
			}{
				{"entry bytes replaced", []string{
					`UPDATE ledger_entries SET entry = (SELECT entry FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 6) WHERE tenant_id = '%[1]s' AND idx = 5`,
				}, 5, "says it is entry 6"},
				{"leaf hash replaced", []string{
					`UPDATE ledger_entries SET leaf_hash = (SELECT leaf_hash FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 6) WHERE tenant_id = '%[1]s' AND idx = 5`,
				}, 5, "leaf hash"},
				{"entry and leaf hash replaced together", []string{
					`UPDATE ledger_entries SET entry = (SELECT entry FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 6),
					 leaf_hash = (SELECT leaf_hash FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 6) WHERE tenant_id = '%[1]s' AND idx = 5`,
				}, 5, "says it is entry 6"},
				{"record altered", []string{
					`UPDATE ledger_entries SET record = leaf_hash WHERE tenant_id = '%[1]s' AND idx = 7`,
				}, 7, "record"},
				{"entry deleted", []string{
					`DELETE FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 4`,
				}, 4, "missing"},
				{"entries reordered", []string{
					`UPDATE ledger_entries SET idx = 1000000 WHERE tenant_id = '%[1]s' AND idx = 3`,
					`UPDATE ledger_entries SET idx = 3 WHERE tenant_id = '%[1]s' AND idx = 4`,
					`UPDATE ledger_entries SET idx = 4 WHERE tenant_id = '%[1]s' AND idx = 1000000`,
				}, 3, "says it is entry 4"},
				{"last entry deleted", []string{
					`DELETE FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 299`,
				}, 299, "missing"},
				{"entry planted past the end", []string{
					`INSERT INTO ledger_entries (tenant_id, idx, entry, leaf_hash, record, created_at)
					 SELECT tenant_id, 300, entry, leaf_hash, record, created_at FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 0`,
				}, 300, "beyond"},
				{"entry planted past a gap", []string{
					`INSERT INTO ledger_entries (tenant_id, idx, entry, leaf_hash, record, created_at)
					 SELECT tenant_id, 302, entry, leaf_hash, record, created_at FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 0`,
				}, 302, "beyond"},
				{"checkpoint root altered", []string{
					`UPDATE ledger_checkpoints SET root = (SELECT leaf_hash FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 0) WHERE tenant_id = '%[1]s' AND size = 300`,
				}, 299, "disagrees with its signed note"},
				{"intermediate checkpoint deleted", []string{
					`DELETE FROM ledger_checkpoints WHERE tenant_id = '%[1]s' AND size = 150`,
				}, 149, "no signed checkpoint of size 150"},
				{"first checkpoint deleted", []string{
					`DELETE FROM ledger_checkpoints WHERE tenant_id = '%[1]s' AND size = 1`,
				}, 0, "no signed checkpoint of size 1"},
				{"tile node planted next to the tree", []string{
					`INSERT INTO ledger_nodes (tenant_id, level, idx, hash) SELECT tenant_id, 8, 1, hash FROM ledger_nodes WHERE tenant_id = '%[1]s' AND level = 8 AND idx = 0`,
				}, 256, "(level 8, index 1) is beyond"},
				{"tile node planted far past the tree", []string{
					`INSERT INTO ledger_nodes (tenant_id, level, idx, hash) SELECT tenant_id, 8, 1000003, hash FROM ledger_nodes WHERE tenant_id = '%[1]s' AND level = 8 AND idx = 0`,
				}, 1000003 << 8, "(level 8, index 1000003) is beyond"},
				{"tile node planted at a level the tree has not reached", []string{
					`INSERT INTO ledger_nodes (tenant_id, level, idx, hash) SELECT tenant_id, 16, 0, hash FROM ledger_nodes WHERE tenant_id = '%[1]s' AND level = 8 AND idx = 0`,
				}, 0, "(level 16, index 0) is beyond"},
				// The last index the store reads (its ranges end below
				// 2^63-1), far past what a log can reach.
				{"tile node planted at the last index but one", []string{
					`INSERT INTO ledger_nodes (tenant_id, level, idx, hash) SELECT tenant_id, 56, 9223372036854775806, hash FROM ledger_nodes WHERE tenant_id = '%[1]s' AND level = 8 AND idx = 0`,
				}, 1<<64 - 1, "(level 56, index 9223372036854775806) is beyond"},
				{"tile node deleted", []string{
					`DELETE FROM ledger_nodes WHERE tenant_id = '%[1]s' AND level = 8 AND idx = 0`,
				}, 0, "(level 8, index 0) does not match"},
				{"tile node altered", []string{
					`UPDATE ledger_nodes SET hash = (SELECT leaf_hash FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 0) WHERE tenant_id = '%[1]s' AND level = 8 AND idx = 0`,
				}, 0, "tree node"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					// Check finds where a batch ended by its entries' time
					// changing, and the deletion cases need every batch's
					// end found: each batch gets a later time than the
					// last, which the wall clock does not promise.
					var batches atomic.Int64
					now := func() time.Time { return time.Unix(1_800_000_000+batches.Add(1), 0) }
					e := newEnv(t, kind, ledger.Config{Now: now})
					ctx := context.Background()
					// 300 entries (a full tile and more) in five batches,
					// whose checkpoints the cases need: 1 and 150 to
					// delete, 300 to alter, reported at its batch's first
					// entry, 299, as a deleted 150 is at 149.
					for _, batch := range [][2]int{{0, 1}, {1, 149}, {149, 150}, {150, 299}, {299, 300}} {
						var entries []ledger.Entry
						for i := batch[0]; i < batch[1]; i++ {
							entries = append(entries, ledger.Entry{Kind: "test", Subject: strings.Repeat("s", i%7), Record: []byte{byte(i)}})
						}
						if _, err := e.ledger.AppendAll(ctx, e.log, entries); err != nil {
							t.Fatal(err)
						}
					}
					vkey, err := e.ledger.VerifierKey(ctx, e.log)
					if err != nil {
						t.Fatal(err)
					}
					if rep, err := e.ledger.Check(ctx, e.log, vkey); err != nil || rep.Problem != nil || rep.Checkpoints != 5 {
						t.Fatalf("before tampering: %+v %v, %v", rep, rep.Problem, err)
					}
					e.tamper(t, tc.stmts...)
					rep, err := e.ledger.Check(ctx, e.log, vkey)
					if err != nil {
						t.Fatal(err)
					}
					if rep.Problem == nil {
						t.Fatal("tampering not detected")
					}
					if rep.Problem.Index != tc.index || !strings.Contains(rep.Problem.Reason, tc.want) {
						t.Fatalf("reported %v; want entry %d (%q)", rep.Problem, tc.index, tc.want)
					}
				})
			}
		})
	}
}

// A log key swapped in the database does not fool a check pinned to the
// published key.
func TestCheckPinnedKey(t *testing.T) {
	e := newEnv(t, "sqlite", ledger.Config{})
	appendAll(t, e, []ledger.Entry{{Kind: "test"}})
	other := newEnv(t, "sqlite", ledger.Config{})
	appendAll(t, other, []ledger.Entry{{Kind: "test"}})
	foreign, _ := other.ledger.VerifierKey(context.Background(), other.log)
	rep, err := e.ledger.Check(context.Background(), e.log, foreign)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Problem == nil || !strings.Contains(rep.Problem.Reason, "does not verify") {
		t.Fatalf("foreign key accepted: %+v", rep.Problem)
	}
}

// appendAll appends entries one after another: one checkpoint each.
func appendAll(t *testing.T, e *env, entries []ledger.Entry) {
	t.Helper()
	for _, en := range entries {
		if _, err := e.ledger.Append(context.Background(), e.log, en); err != nil {
			t.Fatal(err)
		}
	}
}

// The most careful forger rewrites entry 5 whole — a canonical entry with
// the right index and prev, a matching leaf hash and record — and is caught
// by entry 6's chain link.
func TestCheckFindsForgedEntry(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			var entries []ledger.Entry
			for i := range 10 {
				entries = append(entries, ledger.Entry{Kind: "test", Record: []byte{byte(i)}})
			}
			appendAll(t, e, entries)
			orig, err := e.ledger.Entry(ctx, e.log, 5)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := verify.ParseEntry(orig.Entry)
			if err != nil {
				t.Fatal(err)
			}
			record := []byte("forged record")
			digest := sha256.Sum256(record)
			parsed.Digest = digest[:]
			forged, err := parsed.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			lit := func(b []byte) string {
				if kind == "sqlite" {
					return fmt.Sprintf("X'%x'", b)
				}
				return fmt.Sprintf(`'\x%x'::bytea`, b)
			}
			e.tamper(t, fmt.Sprintf(`UPDATE ledger_entries SET entry = %s, leaf_hash = %s, record = %s WHERE tenant_id = '%%[1]s' AND idx = 5`,
				lit(forged), lit(verify.LeafHash(forged)), lit(record)))
			rep, err := e.ledger.Check(ctx, e.log, "")
			if err != nil {
				t.Fatal(err)
			}
			// Checkpoint 6 (covering entry 5) already disagrees; the first
			// problem is reported at the batch that holds the forgery.
			if rep.Problem == nil || rep.Problem.Index != 5 {
				t.Fatalf("forgery not caught at entry 5: %v", rep.Problem)
			}
		})
	}
}

// CheckWith shows each checked entry to opts.Record in order, whose
// answer is that entry's problem, and runs opts.Keys in the same read, on
// an intact log only, with the store's keys.
func TestCheckWithOptions(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			for i := range 4 {
				if _, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "test", Subject: fmt.Sprint(i), Record: []byte(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
					t.Fatal(err)
				}
			}
			var seen []string
			keysRan := 0
			opts := ledger.CheckOptions{
				CheckRecord: func(v verify.Entry, record []byte) error {
					seen = append(seen, fmt.Sprintf("%d:%s:%s", v.Index, v.Subject, record))
					if v.Subject == "2" {
						return errors.New("entry 2 refused by the caller")
					}
					return nil
				},
				CheckKeys: func(ctx context.Context, keys store.KeyTx) error {
					keysRan++
					ks, err := keys.SigningKeys(ctx, store.PurposeLog)
					if err != nil || len(ks) != 1 {
						return fmt.Errorf("the log's own keys: %v, %v", ks, err)
					}
					return fmt.Errorf("%w: the keys disagree", ledger.ErrKeysMismatch)
				},
			}
			rep, err := e.ledger.CheckWith(ctx, e.log, "", opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Problem == nil || rep.Problem.Index != 2 || rep.Problem.Reason != "entry 2 refused by the caller" || keysRan != 0 || rep.KeysProblem != "" {
				t.Fatalf("a record the caller refuses: %+v, %q, Keys ran %d times", rep.Problem, rep.KeysProblem, keysRan)
			}
			if want := []string{`0:0:{"i":0}`, `1:1:{"i":1}`, `2:2:{"i":2}`}; fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Fatalf("Record saw %v, want %v", seen, want)
			}
			opts.CheckRecord = func(verify.Entry, []byte) error { return nil }
			rep, err = e.ledger.CheckWith(ctx, e.log, "", opts)
			if err != nil || rep.Problem != nil || rep.KeysProblem != "the store's keys do not match the log: the keys disagree" || keysRan != 1 || rep.Size != 4 {
				t.Fatalf("an intact log: %+v, %v, Keys ran %d times", rep, err, keysRan)
			}
			// An error that is no mismatch fails the check.
			failing := opts
			failing.CheckKeys = func(context.Context, store.KeyTx) error { return errors.New("the store is down") }
			if rep, err := e.ledger.CheckWith(ctx, e.log, "", failing); err == nil || err.Error() != "the store is down" || rep.KeysProblem != "" {
				t.Fatalf("a failing key check: %+v, %v", rep, err)
			}
			// Rows likewise, in the organization's transaction, once keys
			// are checked; none on the platform's log.
			withRows := opts
			withRows.CheckKeys = nil
			withRows.CheckRows = func(ctx context.Context, tx store.TenantTx) error {
				if _, err := tx.GetSetting(ctx, "none"); !errors.Is(err, store.ErrNotFound) {
					return err
				}
				return fmt.Errorf("%w: the rows disagree", ledger.ErrRowsMismatch)
			}
			rep, err = e.ledger.CheckWith(ctx, e.log, "", withRows)
			if err != nil || rep.Problem != nil || rep.RowsProblem != "the store's rows do not match the log: the rows disagree" {
				t.Fatalf("rows of an intact log: %+v, %v", rep, err)
			}
			if _, err := e.ledger.CheckWith(ctx, e.ledger.PlatformLog(), "", withRows); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("rows of the platform log: %v", err)
			}
			// A record the caller refuses in a batch whose checkpoint is
			// forged: the forgery is what is reported.
			opts.CheckRecord = func(v verify.Entry, _ []byte) error {
				if v.Index == 2 {
					return errors.New("entry 2 refused by the caller")
				}
				return nil
			}
			e.tamper(t, `UPDATE ledger_checkpoints SET root = (SELECT leaf_hash FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 0) WHERE tenant_id = '%[1]s' AND size = 3`)
			rep, err = e.ledger.CheckWith(ctx, e.log, "", opts)
			if err != nil || rep.Problem == nil || rep.Problem.Index != 2 || !strings.Contains(rep.Problem.Reason, "disagrees with its signed note") {
				t.Fatalf("a refused record under a forged checkpoint: %+v, %v", rep.Problem, err)
			}
			// A tampered log: Keys does not run.
			e.tamper(t, `DELETE FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 1`)
			rep, err = e.ledger.CheckWith(ctx, e.log, "", opts)
			if err != nil || rep.Problem == nil || rep.Problem.Index != 1 || keysRan != 1 {
				t.Fatalf("a tampered log: %+v, %v, Keys ran %d times", rep, err, keysRan)
			}
		})
	}
}

// A log with no checkpoint holds no entry, at any index: one planted past
// index 0 is found too (found by review: only index 0 was read, and the
// planted row blocked every append).
func TestCheckFindsEntriesWithoutCheckpoint(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			appendAll(t, e, []ledger.Entry{{Kind: "test"}})
			vkey, err := e.ledger.VerifierKey(context.Background(), e.log)
			if err != nil {
				t.Fatal(err)
			}
			e.tamper(t,
				`DELETE FROM ledger_checkpoints WHERE tenant_id = '%[1]s'`,
				`UPDATE ledger_entries SET idx = 5 WHERE tenant_id = '%[1]s' AND idx = 0`,
			)
			rep, err := e.ledger.Check(context.Background(), e.log, vkey)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Problem == nil || rep.Problem.Index != 5 || !strings.Contains(rep.Problem.Reason, "no checkpoint") {
				t.Fatalf("reported %v; want entry 5 with no checkpoint", rep.Problem)
			}
		})
	}
}
