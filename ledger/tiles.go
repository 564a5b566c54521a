package ledger

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// Tile returns tile (level, index) of width hashes (256 = full), as C2SP
// tlog-tiles serves it: the concatenated hashes at tree level 8·level. A
// tile is served only if that many hashes exist in the newest signed tree;
// any other, including one no tree of 2^64 leaves can hold (level 8 and
// above, or an index whose first leaf is past 2^64), is store.ErrNotFound.
// SPEC: c2sp.org/tlog-tiles — empty tiles MUST NOT be served.
func (l *Ledger) Tile(ctx context.Context, lg Log, level uint, index uint64, width uint64) ([]byte, error) {
	if width == 0 || width > 256 {
		return nil, fmt.Errorf("%w: tile width 1-256", store.ErrInvalid)
	}
	if level >= 8 {
		return nil, fmt.Errorf("%w: tile level %d: a tree of 2^64 leaves has levels 0-7", store.ErrNotFound, level)
	}
	var out []byte
	err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, _ store.KeyTx) error {
		cp, err := lt.LatestCheckpoint(ctx)
		if err != nil {
			return err
		}
		row, err := l.tileRow(ctx, lg, lt, level, index, cp.Size)
		if err != nil {
			return err
		}
		if uint64(len(row)) < width {
			return fmt.Errorf("%w: tile %d/%d has %d hashes", store.ErrNotFound, level, index, len(row))
		}
		out = store.JoinHashes(row[:width])
		return nil
	})
	return out, err
}

// EntryBundle returns entry bundle index of width entries (256 = full).
func (l *Ledger) EntryBundle(ctx context.Context, lg Log, index uint64, width uint64) ([]byte, error) {
	if width == 0 || width > 256 {
		return nil, fmt.Errorf("%w: entry bundle width 1-256", store.ErrInvalid)
	}
	var out []byte
	err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, _ store.KeyTx) error {
		cp, err := lt.LatestCheckpoint(ctx)
		if err != nil {
			return err
		}
		// from+width <= size, put so that neither side can wrap.
		from := index * 256
		if index > math.MaxUint64/256 || width > cp.Size || from > cp.Size-width {
			return fmt.Errorf("%w: entry bundle %d beyond tree size %d", store.ErrNotFound, index, cp.Size)
		}
		es, err := lt.Entries(ctx, from, from+width)
		if err != nil {
			return err
		}
		leaves := make([][]byte, len(es))
		for i, e := range es {
			leaves[i] = e.Entry
		}
		if uint64(len(leaves)) != width {
			return fmt.Errorf("ledger: entry bundle %d: %d stored entries, want %d", index, len(leaves), width)
		}
		out, err = verify.MarshalEntryBundle(leaves)
		return err
	})
	return out, err
}

// tileCache keeps tile rows per log: full ones never change, partial ones
// only grow, so the longest row seen serves every shorter request.
type tileCache struct {
	mu    sync.Mutex
	max   int
	tiles map[tileKey][][]byte
	order []tileKey
}

type tileKey struct {
	log   string
	level uint
	index uint64
}

func newTileCache(max int) *tileCache {
	return &tileCache{max: max, tiles: map[tileKey][][]byte{}}
}

func (c *tileCache) get(log string, level uint, index uint64) ([][]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	row, ok := c.tiles[tileKey{log, level, index}]
	return row, ok
}

// put records a row, keeping the longest seen, and evicts the oldest past
// max (FIFO is enough: the hot tiles are the newest, at the right edge).
func (c *tileCache) put(log string, level uint, index uint64, row [][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := tileKey{log, level, index}
	if old, ok := c.tiles[k]; ok {
		if len(row) > len(old) {
			c.tiles[k] = row
		}
		return
	}
	if len(c.order) >= c.max {
		delete(c.tiles, c.order[0])
		c.order = c.order[1:]
	}
	c.tiles[k] = row
	c.order = append(c.order, k)
}
