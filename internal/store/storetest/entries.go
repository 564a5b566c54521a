package storetest

import (
	"context"

	"github.com/agentsigna/agentsigna/internal/store"
)

// EntriesThrough is a backend whose tenant read transactions answer a
// log's Entries through Through, given the store's own answer: a test's
// way to a ledger row gone, changed or unreadable below a signed
// checkpoint, which the store's triggers forbid. Everything else, the
// tree's hashes included, is the store's.
type EntriesThrough struct {
	store.Backend
	Through func(es []store.LedgerEntry, err error) ([]store.LedgerEntry, error)
}

func (s *EntriesThrough) InTenantReadTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	return s.Backend.InTenantReadTx(ctx, tenantID, func(ctx context.Context, tx store.TenantTx) error {
		return fn(ctx, entriesThroughTx{tx, s.Through})
	})
}

type entriesThroughTx struct {
	store.TenantTx
	through func([]store.LedgerEntry, error) ([]store.LedgerEntry, error)
}

func (tx entriesThroughTx) Log() store.LogTx { return entriesThroughLog{tx.TenantTx.Log(), tx.through} }

type entriesThroughLog struct {
	store.LogTx
	through func([]store.LedgerEntry, error) ([]store.LedgerEntry, error)
}

func (l entriesThroughLog) Entries(ctx context.Context, from, to uint64) ([]store.LedgerEntry, error) {
	return l.through(l.LogTx.Entries(ctx, from, to))
}

func (l entriesThroughLog) EntriesWithin(ctx context.Context, from, to uint64, maxBytes int) ([]store.LedgerEntry, error) {
	return l.through(l.LogTx.EntriesWithin(ctx, from, to, maxBytes))
}
