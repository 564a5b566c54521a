package verify

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// SPEC: c2sp.org/tlog-proof — the first line of a v1 proof.
const tlogProofHeader = "c2sp.org/tlog-proof@v1"

// MaxProofSize bounds a c2sp.org/tlog-proof file.
const MaxProofSize = MaxCheckpointSize + 64<<10

// Proof is a c2sp.org/tlog-proof@v1 bundle: an inclusion proof for the entry
// at Index, with the signed checkpoint it proves against. Nothing in it is
// trusted until [VerifyProof] (or VerifyCheckpoint then VerifyInclusion)
// has checked it.
type Proof struct {
	// Extra is optional opaque, unauthenticated application data; nil or
	// empty means no "extra" line.
	Extra []byte
	// Index is the entry's position in the log.
	Index uint64
	// Hashes is the RFC 6962 inclusion proof, leaf's sibling first.
	Hashes [][]byte
	// Checkpoint is the signed checkpoint note, verbatim.
	Checkpoint []byte
}

// Marshal encodes p.
//
// SPEC: c2sp.org/tlog-proof — header line, optional "extra <b64>" line,
// "index <n>" line, one base64 hash per line, an empty line, then the
// checkpoint verbatim.
func (p Proof) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(tlogProofHeader + "\n")
	if len(p.Extra) > 0 {
		b.WriteString("extra " + base64.StdEncoding.EncodeToString(p.Extra) + "\n")
	}
	b.WriteString("index " + strconv.FormatUint(p.Index, 10) + "\n")
	for _, h := range p.Hashes {
		b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	b.WriteByte('\n')
	b.Write(p.Checkpoint)
	return b.Bytes()
}

// ParseProof parses a c2sp.org/tlog-proof@v1 bundle strictly: the exact
// header line; an optional non-empty "extra" line in canonical base64; an
// "index" line in canonical decimal; canonical base64 lines of 32 bytes
// each (at most MaxProofHashes); an empty line; then a non-empty checkpoint
// note (not verified here). Errors wrap ErrInvalidProof.
func ParseProof(raw []byte) (*Proof, error) {
	if len(raw) > MaxProofSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidProof, len(raw), MaxProofSize)
	}
	rest := raw
	next := func() (string, bool) {
		line, after, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return "", false
		}
		rest = after
		return string(line), true
	}
	line, ok := next()
	if !ok || line != tlogProofHeader {
		return nil, fmt.Errorf("%w: first line is not %q", ErrInvalidProof, tlogProofHeader)
	}
	p := &Proof{}
	if line, ok = next(); !ok {
		return nil, fmt.Errorf("%w: truncated after header", ErrInvalidProof)
	}
	if b64, isExtra := strings.CutPrefix(line, "extra "); isExtra {
		extra, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil || len(extra) == 0 || base64.StdEncoding.EncodeToString(extra) != b64 {
			return nil, fmt.Errorf("%w: extra line is not non-empty canonical base64", ErrInvalidProof)
		}
		p.Extra = extra
		if line, ok = next(); !ok {
			return nil, fmt.Errorf("%w: truncated after extra line", ErrInvalidProof)
		}
	}
	num, isIndex := strings.CutPrefix(line, "index ")
	index, err := strconv.ParseUint(num, 10, 64)
	if !isIndex || err != nil || strconv.FormatUint(index, 10) != num {
		return nil, fmt.Errorf("%w: expected an \"index <decimal>\" line", ErrInvalidProof)
	}
	p.Index = index
	for {
		if line, ok = next(); !ok {
			return nil, fmt.Errorf("%w: no empty line before the checkpoint", ErrInvalidProof)
		}
		if line == "" {
			break
		}
		h, err := base64.StdEncoding.Strict().DecodeString(line)
		if err != nil || len(h) != HashSize || base64.StdEncoding.EncodeToString(h) != line {
			return nil, fmt.Errorf("%w: hash line %d is not the base64 of 32 bytes", ErrInvalidProof, len(p.Hashes))
		}
		if len(p.Hashes) == MaxProofHashes {
			return nil, fmt.Errorf("%w: more than %d hashes", ErrInvalidProof, MaxProofHashes)
		}
		p.Hashes = append(p.Hashes, h)
	}
	if len(rest) == 0 {
		return nil, fmt.Errorf("%w: no checkpoint", ErrInvalidProof)
	}
	p.Checkpoint = bytes.Clone(rest)
	return p, nil
}

// VerifyProof parses raw as a c2sp.org/tlog-proof@v1 bundle, verifies its
// checkpoint against verifierKey and its inclusion proof for leafHash, and
// returns the checkpoint and the entry's index. The extra data, if any, is
// not authenticated and is not returned; use ParseProof to read it.
func VerifyProof(raw []byte, verifierKey string, leafHash []byte) (*Checkpoint, uint64, error) {
	p, err := ParseProof(raw)
	if err != nil {
		return nil, 0, err
	}
	cp, err := p.Verify(verifierKey, leafHash)
	if err != nil {
		return nil, 0, err
	}
	return cp, p.Index, nil
}

// Verify verifies a parsed proof: its checkpoint against verifierKey and
// its inclusion proof for leafHash at p.Index. p.Extra stays unauthenticated.
func (p *Proof) Verify(verifierKey string, leafHash []byte) (*Checkpoint, error) {
	cp, err := VerifyCheckpoint(p.Checkpoint, verifierKey)
	if err != nil {
		return nil, err
	}
	if err := VerifyInclusion(cp, p.Index, leafHash, p.Hashes); err != nil {
		return nil, err
	}
	return cp, nil
}
