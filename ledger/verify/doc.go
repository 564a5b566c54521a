// Package verify is what an external auditor needs to check an AgentSigna
// ledger without trusting the service: the entry format (RFC 8785 canonical
// JSON, RFC 6962 leaf hashes), signed checkpoints (c2sp.org/signed-note,
// c2sp.org/tlog-checkpoint), inclusion and consistency proofs (RFC 6962,
// c2sp.org/tlog-proof), and tile paths, entry bundles and tile-built proofs
// (c2sp.org/tlog-tiles).
//
// It owns the byte formats: the server calls [Entry.Marshal] and [LeafHash]
// to write the log, so what the server writes and what an auditor checks are
// the same code. It depends only on the standard library,
// golang.org/x/mod/sumdb/note and the transparency-dev merkle and formats
// modules: no server code, no store, no HTTP framework.
//
// It must never trust a tree root that is not bound to a verified signature:
// a [Checkpoint] can only be obtained from [VerifyCheckpoint], and every proof
// function takes a *Checkpoint, never a bare root hash. It also rejects what
// the public libraries let through: an index at or beyond the tree size, and
// a "consistency proof" from the empty tree (see [VerifyConsistency]).
package verify

import "errors"

// Errors returned by this package wrap one of these sentinels; test them
// with errors.Is. The message after the sentinel says what was wrong.
var (
	// ErrInvalidEntry: leaf bytes that are not a canonical ledger entry, or
	// an Entry that cannot be marshalled.
	ErrInvalidEntry = errors.New("invalid ledger entry")
	// ErrInvalidKey: a note verifier key that does not parse.
	ErrInvalidKey = errors.New("invalid log verifier key")
	// ErrInvalidCheckpoint: a checkpoint that is malformed, not signed by
	// the given key, or not obtained from VerifyCheckpoint.
	ErrInvalidCheckpoint = errors.New("invalid checkpoint")
	// ErrInvalidProof: a malformed proof, or one that does not verify.
	ErrInvalidProof = errors.New("invalid proof")
	// ErrInvalidTilePath: a path that is not a canonical tlog-tiles path.
	ErrInvalidTilePath = errors.New("invalid tile path")
	// ErrInvalidBundle: a malformed entry bundle.
	ErrInvalidBundle = errors.New("invalid entry bundle")
	// ErrTileFetch: a tile needed for a proof could not be fetched or has
	// the wrong size.
	ErrTileFetch = errors.New("tile fetch")
)
