package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

const (
	// EntryVersion is the only entry format version ("v") this package
	// writes and accepts.
	EntryVersion = 1

	// MaxEntrySize bounds the leaf bytes of an entry. DESIGN says 64 KiB;
	// the exact bound is one byte less because a c2sp.org/tlog-tiles entry
	// bundle prefixes each entry with a big-endian uint16 length.
	MaxEntrySize = 1<<16 - 1

	// MaxEntryIndex is the largest index an entry may carry: RFC 8785
	// serializes numbers as IEEE 754 doubles, which are exact only up to
	// 2^53 − 1 (Number.MAX_SAFE_INTEGER).
	MaxEntryIndex = 1<<53 - 1
	// MaxKindSize bounds an entry's kind, which is lower-case segments
	// joined by dots (ValidKind).
	MaxKindSize = 64

	// HashSize is the size of every hash in the ledger: SHA-256.
	HashSize = sha256.Size
)

// Entry is one ledger entry. Its leaf bytes (what the Merkle tree hashes)
// are the RFC 8785 canonical JSON produced by [Entry.Marshal]:
//
//	{"digest":"<b64>","index":n,"kind":"…","prev":"<b64>","subject":"…","time":"<RFC 3339>","v":1}
type Entry struct {
	// V is the format version; it must be EntryVersion.
	V int
	// Index is the entry's position in its log, at most MaxEntryIndex.
	Index uint64
	// Time is written in UTC, with sub-second digits as time.RFC3339Nano
	// writes them (trailing zeros trimmed). Only years 0001–9999 fit.
	Time time.Time
	// Kind and Subject must be valid UTF-8.
	Kind, Subject string
	// Digest is the SHA-256 of the record the entry stands for.
	Digest []byte
	// Prev is the previous entry's leaf hash; 32 zero bytes at index 0.
	Prev []byte
}

// Validate reports why e cannot be marshalled, or nil.
func (e Entry) Validate() error {
	_, err := e.encodedLen()
	return err
}

// encodedLen validates e and returns the exact length of its encoding.
func (e Entry) encodedLen() (int, error) {
	switch {
	case e.V != EntryVersion:
		return 0, fmt.Errorf("%w: unsupported version %d", ErrInvalidEntry, e.V)
	case e.Index > MaxEntryIndex:
		return 0, fmt.Errorf("%w: index %d exceeds 2^53-1", ErrInvalidEntry, e.Index)
	case e.Time.IsZero():
		return 0, fmt.Errorf("%w: missing time", ErrInvalidEntry)
	case e.Time.UTC().Year() < 1 || e.Time.UTC().Year() > 9999:
		return 0, fmt.Errorf("%w: time outside years 0001-9999", ErrInvalidEntry)
	case !ValidKind(e.Kind):
		// What the service writes, and all an audit tallies and prints:
		// a kind of any text would let a log of look-alikes ("receipt"
		// and a zero-width space) or terminal escapes pass for another.
		return 0, fmt.Errorf("%w: kind is not lower-case segments joined by dots, at most %d bytes", ErrInvalidEntry, MaxKindSize)
	case !utf8.ValidString(e.Subject):
		return 0, fmt.Errorf("%w: subject is not valid UTF-8", ErrInvalidEntry)
	case len(e.Digest) != HashSize:
		return 0, fmt.Errorf("%w: digest is %d bytes, want %d", ErrInvalidEntry, len(e.Digest), HashSize)
	case len(e.Prev) != HashSize:
		return 0, fmt.Errorf("%w: prev is %d bytes, want %d", ErrInvalidEntry, len(e.Prev), HashSize)
	case e.Index == 0 && !bytes.Equal(e.Prev, zeroHash[:]):
		return 0, fmt.Errorf("%w: prev of entry 0 must be 32 zero bytes", ErrInvalidEntry)
	}
	const fixed = len(`{"digest":"","index":,"kind":,"prev":"","subject":,"time":"","v":1}`)
	var num [20]byte
	var ts [len(time.RFC3339Nano) + 8]byte
	n := fixed + 2*base64.StdEncoding.EncodedLen(HashSize) +
		len(strconv.AppendUint(num[:0], e.Index, 10)) +
		jcsStringLen(e.Kind) + jcsStringLen(e.Subject) +
		len(e.Time.UTC().AppendFormat(ts[:0], time.RFC3339Nano))
	if n > MaxEntrySize {
		return 0, fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidEntry, n, MaxEntrySize)
	}
	return n, nil
}

var zeroHash [HashSize]byte

// Marshal returns e's leaf bytes: its RFC 8785 canonical JSON, or an error
// wrapping ErrInvalidEntry when e is invalid (see [Entry.Validate]).
//
// It is a dedicated encoder (one allocation, no reflection) because the
// server calls it for every append.
func (e Entry) Marshal() ([]byte, error) {
	n, err := e.encodedLen()
	if err != nil {
		return nil, err
	}
	return e.appendTo(make([]byte, 0, n)), nil
}

// AppendMarshal is Marshal appending to dst.
func (e Entry) AppendMarshal(dst []byte) ([]byte, error) {
	if _, err := e.encodedLen(); err != nil {
		return dst, err
	}
	return e.appendTo(dst), nil
}

// appendTo writes the members in RFC 8785 order (UTF-16 code unit order of
// the names, here plain ASCII order): digest, index, kind, prev, subject,
// time, v.
//
// SPEC: RFC 8785 §3.2.3 (member order), §3.2.2.2 (strings), §3.2.2.3
// (numbers: an integer below 2^53 is written in plain decimal).
func (e Entry) appendTo(dst []byte) []byte {
	dst = append(dst, `{"digest":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, e.Digest)
	dst = append(dst, `","index":`...)
	dst = strconv.AppendUint(dst, e.Index, 10)
	dst = append(dst, `,"kind":`...)
	dst = appendJCSString(dst, e.Kind)
	dst = append(dst, `,"prev":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, e.Prev)
	dst = append(dst, `","subject":`...)
	dst = appendJCSString(dst, e.Subject)
	dst = append(dst, `,"time":"`...)
	dst = e.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, `","v":1}`...)
}

// entryJSON mirrors the members; pointers tell a missing member from a zero.
type entryJSON struct {
	V       *int    `json:"v"`
	Index   *uint64 `json:"index"`
	Time    *string `json:"time"`
	Kind    *string `json:"kind"`
	Subject *string `json:"subject"`
	Digest  *string `json:"digest"`
	Prev    *string `json:"prev"`
}

// ParseEntry parses leaf bytes into an Entry. It accepts only the exact
// bytes [Entry.Marshal] produces for the entry it parses to: unknown,
// missing or duplicated members, whitespace, escapes that RFC 8785 does not
// use, non-canonical base64 or time, and anything over MaxEntrySize are all
// rejected with an error wrapping ErrInvalidEntry.
func ParseEntry(leaf []byte) (Entry, error) {
	if len(leaf) > MaxEntrySize {
		return Entry{}, fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidEntry, len(leaf), MaxEntrySize)
	}
	var j entryJSON
	dec := json.NewDecoder(bytes.NewReader(leaf))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	if dec.InputOffset() != int64(len(leaf)) {
		return Entry{}, fmt.Errorf("%w: trailing data", ErrInvalidEntry)
	}
	for _, m := range []struct {
		name    string
		missing bool
	}{
		{"digest", j.Digest == nil}, {"index", j.Index == nil}, {"kind", j.Kind == nil}, {"prev", j.Prev == nil},
		{"subject", j.Subject == nil}, {"time", j.Time == nil}, {"v", j.V == nil},
	} {
		if m.missing {
			return Entry{}, fmt.Errorf("%w: missing member %q", ErrInvalidEntry, m.name)
		}
	}
	if *j.V != EntryVersion {
		return Entry{}, fmt.Errorf("%w: unsupported version %d", ErrInvalidEntry, *j.V)
	}
	t, err := time.Parse(time.RFC3339Nano, *j.Time)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: time: %v", ErrInvalidEntry, err)
	}
	digest, err := base64.StdEncoding.Strict().DecodeString(*j.Digest)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: digest: %v", ErrInvalidEntry, err)
	}
	prev, err := base64.StdEncoding.Strict().DecodeString(*j.Prev)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: prev: %v", ErrInvalidEntry, err)
	}
	e := Entry{V: *j.V, Index: *j.Index, Time: t.UTC(), Kind: *j.Kind, Subject: *j.Subject, Digest: digest, Prev: prev}
	canonical, err := e.Marshal()
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(canonical, leaf) {
		return Entry{}, fmt.Errorf("%w: not in RFC 8785 canonical form", ErrInvalidEntry)
	}
	return e, nil
}

// LeafHash returns the RFC 6962 leaf hash of leaf: SHA-256(0x00 ‖ leaf).
//
// SPEC: RFC 6962 §2.1
func LeafHash(leaf []byte) []byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(leaf)
	return h.Sum(make([]byte, 0, HashSize))
}

// ValidKind reports whether kind is an entry kind: at most MaxKindSize
// bytes of ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$ ("decision",
// "auth.token_issued").
func ValidKind(kind string) bool {
	if len(kind) == 0 || len(kind) > MaxKindSize {
		return false
	}
	atStart := true // of a segment
	for i := 0; i < len(kind); i++ {
		c := kind[i]
		switch {
		case atStart:
			if c < 'a' || c > 'z' {
				return false
			}
			atStart = false
		case c == '.':
			atStart = true
		case (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_':
			return false
		}
	}
	return !atStart
}
