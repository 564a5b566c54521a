package ledger

import (
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// batchInclusionProof proves from the nodes it is given, and refuses to
// answer when one it needs is missing rather than return a wrong proof.
func TestBatchInclusionProofNeedsEveryNode(t *testing.T) {
	known := map[compact.NodeID][]byte{}
	rng := rangeFactory.NewEmptyRange(0)
	var leaves [][]byte
	for i := range uint64(5) {
		lh := rfc6962.DefaultHasher.HashLeaf([]byte{byte(i)})
		leaves = append(leaves, lh)
		known[compact.NewNodeID(0, i)] = lh
		if err := rng.Append(lh, func(id compact.NodeID, h []byte) { known[id] = h }); err != nil {
			t.Fatal(err)
		}
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint64(5) {
		p, err := batchInclusionProof(known, i, 5)
		if err != nil {
			t.Fatal(err)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, i, 5, leaves[i], p, root); err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
	}
	delete(known, compact.NewNodeID(1, 0)) // the left sibling of [2,4)
	if p, err := batchInclusionProof(known, 3, 5); err == nil {
		t.Fatalf("a proof without one of its nodes: %x", p)
	}
}
