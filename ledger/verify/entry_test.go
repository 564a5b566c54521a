package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gowebpki/jcs"
)

func sum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// goldenEntry is testdata/entry-golden.json: a subject with every kind of
// character RFC 8785 treats specially, and a time whose fraction is trimmed.
func goldenEntry() Entry {
	return Entry{
		V:       1,
		Index:   41,
		Time:    time.Date(2026, 1, 2, 4, 4, 5, 120_000_000, time.FixedZone("CET", 3600)),
		Kind:    "decision",
		Subject: "agent:\"bob\"\n\t<é>&\u2028\x01\x1f/\\",
		Digest:  sum("record"),
		Prev:    sum("prev"),
	}
}

func readGolden(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/entry-golden.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEntryGolden(t *testing.T) {
	golden := readGolden(t)
	got, err := goldenEntry().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, golden) {
		t.Fatalf("Marshal =\n%s\nwant\n%s", got, golden)
	}
	if canon, err := jcs.Transform(golden); err != nil || !bytes.Equal(canon, golden) {
		t.Fatalf("the golden entry is not JCS-canonical: %s, %v", canon, err)
	}
	e, err := ParseEntry(golden)
	if err != nil {
		t.Fatal(err)
	}
	want := goldenEntry()
	if !e.Time.Equal(want.Time) || e.Time.Location() != time.UTC || e.Kind != want.Kind || e.Subject != want.Subject ||
		e.Index != want.Index || e.V != 1 || !bytes.Equal(e.Digest, want.Digest) || !bytes.Equal(e.Prev, want.Prev) {
		t.Fatalf("ParseEntry = %+v", e)
	}
	if h := hex.EncodeToString(LeafHash(golden)); h != hex.EncodeToString(sha256Leaf(golden)) {
		t.Fatalf("LeafHash %s", h)
	}
	appended, err := goldenEntry().AppendMarshal([]byte("x"))
	if err != nil || string(appended) != "x"+string(golden) {
		t.Fatalf("AppendMarshal = %q, %v", appended, err)
	}
}

func sha256Leaf(b []byte) []byte {
	h := sha256.Sum256(append([]byte{0}, b...))
	return h[:]
}

func TestEntryGenesis(t *testing.T) {
	e := Entry{V: 1, Index: 0, Time: time.Unix(1, 0), Kind: "k", Digest: sum("r"), Prev: make([]byte, 32)}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"digest":"` + "RUNJ5CLwUpcZHq0T4h09tSDlq+9SBV5JZLgvshP1k6E=" + `","index":0,"kind":"k","prev":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","subject":"","time":"1970-01-01T00:00:01Z","v":1}`; string(b) != want {
		t.Fatalf("Marshal =\n%s\nwant\n%s", b, want)
	}
	if _, err := ParseEntry(b); err != nil {
		t.Fatal(err)
	}
}

func TestEntryMarshalRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Entry)
	}{
		{"version 0", func(e *Entry) { e.V = 0 }},
		{"version 2", func(e *Entry) { e.V = 2 }},
		{"index above 2^53-1", func(e *Entry) { e.Index = MaxEntryIndex + 1 }},
		{"zero time", func(e *Entry) { e.Time = time.Time{} }},
		{"year 10000", func(e *Entry) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"invalid UTF-8 kind", func(e *Entry) { e.Kind = "a\xffb" }},
		{"empty kind", func(e *Entry) { e.Kind = "" }},
		{"upper-case kind", func(e *Entry) { e.Kind = "Receipt" }},
		{"look-alike kind", func(e *Entry) { e.Kind = "receipt\u200b" }},
		{"kind with an escape", func(e *Entry) { e.Kind = "receipt\x1b[2K" }},
		{"kind ending in a dot", func(e *Entry) { e.Kind = "auth." }},
		{"kind of 65 bytes", func(e *Entry) { e.Kind = strings.Repeat("k", MaxKindSize+1) }},
		{"invalid UTF-8 subject", func(e *Entry) { e.Subject = "\xed\xa0\x80" }}, // a UTF-16 surrogate
		{"short digest", func(e *Entry) { e.Digest = e.Digest[:31] }},
		{"nil prev", func(e *Entry) { e.Prev = nil }},
		{"entry 0 with a prev", func(e *Entry) { e.Index = 0 }},
		{"over 64 KiB", func(e *Entry) { e.Subject = strings.Repeat("a", MaxEntrySize) }},
		{"over 64 KiB once escaped", func(e *Entry) { e.Subject = strings.Repeat("\x01", MaxEntrySize/6) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := goldenEntry()
			tc.edit(&e)
			if b, err := e.Marshal(); !errors.Is(err, ErrInvalidEntry) || b != nil {
				t.Fatalf("Marshal = %q, %v", b, err)
			}
			if err := e.Validate(); !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("Validate = %v", err)
			}
		})
	}
	// The largest entry that fits is accepted and round-trips.
	e := goldenEntry()
	n, _ := e.encodedLen()
	e.Subject += strings.Repeat("a", MaxEntrySize-n)
	b, err := e.Marshal()
	if err != nil || len(b) != MaxEntrySize {
		t.Fatalf("largest entry: %d bytes, %v", len(b), err)
	}
	if _, err := ParseEntry(b); err != nil {
		t.Fatal(err)
	}
}

// badEntries reads testdata/entry-bad.txt: non-canonical or invalid
// variants of the golden entry.
func badEntries(t testing.TB) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile("testdata/entry-bad.txt")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name, leaf, ok := bytes.Cut(line, []byte("\t"))
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		out[string(name)] = leaf
	}
	golden := readGolden(t)
	out["trailing newline"] = append(bytes.Clone(golden), '\n')
	out["invalid UTF-8"] = bytes.Replace(golden, []byte("é"), []byte{0xff}, 1)
	out["surrogate escape"] = bytes.Replace(golden, []byte("é"), []byte(`\ud800`), 1)
	out["too big"] = append(bytes.Clone(golden), bytes.Repeat([]byte(" "), MaxEntrySize)...)
	return out
}

func TestParseEntryRejects(t *testing.T) {
	cases := badEntries(t)
	if len(cases) < 30 {
		t.Fatalf("only %d cases in testdata/entry-bad.txt", len(cases))
	}
	for name, leaf := range cases {
		t.Run(name, func(t *testing.T) {
			if e, err := ParseEntry(leaf); !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("ParseEntry = %+v, %v", e, err)
			}
		})
	}
}

func BenchmarkEntryMarshal(b *testing.B) {
	e := goldenEntry()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEntryAppendMarshalAndLeafHash(b *testing.B) {
	e := goldenEntry()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		leaf, err := e.AppendMarshal(buf[:0])
		if err != nil {
			b.Fatal(err)
		}
		LeafHash(leaf)
	}
}

func BenchmarkParseEntry(b *testing.B) {
	golden := readGolden(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseEntry(golden); err != nil {
			b.Fatal(err)
		}
	}
}
