package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// fetcher serves the ledger's tiles by C2SP path, as the HTTP routes do.
func fetcher(e *env) verify.FetchFunc {
	return func(ctx context.Context, path string) ([]byte, error) {
		level, index, width, err := verify.ParseTilePath(path)
		if err != nil {
			return nil, err
		}
		if level < 0 {
			return e.ledger.EntryBundle(ctx, e.log, index, width)
		}
		return e.ledger.Tile(ctx, e.log, uint(level), index, width)
	}
}

// growTo appends concurrently until the log has exactly size entries:
// workers each append runs of up to growRun consecutive entries, so that
// batches hold several requests and the log grows to 65,537 entries in a
// few hundred batches rather than thousands (each signs a checkpoint).
func growTo(t *testing.T, e *env, size uint64) {
	t.Helper()
	cp, _ := e.ledger.LatestCheckpoint(context.Background(), e.log)
	const workers, growRun = 8, 64
	var next atomic.Uint64
	next.Store(cp.Size)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				from := next.Add(growRun) - growRun
				if from >= size {
					return
				}
				run := make([]ledger.Entry, min(growRun, size-from))
				for i := range run {
					run[i] = ledger.Entry{Kind: "test", Subject: fmt.Sprint(from + uint64(i))}
				}
				if _, err := e.ledger.AppendAll(context.Background(), e.log, run); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// At tile boundaries, proofs built by a client from the served tiles equal
// the server's own, and both verify with transparency-dev/merkle.
func TestTilesAtBoundaries(t *testing.T) {
	sizes := []uint64{1, 2, 255, 256, 257, 511, 512, 1000}
	if !testing.Short() {
		sizes = append(sizes, 65536, 65537)
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			vkey, _ := e.ledger.InitLog(ctx, e.log)
			var prev *verify.Checkpoint
			for _, size := range sizes {
				growTo(t, e, size)
				latest, err := e.ledger.LatestCheckpoint(ctx, e.log)
				if err != nil || latest.Size != size {
					t.Fatalf("grew to %d: %+v, %v", size, latest.Size, err)
				}
				cp, err := verify.VerifyCheckpoint(latest.Note, vkey)
				if err != nil {
					t.Fatal(err)
				}
				for _, index := range []uint64{0, size / 2, size - 1, min(255, size-1), min(256, size-1)} {
					fromTiles, err := verify.InclusionProofFromTiles(ctx, cp, index, fetcher(e))
					if err != nil {
						t.Fatalf("size %d index %d: proof from tiles: %v", size, index, err)
					}
					served, err := e.ledger.InclusionProof(ctx, e.log, index, size)
					if err != nil {
						t.Fatal(err)
					}
					if len(fromTiles) != len(served.Hashes) {
						t.Fatalf("size %d index %d: %d hashes from tiles, %d served", size, index, len(fromTiles), len(served.Hashes))
					}
					for i := range fromTiles {
						if !bytes.Equal(fromTiles[i], served.Hashes[i]) {
							t.Fatalf("size %d index %d: hash %d differs", size, index, i)
						}
					}
					if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, size, served.LeafHash, served.Hashes, cp.Hash()); err != nil {
						t.Fatalf("size %d index %d: %v", size, index, err)
					}
				}
				// Entry bundles carry the exact leaves.
				w := verify.TileWidth(0, (size-1)/256, size)
				bundle, err := e.ledger.EntryBundle(ctx, e.log, (size-1)/256, w)
				if err != nil {
					t.Fatal(err)
				}
				leaves, err := verify.ParseEntryBundle(bundle)
				if err != nil || uint64(len(leaves)) != w {
					t.Fatalf("entry bundle: %d leaves, %v", len(leaves), err)
				}
				last, _ := e.ledger.Entry(ctx, e.log, size-1)
				if !bytes.Equal(leaves[len(leaves)-1], last.Entry) {
					t.Fatal("entry bundle's last leaf differs from the stored entry")
				}
				if prev != nil {
					c, err := verify.ConsistencyProofFromTiles(ctx, prev, cp, fetcher(e))
					if err != nil {
						t.Fatal(err)
					}
					if err := verify.VerifyConsistency(prev, cp, c); err != nil {
						t.Fatalf("%d→%d from tiles: %v", prev.Size(), size, err)
					}
				}
				prev = cp
			}
			// Beyond the tree: a tile that does not exist yet is not served.
			size := sizes[len(sizes)-1]
			if _, err := e.ledger.Tile(ctx, e.log, 0, size/256+1, 1); err == nil {
				t.Error("tile beyond the tree served")
			}
			if _, err := e.ledger.Tile(ctx, e.log, 0, size/256, 256); err == nil && size%256 != 0 {
				t.Error("full tile served for a partial one")
			}
			if _, err := e.ledger.EntryBundle(ctx, e.log, size/256, 256); err == nil && size%256 != 0 {
				t.Error("full entry bundle served for a partial one")
			}
		})
	}
}

// A tile, entry bundle or entry that no tree can hold is not found — not
// an existing one its index wraps onto (SPEC: c2sp.org/tlog-tiles, empty
// tiles MUST NOT be served), and not a bad request: the URL is well formed.
func TestTilesPastAnyTree(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			growTo(t, e, 300)
			// Tile 0/2^56, by the path a client would ask for.
			level, index, width, err := verify.ParseTilePath("tile/0/x072/x057/x594/x037/x927/936")
			if err != nil || level != 0 || index != 1<<56 || width != 256 {
				t.Fatalf("tile path: %d %d %d, %v", level, index, width, err)
			}
			// Each row is an index that wraps onto an existing tile,
			// bundle or range, or a level the path parser takes but no
			// tree has. A tile 1/2^48 or 7/1 would prove nothing: no tree
			// holds them either, but only an index from 2^56 wraps, at
			// any level, so they are past the tree without the check.
			for _, tc := range []struct {
				name string
				read func() ([]byte, error)
			}{
				{"tile 0/2^56", func() ([]byte, error) { return e.ledger.Tile(ctx, e.log, 0, 1<<56, 256) }},
				{"partial tile 0/2^56", func() ([]byte, error) { return e.ledger.Tile(ctx, e.log, 0, 1<<56, 44) }},
				// Wraps onto tile 1, the partial one.
				{"tile 0/2^56+1", func() ([]byte, error) { return e.ledger.Tile(ctx, e.log, 0, 1<<56+1, 44) }},
				{"tile 1/2^56", func() ([]byte, error) { return e.ledger.Tile(ctx, e.log, 1, 1<<56, 1) }},
				{"tile 8/0", func() ([]byte, error) { return e.ledger.Tile(ctx, e.log, 8, 0, 1) }},
				{"tile 63/0", func() ([]byte, error) { return e.ledger.Tile(ctx, e.log, 63, 0, 1) }},
				// Its end, 2^64, wraps to 0.
				{"entry bundle 2^56-1", func() ([]byte, error) { return e.ledger.EntryBundle(ctx, e.log, 1<<56-1, 256) }},
				// Its first index, 2^64, wraps to 0: a partial bundle 0.
				{"entry bundle 2^56", func() ([]byte, error) { return e.ledger.EntryBundle(ctx, e.log, 1<<56, 44) }},
				{"entry 2^64-1", func() ([]byte, error) {
					en, err := e.ledger.Entry(ctx, e.log, math.MaxUint64)
					return en.Entry, err
				}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					if got, err := tc.read(); !errors.Is(err, store.ErrNotFound) {
						t.Errorf("%d bytes, %v; want store.ErrNotFound", len(got), err)
					}
				})
			}
			// Still refused as malformed: widths outside 1-256.
			if _, err := e.ledger.Tile(ctx, e.log, 0, 0, 0); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("tile of width 0: %v", err)
			}
			if _, err := e.ledger.EntryBundle(ctx, e.log, 0, 257); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("entry bundle of width 257: %v", err)
			}
			// The tiles that exist are still served.
			if _, err := e.ledger.Tile(ctx, e.log, 0, 1, 44); err != nil {
				t.Error(err)
			}
			if _, err := e.ledger.EntryBundle(ctx, e.log, 1, 44); err != nil {
				t.Error(err)
			}
			if _, err := e.ledger.Entry(ctx, e.log, 299); err != nil {
				t.Error(err)
			}
		})
	}
}
