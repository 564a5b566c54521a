package ledger

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/transparency-dev/merkle/compact"

	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// exportChunk is how many entries Export reads per transaction.
const exportChunk = 1024

// Export writes entries [from, to) of a log as a verify.ExportFormat tar.gz:
// to must be a signed checkpoint's size (0 means the newest). The archive
// carries the log's receipt key set (JWKS), so receipts verify offline.
func (l *Ledger) Export(ctx context.Context, lg Log, from, to uint64, w io.Writer) error {
	var cp store.LedgerCheckpoint
	var rangeHashes [][]byte
	var vkey string
	var jwks []byte
	err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, kt store.KeyTx) error {
		var err error
		if cp, err = checkpointAt(ctx, lt, to); err != nil {
			return err
		}
		if from > cp.Size {
			return fmt.Errorf("%w: from %d is beyond the tree size %d", store.ErrInvalid, from, cp.Size)
		}
		if vkey, err = l.cfg.Keys.LogVerifier(ctx, kt, lg.scope); err != nil {
			return err
		}
		if jwks, err = signing.JWKS(ctx, kt, store.PurposeReceipt); err != nil {
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
		return err
	}
	origin, _, _ := cutLine(cp.Note)
	manifest, err := json.Marshal(verify.ExportManifest{Format: verify.ExportFormat, Origin: origin, From: from, To: cp.Size, Range: nonNil(rangeHashes)})
	if err != nil {
		return err
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	now := time.Now().UTC()
	file := func(name string, body []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	for _, f := range []struct {
		name string
		body []byte
	}{{"manifest.json", manifest}, {"checkpoint", cp.Note}, {"log-key", []byte(vkey + "\n")}, {"jwks.json", jwks}} {
		if err := file(f.name, f.body); err != nil {
			return err
		}
	}
	// A tar member's size comes first, so the lines are gathered before
	// they are written (the HTTP handler buffers the archive anyway).
	var lines bytes.Buffer
	if err := l.exportEntries(ctx, lg, from, cp.Size, func(line []byte) error {
		_, err := lines.Write(line)
		return err
	}); err != nil {
		return err
	}
	if err := file("entries.jsonl", lines.Bytes()); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// exportEntries calls emit with each entry's JSON line, reading in chunks.
func (l *Ledger) exportEntries(ctx context.Context, lg Log, from, to uint64, emit func([]byte) error) error {
	for start := from; start < to; start += exportChunk {
		end := min(start+exportChunk, to)
		var es []store.LedgerEntry
		err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, _ store.KeyTx) error {
			var err error
			es, err = lt.Entries(ctx, start, end)
			return err
		})
		if err != nil {
			return err
		}
		if uint64(len(es)) != end-start {
			return fmt.Errorf("ledger: export: %d entries stored in [%d, %d)", len(es), start, end)
		}
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
