package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// checkHead checks the newest stored checkpoint, head (size 0: none),
// before a batch extends it: what the service signs next must extend what
// it signed before, whatever rows were written behind its back. Anyone
// who can write the store (the organization's database role, the SQLite
// file) could otherwise plant an entry and a checkpoint row, or alter the
// compact range, and have the service sign a checkpoint over them: a
// forged entry with valid proofs, or a fork.
//
// The head this process signed or checked last (Ledger.heads) is trusted
// as it is; another stored head of its size, or an older one, is refused
// (rows altered or deleted). Any other head, as found after a restart or
// another replica's batch, must be a checkpoint the log key signed
// (vkey), whose root is the one its compact range gives, whose last leaf
// hash is that of the stored entry at size-1, proven in its tree, and
// which is consistent with the head this process trusts, if any.
func (l *Ledger) checkHead(ctx context.Context, lg Log, lt store.LogTx, vkey string, head store.LedgerCheckpoint, rng *compact.Range) error {
	l.mu.Lock()
	trusted, known := l.heads[lg.key]
	l.mu.Unlock()
	if known {
		switch {
		case sameHead(head, trusted):
			return nil
		case head.Size < trusted.Size:
			return fmt.Errorf("%w: the newest stored checkpoint is of size %d, this process signed or checked one of size %d", ErrUntrustedHead, head.Size, trusted.Size)
		case head.Size == trusted.Size:
			return fmt.Errorf("%w: the stored checkpoint of size %d is not the one this process signed or checked", ErrUntrustedHead, head.Size)
		}
	}
	if head.Size == 0 {
		return nil // a new log: nothing to extend
	}
	root, err := rng.GetRootHash(nil)
	if err != nil || !bytes.Equal(root, head.Root) {
		return fmt.Errorf("%w: the stored compact range at size %d does not give its root", ErrUntrustedHead, head.Size)
	}
	cp, err := verify.VerifyCheckpoint(head.Note, vkey)
	if err != nil {
		return fmt.Errorf("%w: the checkpoint of size %d: %v", ErrUntrustedHead, head.Size, err)
	}
	if cp.Size() != head.Size || !bytes.Equal(cp.Hash(), head.Root) {
		return fmt.Errorf("%w: the stored checkpoint of size %d disagrees with its signed note", ErrUntrustedHead, head.Size)
	}
	last := head.Size - 1
	es, err := lt.EntriesWithin(ctx, last, head.Size, math.MaxInt)
	if err != nil {
		return err
	}
	if len(es) != 1 || es[0].Index != last || !bytes.Equal(rfc6962.DefaultHasher.HashLeaf(es[0].Entry), head.LastLeafHash) {
		return fmt.Errorf("%w: the last leaf hash of the checkpoint of size %d is not that of entry %d", ErrUntrustedHead, head.Size, last)
	}
	p, err := l.InclusionProofIn(ctx, lg, lt, last, head.Size)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrNoCheckpoint) {
			return fmt.Errorf("%w: entry %d: %v", ErrUntrustedHead, last, err)
		}
		return err
	}
	if !bytes.Equal(p.LeafHash, head.LastLeafHash) ||
		proof.VerifyInclusion(rfc6962.DefaultHasher, last, head.Size, head.LastLeafHash, p.Hashes, head.Root) != nil {
		return fmt.Errorf("%w: entry %d is not in the tree of the checkpoint of size %d", ErrUntrustedHead, last, head.Size)
	}
	if known {
		// Grown past what this process signed (another process's
		// batches): it must extend it. Another tree of a larger size,
		// signed by a process that never saw this one's (rows deleted
		// back behind its back), would be a fork.
		nodes, err := proof.Consistency(trusted.Size, head.Size)
		if err != nil {
			return err
		}
		hashes, err := l.proofHashes(ctx, lg, lt, nodes, head.Size)
		if err != nil {
			return fmt.Errorf("%w: the consistency of size %d with size %d: %v", ErrUntrustedHead, trusted.Size, head.Size, err)
		}
		if proof.VerifyConsistency(rfc6962.DefaultHasher, trusted.Size, head.Size, hashes, trusted.Root, head.Root) != nil {
			return fmt.Errorf("%w: the checkpoint of size %d does not extend the one of size %d this process trusts", ErrUntrustedHead, head.Size, trusted.Size)
		}
	}
	// Checked: trusted from now on as if signed here, so that replicas
	// taking turns check each other's heads once each, and a later head
	// must extend this one.
	l.trust(lg, head)
	return nil
}

// trust records head, a checkpoint this process committed, as the log's
// newest it knows.
func (l *Ledger) trust(lg Log, head store.LedgerCheckpoint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if head.Size >= l.heads[lg.key].Size {
		l.heads[lg.key] = head
	}
}

// sameHead reports whether a and b are the same stored checkpoint, every
// column a batch builds on included.
func sameHead(a, b store.LedgerCheckpoint) bool {
	return a.Size == b.Size && bytes.Equal(a.Root, b.Root) && bytes.Equal(a.LastLeafHash, b.LastLeafHash) &&
		bytes.Equal(a.Note, b.Note) && slices.EqualFunc(a.RangeHashes, b.RangeHashes, bytes.Equal)
}
