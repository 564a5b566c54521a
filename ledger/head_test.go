package ledger_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// blob is b as a literal of kind's SQL.
func blob(kind string, b []byte) string {
	if kind == "postgres" {
		return `'\x` + hex.EncodeToString(b) + `'::bytea`
	}
	return `X'` + hex.EncodeToString(b) + `'`
}

// Someone who can write the store's rows (the organization's database
// role has INSERT on the ledger tables; the SQLite file is a file) plants
// or alters rows the next batch would build on. The service refuses to
// sign over them: no checkpoint of the forged tree, in this process or a
// new one, and the log stands still until an operator has looked.
func TestAppendRefusesAnAlteredHead(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			setup := func(t *testing.T) (*env, [][]byte) {
				e := newEnv(t, kind, ledger.Config{})
				appendAll(t, e, []ledger.Entry{{Kind: "test", Record: []byte("a")}, {Kind: "test", Record: []byte("b")}})
				appendAll(t, e, []ledger.Entry{{Kind: "test", Record: []byte("c")}, {Kind: "test", Record: []byte("d")}})
				var leaves [][]byte
				for i := range uint64(4) {
					en, err := e.ledger.Entry(ctx, e.log, i)
					if err != nil {
						t.Fatal(err)
					}
					leaves = append(leaves, en.LeafHash)
				}
				return e, leaves
			}
			refused := func(t *testing.T, e *env, l *ledger.Ledger, what string) {
				t.Helper()
				_, err := l.Append(ctx, l.TenantLog(e.tenant.ID, e.tenant.Slug), ledger.Entry{Kind: "test", Record: []byte("next")})
				if !errors.Is(err, ledger.ErrUntrustedHead) {
					t.Fatalf("%s: append gave %v, want ErrUntrustedHead", what, err)
				}
			}

			t.Run("entry and checkpoint planted", func(t *testing.T) {
				e, leaves := setup(t)
				// A well-formed entry 4, and the checkpoint row of the tree
				// it makes, with a note the insider signed under the log's
				// name with a key of their own.
				rec := []byte("forged")
				digest := sha256.Sum256(rec)
				forged, err := verify.Entry{V: 1, Index: 4, Time: time.Now().UTC(), Kind: "test", Subject: "forged", Digest: digest[:], Prev: leaves[3]}.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				leaf := rfc6962.DefaultHasher.HashLeaf(forged)
				rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
				for _, lh := range append(leaves, leaf) {
					if err := rng.Append(lh, nil); err != nil {
						t.Fatal(err)
					}
				}
				root, _ := rng.GetRootHash(nil)
				var ranges []byte
				for _, h := range rng.Hashes() {
					ranges = append(ranges, h...)
				}
				vkey, _ := e.ledger.VerifierKey(ctx, e.log)
				name := vkey[:bytes.IndexByte([]byte(vkey), '+')]
				skey, _, _ := note.GenerateKey(rand.Reader, name)
				signer, _ := note.NewSigner(skey)
				signed, _ := note.Sign(&note.Note{Text: string(log.Checkpoint{Origin: name, Size: 5, Hash: root}.Marshal())}, signer)
				created := "'2026-11-28T00:00:00Z'"
				e.tamper(t,
					fmt.Sprintf(`INSERT INTO ledger_entries (tenant_id, idx, entry, leaf_hash, record, created_at) VALUES ('%%[1]s', 4, %s, %s, %s, %s)`,
						blob(kind, forged), blob(kind, leaf), blob(kind, rec), created),
					fmt.Sprintf(`INSERT INTO ledger_checkpoints (tenant_id, size, root, range_hashes, last_leaf_hash, note, created_at) VALUES ('%%[1]s', 5, %s, %s, %s, %s, %s)`,
						blob(kind, root), blob(kind, ranges), blob(kind, leaf), blob(kind, signed), created))
				refused(t, e, e.ledger, "this process")
				refused(t, e, e.newLedger(t, e.another(t), ledger.Config{}), "a new process")
				if cp, err := e.ledger.LatestCheckpoint(ctx, e.log); err != nil || cp.Size != 5 {
					t.Fatalf("newest checkpoint %d, %v: the service signed over the planted one", cp.Size, err)
				}
			})
			t.Run("compact range altered", func(t *testing.T) {
				e, leaves := setup(t)
				e.tamper(t, fmt.Sprintf(`UPDATE ledger_checkpoints SET range_hashes = %s WHERE tenant_id = '%%[1]s' AND size = 4`, blob(kind, leaves[0])))
				refused(t, e, e.ledger, "this process")
				refused(t, e, e.newLedger(t, e.another(t), ledger.Config{}), "a new process")
			})
			t.Run("last leaf hash altered", func(t *testing.T) {
				e, leaves := setup(t)
				e.tamper(t, fmt.Sprintf(`UPDATE ledger_checkpoints SET last_leaf_hash = %s WHERE tenant_id = '%%[1]s' AND size = 4`, blob(kind, leaves[2])))
				refused(t, e, e.ledger, "this process")
				refused(t, e, e.newLedger(t, e.another(t), ledger.Config{}), "a new process")
			})
			t.Run("last entry altered with the checkpoint's last leaf", func(t *testing.T) {
				e, _ := setup(t)
				other := []byte(`{"v":1}`)
				lh := rfc6962.DefaultHasher.HashLeaf(other)
				e.tamper(t,
					fmt.Sprintf(`UPDATE ledger_entries SET entry = %s, leaf_hash = %s WHERE tenant_id = '%%[1]s' AND idx = 3`, blob(kind, other), blob(kind, lh)),
					fmt.Sprintf(`UPDATE ledger_checkpoints SET last_leaf_hash = %s WHERE tenant_id = '%%[1]s' AND size = 4`, blob(kind, lh)))
				refused(t, e, e.newLedger(t, e.another(t), ledger.Config{}), "a new process")
			})
			t.Run("rows deleted back to an earlier checkpoint", func(t *testing.T) {
				e, _ := setup(t)
				e.tamper(t,
					`DELETE FROM ledger_checkpoints WHERE tenant_id = '%[1]s' AND size = 4`,
					`DELETE FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx >= 2`)
				// This process signed size 4: it does not sign another tree
				// of that size. (A new process cannot tell: ledger verify
				// --checkpoint, with a checkpoint kept from before, can.)
				refused(t, e, e.ledger, "this process")
			})
			// Rows deleted back to checkpoint 2, then another process,
			// which never saw size 4, signs its own trees from there. The
			// process that signed size 4 does not extend either fork.
			for _, n := range []int{2, 3} {
				t.Run(fmt.Sprintf("a fork of %d entries by another process", n), func(t *testing.T) {
					e, _ := setup(t)
					e.tamper(t,
						`DELETE FROM ledger_checkpoints WHERE tenant_id = '%[1]s' AND size > 2`,
						`DELETE FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx >= 2`)
					other := e.newLedger(t, e.another(t), ledger.Config{})
					var entries []ledger.Entry
					for i := range n {
						entries = append(entries, ledger.Entry{Kind: "test", Record: []byte{'x', byte(i)}})
					}
					if _, err := other.AppendAll(ctx, other.TenantLog(e.tenant.ID, e.tenant.Slug), entries); err != nil {
						t.Fatal(err)
					}
					refused(t, e, e.ledger, "the process that signed size 4")
				})
			}
			// A first batch whose every request fails its check signs
			// nothing: the next, on the still empty log, is not refused.
			t.Run("a first batch that signed nothing", func(t *testing.T) {
				e := newEnv(t, kind, ledger.Config{})
				failed := errors.New("no")
				if _, err := e.ledger.AppendAllAndWriteIf(ctx, e.log, []ledger.Entry{{Kind: "test"}},
					func(context.Context, store.TenantTx) error { return failed },
					func(context.Context, store.TenantTx, []ledger.Appended) error { return nil }); !errors.Is(err, failed) {
					t.Fatalf("the failing check: %v", err)
				}
				if _, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "test"}); err != nil {
					t.Fatalf("an append after it: %v", err)
				}
			})
			t.Run("another process's batches are trusted once checked", func(t *testing.T) {
				e, _ := setup(t)
				other := e.newLedger(t, e.another(t), ledger.Config{})
				for i := range 3 {
					if _, err := other.Append(ctx, other.TenantLog(e.tenant.ID, e.tenant.Slug), ledger.Entry{Kind: "test", Record: []byte{byte(i)}}); err != nil {
						t.Fatal(err)
					}
					if _, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "test", Record: []byte{byte(i)}}); err != nil {
						t.Fatalf("after another process's batch: %v", err)
					}
				}
				vkey, _ := e.ledger.VerifierKey(ctx, e.log)
				if rep, err := e.ledger.Check(ctx, e.log, vkey); err != nil || rep.Problem != nil || rep.Size != 10 {
					t.Fatalf("check: %+v %v %v", rep, rep.Problem, err)
				}
			})
		})
	}
}
