package verify

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
)

// The sizes the issue names: 0, 1, powers of two, tile boundaries and a
// level-2 boundary (65,536 = 256²), plus partial tiles around them.
var tileTestSizes = []uint64{0, 1, 2, 3, 4, 7, 8, 16, 128, 255, 256, 257, 511, 512, 513, 1000, 65535, 65536, 65537}

// indicesFor picks indices worth proving in a tree of size n: the edges
// and both sides of every tile boundary.
func indicesFor(n uint64) []uint64 {
	var out []uint64
	seen := map[uint64]bool{}
	for _, i := range []uint64{0, 1, 2, 127, 254, 255, 256, 257, 511, 512, 4095, 65279, 65534, 65535, 65536, n / 2, n - 2, n - 1} {
		if i < n && !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out
}

func TestProofsFromTiles(t *testing.T) {
	ctx := context.Background()
	key := newTestKey(t, testOrigin, 1)
	full := newTestTree(t, tileTestSizes[len(tileTestSizes)-1])
	ts := full.tiles(tileTestSizes...)
	for _, size := range tileTestSizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			cp := key.checkpoint(t, full, size)
			if _, err := InclusionProofFromTiles(ctx, cp, size, ts.fetch); !errors.Is(err, ErrInvalidProof) {
				t.Errorf("index = size: %v", err)
			}
			tessera, err := client.NewProofBuilder(ctx, size, tesseraFetcher(ts))
			if err != nil {
				t.Fatal(err)
			}
			for _, index := range indicesFor(size) {
				got, err := InclusionProofFromTiles(ctx, cp, index, ts.fetch)
				if err != nil {
					t.Fatalf("index %d: %v", index, err)
				}
				want := refPath(int(index), full.leaves[:size])
				if !equalHashes(got, want) {
					t.Fatalf("index %d: tiles proof differs from the reference", index)
				}
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, size, full.leaves[index], got, cp.Hash()); err != nil {
					t.Fatalf("index %d: merkle rejects our proof: %v", index, err)
				}
				tp, err := tessera.InclusionProof(ctx, index)
				if err != nil || !equalHashes(tp, got) {
					t.Fatalf("index %d: tessera client proof %x, %v differs", index, tp, err)
				}
			}
			for _, older := range tileTestSizes {
				if older > size || older == 0 {
					continue
				}
				ocp := key.checkpoint(t, full, older)
				got, err := ConsistencyProofFromTiles(ctx, ocp, cp, ts.fetch)
				if err != nil {
					t.Fatalf("%d→%d: %v", older, size, err)
				}
				if size <= 4096 && !equalHashes(got, refProof(int(older), full.leaves[:size])) {
					t.Fatalf("%d→%d: tiles proof differs from the reference", older, size)
				}
				if err := proof.VerifyConsistency(rfc6962.DefaultHasher, older, size, got, ocp.Hash(), cp.Hash()); err != nil {
					t.Fatalf("%d→%d: merkle rejects our proof: %v", older, size, err)
				}
				tp, err := tessera.ConsistencyProof(ctx, older, size)
				if err != nil || !equalHashes(tp, got) {
					t.Fatalf("%d→%d: tessera client proof differs: %v", older, size, err)
				}
			}
			if size > 0 {
				if _, err := ConsistencyProofFromTiles(ctx, key.checkpoint(t, full, 0), cp, ts.fetch); !errors.Is(err, ErrInvalidProof) {
					t.Errorf("0→%d: %v", size, err)
				}
			}
		})
	}
}

// The big tree's reference proofs are O(n) each: check a few against the
// naive implementation on their own.
func TestProofsFromTilesReferenceAt65536(t *testing.T) {
	ctx := context.Background()
	key := newTestKey(t, testOrigin, 1)
	tr := newTestTree(t, 65537)
	ts := tr.tiles(65536, 65537)
	for _, size := range []uint64{65536, 65537} {
		cp := key.checkpoint(t, tr, size)
		for _, index := range []uint64{0, 255, 256, 65535, size - 1} {
			got, err := InclusionProofFromTiles(ctx, cp, index, ts.fetch)
			if err != nil || !equalHashes(got, refPath(int(index), tr.leaves[:size])) {
				t.Errorf("size %d index %d: %v", size, index, err)
			}
		}
	}
	got, err := ConsistencyProofFromTiles(ctx, key.checkpoint(t, tr, 65536), key.checkpoint(t, tr, 65537), ts.fetch)
	if err != nil || !equalHashes(got, refProof(65536, tr.leaves)) {
		t.Errorf("65536→65537: %v", err)
	}
}

// tesseraFetcher adapts a tile server to the tessera client, building paths
// with tessera's own layout package: equal proofs also mean equal paths.
func tesseraFetcher(ts tileServer) client.TileFetcherFunc {
	return func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		b, err := ts.fetch(ctx, layout.TilePath(level, index, p))
		if err != nil && p > 0 {
			return ts.fetch(ctx, layout.TilePath(level, index, 0))
		}
		return b, err
	}
}

func TestTilesPartialFallbackAndTampering(t *testing.T) {
	ctx := context.Background()
	key := newTestKey(t, testOrigin, 1)
	tr := newTestTree(t, 65536)
	cp := key.checkpoint(t, tr, 300)

	// Only the tiles of size 65,536 exist: the partial tiles 0/001.p/44 and
	// 1/000.p/1 that size 300 needs are gone, their full tiles are there.
	ts := tr.tiles(65536)
	if _, ok := ts["tile/0/001.p/44"]; ok {
		t.Fatal("test setup: partial tile present")
	}
	got, err := InclusionProofFromTiles(ctx, cp, 290, ts.fetch)
	if err != nil || !equalHashes(got, refPath(290, tr.leaves[:300])) {
		t.Fatalf("fallback to the full tile: %v", err)
	}

	good := tr.tiles(300)
	for _, tc := range []struct {
		name   string
		fetch  FetchFunc
		target error
	}{
		{"missing tile", func(ctx context.Context, p string) ([]byte, error) {
			if p == "tile/1/000.p/1" {
				return nil, errors.New("404")
			}
			return good.fetch(ctx, p)
		}, ErrTileFetch},
		{"short tile", func(ctx context.Context, p string) ([]byte, error) {
			b, err := good.fetch(ctx, p)
			return b[:len(b)-1], err
		}, ErrTileFetch},
		{"tampered tile", func(ctx context.Context, p string) ([]byte, error) {
			b, err := good.fetch(ctx, p)
			if p == "tile/0/001.p/44" {
				b[5] ^= 1
			}
			return b, err
		}, ErrInvalidProof},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := InclusionProofFromTiles(ctx, cp, 290, tc.fetch); !errors.Is(err, tc.target) {
				t.Errorf("InclusionProofFromTiles = %v, want %v", err, tc.target)
			}
		})
	}
	if _, err := InclusionProofFromTiles(ctx, &Checkpoint{size: 300}, 1, good.fetch); !errors.Is(err, ErrInvalidCheckpoint) {
		t.Errorf("unverified checkpoint: %v", err)
	}
	if _, err := ConsistencyProofFromTiles(ctx, key.checkpoint(t, tr, 300), key.checkpoint(t, tr, 200), good.fetch); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("shrinking: %v", err)
	}
}

func TestTileWidth(t *testing.T) {
	// The example of c2sp.org/tlog-tiles: a tree of size 70,000 has 273
	// full level-0 tiles, a partial one of width 112, one full level-1
	// tile, a partial one of width 17, and a partial level-2 tile of width 1.
	for _, tc := range []struct{ level, index, size, want uint64 }{
		{0, 272, 70000, 256}, {0, 273, 70000, 112}, {0, 274, 70000, 0},
		{1, 0, 70000, 256}, {1, 1, 70000, 17}, {1, 2, 70000, 0},
		{2, 0, 70000, 1}, {3, 0, 70000, 0},
		{0, 0, 256, 256}, {1, 0, 256, 1}, {0, 1, 256, 0},
		{0, 0, 0, 0}, {0, 0, 1, 1}, {7, 0, 1 << 63, 128}, {8, 0, 1 << 63, 0},
	} {
		if got := TileWidth(tc.level, tc.index, tc.size); got != tc.want {
			t.Errorf("TileWidth(%d, %d, %d) = %d, want %d", tc.level, tc.index, tc.size, got, tc.want)
		}
		if tc.level <= MaxTileLevel {
			if p := layout.PartialTileSize(tc.level, tc.index, tc.size); tc.want > 0 && tc.want < 256 && uint64(p) != tc.want {
				t.Errorf("tessera PartialTileSize(%d, %d, %d) = %d, want %d", tc.level, tc.index, tc.size, p, tc.want)
			}
		}
	}
}

// BenchmarkInclusionProofFromTiles: building and verifying one proof from
// an in-memory tile server (no network), tree of 65,537 leaves.
func BenchmarkInclusionProofFromTiles(b *testing.B) {
	ctx := context.Background()
	key := newTestKey(b, testOrigin, 1)
	tr := newTestTree(b, 65537)
	ts := tr.tiles(65537)
	cp := key.checkpoint(b, tr, 65537)
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		if _, err := InclusionProofFromTiles(ctx, cp, i%65537, ts.fetch); err != nil {
			b.Fatal(err)
		}
		i += 7919
	}
}
