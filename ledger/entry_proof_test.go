package ledger_test

import (
	"bytes"
	"context"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// entriesAltered is a store whose read transactions return the log's
// entries through alter: a row gone or changed below a signed checkpoint,
// which the store's triggers otherwise forbid. Everything else, the tree's
// hashes included, is the store's.
type entriesAltered struct {
	store.Backend
	alter func([]store.LedgerEntry) []store.LedgerEntry
	reads atomic.Int32 // Entries calls answered
}

func (s *entriesAltered) InTenantReadTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	return s.Backend.InTenantReadTx(ctx, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		return fn(ctx, entriesAlteredTx{tx, s})
	})
}

type entriesAlteredTx struct {
	store.TenantTx
	s *entriesAltered
}

func (tx entriesAlteredTx) Log() store.LogTx { return entriesAlteredLog{tx.TenantTx.Log(), tx.s} }

type entriesAlteredLog struct {
	store.LogTx
	s *entriesAltered
}

func (l entriesAlteredLog) Entries(ctx context.Context, from, to uint64) ([]store.LedgerEntry, error) {
	es, err := l.LogTx.Entries(ctx, from, to)
	if err != nil {
		return nil, err
	}
	l.s.reads.Add(1)
	return l.s.alter(es), nil
}

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
					s := &entriesAltered{Backend: e.backend, alter: tc.alter}
					l := e.newLedger(t, s, ledger.Config{})
					p, err := l.EntryInclusionProof(ctx, l.TenantLog(e.tenant.ID, e.tenant.Slug), index, 0)
					if s.reads.Load() == 0 {
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
