package ledger_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// An export streams: it holds about a chunk of entries in memory, not the
// log. Export lines of 10 MB and more, 8 entries a chunk, are exported
// while the heap grows by less than a third of that (the buffered export
// it replaced held them all).
func TestExportStreams(t *testing.T) {
	defer ledger.SetExportChunk(8)()
	e := newEnv(t, "sqlite", ledger.Config{})
	ctx := context.Background()
	const n, recordSize = 480, 16 << 10
	batch := make([]ledger.Entry, 0, 60)
	for i := range n {
		r := make([]byte, recordSize/2)
		_, _ = rand.Read(r) // random hex: gzip halves it, no more
		batch = append(batch, ledger.Entry{Kind: "test.entry", Subject: fmt.Sprint("big-", i), Record: []byte(hex.EncodeToString(r))})
		if len(batch) == cap(batch) {
			if _, err := e.ledger.AppendAll(ctx, e.log, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}

	defer debug.SetGCPercent(debug.SetGCPercent(10)) // what the heap holds, not garbage
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	w := &heapWatch{}
	if err := e.ledger.Export(ctx, e.log, 0, 0, w); err != nil {
		t.Fatal(err)
	}
	grew := int64(w.peak) - int64(base)
	// Each line holds its record in base64: a lower bound of what a
	// buffered export holds at once. (TestExportVerifiesOffline checks
	// what the archive says.)
	lines := int64(n * base64.StdEncoding.EncodedLen(recordSize))
	t.Logf("heap growth while exporting %d MB of entries: %.1f MB", lines>>20, float64(grew)/(1<<20))
	if w.n == 0 || grew > lines/3 {
		t.Fatalf("the heap grew by %d MB while %d MB of entries were exported (%d bytes written): the export is held in memory", grew>>20, lines>>20, w.n)
	}
}

// heapWatch counts what is written and samples the heap at each write.
type heapWatch struct {
	n    int
	peak uint64
}

func (h *heapWatch) Write(p []byte) (int, error) {
	h.n += len(p)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.peak = max(h.peak, ms.HeapAlloc)
	return len(p), nil
}

// An export that fails part-way, its store gone between its two reads,
// says so, and what it wrote is no archive: a reader finds it cut short.
func TestExportCutShort(t *testing.T) {
	e := newEnv(t, "sqlite", ledger.Config{})
	ctx := context.Background()
	appendN(t, e, e.ledger, e.log, 20, "x")
	b := e.another(t)
	l := e.newLedger(t, b, ledger.Config{})
	lg := l.TenantLog(e.tenant.ID, e.tenant.Slug)
	vkey, err := l.VerifierKey(ctx, lg)
	if err != nil {
		t.Fatal(err)
	}
	x, err := l.PrepareExport(ctx, lg, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	var buf bytes.Buffer
	if err := x.Write(ctx, &buf); err == nil {
		t.Fatal("an export whose store closed under it succeeded")
	}
	if buf.Len() == 0 {
		t.Fatal("nothing written before the failure: this test shows nothing")
	}
	if _, err := verify.VerifyExport(&buf, vkey, verify.ExportOptions{}); err == nil {
		t.Fatal("a cut-short export verified")
	}
}
