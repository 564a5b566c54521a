package verify

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// maxFuzzLeaves spans four full level-0 tiles, a partial one, and a partial
// level-1 tile.
const maxFuzzLeaves = 1100

// fuzzLog is one tree, key, and per-size checkpoints and tiles, shared by
// the fuzz targets' iterations.
type fuzzLog struct {
	key   testKey
	tree  *testTree
	mu    sync.Mutex
	cps   map[uint64]*Checkpoint
	tiles map[uint64]tileServer
}

var (
	fuzzLogOnce sync.Once
	theFuzzLog  *fuzzLog
)

func getFuzzLog(t testing.TB) *fuzzLog {
	fuzzLogOnce.Do(func() {
		theFuzzLog = &fuzzLog{
			key:   newTestKey(t, testOrigin, 1),
			tree:  newTestTree(t, maxFuzzLeaves),
			cps:   map[uint64]*Checkpoint{},
			tiles: map[uint64]tileServer{},
		}
	})
	return theFuzzLog
}

func (l *fuzzLog) checkpoint(t testing.TB, size uint64) *Checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	cp, ok := l.cps[size]
	if !ok {
		cp = l.key.checkpoint(t, l.tree, size)
		l.cps[size] = cp
	}
	return cp
}

func (l *fuzzLog) fetch(size uint64) FetchFunc {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts, ok := l.tiles[size]
	if !ok {
		ts = l.tree.tiles(size)
		l.tiles[size] = ts
	}
	return ts.fetch
}

// FuzzInclusion checks, for a tree size and index, that the reference
// RFC 6962 PATH verifies with VerifyInclusion and with merkle directly,
// that InclusionProofFromTiles builds the same proof, and that any single
// bit flip, other index, other tree size, or truncated or extended proof
// is rejected.
func FuzzInclusion(f *testing.F) {
	for _, seed := range [][3]uint16{{0, 0, 0}, {6, 3, 77}, {255, 254, 1000}, {256, 255, 3}, {257, 256, 9}, {1099, 1024, 500}} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, sizeSeed, indexSeed, mutation uint16) {
		l := getFuzzLog(t)
		n := 1 + uint64(sizeSeed)%maxFuzzLeaves
		i := uint64(indexSeed) % n
		leaf := l.tree.leaves[i]
		cp := l.checkpoint(t, n)
		ref := refPath(int(i), l.tree.leaves[:n])

		if err := VerifyInclusion(cp, i, leaf, ref); err != nil {
			t.Fatalf("size %d index %d: reference proof rejected: %v", n, i, err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, n, leaf, ref, cp.Hash()); err != nil {
			t.Fatalf("size %d index %d: merkle rejects the reference proof: %v", n, i, err)
		}
		got, err := InclusionProofFromTiles(context.Background(), cp, i, l.fetch(n))
		if err != nil || !equalHashes(got, ref) {
			t.Fatalf("size %d index %d: tiles proof %x, %v", n, i, got, err)
		}

		reject := func(what string, cp *Checkpoint, index uint64, leaf []byte, p [][]byte) {
			t.Helper()
			if err := VerifyInclusion(cp, index, leaf, p); !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("size %d index %d: %s accepted (%v)", n, i, what, err)
			}
		}
		if len(ref) > 0 {
			bad := cloneHashes(ref)
			bad[int(mutation/256)%len(bad)][mutation%256/8] ^= 1 << (mutation % 8)
			reject("flipped proof bit", cp, i, leaf, bad)
			reject("truncated proof", cp, i, leaf, ref[:len(ref)-1])
		}
		badLeaf := bytes.Clone(leaf)
		badLeaf[mutation%256/8] ^= 1 << (mutation % 8)
		reject("flipped leaf bit", cp, i, badLeaf, ref)
		reject("extended proof", cp, i, leaf, append(cloneHashes(ref), leaf))
		if j := (i + 1 + uint64(mutation)) % n; j != i {
			reject("other index", cp, j, leaf, ref)
		}
		reject("index = size", cp, n, leaf, ref)
		if m := 1 + (n+uint64(mutation))%maxFuzzLeaves; m != n && i < m {
			reject("other size", l.checkpoint(t, m), i, leaf, ref)
		}
	})
}

// FuzzConsistency checks, for two tree sizes, that the reference RFC 6962
// PROOF verifies with VerifyConsistency and with merkle directly, that
// ConsistencyProofFromTiles builds the same proof, and that any single bit
// flip, other sizes, a truncated proof, or the empty tree is rejected.
func FuzzConsistency(f *testing.F) {
	for _, seed := range [][3]uint16{{0, 0, 0}, {2, 6, 1}, {3, 7, 300}, {255, 256, 7}, {256, 257, 42}, {511, 1099, 5000}, {8, 8, 0}} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, size1Seed, size2Seed, mutation uint16) {
		l := getFuzzLog(t)
		n2 := 1 + uint64(size2Seed)%maxFuzzLeaves
		n1 := 1 + uint64(size1Seed)%n2
		older, newer := l.checkpoint(t, n1), l.checkpoint(t, n2)
		ref := refProof(int(n1), l.tree.leaves[:n2])

		if err := VerifyConsistency(older, newer, ref); err != nil {
			t.Fatalf("%d→%d: reference proof rejected: %v", n1, n2, err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, n1, n2, ref, older.Hash(), newer.Hash()); err != nil {
			t.Fatalf("%d→%d: merkle rejects the reference proof: %v", n1, n2, err)
		}
		got, err := ConsistencyProofFromTiles(context.Background(), older, newer, l.fetch(n2))
		if err != nil || !equalHashes(got, ref) {
			t.Fatalf("%d→%d: tiles proof %x, %v", n1, n2, got, err)
		}

		reject := func(what string, older, newer *Checkpoint, p [][]byte) {
			t.Helper()
			if err := VerifyConsistency(older, newer, p); !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("%d→%d: %s accepted (%v)", n1, n2, what, err)
			}
		}
		if len(ref) > 0 {
			bad := cloneHashes(ref)
			bad[int(mutation/256)%len(bad)][mutation%256/8] ^= 1 << (mutation % 8)
			reject("flipped proof bit", older, newer, bad)
			reject("truncated proof", older, newer, ref[:len(ref)-1])
		}
		reject("extended proof", older, newer, append(cloneHashes(ref), older.Hash()))
		reject("from the empty tree", l.checkpoint(t, 0), newer, nil)
		if n1 != n2 {
			reject("reversed", newer, older, ref)
		}
		if m := 1 + (n1+uint64(mutation))%n2; m != n1 {
			reject("other older size", l.checkpoint(t, m), newer, ref)
		}
		if m := n1 + (n2+uint64(mutation))%(maxFuzzLeaves-n1+1); m != n2 {
			reject("other newer size", older, l.checkpoint(t, m), ref)
		}
	})
}
