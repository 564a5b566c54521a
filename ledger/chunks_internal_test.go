package ledger

import (
	"bytes"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store"
)

// A chunk holds about chunkBudget of entries and records, whatever their
// size: 1 MiB records go 16 then 15 at a time, where the old fixed count
// read 1024 of them (a gigabyte); small ones go the most at a time.
func TestChunkerBoundsBytes(t *testing.T) {
	read := func(n int, entry, record int) []store.LedgerEntry {
		es := make([]store.LedgerEntry, n)
		for i := range es {
			es[i] = store.LedgerEntry{Entry: bytes.Repeat([]byte("e"), entry), Record: bytes.Repeat([]byte("r"), record)}
		}
		return es
	}
	big := chunker{max: 1024}
	if n := big.next(); n != firstChunk {
		t.Fatalf("first chunk %d, want %d", n, firstChunk)
	}
	for range 5 {
		n := big.next()
		big.saw(read(int(n), 200, MaxRecord))
		if held := n * (200 + MaxRecord); n > firstChunk || held > chunkBudget+200+MaxRecord {
			t.Fatalf("a chunk of %d large entries holds %d bytes, budget %d", n, held, chunkBudget)
		}
	}
	small := chunker{max: 1024}
	small.saw(read(firstChunk, 200, 300))
	if n := small.next(); n != 1024 {
		t.Fatalf("small entries: chunk %d, want the most, 1024", n)
	}
	if n := (&chunker{max: 8}).next(); n != 8 {
		t.Fatalf("a maximum below the first chunk: %d", n)
	}
	huge := chunker{max: 1024}
	huge.saw(read(1, 0, 2*chunkBudget))
	if n := huge.next(); n != 1 {
		t.Fatalf("entries larger than the budget: chunk %d, want 1", n)
	}
}
