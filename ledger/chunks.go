package ledger

import "github.com/agentsigna/agentsigna/internal/store"

// chunkBudget bounds what one chunk of a whole-log read (Export, Check)
// holds in memory, entries and records together: an entry may be 64 KiB
// and its record 1 MiB, so a fixed count of entries may be a gigabyte.
const chunkBudget = 16 << 20

// firstChunk is the first chunk's count, before any size is known: at most
// about 17 MiB of the largest entries.
const firstChunk = 16

// chunker sizes the chunks of a read of many entries: as many as fit in
// chunkBudget at the mean size of those read so far, from 1 to max.
type chunker struct {
	max          uint64
	read, nbytes uint64
}

// next is how many entries the next chunk may hold.
func (c *chunker) next() uint64 {
	if c.read == 0 || c.nbytes == 0 {
		return min(firstChunk, c.max)
	}
	mean := max(c.nbytes/c.read, 1)
	return min(max(chunkBudget/mean, 1), c.max)
}

// saw records a chunk read.
func (c *chunker) saw(es []store.LedgerEntry) {
	for _, e := range es {
		c.nbytes += uint64(len(e.Entry) + len(e.Record))
	}
	c.read += uint64(len(es))
}
