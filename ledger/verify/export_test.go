package verify

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
)

// exportMember is one member of an export archive; typeflag 0 is a
// regular file.
type exportMember struct {
	name     string
	body     []byte
	typeflag byte
	format   tar.Format        // 0: as tar.Writer picks (USTAR for these)
	pax      map[string]string // PAX records, in a PAX header
}

// testExport is the export of entries [from, n) of a test log, with the
// members ledger.Export writes, in its order: tests alter them, then
// archive them.
type testExport struct {
	key     testKey
	members []exportMember
}

func newTestExport(t testing.TB, n, from uint64) testExport {
	t.Helper()
	return newTestExportBroken(t, n, from, n)
}

// newTestExportBroken is newTestExport of a log whose entry broken (not
// 0) links to the wrong entry before it, signed all the same (n: none).
func newTestExportBroken(t testing.TB, n, from, broken uint64) testExport {
	t.Helper()
	key := newTestKey(t, testOrigin, 1)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	hashes := make([][]byte, n)
	prev := make([]byte, HashSize)
	var lines []byte
	for i := range n {
		// About the size of a receipt's compact JWS.
		record := fmt.Appendf(nil, "record %d %s", i, bytes.Repeat([]byte("r"), 600))
		leaf, err := Entry{
			V: 1, Index: i, Time: t0.Add(time.Duration(i) * time.Second), Kind: "test.entry",
			Subject: fmt.Sprintf("dec_%d", i), Digest: sum(string(record)), Prev: prev,
		}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		hashes[i] = LeafHash(leaf)
		prev = hashes[i]
		if i+1 == broken {
			prev = sum("not the leaf hash of entry " + fmt.Sprint(i))
		}
		if i >= from {
			line, err := json.Marshal(ExportLine{Index: i, Entry: leaf, Record: record})
			if err != nil {
				t.Fatal(err)
			}
			lines = append(append(lines, line...), '\n')
		}
	}
	tr := treeFromLeafHashes(t, hashes)
	rng := [][]byte{}
	for _, id := range compact.RangeNodes(0, from, nil) {
		rng = append(rng, tr.nodes[id])
	}
	manifest, err := json.Marshal(ExportManifest{Format: ExportFormat, Origin: testOrigin, From: from, To: n, Range: rng})
	if err != nil {
		t.Fatal(err)
	}
	return testExport{key: key, members: []exportMember{
		{name: "manifest.json", body: manifest},
		{name: "checkpoint", body: key.sign(t, n, tr.root(n))},
		{name: "log-key", body: []byte(key.vkey + "\n")},
		{name: "jwks.json", body: []byte(`{"keys":[]}`)},
		{name: "entries.jsonl", body: lines},
	}}
}

// archive writes the members as ledger.Export does: a tar stream, closed,
// in a gzip stream, closed.
func (x testExport) archive(t testing.TB) []byte {
	t.Helper()
	return tarGz(t, x.members)
}

func tarGz(t testing.TB, members []exportMember) []byte {
	t.Helper()
	return gzipOf(t, tarOf(t, members))
}

func gzipOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	if _, err := gz.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarOf(t testing.TB, members []exportMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.body)), ModTime: time.Unix(1767323045, 0), Typeflag: tar.TypeReg}
		if m.typeflag != 0 {
			h.Typeflag, h.Size, h.Linkname = m.typeflag, 0, "entries.jsonl"
		}
		h.Format, h.PAXRecords = m.format, m.pax
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(m.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// member returns the member named name.
func (x testExport) member(name string) *exportMember {
	for i := range x.members {
		if x.members[i].name == name {
			return &x.members[i]
		}
	}
	panic("no member " + name)
}

func TestVerifyExport(t *testing.T) {
	// 0-0: the export of an empty log (it never verified; found by review).
	for _, tc := range []struct{ n, from uint64 }{{0, 0}, {1, 0}, {1, 1}, {300, 0}, {300, 1}, {300, 255}, {300, 256}, {300, 300}} {
		t.Run(fmt.Sprintf("%d-%d", tc.from, tc.n), func(t *testing.T) {
			x := newTestExport(t, tc.n, tc.from)
			rep, err := VerifyExport(bytes.NewReader(x.archive(t)), x.key.vkey, ExportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.From != tc.from || rep.To != tc.n || rep.Kinds["test.entry"] != tc.n-tc.from ||
				rep.Checkpoint.Size() != tc.n || string(rep.JWKS) != `{"keys":[]}` {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

// A link broken into an export's first entry is found where the export
// shows the entry before it: from entry 0, and from an odd index (the
// range's last hash is that entry's leaf hash). From an even index it is
// not, and the report says so; the root still verifies.
func TestVerifyExportFirstLink(t *testing.T) {
	for _, tc := range []struct {
		from, broken uint64
		checked      bool
		refused      string
	}{
		{from: 0, broken: 7, checked: true, refused: "entry 7: chain link broken"},
		{from: 5, broken: 5, checked: true, refused: "entry 5: chain link broken"},
		{from: 1, broken: 1, checked: true, refused: "entry 1: chain link broken"},
		{from: 255, broken: 255, checked: true, refused: "entry 255: chain link broken"},
		{from: 4, broken: 4, checked: false},
		{from: 256, broken: 256, checked: false},
		{from: 4, broken: 300, checked: false},
		{from: 3, broken: 300, checked: true},
		{from: 300, broken: 300, checked: false}, // no entries: nothing linked
	} {
		t.Run(fmt.Sprintf("from %d, broken %d", tc.from, tc.broken), func(t *testing.T) {
			x := newTestExportBroken(t, 300, tc.from, tc.broken)
			rep, err := VerifyExport(bytes.NewReader(x.archive(t)), x.key.vkey, ExportOptions{})
			if tc.refused != "" {
				if !errors.Is(err, ErrInvalidExport) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("got %v, want %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.FirstLinkChecked != tc.checked {
				t.Fatalf("FirstLinkChecked %v, want %v", rep.FirstLinkChecked, tc.checked)
			}
		})
	}
}

// forgeRecord returns lines with line i's record changed.
func forgeRecord(t testing.TB, lines []byte, i int) []byte {
	t.Helper()
	split := bytes.SplitAfter(lines, []byte("\n"))
	var line ExportLine
	if err := json.Unmarshal(split[i], &line); err != nil {
		t.Fatal(err)
	}
	line.Record = []byte("forged")
	b, err := json.Marshal(line)
	if err != nil {
		t.Fatal(err)
	}
	split[i] = append(b, '\n')
	return bytes.Join(split, nil)
}

// After entries.jsonl only the tar stream's end may follow: a member
// more (a second entries.jsonl is the one `tar -xzf` and Python's tarfile
// hand over), a gzip stream whose trailer does not match, or any byte
// after the gzip stream is refused.
func TestVerifyExportRefusesWhatFollowsEntries(t *testing.T) {
	x := newTestExport(t, 20, 0)
	good := x.archive(t)
	forgedLines := forgeRecord(t, x.member("entries.jsonl").body, 7)
	withMember := func(m exportMember) []byte { return tarGz(t, append(x.members[:len(x.members):len(x.members)], m)) }
	withByte := func(i int, b byte) []byte { bad := bytes.Clone(good); bad[i] ^= b; return bad }
	tarBytes := tarOf(t, x.members)
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"a second entries.jsonl", withMember(exportMember{name: "entries.jsonl", body: forgedLines}), `member "entries.jsonl" after entries.jsonl`},
		{"a path-traversal member", withMember(exportMember{name: "../../etc/evil", body: []byte("x")}), `member "../../etc/evil" after entries.jsonl`},
		{"an empty member", withMember(exportMember{name: "README"}), `member "README" after entries.jsonl`},
		{"a symlink member", withMember(exportMember{name: "link", typeflag: tar.TypeSymlink}), `member "link" after entries.jsonl`},
		{"a member after the end-of-archive blocks", gzipOf(t, append(bytes.Clone(tarBytes), tarOf(t, []exportMember{{name: "entries.jsonl", body: forgedLines}})...)), "after the tar archive's end"},
		{"a byte after the end-of-archive blocks", gzipOf(t, append(bytes.Clone(tarBytes), 1)), "after the tar archive's end"},
		{"bytes after the gzip stream", append(bytes.Clone(good), "garbage"...), "after the gzip stream"},
		{"a zero byte after the gzip stream", append(bytes.Clone(good), 0), "after the gzip stream"},
		{"a second gzip stream", append(bytes.Clone(good), tarGz(t, []exportMember{{name: "entries.jsonl", body: forgedLines}})...), "after the gzip stream"},
		{"an empty second gzip stream", append(bytes.Clone(good), gzipOf(t, nil)...), "after the gzip stream"},
		{"a wrong CRC-32", withByte(len(good)-8, 1), "checksum"},
		{"a wrong size", withByte(len(good)-4, 1), "checksum"},
		{"no gzip trailer", good[:len(good)-8], "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyExport(bytes.NewReader(tc.archive), x.key.vkey, ExportOptions{})
			if !errors.Is(err, ErrInvalidExport) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
	// GNU tar pads an archive to its 10,240-byte record size with zeros
	// inside the gzip stream: that still verifies.
	padded := append(bytes.Clone(tarBytes), make([]byte, 10240-len(tarBytes)%10240)...)
	if _, err := VerifyExport(bytes.NewReader(gzipOf(t, padded)), x.key.vkey, ExportOptions{}); err != nil {
		t.Fatalf("a padded archive: %v", err)
	}
	// MaxBytes bounds the padding too.
	for _, tc := range []struct {
		archive  []byte
		maxBytes int
		ok       bool
	}{
		{good, len(tarBytes), true},
		{good, len(tarBytes) - 1, false},
		{gzipOf(t, padded), len(padded), true},
		{gzipOf(t, padded), len(tarBytes), false},
	} {
		_, err := VerifyExport(bytes.NewReader(tc.archive), x.key.vkey, ExportOptions{MaxBytes: int64(tc.maxBytes)})
		if (err == nil) != tc.ok {
			t.Errorf("%d bytes with MaxBytes %d: %v", len(tc.archive), tc.maxBytes, err)
		}
	}
	// A reader that is not an io.ByteReader is read no further than the
	// archive's end either.
	if _, err := VerifyExport(io.MultiReader(bytes.NewReader(good), strings.NewReader("x")), x.key.vkey, ExportOptions{}); err == nil {
		t.Fatal("bytes after the gzip stream of a plain io.Reader accepted")
	}
}

// manifest.json and the lines of entries.jsonl are read as encoding/json/v2
// reads them: member names exactly as written, no unknown or duplicate
// member, nothing after the value. encoding/json (v1) would take "INDEX"
// for "index" and the last of two "record"s, where other tools read the
// first or refuse.
func TestVerifyExportRefusesLenientJSON(t *testing.T) {
	line3 := func(fn func(string) string) func(testExport) {
		return func(x testExport) {
			m := x.member("entries.jsonl")
			lines := strings.SplitAfter(string(m.body), "\n")
			lines[3] = fn(lines[3])
			m.body = []byte(strings.Join(lines, ""))
		}
	}
	replace := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("no %q in %s", old, s)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	manifest := func(fn func(string) string) func(testExport) {
		return func(x testExport) { m := x.member("manifest.json"); m.body = []byte(fn(string(m.body))) }
	}
	for _, tc := range []struct {
		name  string
		alter func(testExport)
		want  string
	}{
		{"line: a name in capitals", line3(replace(`"index":`, `"INDEX":`)), "entry 3: "},
		{"line: a name in mixed case", line3(replace(`"record":`, `"Record":`)), "entry 3: "},
		{"line: a duplicate record", line3(replace(`"record":`, `"record":"RVZJTA==","record":`)), "entry 3: "},
		{"line: a duplicate index", line3(replace(`"index":3,`, `"index":4,"index":3,`)), "entry 3: "},
		{"line: an unknown member", line3(replace(`{"index":`, `{"note":"x","index":`)), "entry 3: "},
		{"line: a second value", line3(replace("}\n", "} {}\n")), "entry 3: "},
		{"manifest: a name in capitals", manifest(replace(`"format":`, `"FORMAT":`)), "manifest"},
		{"manifest: a duplicate to", manifest(replace(`{"format":`, `{"to":99,"format":`)), "manifest"},
		{"manifest: an unknown member", manifest(replace(`{"format":`, `{"note":"x","format":`)), "manifest"},
		{"manifest: a second value", manifest(func(s string) string { return s + `{"format":"x"}` }), "manifest"},
		{"manifest: trailing bytes", manifest(func(s string) string { return s + "x" }), "manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newTestExport(t, 20, 0)
			tc.alter(x)
			_, err := VerifyExport(bytes.NewReader(x.archive(t)), x.key.vkey, ExportOptions{})
			if !errors.Is(err, ErrInvalidExport) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// A member in the wrong place, too large or not a regular file, and a line
// over the limit are each named for what they are.
func TestVerifyExportSaysWhatIsWrong(t *testing.T) {
	longLine := fmt.Sprintf(`{"index":5,"entry":"","record":"%s"}`+"\n", strings.Repeat("A", 4<<20))
	for _, tc := range []struct {
		name  string
		alter func(x *testExport)
		want  string
	}{
		{"a member out of order", func(x *testExport) { x.members[0], x.members[1] = x.members[1], x.members[0] },
			`expected manifest.json, found "checkpoint"`},
		{"a member missing", func(x *testExport) { x.members = x.members[:3] }, "missing jwks.json: EOF"},
		{"entries.jsonl renamed", func(x *testExport) { x.member("entries.jsonl").name = "entries.json" },
			`expected entries.jsonl, found "entries.json"`},
		{"a large checkpoint", func(x *testExport) { x.member("checkpoint").body = make([]byte, 1<<20+1) },
			"checkpoint is too large: 1048577 bytes, more than 1048576"},
		{"a symlink for jwks.json", func(x *testExport) { x.member("jwks.json").typeflag = tar.TypeSymlink },
			"jwks.json is not a regular file"},
		{"a symlink for entries.jsonl", func(x *testExport) { x.member("entries.jsonl").typeflag = tar.TypeSymlink },
			"entries.jsonl is not a regular file"},
		{"a long line", func(x *testExport) {
			m := x.member("entries.jsonl")
			lines := strings.SplitAfter(string(m.body), "\n")
			lines[5] = longLine
			m.body = []byte(strings.Join(lines, ""))
		}, "entry 5: line longer than 4194304 bytes"},
		{"two lines swapped", func(x *testExport) {
			m := x.member("entries.jsonl")
			lines := strings.SplitAfter(string(m.body), "\n")
			lines[5], lines[6] = lines[6], lines[5]
			m.body = []byte(strings.Join(lines, ""))
		}, "entry 5: missing or out of order"},
		// Extended headers name members otherwise for other tar readers
		// (GNU tar, Python): only plain USTAR, as the service writes.
		{"a PAX header on log-key", func(x *testExport) {
			m := x.member("log-key")
			m.format, m.pax = tar.FormatPAX, map[string]string{"comment": "entries.jsonl"}
		}, "log-key has extended tar headers (PAX)"},
		{"a GNU header for entries.jsonl", func(x *testExport) { x.member("entries.jsonl").format = tar.FormatGNU },
			"entries.jsonl has extended tar headers (GNU)"},
		{"another log key shipped", func(x *testExport) {
			x.member("log-key").body = []byte(newTestKey(t, testOrigin, 2).vkey + "\n")
		}, "the log-key member is not the pinned log key"},
		{"the log key without its newline", func(x *testExport) {
			m := x.member("log-key")
			m.body = bytes.TrimSpace(m.body)
		}, "the log-key member is not the pinned log key"},
		{"a manifest of another format", func(x *testExport) {
			m := x.member("manifest.json")
			m.body = bytes.Replace(m.body, []byte(`"format":"`+ExportFormat+`"`), []byte(`"format":"agentsigna-export/v2"`), 1)
		}, "bad manifest"},
		{"a manifest from after its end", func(x *testExport) {
			m := x.member("manifest.json")
			m.body = bytes.Replace(m.body, []byte(`"from":0,`), []byte(`"from":30,`), 1)
		}, "bad manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newTestExport(t, 20, 0)
			tc.alter(&x)
			_, err := VerifyExport(bytes.NewReader(x.archive(t)), x.key.vkey, ExportOptions{})
			if !errors.Is(err, ErrInvalidExport) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// A range hash must be 32 bytes: compact.Range checks only how many there
// are, and in an export with no entries after the range, bytes moved from
// one hash to the next gave the same root, so the export verified (found
// by review). With entries, a hash of the wrong length fails the root.
func TestVerifyExportRefusesRangeHashesOfOtherLengths(t *testing.T) {
	for _, tc := range []struct{ n, from uint64 }{{3, 3}, {20, 3}} {
		t.Run(fmt.Sprintf("%d-%d", tc.from, tc.n), func(t *testing.T) {
			x := newTestExport(t, tc.n, tc.from)
			var m ExportManifest
			if err := json.Unmarshal(x.member("manifest.json").body, &m); err != nil {
				t.Fatal(err)
			}
			if len(m.Range) != 2 {
				t.Fatalf("test setup: range of %d hashes", len(m.Range))
			}
			a, b := m.Range[0], m.Range[1]
			m.Range = [][]byte{append(slices.Clone(a), b[:5]...), b[5:]} // 37 and 27 bytes
			body, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			x.member("manifest.json").body = body
			_, err = VerifyExport(bytes.NewReader(x.archive(t)), x.key.vkey, ExportOptions{})
			if !errors.Is(err, ErrInvalidExport) || !strings.Contains(err.Error(), "range hash 0 is 37 bytes") {
				t.Fatalf("got %v, want the range hash's length refused", err)
			}
		})
	}
}

// BenchmarkVerifyExport: an export of 10,000 entries with 600-byte
// records, verified from memory.
func BenchmarkVerifyExport(b *testing.B) {
	const n = 10000
	x := newTestExport(b, n, 0)
	archive := x.archive(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyExport(bytes.NewReader(archive), x.key.vkey, ExportOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
}
