package ledger_test

import (
	"bytes"
	"context"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
)

// EntryInclusionProof serves no proof when the entry it reads does not
// stand for the leaf it proves: no row at an index below the checkpoint's
// size, more than one, or a row whose bytes do not hash to the stored
// leaf hash. (TestEntryInclusionProof reaches the last by tampering with
// the database; here the tree is intact and only the entry's row is not.)
func TestEntryInclusionProofRefusesABadRow(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			appended := appendN(t, e, e.ledger, e.log, 3, "row")
			const index = 1
			if p, err := e.ledger.EntryInclusionProof(ctx, e.log, index, 0); err != nil || !bytes.Equal(p.Entry, appended[index].Entry) {
				t.Fatalf("the untouched store: %q, %v", p.Entry, err)
			}
			for _, tc := range []struct {
				name  string
				alter func([]store.LedgerEntry) []store.LedgerEntry
			}{
				{"missing", func([]store.LedgerEntry) []store.LedgerEntry { return nil }},
				{"twice", func(es []store.LedgerEntry) []store.LedgerEntry { return append(es, es...) }},
				{"altered", func(es []store.LedgerEntry) []store.LedgerEntry {
					for i := range es {
						es[i].Entry = bytes.Replace(es[i].Entry, []byte("row-1"), []byte("row-9"), 1)
					}
					return es
				}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var reads atomic.Int32 // Entries calls answered
					s := &storetest.EntriesThrough{Backend: e.backend, Through: func(es []store.LedgerEntry, err error) ([]store.LedgerEntry, error) {
						if err != nil {
							return nil, err
						}
						reads.Add(1)
						return tc.alter(es), nil
					}}
					l := e.newLedger(t, s, ledger.Config{})
					p, err := l.EntryInclusionProof(ctx, l.TenantLog(e.tenant.ID, e.tenant.Slug), index, 0)
					if reads.Load() == 0 {
						t.Fatalf("the entry was never read (%v): the proof failed before it", err)
					}
					if err == nil || !reflect.ValueOf(p).IsZero() {
						t.Fatalf("proof served for a bad row: entry %q, %d hashes, checkpoint %d, err %v", p.Entry, len(p.Hashes), p.Checkpoint.Size, err)
					}
				})
			}
		})
	}
}
