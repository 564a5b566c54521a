package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
)

// AppendAllAndWrite stores rows in the batch's transaction. A write sees
// where its entries landed; a failing write fails its own caller only —
// its rows are undone, its entries stay — while batch-mates' rows commit.
func TestAppendAllAndWrite(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{MaxBatch: 64, MaxWait: 5 * time.Millisecond})
			ctx := context.Background()
			vkey, err := e.ledger.InitLog(ctx, e.log)
			if err != nil {
				t.Fatal(err)
			}
			boom := errors.New("boom")
			const n = 12
			type result struct {
				out []ledger.Appended
				err error
			}
			results := make([]result, n)
			var wg sync.WaitGroup
			for g := range n {
				wg.Go(func() {
					entries := []ledger.Entry{{Kind: "decision", Subject: fmt.Sprint(g)}, {Kind: "receipt", Subject: fmt.Sprint(g)}}
					out, err := e.ledger.AppendAllAndWrite(ctx, e.log, entries, func(ctx context.Context, tx store.TenantTx, got []ledger.Appended) error {
						if len(got) != 2 || got[1].Index != got[0].Index+1 || got[0].Checkpoint.Size <= got[1].Index || got[0].Proof == nil {
							return fmt.Errorf("write saw %+v", got)
						}
						if err := tx.PutSetting(ctx, fmt.Sprintf("row-%d", g), fmt.Sprint(got[0].Index)); err != nil {
							return err
						}
						if g%3 == 0 {
							return boom
						}
						return nil
					})
					results[g] = result{out, err}
				})
			}
			wg.Wait()
			for g, r := range results {
				if g%3 == 0 {
					if !errors.Is(r.err, boom) {
						t.Errorf("request %d: the failing write returned %v", g, r.err)
					}
				} else if r.err != nil {
					t.Errorf("request %d failed with its batch-mate's write: %v", g, r.err)
				}
				// Either way the entries are in the log, provably.
				if len(r.out) != 2 {
					t.Fatalf("request %d: %d entries returned", g, len(r.out))
				}
				a := r.out[0]
				cp := openNote(t, vkey, a.Checkpoint.Note)
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, a.Index, cp.Size, a.LeafHash, a.Proof, cp.Hash); err != nil {
					t.Errorf("request %d: %v", g, err)
				}
			}
			err = e.backend.InTenantTx(ctx, e.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
				for g, r := range results {
					s, err := tx.GetSetting(ctx, fmt.Sprintf("row-%d", g))
					switch {
					case g%3 == 0 && !errors.Is(err, store.ErrNotFound):
						return fmt.Errorf("row of the failed write %d: %+v, %v", g, s, err)
					case g%3 != 0 && (err != nil || s.Value != fmt.Sprint(r.out[0].Index)):
						return fmt.Errorf("row of write %d: %+v, %v", g, s, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep, err := e.ledger.Check(ctx, e.log, ""); err != nil || rep.Problem != nil || rep.Size != 2*n {
				t.Fatalf("check: %+v %v, %v", rep, rep.Problem, err)
			}
			if _, err := e.ledger.AppendAllAndWrite(ctx, e.ledger.PlatformLog(), []ledger.Entry{{Kind: "x"}},
				func(context.Context, store.TenantTx, []ledger.Appended) error { return nil }); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("a write on the platform log: %v", err)
			}
			if _, err := e.ledger.AppendAllAndWrite(ctx, e.log, []ledger.Entry{{Kind: "x"}}, nil); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("a nil write: %v", err)
			}
		})
	}
}

// A write that finds its transaction gone (store.ErrTxAborted: SQLite
// rolled it back on a full disk) fails its whole batch: no caller is told
// of entries, checkpoints or rows that were not committed, and nothing of
// the batch is in the log.
func TestAppendAllAndWriteTransactionAborted(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{MaxBatch: 64, MaxWait: 50 * time.Millisecond})
			ctx := context.Background()
			if _, err := e.ledger.InitLog(ctx, e.log); err != nil {
				t.Fatal(err)
			}
			const n = 6
			results := make([][]ledger.Appended, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for g := range n {
				wg.Go(func() {
					results[g], errs[g] = e.ledger.AppendAllAndWrite(ctx, e.log, []ledger.Entry{{Kind: "decision", Subject: fmt.Sprint(g)}},
						func(ctx context.Context, tx store.TenantTx, _ []ledger.Appended) error {
							if g == 0 {
								return fmt.Errorf("write: %w", store.ErrTxAborted)
							}
							return tx.PutSetting(ctx, fmt.Sprintf("row-%d", g), "v")
						})
				})
			}
			wg.Wait()
			if errs[0] == nil || results[0] != nil {
				t.Fatalf("the aborted write's caller got %+v, %v", results[0], errs[0])
			}
			committed := 0
			for g := range n {
				switch {
				case errs[g] != nil && results[g] != nil:
					t.Errorf("request %d: entries %+v with %v", g, results[g], errs[g])
				case errs[g] == nil:
					committed++
				}
			}
			rep, err := e.ledger.Check(ctx, e.log, "")
			if err != nil || rep.Problem != nil || rep.Size != uint64(committed) {
				t.Fatalf("log of %d entries (%+v, %v); %d appends were answered as committed", rep.Size, rep.Problem, err, committed)
			}
		})
	}
}

// A caller whose context ends while its batch is committing is answered
// with the batch's outcome, not its context's error: the entries and the
// write's rows commit, so "context canceled" would be a lie. A caller
// whose context ends while its request still waits in the writer's queue
// is answered at once, and its entries are dropped.
//
// Both halves are deterministic: the batch is held inside its write, and
// the second request is cancelled only once it is in the queue. The first
// half fails without d335367 (the caller was told "context canceled").
// The second held before d335367 too; it keeps that fix from waiting for
// every request once sent, which would hold the queued caller until the
// batch ahead of it commits. A request cancelled before it reaches the
// queue is not covered here.
func TestCancelledWhileCommitting(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			inTx, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			write := func(ctx context.Context, tx store.TenantTx, got []ledger.Appended) error {
				if err := tx.PutSetting(ctx, "row", fmt.Sprint(got[0].Index)); err != nil {
					return err
				}
				once.Do(func() { close(inTx) })
				<-release
				return nil
			}
			type result struct {
				out []ledger.Appended
				err error
			}
			committing, queued := make(chan result, 1), make(chan result, 1)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				out, err := e.ledger.AppendAllAndWrite(ctx, e.log, []ledger.Entry{{Kind: "decision", Subject: "d"}, {Kind: "receipt", Subject: "d"}}, write)
				committing <- result{out, err}
			}()
			<-inTx
			// The next request queues behind the batch held in write.
			qctx, qcancel := context.WithCancel(context.Background())
			go func() {
				out, err := e.ledger.Append(qctx, e.log, ledger.Entry{Kind: "test", Subject: "queued"})
				queued <- result{[]ledger.Appended{out}, err}
			}()
			for deadline := time.Now().Add(10 * time.Second); e.ledger.QueuedRequests(e.log) == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					close(release)
					t.Fatal("the second append never reached the writer's queue")
				}
			}
			cancel()
			qcancel()
			select {
			case r := <-queued:
				if !errors.Is(r.err, context.Canceled) {
					t.Errorf("queued append cancelled: %v", r.err)
				}
			case <-time.After(10 * time.Second):
				t.Error("a queued append whose context ended waits for the batch ahead of it")
			}
			close(release)
			r := <-committing
			if r.err != nil || len(r.out) != 2 {
				t.Fatalf("cancelled while its batch committed: %+v, %v", r.out, r.err)
			}
			ctx = context.Background()
			for i, a := range r.out {
				got, err := e.ledger.Entry(ctx, e.log, a.Index)
				if err != nil || !bytes.Equal(got.Entry, a.Entry) {
					t.Errorf("entry %d answered as %d: stored %q, %v", i, a.Index, got.Entry, err)
				}
			}
			err := e.backend.InTenantReadTx(ctx, e.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
				s, err := tx.GetSetting(ctx, "row")
				if err != nil || s.Value != fmt.Sprint(r.out[0].Index) {
					return fmt.Errorf("the write's row: %+v, %v", s, err)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			// Nothing of the dropped request was logged.
			if _, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "test", Subject: "after"}); err != nil {
				t.Fatal(err)
			}
			if rep, err := e.ledger.Check(ctx, e.log, ""); err != nil || rep.Problem != nil || rep.Size != 3 {
				t.Fatalf("check: %+v %v, %v", rep, rep.Problem, err)
			}
		})
	}
}

// TestAppendAllAndWriteIf: a failed check keeps its request out of the log
// (no entries, no write) and fails that request only; and since every
// batch locks its log, of two processes claiming one key at once exactly
// one reaches the log.
func TestAppendAllAndWriteIf(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{MaxBatch: 64, MaxWait: 5 * time.Millisecond})
			ctx := context.Background()
			if _, err := e.ledger.InitLog(ctx, e.log); err != nil {
				t.Fatal(err)
			}
			claim := func(key string) ledger.Precondition {
				return func(ctx context.Context, tx store.TenantTx) error {
					_, err := tx.GetSetting(ctx, key)
					switch {
					case err == nil:
						return fmt.Errorf("%w: %s is claimed", store.ErrConflict, key)
					case errors.Is(err, store.ErrNotFound):
						return nil
					}
					return err
				}
			}
			put := func(key string) ledger.Write {
				return func(ctx context.Context, tx store.TenantTx, _ []ledger.Appended) error {
					return tx.PutSetting(ctx, key, "claimed")
				}
			}
			size := func() uint64 {
				t.Helper()
				cp, err := e.ledger.LatestCheckpoint(ctx, e.log)
				if errors.Is(err, store.ErrNotFound) {
					return 0
				}
				if err != nil {
					t.Fatal(err)
				}
				return cp.Size
			}
			// Batch-mates, half of whose keys are claimed already.
			const n = 8
			err := e.backend.InTenantTx(ctx, e.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
				for g := 0; g < n; g += 2 {
					if err := tx.PutSetting(ctx, fmt.Sprintf("key-%d", g), "earlier"); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			before := size()
			results := make([]error, n)
			var wg sync.WaitGroup
			for g := range n {
				wg.Go(func() {
					key := fmt.Sprintf("key-%d", g)
					out, err := e.ledger.AppendAllAndWriteIf(ctx, e.log, []ledger.Entry{{Kind: "decision", Subject: key}}, claim(key), put(key))
					if err == nil && len(out) != 1 || err != nil && out != nil {
						err = fmt.Errorf("returned %d entries with %v", len(out), err)
					}
					results[g] = err
				})
			}
			wg.Wait()
			for g, err := range results {
				if claimed := g%2 == 0; claimed != errors.Is(err, store.ErrConflict) || !claimed && err != nil {
					t.Errorf("request %d: %v", g, err)
				}
			}
			if got := size(); got != before+n/2 {
				t.Fatalf("the log grew by %d, want %d: only the unclaimed keys' entries", got-before, n/2)
			}
			err = e.backend.InTenantReadTx(ctx, e.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
				for g := range n {
					want := map[bool]string{true: "earlier", false: "claimed"}[g%2 == 0]
					if got, err := tx.GetSetting(ctx, fmt.Sprintf("key-%d", g)); err != nil || got.Value != want {
						return fmt.Errorf("key-%d = %q, %v; want %q", g, got.Value, err, want)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}

			// Two processes, each with its own writer, claim one key at
			// once: both are queued before either batch commits.
			other := e.newLedger(t, e.another(t), ledger.Config{})
			logs := []struct {
				l   *ledger.Ledger
				log ledger.Log
			}{{e.ledger, e.log}, {other, other.TenantLog(e.tenant.ID, e.tenant.Slug)}}
			before = size()
			release := storetest.HoldWriter(t, e.backend, e.tenant.ID)
			raced := make([]error, len(logs))
			for i, p := range logs {
				wg.Go(func() {
					_, raced[i] = p.l.AppendAllAndWriteIf(ctx, p.log, []ledger.Entry{{Kind: "decision", Subject: "race"}}, claim("race"), put("race"))
				})
			}
			time.Sleep(200 * time.Millisecond)
			release()
			wg.Wait()
			won := 0
			for i, err := range raced {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, store.ErrConflict):
					t.Errorf("process %d: %v", i, err)
				}
			}
			if won != 1 || size() != before+1 {
				t.Fatalf("%d processes won the key (%v); the log grew by %d, want 1", won, raced, size()-before)
			}
		})
	}
}

// TestAppendAllAndChange: a change and its entries commit together or not
// at all, batch-mates alike. A change that fails after one of its
// statements leaves neither that statement nor an entry, and fails its
// request only; one that finds nothing to change is refused the same way.
// A change is told the index its entry takes, after batch-mates refused.
func TestAppendAllAndChange(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{MaxBatch: 64, MaxWait: 5 * time.Millisecond})
			ctx := context.Background()
			if _, err := e.ledger.InitLog(ctx, e.log); err != nil {
				t.Fatal(err)
			}
			errHalfway := errors.New("failed after its first statement")
			change := func(key string, fail bool) ledger.Change {
				return func(ctx context.Context, tx store.TenantTx, first uint64) error {
					if _, err := tx.GetSetting(ctx, key); err == nil {
						return fmt.Errorf("%w: nothing to change, %s is set", store.ErrConflict, key)
					}
					if err := tx.PutSetting(ctx, key, "changed"); err != nil {
						return err
					}
					if fail {
						return errHalfway
					}
					return tx.PutSetting(ctx, key+"-second", fmt.Sprint(first))
				}
			}
			if err := e.backend.InTenantTx(ctx, e.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
				return tx.PutSetting(ctx, "key-set", "earlier")
			}); err != nil {
				t.Fatal(err)
			}
			before, err := e.ledger.LatestCheckpoint(ctx, e.log)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Fatal(err)
			}
			// Batch-mates: two changes, one failing halfway, one with
			// nothing to change.
			requests := []struct {
				key  string
				fail bool
				want error
			}{{"key-a", false, nil}, {"key-b", true, errHalfway}, {"key-set", false, store.ErrConflict}, {"key-c", false, nil}}
			results := make([]error, len(requests))
			indexes := make([]uint64, len(requests))
			var wg sync.WaitGroup
			for i, r := range requests {
				wg.Go(func() {
					out, err := e.ledger.AppendAllAndChange(ctx, e.log, []ledger.Entry{{Kind: "decision", Subject: r.key}}, change(r.key, r.fail))
					if err == nil && len(out) != 1 || err != nil && out != nil {
						err = fmt.Errorf("returned %d entries with %v", len(out), err)
					}
					if err == nil {
						indexes[i] = out[0].Index
					}
					results[i] = err
				})
			}
			wg.Wait()
			for i, r := range requests {
				if r.want == nil && results[i] != nil || r.want != nil && !errors.Is(results[i], r.want) {
					t.Errorf("%s: %v, want %v", r.key, results[i], r.want)
				}
			}
			after, err := e.ledger.LatestCheckpoint(ctx, e.log)
			if err != nil {
				t.Fatal(err)
			}
			if after.Size != before.Size+2 {
				t.Fatalf("the log grew by %d, want 2: the two changes made", after.Size-before.Size)
			}
			err = e.backend.InTenantReadTx(ctx, e.tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
				for key, want := range map[string]string{"key-a": "changed", "key-a-second": fmt.Sprint(indexes[0]),
					"key-c": "changed", "key-c-second": fmt.Sprint(indexes[3]), "key-set": "earlier"} {
					if got, err := tx.GetSetting(ctx, key); err != nil || got.Value != want {
						return fmt.Errorf("%s = %q, %v; want %q", key, got.Value, err, want)
					}
				}
				for _, key := range []string{"key-b", "key-b-second"} {
					if got, err := tx.GetSetting(ctx, key); !errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("%s of the failed change = %q, %v; want none", key, got.Value, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep, err := e.ledger.Check(ctx, e.log, ""); err != nil || rep.Problem != nil {
				t.Fatalf("check: %+v %v, %v", rep, rep.Problem, err)
			}
			// A change is required, and a log of an organization.
			if out, err := e.ledger.AppendAllAndChange(ctx, e.log, []ledger.Entry{{Kind: "decision", Subject: "none"}}, nil); !errors.Is(err, store.ErrInvalid) || out != nil {
				t.Errorf("no change: %v, %v", out, err)
			}
			if out, err := e.ledger.AppendAllAndChange(ctx, e.ledger.PlatformLog(), []ledger.Entry{{Kind: "decision", Subject: "platform"}}, change("key-p", false)); !errors.Is(err, store.ErrInvalid) || out != nil {
				t.Errorf("a change on the platform log: %v, %v", out, err)
			}
			if again, err := e.ledger.LatestCheckpoint(ctx, e.log); err != nil || again.Size != after.Size {
				t.Errorf("refused appends logged: size %d, want %d (%v)", again.Size, after.Size, err)
			}
		})
	}
}
