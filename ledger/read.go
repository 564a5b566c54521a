package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// LatestCheckpoint returns the log's newest signed checkpoint; store.ErrNotFound
// for a log with no entries.
func (l *Ledger) LatestCheckpoint(ctx context.Context, lg Log) (Checkpoint, error) {
	var cp store.LedgerCheckpoint
	err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, _ store.KeyTx) error {
		var err error
		cp, err = lt.LatestCheckpoint(ctx)
		return err
	})
	if err != nil {
		return Checkpoint{}, err
	}
	return Checkpoint{Size: cp.Size, Root: cp.Root, Note: cp.Note}, nil
}

// Entry returns one stored entry with its record.
func (l *Ledger) Entry(ctx context.Context, lg Log, index uint64) (store.LedgerEntry, error) {
	if index == math.MaxUint64 {
		// No tree holds it (sizes are uint64), and index+1 would wrap.
		return store.LedgerEntry{}, fmt.Errorf("%w: ledger entry %d", store.ErrNotFound, index)
	}
	var out store.LedgerEntry
	err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, _ store.KeyTx) error {
		es, err := lt.Entries(ctx, index, index+1)
		if err != nil {
			return err
		}
		if len(es) == 0 {
			return fmt.Errorf("%w: ledger entry %d", store.ErrNotFound, index)
		}
		out = es[0]
		return nil
	})
	return out, err
}

// VerifierKey returns the log's public note verifier key.
func (l *Ledger) VerifierKey(ctx context.Context, lg Log) (string, error) {
	var vkey string
	err := lg.read(ctx, func(ctx context.Context, _ store.LogTx, kt store.KeyTx) error {
		var err error
		vkey, err = l.cfg.Keys.LogVerifier(ctx, kt, lg.scope)
		return err
	})
	if errors.Is(err, signing.ErrNoLogKey) {
		return "", fmt.Errorf("%w: %v", store.ErrNotFound, err)
	}
	return vkey, err
}

// InitLog creates the log's key if it has none: called when an
// organization is created, so its verifier key is published before its
// first entry.
func (l *Ledger) InitLog(ctx context.Context, lg Log) (string, error) {
	var vkey string
	err := lg.in(ctx, func(ctx context.Context, _ store.LogTx, kt store.KeyTx) error {
		k, err := l.cfg.Keys.LogKey(ctx, kt, lg.scope)
		vkey = k.Verifier
		return err
	})
	return vkey, err
}

// InclusionProof proves entry index is in the tree of treeSize, which must
// be a signed checkpoint's size (0 means the newest).
type InclusionProof struct {
	Index      uint64
	LeafHash   []byte
	Hashes     [][]byte
	Checkpoint Checkpoint
}

// InclusionProof builds the proof from stored hashes.
func (l *Ledger) InclusionProof(ctx context.Context, lg Log, index, treeSize uint64) (InclusionProof, error) {
	var out InclusionProof
	err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, _ store.KeyTx) error {
		var err error
		out, err = l.InclusionProofIn(ctx, lg, lt, index, treeSize)
		return err
	})
	return out, err
}

// InclusionProofIn is InclusionProof in the caller's transaction on lg's
// store, lt: an organization's read transaction will do (the log is only
// read, and a snapshot that holds a checkpoint holds its tree). lt must be
// lg's: lg keys the tiles it reads in the ledger's shared cache.
func (l *Ledger) InclusionProofIn(ctx context.Context, lg Log, lt store.LogTx, index, treeSize uint64) (InclusionProof, error) {
	cp, err := checkpointAt(ctx, lt, treeSize)
	if err != nil {
		return InclusionProof{}, err
	}
	if index >= cp.Size {
		return InclusionProof{}, fmt.Errorf("%w: index %d is not below tree size %d", store.ErrInvalid, index, cp.Size)
	}
	// The leaf hash is in the level-0 tile, usually cached: one round
	// trip fewer than reading the entry.
	row, err := l.tileRow(ctx, lg, lt, 0, index/256, cp.Size)
	if err != nil {
		return InclusionProof{}, err
	}
	leaf := row[index%256]
	nodes, err := proof.Inclusion(index, cp.Size)
	if err != nil {
		return InclusionProof{}, fmt.Errorf("%w: %v", store.ErrInvalid, err)
	}
	hashes, err := l.proofHashes(ctx, lg, lt, nodes, cp.Size)
	if err != nil {
		return InclusionProof{}, err
	}
	return InclusionProof{Index: index, LeafHash: leaf, Hashes: hashes,
		Checkpoint: Checkpoint{Size: cp.Size, Root: cp.Root, Note: cp.Note}}, nil
}

// EntryInclusionProof is an entry's exact leaf bytes with its inclusion
// proof, read from one snapshot of the log.
type EntryInclusionProof struct {
	InclusionProof
	// Entry is the exact leaf bytes at Index: LeafHash is their RFC 6962
	// leaf hash.
	Entry []byte
}

// EntryInclusionProof proves entry index in the tree of treeSize, a signed
// checkpoint's size (0: the newest), as InclusionProof does, and returns
// the entry's leaf bytes with the proof, both read in one transaction.
// It is what a c2sp.org/tlog-proof bundle carrying the entry in its extra
// line is made of, for a verifier that holds only the record (a receipt)
// and must find its entry to check that the log has it.
func (l *Ledger) EntryInclusionProof(ctx context.Context, lg Log, index, treeSize uint64) (EntryInclusionProof, error) {
	var out EntryInclusionProof
	err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, _ store.KeyTx) error {
		p, err := l.InclusionProofIn(ctx, lg, lt, index, treeSize)
		if err != nil {
			return err
		}
		// index is below a checkpoint's size: index+1 does not wrap.
		es, err := lt.Entries(ctx, index, index+1)
		if err != nil {
			return err
		}
		if len(es) != 1 {
			return fmt.Errorf("ledger: entry %d is missing below tree size %d", index, p.Checkpoint.Size)
		}
		if !bytes.Equal(rfc6962.DefaultHasher.HashLeaf(es[0].Entry), p.LeafHash) {
			// A stored row altered: serve no proof that cannot verify.
			return fmt.Errorf("ledger: entry %d does not hash to its stored leaf hash", index)
		}
		out = EntryInclusionProof{InclusionProof: p, Entry: es[0].Entry}
		return nil
	})
	return out, err
}

// ProvenEntry reads entry index of lg with its record, once it has checked
// what an auditor would (ledger/verify): the newest stored checkpoint is a
// note the log key signed, the entry's leaf is included in its tree, and
// the stored record is the one the entry digests. It is how a reader
// trusts a row that names an entry (an activation, an agent key) without
// trusting the store: rows can be written behind the service's back,
// entries cannot be forged under its signature. ErrNotProven (wrapped,
// saying why) when the log has no such entry, or the stored one is not in
// the signed tree or does not digest its record; ErrUntrustedHead when
// the newest checkpoint is not the log key's (then no entry is proven);
// other errors are the store's.
func (l *Ledger) ProvenEntry(ctx context.Context, lg Log, index uint64) (verify.Entry, []byte, error) {
	var (
		vkey   string
		p      InclusionProof
		stored store.LedgerEntry
	)
	err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, kt store.KeyTx) error {
		var err error
		if vkey, err = l.cfg.Keys.LogVerifier(ctx, kt, lg.scope); err != nil {
			return err
		}
		if p, err = l.InclusionProofIn(ctx, lg, lt, index, 0); err != nil {
			return err
		}
		// index is below a checkpoint's size: index+1 does not wrap.
		es, err := lt.Entries(ctx, index, index+1)
		if err != nil {
			return err
		}
		if len(es) != 1 {
			return fmt.Errorf("%w: entry %d is missing below tree size %d", store.ErrNotFound, index, p.Checkpoint.Size)
		}
		stored = es[0]
		return nil
	})
	switch {
	case errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrNoCheckpoint) || errors.Is(err, signing.ErrNoLogKey):
		return verify.Entry{}, nil, fmt.Errorf("%w: entry %d: %v", ErrNotProven, index, err)
	case err != nil:
		return verify.Entry{}, nil, err
	}
	cp, err := verify.VerifyCheckpoint(p.Checkpoint.Note, vkey)
	if err != nil {
		// The log's head, not the row naming an entry, is wrong: an
		// outage for every reader until an operator has looked.
		return verify.Entry{}, nil, fmt.Errorf("%w: %v", ErrUntrustedHead, err)
	}
	if err := verify.VerifyInclusion(cp, index, verify.LeafHash(stored.Entry), p.Hashes); err != nil {
		return verify.Entry{}, nil, fmt.Errorf("%w: entry %d is not in the signed tree: %v", ErrNotProven, index, err)
	}
	entry, err := verify.ParseEntry(stored.Entry)
	if err != nil || entry.Index != index {
		return verify.Entry{}, nil, fmt.Errorf("%w: entry %d does not parse as itself", ErrNotProven, index)
	}
	if d := sha256.Sum256(stored.Record); !bytes.Equal(d[:], entry.Digest) {
		return verify.Entry{}, nil, fmt.Errorf("%w: entry %d's stored record is not the one it digests", ErrNotProven, index)
	}
	return entry, stored.Record, nil
}

// ProvenRecord is the record of ProvenEntry's entry, once the entry is of
// one of kinds and about subject: what a row naming it must be, else
// ErrNotProven too.
func (l *Ledger) ProvenRecord(ctx context.Context, lg Log, index uint64, subject string, kinds ...string) ([]byte, error) {
	entry, record, err := l.ProvenEntry(ctx, lg, index)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(kinds, entry.Kind) || entry.Subject != subject {
		return nil, fmt.Errorf("%w: entry %d is %s of %q", ErrNotProven, index, entry.Kind, entry.Subject)
	}
	return record, nil
}

// InclusionProofByLeafHash finds the entry with leafHash and proves it.
func (l *Ledger) InclusionProofByLeafHash(ctx context.Context, lg Log, leafHash []byte, treeSize uint64) (InclusionProof, error) {
	var out InclusionProof
	err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, _ store.KeyTx) error {
		e, err := lt.EntryByLeafHash(ctx, leafHash)
		if err != nil {
			return err
		}
		out, err = l.InclusionProofIn(ctx, lg, lt, e.Index, treeSize)
		return err
	})
	return out, err
}

// ConsistencyProof proves the tree of size first is a prefix of the tree
// of size second; both must be signed checkpoint sizes.
type ConsistencyProof struct {
	First, Second uint64
	Hashes        [][]byte
	Checkpoint    Checkpoint // of size Second
}

// ConsistencyProof builds the proof from stored hashes.
func (l *Ledger) ConsistencyProof(ctx context.Context, lg Log, first, second uint64) (ConsistencyProof, error) {
	var out ConsistencyProof
	err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, _ store.KeyTx) error {
		if first == 0 || first > second {
			return fmt.Errorf("%w: consistency needs 0 < first <= second", store.ErrInvalid)
		}
		if _, err := checkpointAt(ctx, lt, first); err != nil {
			return err
		}
		cp, err := checkpointAt(ctx, lt, second)
		if err != nil {
			return err
		}
		nodes, err := proof.Consistency(first, second)
		if err != nil {
			return fmt.Errorf("%w: %v", store.ErrInvalid, err)
		}
		hashes, err := l.proofHashes(ctx, lg, lt, nodes, second)
		if err != nil {
			return err
		}
		out = ConsistencyProof{First: first, Second: second, Hashes: hashes,
			Checkpoint: Checkpoint{Size: cp.Size, Root: cp.Root, Note: cp.Note}}
		return nil
	})
	return out, err
}

func checkpointAt(ctx context.Context, lt store.LogTx, size uint64) (store.LedgerCheckpoint, error) {
	if size == 0 {
		return lt.LatestCheckpoint(ctx)
	}
	cp, err := lt.Checkpoint(ctx, size)
	if errors.Is(err, store.ErrNotFound) {
		return cp, fmt.Errorf("%w (%d)", ErrNoCheckpoint, size)
	}
	return cp, err
}

// proofHashes reads the hash of every node of a proof from stored tiles and
// folds the ephemeral node, as transparency-dev/merkle prescribes.
func (l *Ledger) proofHashes(ctx context.Context, lg Log, lt store.LogTx, nodes proof.Nodes, size uint64) ([][]byte, error) {
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, err := l.nodeHash(ctx, lg, lt, id, size)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	return nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
}

// nodeHash returns the hash of a complete node: read from the tile that
// holds its level's base row (level 8·⌊level/8⌋) and hashed up the rest.
func (l *Ledger) nodeHash(ctx context.Context, lg Log, lt store.LogTx, id compact.NodeID, size uint64) ([]byte, error) {
	tileLevel := id.Level / 8
	up := id.Level % 8
	first := id.Index << up // first base-row index under the node
	count := uint64(1) << up
	tileIndex := first / 256
	row, err := l.tileRow(ctx, lg, lt, tileLevel, tileIndex, size)
	if err != nil {
		return nil, err
	}
	off := first - tileIndex*256
	if off+count > uint64(len(row)) {
		return nil, fmt.Errorf("ledger: node (%d, %d) is not complete in the stored tree", id.Level, id.Index)
	}
	level := make([][]byte, count)
	copy(level, row[off:off+count])
	for len(level) > 1 {
		next := make([][]byte, len(level)/2)
		for i := range next {
			next[i] = rfc6962.DefaultHasher.HashChildren(level[2*i], level[2*i+1])
		}
		level = next
	}
	return level[0], nil
}

// tileRow returns the stored hashes of tile (tileLevel, tileIndex) that are
// complete in a tree of size. Rows only ever grow (append-only), so a cached
// row — full or partial — serves any request for a prefix of it; the
// unfinished right-edge tile is read again only when it has grown.
func (l *Ledger) tileRow(ctx context.Context, lg Log, lt store.LogTx, tileLevel uint, tileIndex uint64, size uint64) ([][]byte, error) {
	// The tile covers leaves from tileIndex·256^(tileLevel+1): where that
	// overflows, no tree has the tile, and tileIndex*256 below would wrap
	// onto an existing one.
	if tileIndex > math.MaxUint64>>(8*(tileLevel+1)) {
		return nil, fmt.Errorf("%w: tile %d/%d beyond any tree", store.ErrNotFound, tileLevel, tileIndex)
	}
	// Hashes at level 8·tileLevel that are complete in a tree of size.
	available := size >> (8 * tileLevel)
	from := tileIndex * 256
	if from >= available {
		return nil, fmt.Errorf("%w: tile %d/%d beyond tree size %d", store.ErrNotFound, tileLevel, tileIndex, size)
	}
	to := min(from+256, available)
	need := int(to - from)
	if row, ok := l.tiles.get(lg.key, tileLevel, tileIndex); ok && len(row) >= need {
		return row[:need:need], nil
	}
	var row [][]byte
	var err error
	if tileLevel == 0 {
		row, err = lt.LeafHashes(ctx, from, to)
	} else {
		row, err = lt.Nodes(ctx, 8*tileLevel, from, to)
	}
	if err != nil {
		return nil, err
	}
	if len(row) != need {
		return nil, fmt.Errorf("ledger: tile %d/%d: %d stored hashes, want %d", tileLevel, tileIndex, len(row), need)
	}
	l.tiles.put(lg.key, tileLevel, tileIndex, row)
	return row, nil
}
