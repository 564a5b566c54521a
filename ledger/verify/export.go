package verify

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"io"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// ErrInvalidExport: an export archive is malformed or does not verify.
var ErrInvalidExport = errors.New("invalid ledger export")

// ExportFormat names the archive layout below.
const ExportFormat = "agentsigna-export/v1"

// Export archive (GET /v1/ledger/export, a tar.gz: one gzip stream), these
// members in this order and nothing after them:
//
//	manifest.json  {"format", "origin", "from", "to", "range": [base64…]}
//	checkpoint     the signed note of size "to"
//	log-key        the log's note verifier key (informational: pin your own)
//	jwks.json      the organization's receipt keys, current and retired
//	entries.jsonl  one line per entry from..to-1:
//	               {"index": n, "entry": "<base64 leaf>", "record": "<base64>"}
//
// "range" is the compact range of [0, from): the roots of the perfect
// subtrees left of the first exported entry, so a partial export still
// recomputes the signed root. A full export has from = 0 and no range.
//
// manifest.json and each line of entries.jsonl are one JSON object whose
// member names are exactly these (case included), each at most once, with
// nothing after it: bytes every JSON reader takes for the same values.
type ExportManifest struct {
	Format string   `json:"format"`
	Origin string   `json:"origin"`
	From   uint64   `json:"from"`
	To     uint64   `json:"to"`
	Range  [][]byte `json:"range"`
}

// ExportLine is one line of entries.jsonl.
type ExportLine struct {
	Index  uint64 `json:"index"`
	Entry  []byte `json:"entry"`
	Record []byte `json:"record"`
}

const (
	// maxExportMember bounds manifest.json, checkpoint, log-key and
	// jwks.json.
	maxExportMember = 1 << 20
	// maxExportLine bounds a line of entries.jsonl: an entry (at most
	// MaxEntrySize) and its record, in base64.
	maxExportLine = 4 << 20
)

// ExportOptions tune VerifyExport.
type ExportOptions struct {
	// CheckRecord, if set, is called for every entry after its digest
	// matched: e.g. to verify receipts against the export's JWKS.
	CheckRecord func(e Entry, record, jwks []byte) error
	// MaxBytes bounds the decompressed archive; default 4 GiB.
	MaxBytes int64
}

// ExportReport is what a verified export holds.
type ExportReport struct {
	Checkpoint *Checkpoint
	From, To   uint64
	Kinds      map[string]uint64 // entries per kind
	JWKS       []byte
	// FirstLinkChecked says whether entry From's link to the entry before
	// it was checked: always from entry 0 (prev is zeros), and from an
	// odd index, where the range's last hash is that entry's own leaf
	// hash. From an even index the range holds it only inside a larger
	// subtree's hash; the checkpoint's root still binds entry From, link
	// and all, but only an export reaching back further shows the link.
	FirstLinkChecked bool
}

// ExportError names the first entry that failed.
type ExportError struct {
	Index  uint64
	Reason string
}

func (e *ExportError) Error() string { return fmt.Sprintf("entry %d: %s", e.Index, e.Reason) }
func (e *ExportError) Unwrap() error { return ErrInvalidExport }

// VerifyExport checks an export offline against a pinned log key: the
// archive (one gzip stream whose trailer matches, holding the five members
// in order and nothing after them), the checkpoint's signature, every entry
// (canonical form, index, hash chain — into the first entry too where the
// range shows the entry before it, ExportReport.FirstLinkChecked — record
// digest, CheckRecord), and that
// the entries (with the range) give the checkpoint's root.
func VerifyExport(r io.Reader, verifierKey string, opts ExportOptions) (*ExportReport, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 4 << 30
	}
	// gzip.Reader reads an io.ByteReader no further than its stream's end,
	// so br tells whether anything follows it.
	br := bufio.NewReader(r)
	gz, err := gzip.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: not gzip: %v", ErrInvalidExport, err)
	}
	gz.Multistream(false)
	lr := &io.LimitedReader{R: gz, N: opts.MaxBytes}
	tr := tar.NewReader(lr)
	// member reads the next member's header: it must be name, a regular
	// file, in a plain USTAR header as the service writes it. Extended
	// headers (PAX records, GNU long names) name a member otherwise for
	// other tar readers than Go's: a PAX GNU.sparse.name, or a PAX path
	// beside a GNU long name, made GNU tar and Python unpack a member this
	// check never read as entries.jsonl (found by review).
	member := func(name string) (*tar.Header, error) {
		h, err := tr.Next()
		switch {
		case err != nil:
			return nil, fmt.Errorf("%w: missing %s: %v", ErrInvalidExport, name, err)
		case h.Name != name:
			return nil, fmt.Errorf("%w: expected %s, found %q", ErrInvalidExport, name, h.Name)
		case h.Format != tar.FormatUSTAR || len(h.PAXRecords) != 0:
			return nil, fmt.Errorf("%w: %s has extended tar headers (%v), which other tar readers read otherwise", ErrInvalidExport, name, h.Format)
		case h.Typeflag != tar.TypeReg:
			return nil, fmt.Errorf("%w: %s is not a regular file (tar type %q)", ErrInvalidExport, name, h.Typeflag)
		}
		return h, nil
	}
	small := func(name string) ([]byte, error) {
		h, err := member(name)
		if err != nil {
			return nil, err
		}
		if h.Size > maxExportMember {
			return nil, fmt.Errorf("%w: %s is too large: %d bytes, more than %d", ErrInvalidExport, name, h.Size, maxExportMember)
		}
		return io.ReadAll(tr)
	}
	rawManifest, err := small("manifest.json")
	if err != nil {
		return nil, err
	}
	// encoding/json (v1) matches member names case-insensitively, keeps
	// the last of duplicates and, in a Decoder, ignores what follows.
	var m ExportManifest
	if err := jsonv2.Unmarshal(rawManifest, &m, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("%w: bad manifest: %v", ErrInvalidExport, err)
	}
	if m.Format != ExportFormat || m.From > m.To {
		return nil, fmt.Errorf("%w: bad manifest", ErrInvalidExport)
	}
	for i, h := range m.Range {
		// compact.Range counts the hashes, not their bytes: with no
		// entries after them, bytes moved from one to the next would
		// give the same root.
		if len(h) != HashSize {
			return nil, fmt.Errorf("%w: bad manifest: range hash %d is %d bytes, want %d", ErrInvalidExport, i, len(h), HashSize)
		}
	}
	note, err := small("checkpoint")
	if err != nil {
		return nil, err
	}
	cp, err := VerifyCheckpoint(note, verifierKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidExport, err)
	}
	if cp.Size() != m.To || cp.Origin() != m.Origin {
		return nil, fmt.Errorf("%w: the checkpoint is of size %d of %q, the manifest says %d of %q", ErrInvalidExport, cp.Size(), cp.Origin(), m.To, m.Origin)
	}
	logKey, err := small("log-key")
	if err != nil {
		return nil, err
	}
	if string(logKey) != verifierKey+"\n" {
		// The service ships the key its checkpoint verifies under; any
		// other member there is not its export.
		return nil, fmt.Errorf("%w: the log-key member is not the pinned log key", ErrInvalidExport)
	}
	jwks, err := small("jwks.json")
	if err != nil {
		return nil, err
	}
	if _, err := member("entries.jsonl"); err != nil {
		return nil, err
	}
	rep := &ExportReport{Checkpoint: cp, From: m.From, To: m.To, Kinds: map[string]uint64{}, JWKS: jwks}
	rng, err := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewRange(0, m.From, m.Range)
	if err != nil {
		return nil, fmt.Errorf("%w: range: %v", ErrInvalidExport, err)
	}
	sc := bufio.NewScanner(tr)
	sc.Buffer(make([]byte, 64<<10), maxExportLine)
	var prev []byte
	switch {
	case m.From == 0:
		prev = make([]byte, HashSize)
	case m.From%2 == 1:
		// The range's nodes are perfect subtrees, left to right; the
		// last spans the lowest set bit of From: one leaf, entry From-1.
		prev = m.Range[len(m.Range)-1]
	}
	rep.FirstLinkChecked = prev != nil && m.From < m.To
	next := m.From
	for sc.Scan() {
		if next >= m.To {
			return nil, &ExportError{next, "more entries than the checkpoint covers"}
		}
		var line ExportLine
		if err := jsonv2.Unmarshal(sc.Bytes(), &line, jsonv2.RejectUnknownMembers(true)); err != nil {
			return nil, &ExportError{next, "line: " + err.Error()}
		}
		if line.Index != next {
			return nil, &ExportError{next, "missing or out of order"}
		}
		e, err := ParseEntry(line.Entry)
		switch {
		case err != nil:
			return nil, &ExportError{next, err.Error()}
		case e.Index != next:
			return nil, &ExportError{next, fmt.Sprintf("entry says it is entry %d", e.Index)}
		case prev != nil && !bytes.Equal(e.Prev, prev):
			return nil, &ExportError{next, "chain link broken: prev is not the leaf hash of the entry before"}
		}
		if d := sha256.Sum256(line.Record); !bytes.Equal(d[:], e.Digest) {
			return nil, &ExportError{next, "record does not match the entry's digest"}
		}
		if opts.CheckRecord != nil {
			if err := opts.CheckRecord(e, line.Record, jwks); err != nil {
				return nil, &ExportError{next, "record: " + err.Error()}
			}
		}
		leafHash := LeafHash(line.Entry)
		if err := rng.Append(leafHash, nil); err != nil {
			return nil, err
		}
		prev = leafHash
		rep.Kinds[e.Kind]++
		next++
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		return nil, &ExportError{next, fmt.Sprintf("line longer than %d bytes", maxExportLine)}
	case err != nil:
		return nil, fmt.Errorf("%w: entries: %v", ErrInvalidExport, err)
	}
	if err := checkArchiveEnd(tr, lr, gz, br, opts.MaxBytes); err != nil {
		return nil, err
	}
	if next != m.To {
		return nil, &ExportError{next, fmt.Sprintf("export ends at %d, the checkpoint covers %d", next, m.To)}
	}
	root, err := rng.GetRootHash(nil)
	if m.To == 0 {
		root = emptyRoot[:] // compact.Range gives none for an empty tree
	}
	if err != nil || !bytes.Equal(root, cp.Hash()) {
		return nil, fmt.Errorf("%w: the entries do not give the checkpoint's root", ErrInvalidExport)
	}
	return rep, nil
}

// checkArchiveEnd checks that nothing follows entries.jsonl: no tar member,
// only zeros up to the gzip stream's end (the end-of-archive blocks may be
// padded to a record size), a gzip trailer that matches (gzip.Reader checks
// the CRC-32 and size when it reaches the stream's end), and no byte after
// the gzip stream. tar -xzf and Python's tarfile would read what follows:
// a second entries.jsonl replaces the verified one when extracted.
func checkArchiveEnd(tr *tar.Reader, lr *io.LimitedReader, gz *gzip.Reader, br *bufio.Reader, maxBytes int64) error {
	h, err := tr.Next()
	if err == nil {
		return fmt.Errorf("%w: member %q after entries.jsonl", ErrInvalidExport, h.Name)
	}
	if err != io.EOF {
		return fmt.Errorf("%w: after entries.jsonl: %v", ErrInvalidExport, err)
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := lr.Read(buf)
		for _, c := range buf[:n] {
			if c != 0 {
				return fmt.Errorf("%w: data after the tar archive's end", ErrInvalidExport)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: after entries.jsonl: %v", ErrInvalidExport, err)
		}
	}
	// lr also ends at maxBytes: only gz says whether its stream did.
	switch _, err := io.ReadFull(gz, buf[:1]); {
	case err == nil:
		return fmt.Errorf("%w: more than %d bytes decompressed", ErrInvalidExport, maxBytes)
	case err != io.EOF:
		return fmt.Errorf("%w: after entries.jsonl: %v", ErrInvalidExport, err)
	}
	switch _, err := br.ReadByte(); {
	case err == nil:
		return fmt.Errorf("%w: data after the gzip stream", ErrInvalidExport)
	case err != io.EOF:
		return fmt.Errorf("%w: %v", ErrInvalidExport, err)
	}
	return nil
}
