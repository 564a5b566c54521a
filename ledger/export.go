package ledger

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/transparency-dev/merkle/compact"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// exportChunk is the most entries Export reads per transaction; fewer when
// they reach chunkBytes first.
var exportChunk uint64 = 1024

// chunkBytes bounds what one read of a whole-log pass (Export, Check)
// holds, entries and records together, give or take its last entry: an
// entry may be 64 KiB and its record 1 MiB, so a count alone may be a
// gigabyte.
const chunkBytes = 16 << 20

// Export writes entries [from, to) of a log as a verify.ExportFormat tar.gz:
// to must be a signed checkpoint's size (0 means the newest). The archive
// carries the log's receipt key set (JWKS), so receipts verify offline.
// It is PrepareExport, then PreparedExport.Write.
func (l *Ledger) Export(ctx context.Context, lg Log, from, to uint64, w io.Writer) error {
	x, err := l.PrepareExport(ctx, lg, from, to)
	if err != nil {
		return err
	}
	return x.Write(ctx, w)
}

// PreparedExport is an export whose checkpoint, keys and size are settled:
// what can refuse it has been checked, and Write streams it.
type PreparedExport struct {
	l        *Ledger
	lg       Log
	from, to uint64 // to: the checkpoint's size
	manifest []byte
	note     []byte
	vkey     string
	jwks     []byte
	// linesSize is entries.jsonl's length: a tar member's size comes
	// before its bytes, so the entries are read twice, to size the member
	// and to write it, rather than held in memory. They are immutable below
	// a checkpoint, so both reads see the same bytes.
	linesSize int64
}

// PrepareExport checks and sizes the export of entries [from, to) (see
// Export), reading every entry once. Its errors are the request's:
// ErrNoCheckpoint for a to no checkpoint has, store.ErrInvalid for a from
// beyond it.
func (l *Ledger) PrepareExport(ctx context.Context, lg Log, from, to uint64) (*PreparedExport, error) {
	var cp store.LedgerCheckpoint
	var rangeHashes [][]byte
	x := &PreparedExport{l: l, lg: lg, from: from}
	err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, kt store.KeyTx) error {
		var err error
		if cp, err = checkpointAt(ctx, lt, to); err != nil {
			return err
		}
		if from > cp.Size {
			return fmt.Errorf("%w: from %d is beyond the tree size %d", store.ErrInvalid, from, cp.Size)
		}
		if x.vkey, err = l.cfg.Keys.LogVerifier(ctx, kt, lg.scope); err != nil {
			return err
		}
		if x.jwks, err = l.cfg.Keys.JWKS(ctx, kt, lg.scope.TenantID, store.PurposeReceipt); err != nil {
			return err
		}
		// The roots of the perfect subtrees left of from.
		for _, id := range compact.RangeNodes(0, from, nil) {
			h, err := l.nodeHash(ctx, lg, lt, id, cp.Size)
			if err != nil {
				return err
			}
			rangeHashes = append(rangeHashes, h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	x.to, x.note = cp.Size, cp.Note
	origin, _, _ := cutLine(cp.Note)
	if x.manifest, err = json.Marshal(verify.ExportManifest{Format: verify.ExportFormat, Origin: origin, From: from, To: cp.Size, Range: nonNil(rangeHashes)}); err != nil {
		return nil, err
	}
	err = l.exportEntries(ctx, lg, from, cp.Size, func(line []byte) error {
		x.linesSize += int64(len(line))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return x, nil
}

// Write writes the archive to w, reading the entries again, a chunk at a
// time. An error part-way leaves w with a truncated gzip stream, which no
// reader takes for a whole archive.
func (x *PreparedExport) Write(ctx context.Context, w io.Writer) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	now := time.Now().UTC()
	header := func(name string, size int64) error {
		return tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: now, Typeflag: tar.TypeReg})
	}
	for _, f := range []struct {
		name string
		body []byte
	}{{"manifest.json", x.manifest}, {"checkpoint", x.note}, {"log-key", []byte(x.vkey + "\n")}, {"jwks.json", x.jwks}} {
		if err := header(f.name, int64(len(f.body))); err != nil {
			return err
		}
		if _, err := tw.Write(f.body); err != nil {
			return err
		}
	}
	if err := header("entries.jsonl", x.linesSize); err != nil {
		return err
	}
	err := x.l.exportEntries(ctx, x.lg, x.from, x.to, func(line []byte) error {
		_, err := tw.Write(line) // more than linesSize is an error here, fewer at Close
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// exportEntries calls emit with each entry's JSON line, reading in chunks.
func (l *Ledger) exportEntries(ctx context.Context, lg Log, from, to uint64, emit func([]byte) error) error {
	for start, end := from, from; start < to; start = end {
		end = min(start+exportChunk, to)
		var es []store.LedgerEntry
		err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, _ store.KeyTx) error {
			var err error
			es, err = lt.EntriesWithin(ctx, start, end, chunkBytes)
			return err
		})
		if err != nil {
			return err
		}
		// A read may stop at its byte bound: the next goes on after its
		// last entry, and one that finds the entries after it missing
		// says so.
		if len(es) == 0 || uint64(len(es)) != es[len(es)-1].Index+1-start {
			return fmt.Errorf("ledger: export: entries missing from [%d, %d): %d read", start, end, len(es))
		}
		end = es[len(es)-1].Index + 1
		for _, e := range es {
			line, err := json.Marshal(verify.ExportLine{Index: e.Index, Entry: e.Entry, Record: e.Record})
			if err != nil {
				return err
			}
			if err := emit(append(line, '\n')); err != nil {
				return err
			}
		}
	}
	return nil
}

func cutLine(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == '\n' {
			return string(b[:i]), b[i+1:], true
		}
	}
	return string(b), nil, false
}

func nonNil(h [][]byte) [][]byte {
	if h == nil {
		return [][]byte{}
	}
	return h
}
