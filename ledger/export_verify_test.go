package ledger_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// rewrite applies fn to each member of an export archive.
func rewrite(t *testing.T, archive []byte, fn func(name string, body []byte) []byte) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out bytes.Buffer
	gw := gzip.NewWriter(&out)
	tw := tar.NewWriter(gw)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		body = fn(h.Name, body)
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	gw.Close()
	return out.Bytes()
}

func TestExportVerifiesOffline(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			appendN(t, e, e.ledger, e.log, 300, "x")
			vkey, _ := e.ledger.VerifierKey(ctx, e.log)

			for _, from := range []uint64{0, 1, 255, 256, 299} {
				var buf bytes.Buffer
				if err := e.ledger.Export(ctx, e.log, from, 0, &buf); err != nil {
					t.Fatal(err)
				}
				rep, err := verify.VerifyExport(bytes.NewReader(buf.Bytes()), vkey, verify.ExportOptions{})
				if err != nil {
					t.Fatalf("export from %d: %v", from, err)
				}
				if rep.From != from || rep.To != 300 || rep.Kinds["test.entry"] != 300-from {
					t.Fatalf("report %+v", rep)
				}
			}
			var full bytes.Buffer
			if err := e.ledger.Export(ctx, e.log, 0, 100, &full); err != nil {
				t.Fatal(err)
			}
			if rep, err := verify.VerifyExport(bytes.NewReader(full.Bytes()), vkey, verify.ExportOptions{}); err != nil || rep.To != 100 {
				t.Fatalf("export to the checkpoint of size 100: %v", err)
			}
			// Tampering is caught, with the entry named where possible.
			for _, tc := range []struct {
				name string
				fn   func(name string, body []byte) []byte
				want string
			}{
				{"record changed", func(name string, b []byte) []byte {
					if name != "entries.jsonl" {
						return b
					}
					lines := bytes.Split(b, []byte("\n"))
					lines[7] = bytes.Replace(lines[7], []byte(`"record":"`), []byte(`"record":"AAAA`), 1)
					return bytes.Join(lines, []byte("\n"))
				}, "entry 7: record"},
				{"entry dropped", func(name string, b []byte) []byte {
					if name != "entries.jsonl" {
						return b
					}
					lines := bytes.Split(b, []byte("\n"))
					return bytes.Join(append(lines[:3:3], lines[4:]...), []byte("\n"))
				}, "entry 3"},
				{"checkpoint's size altered", func(name string, b []byte) []byte {
					if name != "checkpoint" {
						return b
					}
					return bytes.Replace(b, []byte("100\n"), []byte("101\n"), 1)
				}, "checkpoint"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					bad := rewrite(t, full.Bytes(), tc.fn)
					_, err := verify.VerifyExport(bytes.NewReader(bad), vkey, verify.ExportOptions{})
					if err == nil || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("got %v, want an error about %q", err, tc.want)
					}
				})
			}
			// Another log's key does not verify it.
			other := newEnv(t, "sqlite", ledger.Config{})
			otherKey, _ := other.ledger.InitLog(ctx, other.log)
			if _, err := verify.VerifyExport(bytes.NewReader(full.Bytes()), otherKey, verify.ExportOptions{}); err == nil {
				t.Fatal("export verified with another log's key")
			}
			if err := e.ledger.Export(ctx, e.log, 0, 301, io.Discard); !errors.Is(err, ledger.ErrNoCheckpoint) {
				t.Fatalf("export to an unsigned size: %v", err)
			}
			if err := e.ledger.Export(ctx, e.log, 200, 100, io.Discard); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("export from beyond to: %v", err)
			}
		})
	}
}

// A log whose records are large is read a bounded number of bytes at a
// time (EntriesWithin), not a fixed count of entries: reads that stop at
// the bound, then go on, still export and check every entry once, in
// order. 20 records of 1 MiB after small entries: more than one bound's
// worth.
func TestWholeLogReadsOfLargeRecords(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, kind, ledger.Config{})
			ctx := context.Background()
			appendN(t, e, e.ledger, e.log, 10, "small")
			big := bytes.Repeat([]byte("r"), ledger.MaxRecord)
			for i := range 20 {
				if _, err := e.ledger.Append(ctx, e.log, ledger.Entry{Kind: "test.large", Subject: fmt.Sprint(i), Record: big}); err != nil {
					t.Fatal(err)
				}
			}
			appendN(t, e, e.ledger, e.log, 5, "small again")
			vkey, _ := e.ledger.VerifierKey(ctx, e.log)
			// Another process's ledger, whose reads are weighed.
			var mu sync.Mutex
			var reads []int // bytes of each read of entries
			weighed := &storetest.EntriesThrough{Backend: e.backend, Through: func(es []store.LedgerEntry, err error) ([]store.LedgerEntry, error) {
				n := 0
				for _, e := range es {
					n += len(e.Entry) + len(e.Record)
				}
				mu.Lock()
				reads = append(reads, n)
				mu.Unlock()
				return es, err
			}}
			l := e.newLedger(t, weighed, ledger.Config{})
			lg := l.TenantLog(e.tenant.ID, e.tenant.Slug)
			weigh := func(what string, passes int) {
				t.Helper()
				mu.Lock()
				defer mu.Unlock()
				// 20 MiB in all: two reads a pass at least, none much
				// above the bound.
				if len(reads) < 2*passes {
					t.Errorf("%s: %d reads of entries, want at least %d", what, len(reads), 2*passes)
				}
				for _, n := range reads {
					if n > 16<<20+ledger.MaxRecord+verify.MaxEntrySize {
						t.Errorf("%s: a read of %d bytes", what, n)
					}
				}
				reads = nil
			}
			var buf bytes.Buffer
			if err := l.Export(ctx, lg, 0, 0, &buf); err != nil {
				t.Fatal(err)
			}
			weigh("export", 2) // the sizing pass, then the one sending
			rep, err := verify.VerifyExport(bytes.NewReader(buf.Bytes()), vkey, verify.ExportOptions{})
			if err != nil || rep.To != 35 || rep.Kinds["test.large"] != 20 || rep.Kinds["test.entry"] != 15 {
				t.Fatalf("export: %+v, %v", rep, err)
			}
			if rep, err := l.Check(ctx, lg, ""); err != nil || rep.Problem != nil || rep.Size != 35 {
				t.Fatalf("check: %+v, %v", rep, err)
			}
			weigh("check", 1)
		})
	}
}

// An entry missing from a read, in the middle of a range or at its end,
// fails the export rather than yielding an archive without it.
func TestExportRefusesMissingEntries(t *testing.T) {
	e := newEnv(t, "sqlite", ledger.Config{})
	ctx := context.Background()
	appendN(t, e, e.ledger, e.log, 10, "x")
	for _, drop := range []uint64{0, 4, 9} {
		dropping := &storetest.EntriesThrough{Backend: e.backend, Through: func(es []store.LedgerEntry, err error) ([]store.LedgerEntry, error) {
			out := es[:0:0]
			for _, e := range es {
				if e.Index != drop {
					out = append(out, e)
				}
			}
			return out, err
		}}
		l := e.newLedger(t, dropping, ledger.Config{})
		err := l.Export(ctx, l.TenantLog(e.tenant.ID, e.tenant.Slug), 0, 0, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "entries missing") {
			t.Errorf("entry %d missing: %v, want the export refused", drop, err)
		}
	}
}
