package verify

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/transparency-dev/merkle/testonly"
)

// The classic RFC 6962 8-leaf test vectors, from transparency-dev/merkle's
// testonly package (which took them from Certificate Transparency's tests).
func rfc6962Tree(t *testing.T) *testTree {
	var hashes [][]byte
	for _, leaf := range testonly.LeafInputs() {
		hashes = append(hashes, LeafHash(leaf))
	}
	return treeFromLeafHashes(t, hashes)
}

func TestRFC6962Vectors(t *testing.T) {
	nodes, roots := testonly.NodeHashes(), testonly.RootHashes()
	tr := rfc6962Tree(t)
	for i, h := range tr.leaves {
		if !bytes.Equal(h, nodes[0][i]) {
			t.Errorf("LeafHash(leaf %d) = %x, want %x", i, h, nodes[0][i])
		}
	}
	for size, want := range roots {
		if got := refMTH(tr.leaves[:size]); !bytes.Equal(got, want) {
			t.Errorf("reference MTH(size %d) = %x, want %x", size, got, want)
		}
		if got := tr.root(uint64(size)); !bytes.Equal(got, want) {
			t.Errorf("compact root(size %d) = %x, want %x", size, got, want)
		}
	}
	// The empty tree's root is SHA-256 of nothing (RFC 6962 §2.1).
	if got := hex.EncodeToString(roots[0]); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("empty root %s", got)
	}

	key := newTestKey(t, testOrigin, 1)
	ctx := context.Background()
	for size := uint64(1); size <= 8; size++ {
		cp, err := VerifyCheckpoint(key.sign(t, size, roots[size]), key.vkey)
		if err != nil {
			t.Fatal(err)
		}
		ts := tr.tiles(size)
		for index := uint64(0); index < size; index++ {
			want := refPath(int(index), tr.leaves[:size])
			if err := VerifyInclusion(cp, index, tr.leaves[index], want); err != nil {
				t.Errorf("size %d index %d: reference proof rejected: %v", size, index, err)
			}
			got, err := InclusionProofFromTiles(ctx, cp, index, ts.fetch)
			if err != nil || !equalHashes(got, want) {
				t.Errorf("size %d index %d: tiles proof %x, %v; want %x", size, index, got, err, want)
			}
		}
		for older := uint64(1); older <= size; older++ {
			ocp, err := VerifyCheckpoint(key.sign(t, older, roots[older]), key.vkey)
			if err != nil {
				t.Fatal(err)
			}
			want := refProof(int(older), tr.leaves[:size])
			if err := VerifyConsistency(ocp, cp, want); err != nil {
				t.Errorf("%d→%d: reference proof rejected: %v", older, size, err)
			}
			got, err := ConsistencyProofFromTiles(ctx, ocp, cp, ts.fetch)
			if err != nil || !equalHashes(got, want) {
				t.Errorf("%d→%d: tiles proof %x, %v; want %x", older, size, got, err, want)
			}
		}
	}
}

func equalHashes(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestVerifyInclusionRejects(t *testing.T) {
	key := newTestKey(t, testOrigin, 1)
	tr := newTestTree(t, 5)
	cp := key.checkpoint(t, tr, 5)
	good := refPath(2, tr.leaves[:5])
	if err := VerifyInclusion(cp, 2, tr.leaves[2], good); err != nil {
		t.Fatal(err)
	}
	flipped := func(i int) [][]byte {
		p := cloneHashes(good)
		p[i][0] ^= 1
		return p
	}
	for _, tc := range []struct {
		name   string
		cp     *Checkpoint
		index  uint64
		leaf   []byte
		proof  [][]byte
		target error
	}{
		{"nil checkpoint", nil, 2, tr.leaves[2], good, ErrInvalidCheckpoint},
		{"zero checkpoint", &Checkpoint{}, 2, tr.leaves[2], good, ErrInvalidCheckpoint},
		{"index = size", cp, 5, tr.leaves[2], good, ErrInvalidProof},
		{"index > size", cp, 1 << 40, tr.leaves[2], good, ErrInvalidProof},
		{"wrong index", cp, 3, tr.leaves[2], good, ErrInvalidProof},
		{"wrong leaf", cp, 2, tr.leaves[3], good, ErrInvalidProof},
		{"short leaf hash", cp, 2, tr.leaves[2][:31], good, ErrInvalidProof},
		{"flipped hash 0", cp, 2, tr.leaves[2], flipped(0), ErrInvalidProof},
		{"flipped last hash", cp, 2, tr.leaves[2], flipped(len(good) - 1), ErrInvalidProof},
		{"short hash", cp, 2, tr.leaves[2], append(cloneHashes(good[:len(good)-1]), good[len(good)-1][:31]), ErrInvalidProof},
		{"truncated", cp, 2, tr.leaves[2], good[:len(good)-1], ErrInvalidProof},
		{"extended", cp, 2, tr.leaves[2], append(cloneHashes(good), good[0]), ErrInvalidProof},
		{"empty", cp, 2, tr.leaves[2], nil, ErrInvalidProof},
		{"wrong size", key.checkpoint(t, newTestTree(t, 6), 6), 2, tr.leaves[2], good, ErrInvalidProof},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyInclusion(tc.cp, tc.index, tc.leaf, tc.proof)
			if !errors.Is(err, tc.target) {
				t.Fatalf("VerifyInclusion = %v, want %v", err, tc.target)
			}
		})
	}
}

func TestVerifyConsistencyRejects(t *testing.T) {
	key := newTestKey(t, testOrigin, 1)
	other := newTestKey(t, "agentsigna.test/t/other", 2)
	tr := newTestTree(t, 7)
	cp3, cp7 := key.checkpoint(t, tr, 3), key.checkpoint(t, tr, 7)
	good := refProof(3, tr.leaves[:7])
	if err := VerifyConsistency(cp3, cp7, good); err != nil {
		t.Fatal(err)
	}
	empty := key.checkpoint(t, tr, 0)
	if err := VerifyConsistency(empty, key.checkpoint(t, tr, 0), nil); err != nil {
		t.Errorf("empty → empty: %v", err)
	}
	if err := VerifyConsistency(cp7, cp7, nil); err != nil {
		t.Errorf("same checkpoint: %v", err)
	}
	forked := treeFromLeafHashes(t, append(cloneHashes(tr.leaves[:6]), LeafHash([]byte("fork"))))
	cp7fork := key.checkpoint(t, forked, 7)
	otherCP, err := VerifyCheckpoint(other.sign(t, 3, tr.root(3)), other.vkey)
	if err != nil {
		t.Fatal(err)
	}
	flipped := cloneHashes(good)
	flipped[1][31] ^= 0x80
	for _, tc := range []struct {
		name         string
		older, newer *Checkpoint
		proof        [][]byte
	}{
		{"nil older", nil, cp7, good},
		{"nil newer", cp3, nil, good},
		{"unverified", &Checkpoint{size: 3, hash: tr.root(3)}, cp7, good},
		{"size 0 to non-empty", empty, cp7, nil},
		{"size 0 to non-empty with proof", empty, cp7, good},
		{"origin mismatch", otherCP, cp7, good},
		{"shrink", cp7, cp3, good},
		{"same size different root", cp7, cp7fork, nil},
		{"same size with proof", cp7, cp7, good},
		{"fork", cp3, cp7fork, good},
		{"flipped", cp3, cp7, flipped},
		{"truncated", cp3, cp7, good[:len(good)-1]},
		{"empty proof", cp3, cp7, nil},
		{"short hash", cp3, cp7, [][]byte{good[0][:16], good[1], good[2]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := VerifyConsistency(tc.older, tc.newer, tc.proof); err == nil {
				t.Fatal("accepted")
			} else if !errors.Is(err, ErrInvalidProof) && !errors.Is(err, ErrInvalidCheckpoint) {
				t.Fatalf("error %v wraps neither sentinel", err)
			}
		})
	}
}

func cloneHashes(p [][]byte) [][]byte {
	out := make([][]byte, len(p))
	for i, h := range p {
		out[i] = bytes.Clone(h)
	}
	return out
}
