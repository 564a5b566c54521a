package verify

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
	formatsproof "github.com/transparency-dev/formats/proof"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// FuzzEntryJCS is the differential test of the dedicated entry encoder:
// for any kind, subject, index and time, Marshal equals
// github.com/gowebpki/jcs's Transform of the same object serialized by
// encoding/json (which escapes <, >, &, U+2028 and U+2029 that JCS must
// not), or fails exactly when the kind is not one (ValidKind) or the
// subject is not valid UTF-8; and ParseEntry gives the entry back.
func FuzzEntryJCS(f *testing.F) {
	g := goldenEntry()
	f.Add(g.Kind, g.Subject, g.Index, g.Time.UnixNano(), int16(60), []byte("record"))
	f.Add("", "", uint64(0), int64(0), int16(0), []byte{})
	f.Add("k\x00\x7f\u2029", "\"\\/\b\f\n\r\t\x0b\x1b<script>&amp;", uint64(MaxEntryIndex), int64(1)<<62, int16(-720), []byte{1})
	f.Add("\xff", "ok", uint64(1), int64(-1), int16(1), []byte{2})
	f.Add("😀\U0010ffff", "\ufeff\ufffd", uint64(1)<<60, int64(123456789), int16(330), []byte{3})
	f.Fuzz(func(t *testing.T, kind, subject string, index uint64, unixNano int64, offsetMinutes int16, seed []byte) {
		index &= MaxEntryIndex
		prev := make([]byte, HashSize)
		if index > 0 {
			prev = sum("prev " + string(seed))
		}
		e := Entry{
			V: 1, Index: index, Kind: kind, Subject: subject, Digest: sum(string(seed)), Prev: prev,
			Time: time.Unix(0, unixNano).In(time.FixedZone("", int(offsetMinutes)*60)),
		}
		leaf, err := e.Marshal()
		if !ValidKind(kind) || !utf8.ValidString(subject) {
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("a kind that is not one, or a subject of invalid UTF-8, accepted: %q, %v", leaf, err)
			}
			return
		}
		if err != nil {
			if len(kind)+len(subject) > MaxEntrySize-200 && errors.Is(err, ErrInvalidEntry) {
				return
			}
			t.Fatal(err)
		}
		viaJSON, err := json.Marshal(map[string]any{
			"v": 1, "index": index, "time": e.Time.UTC().Format(time.RFC3339Nano), "kind": kind, "subject": subject,
			"digest": base64.StdEncoding.EncodeToString(e.Digest), "prev": base64.StdEncoding.EncodeToString(prev),
		})
		if err != nil {
			t.Fatal(err)
		}
		want, err := jcs.Transform(viaJSON)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(leaf, want) {
			t.Fatalf("Marshal =\n%q\njcs.Transform =\n%q", leaf, want)
		}
		parsed, err := ParseEntry(leaf)
		if err != nil {
			t.Fatalf("ParseEntry(Marshal(e)): %v", err)
		}
		if parsed.Kind != kind || parsed.Subject != subject || parsed.Index != index || !parsed.Time.Equal(e.Time) ||
			!bytes.Equal(parsed.Digest, e.Digest) || !bytes.Equal(parsed.Prev, prev) {
			t.Fatalf("round trip: %+v", parsed)
		}
	})
}

// FuzzParseEntry: whatever ParseEntry accepts is JCS-canonical and exactly
// what Marshal writes for the parsed entry.
func FuzzParseEntry(f *testing.F) {
	f.Add(readGolden(f))
	for _, leaf := range badEntries(f) {
		f.Add(leaf)
	}
	f.Fuzz(func(t *testing.T, leaf []byte) {
		e, err := ParseEntry(leaf)
		if err != nil {
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("error %v does not wrap ErrInvalidEntry", err)
			}
			return
		}
		again, err := e.Marshal()
		if err != nil || !bytes.Equal(again, leaf) {
			t.Fatalf("accepted %q, which marshals back to %q, %v", leaf, again, err)
		}
		if canon, err := jcs.Transform(leaf); err != nil || !bytes.Equal(canon, leaf) {
			t.Fatalf("accepted %q, which JCS canonicalizes to %q, %v", leaf, canon, err)
		}
	})
}

// FuzzParseProof: whatever ParseProof accepts marshals back byte for byte,
// and transparency-dev/formats' parser reads the same index, hashes and
// extra data from it.
func FuzzParseProof(f *testing.F) {
	for _, seed := range proofSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := ParseProof(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("error %v does not wrap ErrInvalidProof", err)
			}
			return
		}
		if again := p.Marshal(); !bytes.Equal(again, raw) {
			t.Fatalf("accepted %q, which marshals back to %q", raw, again)
		}
		var theirs formatsproof.TLogProof
		if err := theirs.Unmarshal(raw); err != nil {
			if strings.Contains(err.Error(), "scanning") { // their bufio.Scanner's 64 KiB line limit
				return
			}
			t.Fatalf("formats rejects what we accept: %v", err)
		}
		if theirs.Index != p.Index || len(theirs.Hashes) != len(p.Hashes) || !bytes.Equal(theirs.ExtraData, p.Extra) {
			t.Fatalf("formats reads %+v, we read %+v", theirs, p)
		}
		for i, h := range theirs.Hashes {
			if !bytes.Equal(h[:], p.Hashes[i]) {
				t.Fatalf("hash %d differs", i)
			}
		}
	})
}

// FuzzParseTilePath: whatever ParseTilePath accepts is what TilePath or
// EntriesPath writes for the parsed values, and tessera's parser (which is
// laxer) reads the same values.
func FuzzParseTilePath(f *testing.F) {
	for _, tc := range tilePathCases(f) {
		f.Add(tc.path)
	}
	f.Fuzz(func(t *testing.T, p string) {
		level, index, width, err := ParseTilePath(p)
		if err != nil {
			if !errors.Is(err, ErrInvalidTilePath) {
				t.Fatalf("error %v does not wrap ErrInvalidTilePath", err)
			}
			return
		}
		var again string
		if level < 0 {
			again = EntriesPath(index, width)
		} else {
			again = TilePath(uint64(level), index, width)
		}
		if again != p {
			t.Fatalf("accepted %q, which is written %q", p, again)
		}
		if level < 0 {
			return
		}
		l, n, _ := strings.Cut(strings.TrimPrefix(p, "tile/"), "/")
		tl, ti, tw, err := layout.ParseTileLevelIndexPartial(l, n)
		if err != nil || int(tl) != level || ti != index || (tw == 0 && width != FullTileWidth) || (tw != 0 && uint64(tw) != width) {
			t.Fatalf("tessera reads %q as %d %d %d, %v", p, tl, ti, tw, err)
		}
	})
}

// FuzzParseEntryBundle: whatever ParseEntryBundle accepts marshals back byte
// for byte, and tessera reads the same entries.
func FuzzParseEntryBundle(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 3, 'a', 'b', 'c', 0, 1, 'd'})
	f.Add([]byte{0, 3, 'a', 'b'})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseEntryBundle(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidBundle) {
				t.Fatalf("error %v does not wrap ErrInvalidBundle", err)
			}
			return
		}
		again, err := MarshalEntryBundle(entries)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted %x, which marshals back to %x, %v", b, again, err)
		}
		var theirs api.EntryBundle
		if err := theirs.UnmarshalText(b); err != nil || !equalHashes(theirs.Entries, entries) {
			t.Fatalf("tessera reads %q, %v", theirs.Entries, err)
		}
	})
}
