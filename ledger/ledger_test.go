package ledger_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// openNote verifies a checkpoint with x/mod/sumdb/note and formats/log
// directly — not with our own verifier.
func openNote(t *testing.T, vkey string, signed []byte) log.Checkpoint {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint does not verify with x/mod/sumdb/note: %v\n%s", err, signed)
	}
	var cp log.Checkpoint
	if rest, err := cp.Unmarshal([]byte(n.Text)); err != nil || len(rest) != 0 {
		t.Fatalf("checkpoint body %q: %v (rest %q)", n.Text, err, rest)
	}
	if cp.Origin != v.Name() {
		t.Fatalf("origin %q signed by key %q", cp.Origin, v.Name())
	}
	return cp
}

func appendN(t *testing.T, e *env, l *ledger.Ledger, lg ledger.Log, n int, tag string) []ledger.Appended {
	t.Helper()
	out := make([]ledger.Appended, n)
	for i := range n {
		a, err := l.Append(context.Background(), lg, ledger.Entry{Kind: "test.entry", Subject: fmt.Sprintf("%s-%d", tag, i), Record: []byte(fmt.Sprintf(`{"n":%d}`, i))})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		out[i] = a
	}
	return out
}

func TestAppendProveVerify(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			vkey, err := e.ledger.InitLog(ctx, e.log)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(vkey, origin+"/t/acme+") {
				t.Fatalf("verifier key %q", vkey)
			}
			if _, err := e.ledger.LatestCheckpoint(ctx, e.log); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("empty log checkpoint: %v", err)
			}
			record := []byte(`{"decision":"dec_1"}`)
			a, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "decision", Subject: "dec_1", Record: record})
			if err != nil {
				t.Fatal(err)
			}
			if a.Index != 0 || a.Checkpoint.Size != 1 {
				t.Fatalf("first append: %+v", a)
			}
			cp := openNote(t, vkey, a.Checkpoint.Note)
			if cp.Size != 1 || !bytes.Equal(cp.Hash, rfc6962.DefaultHasher.HashLeaf(a.Entry)) || cp.Origin != origin+"/t/acme" {
				t.Fatalf("checkpoint %+v", cp)
			}
			entry, err := verify.ParseEntry(a.Entry)
			digest := sha256.Sum256(record)
			if err != nil || entry.Kind != "decision" || entry.Subject != "dec_1" || !bytes.Equal(entry.Digest, digest[:]) ||
				!bytes.Equal(entry.Prev, make([]byte, 32)) || entry.Index != 0 {
				t.Fatalf("entry %+v, %v", entry, err)
			}

			all := append([]ledger.Appended{a}, appendN(t, e, e.ledger, e.log, 40, "x")...)
			for i, x := range all {
				if x.Index != uint64(i) {
					t.Fatalf("append %d got index %d", i, x.Index)
				}
				if i > 0 {
					pe, _ := verify.ParseEntry(x.Entry)
					if !bytes.Equal(pe.Prev, all[i-1].LeafHash) {
						t.Fatalf("entry %d does not chain to %d", i, i-1)
					}
				}
			}
			latest, err := e.ledger.LatestCheckpoint(ctx, e.log)
			if err != nil || latest.Size != 41 {
				t.Fatalf("latest %+v, %v", latest, err)
			}
			// Every entry against the newest tree, and against every older
			// signed size; every pair of signed sizes is consistent.
			for _, x := range all {
				p, err := e.ledger.InclusionProof(ctx, e.log, x.Index, 0)
				if err != nil {
					t.Fatal(err)
				}
				cp := openNote(t, vkey, p.Checkpoint.Note)
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, x.Index, cp.Size, x.LeafHash, p.Hashes, cp.Hash); err != nil {
					t.Fatalf("inclusion of %d at %d: %v", x.Index, cp.Size, err)
				}
				older, err := e.ledger.InclusionProof(ctx, e.log, x.Index, x.Checkpoint.Size)
				if err != nil {
					t.Fatal(err)
				}
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, x.Index, x.Checkpoint.Size, x.LeafHash, older.Hashes, x.Checkpoint.Root); err != nil {
					t.Fatalf("inclusion of %d at its own checkpoint: %v", x.Index, err)
				}
				byHash, err := e.ledger.InclusionProofByLeafHash(ctx, e.log, x.LeafHash, 0)
				if err != nil || byHash.Index != x.Index {
					t.Fatalf("by leaf hash: %+v, %v", byHash, err)
				}
			}
			for i := 1; i < len(all); i += 7 {
				for j := i; j < len(all); j += 5 {
					first, second := all[i].Checkpoint, all[j].Checkpoint
					c, err := e.ledger.ConsistencyProof(ctx, e.log, first.Size, second.Size)
					if err != nil {
						t.Fatal(err)
					}
					if err := proof.VerifyConsistency(rfc6962.DefaultHasher, first.Size, second.Size, c.Hashes, first.Root, second.Root); err != nil {
						t.Fatalf("consistency %d→%d: %v", first.Size, second.Size, err)
					}
				}
			}
			// Refusals.
			if _, err := e.ledger.InclusionProof(ctx, e.log, 41, 0); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("index = size: %v", err)
			}
			if _, err := e.ledger.ConsistencyProof(ctx, e.log, 0, 41); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("consistency from 0: %v", err)
			}
			if _, err := e.ledger.ConsistencyProof(ctx, e.log, 5, 3); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("consistency backwards: %v", err)
			}
			if _, err := e.ledger.InclusionProof(ctx, e.log, 0, 1000); !errors.Is(err, ledger.ErrNoCheckpoint) {
				t.Errorf("unsigned size: %v", err)
			}
			if _, err := e.ledger.InclusionProofByLeafHash(ctx, e.log, make([]byte, 32), 0); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("unknown leaf: %v", err)
			}
			got, err := e.ledger.Entry(ctx, e.log, 0)
			if err != nil || !bytes.Equal(got.Record, record) || !bytes.Equal(got.Entry, a.Entry) {
				t.Fatalf("entry 0: %+v, %v", got, err)
			}
			if _, err := e.ledger.Entry(ctx, e.log, 41); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("entry past the end: %v", err)
			}
			rep, err := e.ledger.Check(ctx, e.log, vkey)
			if err != nil || rep.Problem != nil || rep.Size != 41 || rep.Origin != origin+"/t/acme" {
				t.Fatalf("check: %+v %v, %v", rep, rep.Problem, err)
			}
		})
	}
}

func TestRejectsBadEntries(t *testing.T) {
	e := newEnv(t, "sqlite", ledger.Config{})
	ctx := context.Background()
	for _, bad := range []ledger.Entry{
		{Kind: "", Record: []byte("x")},
		{Kind: "Bad Kind", Record: []byte("x")},
		{Kind: "decision", Subject: strings.Repeat("s", ledger.MaxSubject+1)},
		{Kind: "decision", Record: make([]byte, ledger.MaxRecord+1)},
		{Kind: "decision", Subject: "\xff\xfe"},
	} {
		if _, err := e.ledger.Append(ctx, e.log, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Append(kind %q, %d-byte subject): %v, want ErrInvalid", bad.Kind, len(bad.Subject), err)
		}
		// Refused before it is queued (a context already done would stop
		// it there): a bad entry never shares a batch, so never fails one
		// with other callers' entries in it.
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := e.ledger.Append(cancelled, e.log, bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Append(kind %q, %d-byte subject) on a done context: %v, want ErrInvalid before queueing", bad.Kind, len(bad.Subject), err)
		}
	}
	// A bad entry does not poison the batch of good ones.
	if _, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "decision", Record: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
}

// Many appenders: every entry gets a distinct index, batches form, and every
// checkpoint handed out is consistent with every later one.
func TestConcurrentAppendsGroupCommit(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			const appenders, each = 64, 8
			results := make(chan ledger.Appended, appenders*each)
			var wg sync.WaitGroup
			for g := range appenders {
				wg.Go(func() {
					for i := range each {
						a, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "test", Subject: fmt.Sprintf("%d/%d", g, i)})
						if err != nil {
							t.Error(err)
							return
						}
						results <- a
					}
				})
			}
			wg.Wait()
			close(results)
			seen := map[uint64]bool{}
			checkpoints := map[uint64]ledger.Checkpoint{}
			for a := range results {
				if seen[a.Index] {
					t.Fatalf("index %d handed out twice", a.Index)
				}
				seen[a.Index] = true
				if a.Index >= a.Checkpoint.Size {
					t.Fatalf("entry %d acknowledged with checkpoint of size %d", a.Index, a.Checkpoint.Size)
				}
				checkpoints[a.Checkpoint.Size] = a.Checkpoint
			}
			if len(seen) != appenders*each {
				t.Fatalf("%d entries, want %d", len(seen), appenders*each)
			}
			if len(checkpoints) >= appenders*each {
				t.Errorf("no group commit: %d checkpoints for %d entries", len(checkpoints), appenders*each)
			}
			vkey, _ := e.ledger.VerifierKey(ctx, e.log)
			newest, _ := e.ledger.LatestCheckpoint(ctx, e.log)
			for size, cp := range checkpoints {
				openNote(t, vkey, cp.Note)
				if size == newest.Size {
					continue
				}
				c, err := e.ledger.ConsistencyProof(ctx, e.log, size, newest.Size)
				if err != nil {
					t.Fatal(err)
				}
				if err := proof.VerifyConsistency(rfc6962.DefaultHasher, size, newest.Size, c.Hashes, cp.Root, newest.Root); err != nil {
					t.Fatalf("checkpoint %d inconsistent with %d: %v", size, newest.Size, err)
				}
			}
			if rep, err := e.ledger.Check(ctx, e.log, ""); err != nil || rep.Problem != nil {
				t.Fatalf("check: %v, %v", rep.Problem, err)
			}
		})
	}
}

// Two Ledgers on two stores (two pools, as two replicas would be) append to
// one log at once: sequencing holds across them.
func TestTwoLedgersOneLog(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			other := e.newLedger(t, e.another(t), ledger.Config{})
			otherLog := other.TenantLog(e.tenant.ID, e.tenant.Slug)
			ctx := context.Background()
			var wg sync.WaitGroup
			var mu sync.Mutex
			seen := map[uint64]string{}
			for i, l := range []*ledger.Ledger{e.ledger, other} {
				lg := []ledger.Log{e.log, otherLog}[i]
				for g := range 16 {
					wg.Go(func() {
						for j := range 10 {
							a, err := l.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: fmt.Sprintf("l%d-g%d-%d", i, g, j)})
							if err != nil {
								t.Error(err)
								return
							}
							mu.Lock()
							if prev, dup := seen[a.Index]; dup {
								t.Errorf("index %d given to %s and l%d", a.Index, prev, i)
							}
							seen[a.Index] = fmt.Sprint("l", i)
							mu.Unlock()
						}
					})
				}
			}
			wg.Wait()
			if len(seen) != 2*16*10 {
				t.Fatalf("%d entries", len(seen))
			}
			if rep, err := e.ledger.Check(ctx, e.log, ""); err != nil || rep.Problem != nil || rep.Size != 320 {
				t.Fatalf("check: %+v %v, %v", rep, rep.Problem, err)
			}
		})
	}
}

func TestMaxWaitLingers(t *testing.T) {
	e := newEnv(t, "sqlite", ledger.Config{MaxWait: 5 * time.Second, MaxBatch: 4})
	ctx := context.Background()
	var wg sync.WaitGroup
	sizes := make([]uint64, 4)
	for i := range 4 {
		wg.Go(func() {
			a, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "test"})
			if err != nil {
				t.Error(err)
			}
			sizes[i] = a.Checkpoint.Size
		})
	}
	wg.Wait()
	for _, s := range sizes {
		if s != 4 {
			t.Fatalf("checkpoint sizes %v: lingering should have gathered all four into one batch", sizes)
		}
	}
}

func TestCancelledAppend(t *testing.T) {
	e := newEnv(t, "sqlite", ledger.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "test"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled append: %v", err)
	}
	e.ledger.Close()
	if _, err := e.ledger.Append(context.Background(), e.log, ledger.Entry{Kind: "test"}); !errors.Is(err, ledger.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

func TestPlatformLogIsSeparate(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			pl := e.ledger.PlatformLog()
			appendN(t, e, e.ledger, pl, 3, "p")
			appendN(t, e, e.ledger, e.log, 5, "t")
			pcp, err := e.ledger.LatestCheckpoint(ctx, pl)
			if err != nil || pcp.Size != 3 {
				t.Fatalf("platform checkpoint %+v, %v", pcp, err)
			}
			pkey, _ := e.ledger.VerifierKey(ctx, pl)
			tkey, _ := e.ledger.VerifierKey(ctx, e.log)
			if pkey == tkey || !strings.HasPrefix(pkey, origin+"/platform+") {
				t.Fatalf("platform key %q, tenant key %q", pkey, tkey)
			}
			cp := openNote(t, pkey, pcp.Note)
			if cp.Origin != origin+"/platform" {
				t.Fatalf("platform origin %q", cp.Origin)
			}
			// The tenant's key does not verify the platform's checkpoint.
			v, _ := note.NewVerifier(tkey)
			if _, err := note.Open(pcp.Note, note.VerifierList(v)); err == nil {
				t.Fatal("tenant key verifies the platform checkpoint")
			}
		})
	}
}

// AppendAll places its entries consecutively in one batch, whatever else
// is being appended at the same time.
func TestAppendAllIsConsecutive(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{MaxBatch: 8})
			ctx := context.Background()
			var wg sync.WaitGroup
			for g := range 16 {
				wg.Go(func() {
					for i := range 10 {
						if g%2 == 0 {
							if _, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "single"}); err != nil {
								t.Error(err)
							}
							continue
						}
						out, err := e.ledger.AppendAll(ctx, e.log, []ledger.Entry{
							{Kind: "decision", Subject: fmt.Sprint(g, i)}, {Kind: "receipt", Subject: fmt.Sprint(g, i)}, {Kind: "case.opened"},
						})
						if err != nil {
							t.Error(err)
							return
						}
						if out[1].Index != out[0].Index+1 || out[2].Index != out[1].Index+1 ||
							out[0].Checkpoint.Size != out[2].Checkpoint.Size || out[2].Index >= out[2].Checkpoint.Size {
							t.Errorf("AppendAll placed %d, %d, %d under checkpoints %d, %d", out[0].Index, out[1].Index, out[2].Index,
								out[0].Checkpoint.Size, out[2].Checkpoint.Size)
						}
						p0, _ := verify.ParseEntry(out[0].Entry)
						p1, _ := verify.ParseEntry(out[1].Entry)
						if p0.Kind != "decision" || p1.Kind != "receipt" || !bytes.Equal(p1.Prev, out[0].LeafHash) {
							t.Errorf("entries out of order: %s, %s", p0.Kind, p1.Kind)
						}
					}
				})
			}
			wg.Wait()
			if rep, err := e.ledger.Check(ctx, e.log, ""); err != nil || rep.Problem != nil || rep.Size != 8*10+8*10*3 {
				t.Fatalf("check: %+v %v, %v", rep, rep.Problem, err)
			}
			if _, err := e.ledger.AppendAll(ctx, e.log, nil); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("empty AppendAll: %v", err)
			}
			if _, err := e.ledger.AppendAll(ctx, e.log, []ledger.Entry{{Kind: "ok"}, {Kind: "Not OK"}}); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("AppendAll with one bad entry: %v", err)
			}
		})
	}
}

// The proof each append returns, computed in memory as its batch commits,
// verifies against the batch's checkpoint and equals the proof read from
// the store — over batches of every shape: first entries, batches crossing
// powers of two and the 256-leaf tile edge, multi-entry requests.
func TestAppendedProofs(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{MaxBatch: 64, MaxWait: time.Millisecond})
			ctx := context.Background()
			vkey, err := e.ledger.InitLog(ctx, e.log)
			if err != nil {
				t.Fatal(err)
			}
			check := func(a ledger.Appended) {
				t.Helper()
				if a.Proof == nil {
					t.Fatalf("entry %d of checkpoint %d came without a proof", a.Index, a.Checkpoint.Size)
				}
				cp := openNote(t, vkey, a.Checkpoint.Note)
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, a.Index, cp.Size, a.LeafHash, a.Proof, cp.Hash); err != nil {
					t.Fatalf("entry %d in tree %d: %v", a.Index, cp.Size, err)
				}
				stored, err := e.ledger.InclusionProof(ctx, e.log, a.Index, a.Checkpoint.Size)
				if err != nil {
					t.Fatal(err)
				}
				if len(stored.Hashes) != len(a.Proof) {
					t.Fatalf("entry %d: %d proof hashes, the store's proof has %d", a.Index, len(a.Proof), len(stored.Hashes))
				}
				for i := range a.Proof {
					if !bytes.Equal(a.Proof[i], stored.Hashes[i]) {
						t.Fatalf("entry %d: proof hash %d differs from the store's", a.Index, i)
					}
				}
			}
			check(appendN(t, e, e.ledger, e.log, 1, "first")[0])
			// Concurrent rounds of 1–3 entry requests: batches of varied
			// sizes starting at varied offsets, past 256 entries.
			for round := range 12 {
				var mu sync.Mutex
				var got []ledger.Appended
				var wg sync.WaitGroup
				for g := range 3 + round*2 {
					wg.Go(func() {
						entries := make([]ledger.Entry, 1+g%3)
						for i := range entries {
							entries[i] = ledger.Entry{Kind: "test.entry", Subject: fmt.Sprint(round, g, i)}
						}
						out, err := e.ledger.AppendAll(ctx, e.log, entries)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						got = append(got, out...)
						mu.Unlock()
					})
				}
				wg.Wait()
				for _, a := range got {
					check(a)
				}
			}
			if cp, err := e.ledger.LatestCheckpoint(ctx, e.log); err != nil || cp.Size < 256 {
				t.Fatalf("the log reached %d entries (%v): the tile edge was not crossed", cp.Size, err)
			}
		})
	}
}

// EntryInclusionProof returns an entry's exact leaf bytes with its proof:
// a receipt's entry, found by index, verifies against the newest signed
// checkpoint (or an older one) with nothing else in hand. A stored entry
// that no longer hashes to its leaf gets no proof.
func TestEntryInclusionProof(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			vkey, err := e.ledger.InitLog(ctx, e.log)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := e.ledger.AppendAll(ctx, e.log, []ledger.Entry{
				{Kind: "decision", Subject: "dec_1", Record: []byte(`{"decision":"dec_1"}`)},
				{Kind: "receipt", Subject: "dec_1", Record: []byte("a.receipt.jws")},
			})
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, e, e.ledger, e.log, 5, "after")
			receipt := pair[1]
			for _, size := range []uint64{0, receipt.Checkpoint.Size} {
				p, err := e.ledger.EntryInclusionProof(ctx, e.log, receipt.Index, size)
				if err != nil {
					t.Fatal(err)
				}
				if p.Index != receipt.Index || !bytes.Equal(p.Entry, receipt.Entry) || !bytes.Equal(p.LeafHash, receipt.LeafHash) {
					t.Fatalf("size %d: entry %d %q, want %d %q", size, p.Index, p.Entry, receipt.Index, receipt.Entry)
				}
				cp := openNote(t, vkey, p.Checkpoint.Note)
				if want := cmp.Or(size, 7); cp.Size != want {
					t.Fatalf("asked for size %d, proved against %d", size, cp.Size)
				}
				leaf := rfc6962.DefaultHasher.HashLeaf(p.Entry)
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.Index, cp.Size, leaf, p.Hashes, cp.Hash); err != nil {
					t.Fatalf("size %d: %v", size, err)
				}
			}
			if _, err := e.ledger.EntryInclusionProof(ctx, e.log, 7, 0); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("index = size: %v", err)
			}
			if _, err := e.ledger.EntryInclusionProof(ctx, e.log, 0, 1000); !errors.Is(err, ledger.ErrNoCheckpoint) {
				t.Errorf("unsigned size: %v", err)
			}
			e.tamper(t, `UPDATE ledger_entries SET entry = (SELECT entry FROM ledger_entries WHERE tenant_id = '%[1]s' AND idx = 0) WHERE tenant_id = '%[1]s' AND idx = 1`)
			if p, err := e.ledger.EntryInclusionProof(ctx, e.log, receipt.Index, 0); err == nil {
				t.Fatalf("altered entry proved: %q", p.Entry)
			}
		})
	}
}

// Reading an organization's log does not queue behind a transaction that
// holds its store for writing and the log's lock, as a batch does while it
// commits: on the embedded store, the file's one writing connection (the
// old routing timed every read out there); on PostgreSQL, reads never
// waited, and this shows each of them works in a read-only transaction.
func TestReadsDoNotWaitForTheWriter(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			for _, lc := range []struct {
				name string
				log  ledger.Log
				hold func() (release func())
			}{
				{"organization", e.log, func() func() { return storetest.HoldWriter(t, e.backend, e.tenant.ID) }},
				{"platform", e.ledger.PlatformLog(), func() func() { return storetest.HoldPlatformWriter(t, e.backend) }},
			} {
				t.Run(lc.name, func(t *testing.T) {
					readsBesideTheWriter(t, e.ledger, lc.log, lc.hold)
				})
			}
		})
	}
}

// readsBesideTheWriter appends to lg, holds its store for writing, and
// requires every read of the log to complete.
func readsBesideTheWriter(t *testing.T, l *ledger.Ledger, lg ledger.Log, hold func() (release func())) {
	ctx := context.Background()
	var first ledger.Appended
	for i := range 3 {
		a, err := l.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: fmt.Sprint("e", i)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = a
		}
	}
	defer hold()()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for name, read := range map[string]func() error{
		"latest checkpoint":     func() error { _, err := l.LatestCheckpoint(rctx, lg); return err },
		"entry":                 func() error { _, err := l.Entry(rctx, lg, first.Index); return err },
		"verifier key":          func() error { _, err := l.VerifierKey(rctx, lg); return err },
		"inclusion proof":       func() error { _, err := l.InclusionProof(rctx, lg, first.Index, 0); return err },
		"entry inclusion proof": func() error { _, err := l.EntryInclusionProof(rctx, lg, first.Index, 0); return err },
		"proof by leaf hash": func() error {
			_, err := l.InclusionProofByLeafHash(rctx, lg, first.LeafHash, 0)
			return err
		},
		"consistency proof": func() error { _, err := l.ConsistencyProof(rctx, lg, first.Index+1, first.Index+3); return err },
		"tile":              func() error { _, err := l.Tile(rctx, lg, 0, 0, first.Index+3); return err },
		"entry bundle":      func() error { _, err := l.EntryBundle(rctx, lg, 0, first.Index+3); return err },
		"export":            func() error { return l.Export(rctx, lg, 0, 0, io.Discard) },
		"check": func() error {
			rep, err := l.Check(rctx, lg, "")
			if err == nil && rep.Problem != nil {
				err = rep.Problem
			}
			return err
		},
	} {
		if err := read(); err != nil {
			t.Errorf("%s while a writer holds the store: %v", name, err)
		}
	}
}

// Check reads one state of a log while batches keep committing: it never
// reports entries beyond the newest signed checkpoint that its own read
// of the checkpoints did not see. An organization's log and the
// platform's.
func TestCheckWhileAppending(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			for name, lg := range map[string]ledger.Log{"organization": e.log, "platform": e.ledger.PlatformLog()} {
				t.Run(name, func(t *testing.T) {
					ctx := context.Background()
					if _, err := e.ledger.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: "first"}); err != nil {
						t.Fatal(err)
					}
					stop := make(chan struct{})
					var wg sync.WaitGroup
					wg.Go(func() {
						for i := 0; ; i++ {
							select {
							case <-stop:
								return
							default:
							}
							if _, err := e.ledger.Append(ctx, lg, ledger.Entry{Kind: "test", Subject: fmt.Sprint("e", i)}); err != nil {
								t.Error(err)
								return
							}
						}
					})
					defer wg.Wait()
					defer close(stop)
					// 20 checks, or fewer once the log has 300 entries: a
					// check reads every checkpoint, the appender does not
					// wait for it, and under -race the log would otherwise
					// grow to thousands of entries while checks slow down.
					for range 20 {
						rep, err := e.ledger.Check(ctx, lg, "")
						if err != nil || rep.Problem != nil {
							t.Fatalf("check while appending: %+v, %v, %v", rep, rep.Problem, err)
						}
						if rep.Size >= 300 {
							break
						}
					}
				})
			}
		})
	}
}
