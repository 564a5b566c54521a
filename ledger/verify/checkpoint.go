package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// MaxCheckpointSize bounds a signed checkpoint note. c2sp.org/signed-note
// asks verifiers to accept at least 16 signatures of up to ~5 kB each.
const MaxCheckpointSize = 128 << 10

// Checkpoint is a tree head whose signature has been verified. Its fields
// are unexported and it can only be obtained from [VerifyCheckpoint], so a
// root that is not bound to a verified signature cannot reach the proof
// functions; a zero Checkpoint is rejected by all of them.
type Checkpoint struct {
	origin   string
	size     uint64
	hash     []byte
	note     []byte
	verified bool
}

// Origin is the log's identity: the checkpoint's first line, equal to the
// name of the key that signed it.
func (c *Checkpoint) Origin() string { return c.origin }

// Size is the number of entries in the tree.
func (c *Checkpoint) Size() uint64 { return c.size }

// Hash returns a copy of the RFC 6962 root hash of the tree.
func (c *Checkpoint) Hash() []byte { return bytes.Clone(c.hash) }

// Note returns a copy of the signed note the checkpoint was verified from.
func (c *Checkpoint) Note() []byte { return bytes.Clone(c.note) }

// String is "<origin>@<size>:<base64 root>", for messages.
func (c *Checkpoint) String() string {
	return fmt.Sprintf("%s@%d:%s", c.origin, c.size, base64.StdEncoding.EncodeToString(c.hash))
}

func (c *Checkpoint) check() error {
	if c == nil || !c.verified {
		return fmt.Errorf("%w: not obtained from VerifyCheckpoint", ErrInvalidCheckpoint)
	}
	return nil
}

// VerifyCheckpoint verifies signedNote, a c2sp.org/tlog-checkpoint signed
// note, against verifierKey, a note verifier key "<name>+<hex key id>+<base64
// key>", and returns the checkpoint it carries.
//
// It rejects: a key that does not parse, or is not a usable Ed25519 key
// (NewVerifier: ErrInvalidKey); a note that is
// malformed, carries no signature by this key, more than one, or one
// that does not verify; a checkpoint whose origin line differs from the key
// name; a tree size that is not canonical decimal; a root that is not the
// canonical base64 of 32 bytes; a size-0 checkpoint whose root is not the
// RFC 6962 empty-tree hash; an empty extension line (all ErrInvalidCheckpoint).
// Signatures by other keys (witness cosignatures, a rotated key) are ignored,
// as c2sp.org/signed-note requires.
//
// Extension lines after the root (c2sp.org/tlog-checkpoint allows them) are
// accepted and ignored: they are signed but carry nothing this package uses.
// AgentSigna's own checkpoints have none.
//
// SPEC: c2sp.org/signed-note, c2sp.org/tlog-checkpoint
func VerifyCheckpoint(signedNote []byte, verifierKey string) (*Checkpoint, error) {
	v, err := NewVerifier(verifierKey)
	if err != nil {
		return nil, err
	}
	if len(signedNote) > MaxCheckpointSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidCheckpoint, len(signedNote), MaxCheckpointSize)
	}
	if pinnedSignatures(signedNote, v) > 1 {
		// note.Open would verify the first and skip the others, where
		// c2sp.org/signed-note says every signature by a known key MUST
		// verify; a signer writes one.
		return nil, fmt.Errorf("%w: more than one signature by key %s+%08x", ErrInvalidCheckpoint, v.Name(), v.KeyHash())
	}
	n, err := note.Open(signedNote, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return nil, fmt.Errorf("%w: no signature by key %s+%08x", ErrInvalidCheckpoint, v.Name(), v.KeyHash())
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("%w: signature by key %s+%08x does not verify", ErrInvalidCheckpoint, v.Name(), v.KeyHash())
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidCheckpoint, err)
	}
	// note.Open succeeded with a one-key list, so that key signed the text;
	// checked again because everything below trusts it.
	signed := false
	for _, s := range n.Sigs {
		signed = signed || (s.Name == v.Name() && s.Hash == v.KeyHash())
	}
	if !signed {
		return nil, fmt.Errorf("%w: no signature by key %s+%08x", ErrInvalidCheckpoint, v.Name(), v.KeyHash())
	}

	var cp log.Checkpoint
	rest, err := cp.Unmarshal([]byte(n.Text))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCheckpoint, err)
	}
	lines := bytes.SplitN([]byte(n.Text), []byte("\n"), 4)
	switch {
	case cp.Origin != v.Name():
		return nil, fmt.Errorf("%w: origin %q is not the key name %q", ErrInvalidCheckpoint, cp.Origin, v.Name())
	case string(lines[1]) != strconv.FormatUint(cp.Size, 10):
		return nil, fmt.Errorf("%w: tree size %q is not canonical decimal", ErrInvalidCheckpoint, lines[1])
	case len(cp.Hash) != HashSize:
		return nil, fmt.Errorf("%w: root hash is %d bytes, want %d", ErrInvalidCheckpoint, len(cp.Hash), HashSize)
	case string(lines[2]) != base64.StdEncoding.EncodeToString(cp.Hash):
		return nil, fmt.Errorf("%w: root hash is not canonical base64", ErrInvalidCheckpoint)
	case cp.Size == 0 && !bytes.Equal(cp.Hash, emptyRoot[:]):
		return nil, fmt.Errorf("%w: size 0 with a root other than SHA-256(\"\")", ErrInvalidCheckpoint)
	case bytes.Contains(rest, []byte("\n\n")) || bytes.HasPrefix(rest, []byte("\n")):
		return nil, fmt.Errorf("%w: empty extension line", ErrInvalidCheckpoint)
	}
	return &Checkpoint{
		origin:   cp.Origin,
		size:     cp.Size,
		hash:     cp.Hash,
		note:     bytes.Clone(signedNote),
		verified: true,
	}, nil
}

// emptyRoot is MTH({}) = SHA-256() (RFC 6962 §2.1).
var emptyRoot = sha256.Sum256(nil)

// pinnedSignatures counts the signature lines of signedNote ("— <name>
// <base64 of key hash and signature>", after the last blank line) that
// name v's key: its name and key hash.
func pinnedSignatures(signedNote []byte, v note.Verifier) int {
	i := bytes.LastIndex(signedNote, []byte("\n\n"))
	if i < 0 {
		return 0
	}
	n := 0
	for _, line := range bytes.Split(signedNote[i+2:], []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("\u2014 "))
		if !ok {
			continue
		}
		name, sig64, ok := bytes.Cut(rest, []byte(" "))
		if !ok || string(name) != v.Name() {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(string(sig64))
		if err == nil && len(sig) >= 4 && binary.BigEndian.Uint32(sig) == v.KeyHash() {
			n++
		}
	}
	return n
}
