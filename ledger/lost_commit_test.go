package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// losesCommitAnswer is a backend whose next organization transaction,
// once armed, commits and then reports a failure, as a COMMIT whose answer
// was lost with its connection does; or, with rollback set, fails at its
// end and commits nothing.
type losesCommitAnswer struct {
	store.Backend
	armed    atomic.Bool
	rollback bool
}

func (b *losesCommitAnswer) InTenantTx(ctx context.Context, tenantID string, fn func(context.Context, store.TenantTx) error) error {
	if b.rollback {
		return b.Backend.InTenantTx(ctx, tenantID, func(ctx context.Context, tx store.TenantTx) error {
			if err := fn(ctx, tx); err != nil || !b.armed.CompareAndSwap(true, false) {
				return err
			}
			return fmt.Errorf("%w: conn closed", store.ErrUnavailable)
		})
	}
	err := b.Backend.InTenantTx(ctx, tenantID, fn)
	if err == nil && b.armed.CompareAndSwap(true, false) {
		return fmt.Errorf("%w: conn closed", store.ErrUnavailable)
	}
	return err
}

// A batch whose transaction reports a failure though it committed is
// answered as committed: its entry is in the log, under the checkpoint its
// caller is given, and a caller told otherwise would append it again (a
// token issued twice in the log, an agent registered under two ids). The
// log goes on from it. A batch that did not commit still fails
// (TestWriteAbortFailsTheBatch).
func TestBatchCommittedThoughItsAnswerWasLost(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			b := &losesCommitAnswer{Backend: e.backend}
			l := e.newLedger(t, b, ledger.Config{})
			lg := l.TenantLog(e.tenant.ID, e.tenant.Slug)
			if _, err := l.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: "first"}); err != nil {
				t.Fatal(err)
			}
			b.armed.Store(true)
			got, err := l.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: "second"})
			if b.armed.Load() {
				t.Fatal("no transaction lost its answer")
			}
			if err != nil || got.Index != 1 || got.Checkpoint.Size != 2 {
				t.Fatalf("append whose commit answer was lost: %+v, %v", got, err)
			}
			stored, err := l.LatestCheckpoint(ctx, lg)
			if err != nil || !bytes.Equal(stored.Note, got.Checkpoint.Note) {
				t.Fatalf("the stored checkpoint is not the one answered: %v", err)
			}
			next, err := l.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: "third"})
			if err != nil || next.Index != 2 {
				t.Fatalf("the next append: %+v, %v", next, err)
			}
			vkey, _ := l.VerifierKey(ctx, lg)
			if rep, err := l.Check(ctx, lg, vkey); err != nil || rep.Problem != nil {
				t.Fatalf("check: %+v, %v", rep.Problem, err)
			}
		})
	}
}

// A batch whose transaction fails after it signed its checkpoint, and
// commits nothing, still fails: the stored log has no such checkpoint,
// and the next append takes the same index.
func TestBatchThatDidNotCommitStillFails(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			b := &losesCommitAnswer{Backend: e.backend, rollback: true}
			l := e.newLedger(t, b, ledger.Config{})
			lg := l.TenantLog(e.tenant.ID, e.tenant.Slug)
			if _, err := l.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: "first"}); err != nil {
				t.Fatal(err)
			}
			b.armed.Store(true)
			if got, err := l.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: "second"}); !errors.Is(err, store.ErrUnavailable) || b.armed.Load() {
				t.Fatalf("append whose transaction rolled back: entry %d, %v", got.Index, err)
			}
			if cp, err := l.LatestCheckpoint(ctx, lg); err != nil || cp.Size != 1 {
				t.Fatalf("stored checkpoint: %d, %v", cp.Size, err)
			}
			if next, err := l.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: "again"}); err != nil || next.Index != 1 {
				t.Fatalf("the next append: %+v, %v", next, err)
			}
		})
	}
}
