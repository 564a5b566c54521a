package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// testOrigin is the log of most tests; its key is derived from a fixed seed
// so that fuzz corpora and golden files stay reproducible.
const testOrigin = "agentsigna.test/t/acme"

type testKey struct {
	skey, vkey string
	signer     note.Signer
}

func newTestKey(t testing.TB, name string, seed byte) testKey {
	t.Helper()
	skey, vkey, err := note.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{seed}, 32)), name)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{skey: skey, vkey: vkey, signer: signer}
}

// signText signs an arbitrary note text.
func (k testKey) signText(t testing.TB, text string, others ...note.Signer) []byte {
	t.Helper()
	msg, err := note.Sign(&note.Note{Text: text}, append([]note.Signer{k.signer}, others...)...)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// sign signs the checkpoint body "<origin>\n<size>\n<b64 root>\n".
func (k testKey) sign(t testing.TB, size uint64, root []byte) []byte {
	t.Helper()
	return k.signText(t, fmt.Sprintf("%s\n%d\n%s\n", k.signer.Name(), size, base64.StdEncoding.EncodeToString(root)))
}

// checkpoint signs and verifies a checkpoint of t's tree at size.
func (k testKey) checkpoint(t testing.TB, tr *testTree, size uint64) *Checkpoint {
	t.Helper()
	cp, err := VerifyCheckpoint(k.sign(t, size, tr.root(size)), k.vkey)
	if err != nil {
		t.Fatalf("VerifyCheckpoint(size %d): %v", size, err)
	}
	return cp
}

// testTree is a log built with compact.Range, keeping every perfect node,
// as the server stores them.
type testTree struct {
	leaves [][]byte // leaf hashes
	nodes  map[compact.NodeID][]byte
}

var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// leafData is the content of leaf i of test trees: distinct for every i.
func leafData(i uint64) []byte { return []byte(fmt.Sprintf("leaf %d", i)) }

func newTestTree(t testing.TB, size uint64) *testTree {
	t.Helper()
	hashes := make([][]byte, size)
	for i := range hashes {
		hashes[i] = LeafHash(leafData(uint64(i)))
	}
	return treeFromLeafHashes(t, hashes)
}

func treeFromLeafHashes(t testing.TB, hashes [][]byte) *testTree {
	t.Helper()
	tr := &testTree{leaves: hashes, nodes: map[compact.NodeID][]byte{}}
	r := rangeFactory.NewEmptyRange(0)
	for i, h := range hashes {
		tr.nodes[compact.NewNodeID(0, uint64(i))] = h
		if err := r.Append(h, func(id compact.NodeID, h []byte) { tr.nodes[id] = h }); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

// root is the root hash of the tree's first size leaves.
func (tr *testTree) root(size uint64) []byte {
	if size == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	ids := compact.RangeNodes(0, size, nil)
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		hashes[i] = tr.nodes[id]
	}
	r, err := rangeFactory.NewRange(0, size, hashes)
	if err != nil {
		panic(err)
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		panic(err)
	}
	return root
}

// tileServer holds the tiles of a tree at the given sizes (full tiles and
// the partial tiles each size needs), keyed by c2sp.org/tlog-tiles path.
type tileServer map[string][]byte

func (tr *testTree) tiles(sizes ...uint64) tileServer {
	ts := tileServer{}
	for _, size := range sizes {
		for level := uint64(0); level <= MaxTileLevel && size>>(TileHeight*level) > 0; level++ {
			count := size >> (TileHeight * level)
			for index := uint64(0); index*FullTileWidth < count; index++ {
				width := min(FullTileWidth, count-index*FullTileWidth)
				p := TilePath(level, index, width)
				if _, ok := ts[p]; ok {
					continue
				}
				var b []byte
				for j := uint64(0); j < width; j++ {
					b = append(b, tr.nodes[compact.NewNodeID(uint(TileHeight*level), index*FullTileWidth+j)]...)
				}
				ts[p] = b
			}
		}
	}
	return ts
}

func (ts tileServer) fetch(_ context.Context, p string) ([]byte, error) {
	b, ok := ts[p]
	if !ok {
		return nil, fmt.Errorf("%s: not found", p)
	}
	return bytes.Clone(b), nil
}
