package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// answer is what one append returned.
type answer struct {
	out []ledger.Appended
	err error
}

// oneBatch runs appends as one batch, in the order given. It holds the
// log's writer inside a batch of its own (whose write blocks) until every
// append waits in the writer's queue, one after the other, and then lets
// it go: the writer takes them all into its next batch. It returns the
// log's size once the holding batch committed, and each append's answer.
func oneBatch(t *testing.T, e *env, appends ...func(context.Context) ([]ledger.Appended, error)) (before uint64, got []answer) {
	t.Helper()
	ctx := context.Background()
	inTx, release := make(chan struct{}), make(chan struct{})
	var entered, released sync.Once
	let := func() { released.Do(func() { close(release) }) }
	defer let()
	held := make(chan answer, 1)
	go func() {
		out, err := e.ledger.AppendAllAndWrite(ctx, e.log, []ledger.Entry{{Kind: "test.hold"}}, func(context.Context, store.TenantTx, []ledger.Appended) error {
			entered.Do(func() { close(inTx) })
			<-release
			return nil
		})
		held <- answer{out, err}
	}()
	<-inTx
	got = make([]answer, len(appends))
	var wg sync.WaitGroup
	for i, a := range appends {
		wg.Go(func() {
			out, err := a(ctx)
			got[i] = answer{out, err}
		})
		for deadline := time.Now().Add(10 * time.Second); e.ledger.QueuedRequests(e.log) < i+1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("append %d never reached the writer's queue", i)
			}
		}
	}
	let()
	wg.Wait()
	h := <-held
	if h.err != nil {
		t.Fatalf("the holding batch: %v", h.err)
	}
	return h.out[0].Checkpoint.Size, got
}

// nothingLogged requires every append of a batch to have failed with
// store.ErrTxAborted and no entries, and the log to hold nothing of the
// batch: its size is still before, no entry is readable at before, and
// the next append lands there.
func nothingLogged(t *testing.T, e *env, before uint64, got []answer) {
	t.Helper()
	ctx := context.Background()
	for i, a := range got {
		if !errors.Is(a.err, store.ErrTxAborted) || a.out != nil {
			t.Errorf("append %d of the aborted batch: %d entries, %v", i, len(a.out), a.err)
		}
	}
	cp, err := e.ledger.LatestCheckpoint(ctx, e.log)
	if err != nil || cp.Size != before {
		t.Fatalf("checkpoint of size %d (%v), want %d: the aborted batch grew the log", cp.Size, err, before)
	}
	if en, err := e.ledger.Entry(ctx, e.log, before); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("entry %d of the aborted batch is readable: %q, %v", before, en.Entry, err)
	}
	next, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "test.after", Subject: "after"})
	if err != nil || next.Index != before {
		t.Fatalf("the next append: index %d, %v; want %d", next.Index, err, before)
	}
	if rep, err := e.ledger.Check(ctx, e.log, ""); err != nil || rep.Problem != nil || rep.Size != before+1 {
		t.Fatalf("check: %+v %v, %v", rep, rep.Problem, err)
	}
}

// noRows requires that none of the settings keys was stored.
func noRows(t *testing.T, e *env, keys ...string) {
	t.Helper()
	err := e.backend.InTenantReadTx(context.Background(), e.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		for _, k := range keys {
			if s, err := tx.GetSetting(ctx, k); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%s of the aborted batch: %+v, %v", k, s, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A precondition whose statement ends the transaction (store.ErrTxAborted)
// fails its whole batch, not only its own request: the batch-mates checked
// before it and those after it get the error too, and nothing of the
// batch is in the log, neither entries nor rows.
func TestPreconditionAbortFailsTheBatch(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			put := func(key string) ledger.Write {
				return func(ctx context.Context, tx store.TenantTx, _ []ledger.Appended) error {
					return tx.PutSetting(ctx, key, "stored")
				}
			}
			passes := func(context.Context, store.TenantTx) error { return nil }
			aborts := func(context.Context, store.TenantTx) error {
				return fmt.Errorf("%w: the precondition's read ended the transaction", store.ErrTxAborted)
			}
			before, got := oneBatch(t, e,
				func(ctx context.Context) ([]ledger.Appended, error) {
					return e.ledger.AppendAll(ctx, e.log, []ledger.Entry{{Kind: "decision", Subject: "unchecked"}})
				},
				func(ctx context.Context) ([]ledger.Appended, error) {
					return e.ledger.AppendAllAndWriteIf(ctx, e.log, []ledger.Entry{{Kind: "decision", Subject: "checked-before"}}, passes, put("checked-before"))
				},
				func(ctx context.Context) ([]ledger.Appended, error) {
					return e.ledger.AppendAllAndWriteIf(ctx, e.log, []ledger.Entry{{Kind: "decision", Subject: "aborts"}}, aborts, put("aborts"))
				},
				func(ctx context.Context) ([]ledger.Appended, error) {
					return e.ledger.AppendAllAndWriteIf(ctx, e.log, []ledger.Entry{{Kind: "decision", Subject: "checked-after"}}, passes, put("checked-after"))
				},
			)
			nothingLogged(t, e, before, got)
			noRows(t, e, "checked-before", "aborts", "checked-after")
		})
	}
}

// A write that finds its transaction gone (store.ErrTxAborted) fails its
// whole batch wherever it finds it: alone in its batch, among its
// batch-mates' writes run together, or run again on its own after a
// batch-mate's write failed. Once the transaction is gone no write runs
// again. TestAppendAllAndWriteTransactionAborted does not tell these
// apart: its batches are whatever its goroutines make, and each of the
// two checks stands in for the other when its batch has several writes.
func TestWriteAbortFailsTheBatch(t *testing.T) {
	boom := errors.New("boom")
	aborted := fmt.Errorf("%w: the database rolled the transaction back", store.ErrTxAborted)
	// request is one append of a batch: with a write (which stores its
	// row, then returns fails) or without.
	type request struct {
		write bool
		fails error
		runs  int32 // how often its write must have run
	}
	for _, tc := range []struct {
		name  string
		batch []request
	}{
		{"a lone write", []request{{write: true, fails: aborted, runs: 1}}},
		// The writes run together, and the second one's abort ends the
		// batch: the first is not run again in a savepoint of its own.
		{"among the batch's writes", []request{{write: true, runs: 1}, {write: true, fails: aborted, runs: 1}, {write: false}}},
		// The first write fails as writes may: both run again, one
		// savepoint each, and the second, which never ran with the first,
		// aborts on its own.
		{"run again on its own", []request{{write: true, fails: boom, runs: 2}, {write: true, fails: aborted, runs: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, kind := range kinds {
				t.Run(kind, func(t *testing.T) {
					e := newEnv(t, kind, ledger.Config{})
					runs := make([]atomic.Int32, len(tc.batch))
					keys := make([]string, len(tc.batch))
					appends := make([]func(context.Context) ([]ledger.Appended, error), len(tc.batch))
					for i, r := range tc.batch {
						keys[i] = fmt.Sprint("row-", i)
						entries := []ledger.Entry{{Kind: "decision", Subject: keys[i]}}
						if !r.write {
							appends[i] = func(ctx context.Context) ([]ledger.Appended, error) {
								return e.ledger.AppendAll(ctx, e.log, entries)
							}
							continue
						}
						write := func(ctx context.Context, tx store.TenantTx, _ []ledger.Appended) error {
							runs[i].Add(1)
							if err := tx.PutSetting(ctx, keys[i], "stored"); err != nil {
								return err
							}
							return r.fails
						}
						appends[i] = func(ctx context.Context) ([]ledger.Appended, error) {
							return e.ledger.AppendAllAndWrite(ctx, e.log, entries, write)
						}
					}
					before, got := oneBatch(t, e, appends...)
					for i, r := range tc.batch {
						if n := runs[i].Load(); n != r.runs {
							t.Errorf("request %d's write ran %d times, want %d", i, n, r.runs)
						}
					}
					nothingLogged(t, e, before, got)
					noRows(t, e, keys...)
				})
			}
		})
	}
}
