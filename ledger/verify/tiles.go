package verify

import (
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// FetchFunc returns the resource at a c2sp.org/tlog-tiles path relative to
// the log's prefix, e.g. "tile/0/x001/234.p/17". The bytes are untrusted.
type FetchFunc func(ctx context.Context, path string) ([]byte, error)

// InclusionProofFromTiles builds the inclusion proof for the entry at index
// in the tree of cp from tiles read through fetch, and verifies it against
// cp with the leaf hash found in the level-0 tile. The returned proof is
// therefore valid for cp; the caller still has to compare that leaf hash
// with the hash of the entry it cares about (or call VerifyInclusion with it).
func InclusionProofFromTiles(ctx context.Context, cp *Checkpoint, index uint64, fetch FetchFunc) ([][]byte, error) {
	if err := cp.check(); err != nil {
		return nil, err
	}
	if index >= cp.size {
		return nil, fmt.Errorf("%w: index %d is not below tree size %d", ErrInvalidProof, index, cp.size)
	}
	nodes, err := proof.Inclusion(index, cp.size)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidProof, err)
	}
	r := newTileReader(cp.size, fetch)
	hashes, err := r.proof(ctx, nodes)
	if err != nil {
		return nil, err
	}
	leaf, err := r.node(ctx, compact.NewNodeID(0, index))
	if err != nil {
		return nil, err
	}
	if err := VerifyInclusion(cp, index, leaf, hashes); err != nil {
		return nil, fmt.Errorf("tiles disagree with the checkpoint: %w", err)
	}
	return hashes, nil
}

// ConsistencyProofFromTiles builds the consistency proof from the tree of
// older to the tree of newer from tiles of newer's tree read through fetch,
// and returns it only if it verifies (VerifyConsistency, with all its
// rejections: different logs, shrinking, from the empty tree…).
func ConsistencyProofFromTiles(ctx context.Context, older, newer *Checkpoint, fetch FetchFunc) ([][]byte, error) {
	if err := older.check(); err != nil {
		return nil, err
	}
	if err := newer.check(); err != nil {
		return nil, err
	}
	var hashes [][]byte
	if older.size < newer.size {
		nodes, err := proof.Consistency(older.size, newer.size)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidProof, err)
		}
		if hashes, err = newTileReader(newer.size, fetch).proof(ctx, nodes); err != nil {
			return nil, err
		}
	}
	if err := VerifyConsistency(older, newer, hashes); err != nil {
		return nil, err
	}
	return hashes, nil
}

// tileReader reads node hashes of a tree of a given size from its tiles,
// fetching each tile at most once.
type tileReader struct {
	size  uint64
	fetch FetchFunc
	tiles map[[2]uint64][][]byte // (tile level, tile index) → bottom row
}

func newTileReader(size uint64, fetch FetchFunc) *tileReader {
	return &tileReader{size: size, fetch: fetch, tiles: map[[2]uint64][][]byte{}}
}

// proof reads the hashes of nodes.IDs and folds the ephemeral node's
// children into it, as proof.Nodes.Rehash prescribes.
func (r *tileReader) proof(ctx context.Context, nodes proof.Nodes) ([][]byte, error) {
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, err := r.node(ctx, id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	hashes, err := nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidProof, err)
	}
	return hashes, nil
}

// node returns the hash of the perfect subtree id. A tile at tile level L
// holds the hashes of tree level 8·L; a node at tree level 8·L+k (k < 8) is
// recomputed from the 2^k hashes under it in that tile's row.
//
// SPEC: c2sp.org/tlog-tiles — "a tile represents the entire subtree of
// height 8 with its hashes as the leaves".
func (r *tileReader) node(ctx context.Context, id compact.NodeID) ([]byte, error) {
	tileLevel := uint64(id.Level / TileHeight)
	k := id.Level % TileHeight
	perTile := uint64(FullTileWidth >> k) // nodes of level id.Level per tile
	tileIndex := id.Index / perTile
	first := int(id.Index%perTile) << k
	row, err := r.tile(ctx, tileLevel, tileIndex)
	if err != nil {
		return nil, err
	}
	if first+1<<k > len(row) {
		return nil, fmt.Errorf("%w: node %d/%d is not in tile %s", ErrTileFetch, id.Level, id.Index, TilePath(tileLevel, tileIndex, uint64(len(row))))
	}
	level := append([][]byte(nil), row[first:first+1<<k]...)
	for len(level) > 1 {
		for i := 0; i < len(level)/2; i++ {
			level[i] = rfc6962.DefaultHasher.HashChildren(level[2*i], level[2*i+1])
		}
		level = level[:len(level)/2]
	}
	return level[0], nil
}

// tile returns the bottom row of a tile of r's tree. When the partial tile
// cannot be fetched it falls back to the full tile's prefix, as
// c2sp.org/tlog-tiles allows (a log may delete a partial tile once the full
// one exists). Either way the bytes are untrusted: the proofs built from
// them are verified against a signed checkpoint before being returned.
func (r *tileReader) tile(ctx context.Context, level, index uint64) ([][]byte, error) {
	key := [2]uint64{level, index}
	if row, ok := r.tiles[key]; ok {
		return row, nil
	}
	width := TileWidth(level, index, r.size)
	if width == 0 {
		return nil, fmt.Errorf("%w: tile %d/%d is beyond tree size %d", ErrTileFetch, level, index, r.size)
	}
	path := TilePath(level, index, width)
	b, err := r.fetch(ctx, path)
	if err != nil && width < FullTileWidth {
		if full, ferr := r.fetch(ctx, TilePath(level, index, FullTileWidth)); ferr == nil && len(full) == FullTileWidth*HashSize {
			b, err = full[:width*HashSize], nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrTileFetch, path, err)
	}
	if uint64(len(b)) != width*HashSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d", ErrTileFetch, path, len(b), width*HashSize)
	}
	row := make([][]byte, width)
	for i := range row {
		row[i] = b[i*HashSize : (i+1)*HashSize : (i+1)*HashSize]
	}
	r.tiles[key] = row
	return row, nil
}
