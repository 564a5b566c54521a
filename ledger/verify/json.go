package verify

import (
	"bytes"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// InclusionProofJSON is the body of GET /v1/ledger/proofs/inclusion. Byte
// fields are standard base64 in JSON. The server marshals this type with
// encoding/json (Hashes must be non-nil, so an empty proof is "[]").
type InclusionProofJSON struct {
	Index    uint64 `json:"index"`
	TreeSize uint64 `json:"tree_size"`
	// LeafHash is the hash the server claims is at Index; optional.
	LeafHash []byte   `json:"leaf_hash,omitempty"`
	Hashes   [][]byte `json:"hashes"`
	// Checkpoint is the signed note of size TreeSize.
	Checkpoint string `json:"checkpoint"`
}

// ConsistencyProofJSON is the body of GET /v1/ledger/proofs/consistency.
type ConsistencyProofJSON struct {
	First  uint64   `json:"first"`
	Second uint64   `json:"second"`
	Hashes [][]byte `json:"hashes"`
	// Checkpoint is the signed note of size Second.
	Checkpoint string `json:"checkpoint"`
}

// ParseInclusionJSON decodes an InclusionProofJSON strictly: a member name
// other than a field's exact name (case included), a duplicate, a missing
// member (leaf_hash is optional), a null, trailing data and hashes that are
// not 32 bytes are rejected (ErrInvalidProof).
func ParseInclusionJSON(b []byte) (*InclusionProofJSON, error) {
	var p InclusionProofJSON
	if err := decodeStrict(b, &p, "index", "tree_size", "hashes", "checkpoint"); err != nil {
		return nil, err
	}
	if p.LeafHash != nil && len(p.LeafHash) != HashSize {
		return nil, fmt.Errorf("%w: leaf_hash is %d bytes, want %d", ErrInvalidProof, len(p.LeafHash), HashSize)
	}
	if err := checkHashes(p.Hashes); err != nil {
		return nil, err
	}
	return &p, nil
}

// ParseConsistencyJSON decodes a ConsistencyProofJSON strictly, like
// ParseInclusionJSON.
func ParseConsistencyJSON(b []byte) (*ConsistencyProofJSON, error) {
	var p ConsistencyProofJSON
	if err := decodeStrict(b, &p, "first", "second", "hashes", "checkpoint"); err != nil {
		return nil, err
	}
	if err := checkHashes(p.Hashes); err != nil {
		return nil, err
	}
	return &p, nil
}

// Verify checks the proof for the entry whose leaf hash is leafHash (which
// the caller computed itself, e.g. with LeafHash; a leaf_hash in the JSON
// must equal it): the checkpoint against verifierKey, its size against
// tree_size, and the inclusion proof. It returns the verified checkpoint.
func (p *InclusionProofJSON) Verify(verifierKey string, leafHash []byte) (*Checkpoint, error) {
	if p.LeafHash != nil && !bytes.Equal(p.LeafHash, leafHash) {
		return nil, fmt.Errorf("%w: the proof is for another leaf hash than the entry's", ErrInvalidProof)
	}
	cp, err := VerifyCheckpoint([]byte(p.Checkpoint), verifierKey)
	if err != nil {
		return nil, err
	}
	if cp.size != p.TreeSize {
		return nil, fmt.Errorf("%w: tree_size %d but the checkpoint is of size %d", ErrInvalidProof, p.TreeSize, cp.size)
	}
	if err := VerifyInclusion(cp, p.Index, leafHash, p.Hashes); err != nil {
		return nil, err
	}
	return cp, nil
}

// Verify checks the proof against older, a checkpoint the caller verified
// earlier (its size must be First): the new checkpoint against verifierKey,
// its size against Second, and the consistency proof. It returns the newer,
// verified checkpoint.
func (p *ConsistencyProofJSON) Verify(verifierKey string, older *Checkpoint) (*Checkpoint, error) {
	if err := older.check(); err != nil {
		return nil, err
	}
	if older.size != p.First {
		return nil, fmt.Errorf("%w: proof starts at size %d but the older checkpoint is of size %d", ErrInvalidProof, p.First, older.size)
	}
	newer, err := VerifyCheckpoint([]byte(p.Checkpoint), verifierKey)
	if err != nil {
		return nil, err
	}
	if newer.size != p.Second {
		return nil, fmt.Errorf("%w: second %d but the checkpoint is of size %d", ErrInvalidProof, p.Second, newer.size)
	}
	if err := VerifyConsistency(older, newer, p.Hashes); err != nil {
		return nil, err
	}
	return newer, nil
}

// decodeStrict decodes one JSON object into v, a pointer to a struct. Its
// member names must be v's exactly (case included, after unescaping), each at
// most once, and nothing may follow the object (nor may it hold invalid
// UTF-8): bytes that every JSON reader takes for the same values. Each
// required member must be present, and no member may be null (the server
// writes none; encoding/json would read it as the zero value).
func decodeStrict(b []byte, v any, required ...string) error {
	if len(b) > MaxProofSize {
		return fmt.Errorf("%w: %d bytes exceeds %d", ErrInvalidProof, len(b), MaxProofSize)
	}
	// encoding/json (v1) matches member names case-insensitively and under
	// Unicode folding, keeps the last of duplicates and reads null as zero.
	// v2 refuses duplicate names, including in a map, and trailing data.
	if !bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("{")) {
		return fmt.Errorf("%w: not a JSON object", ErrInvalidProof)
	}
	var members map[string]jsontext.Value
	if err := jsonv2.Unmarshal(b, &members); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidProof, err)
	}
	if err := jsonv2.Unmarshal(b, v, jsonv2.RejectUnknownMembers(true)); err != nil {
		if serr, ok := errors.AsType[*jsonv2.SemanticError](err); ok && serr.Err == jsonv2.ErrUnknownName {
			return fmt.Errorf("%w: unknown member %q", ErrInvalidProof, serr.JSONPointer.LastToken())
		}
		return fmt.Errorf("%w: %v", ErrInvalidProof, err)
	}
	for _, name := range required {
		if _, ok := members[name]; !ok {
			return fmt.Errorf("%w: missing member %q", ErrInvalidProof, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(members)) {
		if members[name].Kind() == 'n' {
			return fmt.Errorf("%w: member %q is null", ErrInvalidProof, name)
		}
	}
	return nil
}
