package verify

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// MaxProofHashes bounds any proof: an RFC 6962 inclusion proof in a tree of
// at most 2^64 leaves has at most 64 hashes, a consistency proof at most 2·64.
const MaxProofHashes = 128

// VerifyInclusion checks that proof proves the leaf with hash leafHash at
// position index in the tree of cp, a checkpoint from VerifyCheckpoint.
//
// On top of transparency-dev/merkle's proof.VerifyInclusion it rejects a nil
// or unverified checkpoint, index ≥ size, and hashes that are not 32 bytes.
//
// SPEC: RFC 6962 §2.1.1
func VerifyInclusion(cp *Checkpoint, index uint64, leafHash []byte, hashes [][]byte) error {
	if err := cp.check(); err != nil {
		return err
	}
	if index >= cp.size {
		return fmt.Errorf("%w: index %d is not below tree size %d", ErrInvalidProof, index, cp.size)
	}
	if len(leafHash) != HashSize {
		return fmt.Errorf("%w: leaf hash is %d bytes, want %d", ErrInvalidProof, len(leafHash), HashSize)
	}
	if err := checkHashes(hashes); err != nil {
		return err
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, cp.size, leafHash, hashes, cp.hash); err != nil {
		return fmt.Errorf("%w: entry %d is not in %s: %v", ErrInvalidProof, index, cp, describe(err))
	}
	return nil
}

// VerifyConsistency checks that proof proves the tree of older is a prefix
// of the tree of newer; both must come from VerifyCheckpoint.
//
// On top of transparency-dev/merkle's proof.VerifyConsistency it rejects:
//   - different origins: the checkpoints are of different logs;
//   - older.Size > newer.Size;
//   - older.Size == 0 with newer.Size > 0. merkle v0.0.2 accepts that pair
//     with an empty proof without looking at either root, so "consistent"
//     would be said of any two checkpoints whatever their content; every
//     tree trivially extends the empty one, so a caller asking for it has
//     mistaken an empty or missing older checkpoint for a checked one;
//   - equal sizes with different roots (a fork: the log signed two trees of
//     one size), or with a non-empty proof;
//   - hashes that are not 32 bytes.
//
// SPEC: RFC 6962 §2.1.2
func VerifyConsistency(older, newer *Checkpoint, hashes [][]byte) error {
	if err := older.check(); err != nil {
		return err
	}
	if err := newer.check(); err != nil {
		return err
	}
	switch {
	case older.origin != newer.origin:
		return fmt.Errorf("%w: checkpoints of different logs %q and %q", ErrInvalidProof, older.origin, newer.origin)
	case older.size > newer.size:
		return fmt.Errorf("%w: tree shrank from %d to %d", ErrInvalidProof, older.size, newer.size)
	case older.size == 0 && newer.size > 0:
		return fmt.Errorf("%w: no consistency proof exists from the empty tree", ErrInvalidProof)
	case older.size == newer.size && !bytes.Equal(older.hash, newer.hash):
		return fmt.Errorf("%w: two different roots for size %d: %s and %s", ErrInvalidProof, older.size,
			base64.StdEncoding.EncodeToString(older.hash), base64.StdEncoding.EncodeToString(newer.hash))
	}
	if err := checkHashes(hashes); err != nil {
		return err
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, older.size, newer.size, hashes, older.hash, newer.hash); err != nil {
		return fmt.Errorf("%w: %s is not a prefix of %s: %v", ErrInvalidProof, older, newer, describe(err))
	}
	return nil
}

func checkHashes(hashes [][]byte) error {
	if len(hashes) > MaxProofHashes {
		return fmt.Errorf("%w: %d hashes exceeds %d", ErrInvalidProof, len(hashes), MaxProofHashes)
	}
	for i, h := range hashes {
		if len(h) != HashSize {
			return fmt.Errorf("%w: hash %d is %d bytes, want %d", ErrInvalidProof, i, len(h), HashSize)
		}
	}
	return nil
}

// describe renders merkle's errors on one line, with roots in base64.
func describe(err error) string {
	var mismatch proof.RootMismatchError
	if errors.As(err, &mismatch) {
		return "proof yields root " + base64.StdEncoding.EncodeToString(mismatch.CalculatedRoot)
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}
