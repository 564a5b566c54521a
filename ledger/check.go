package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// Report is what Check found.
type Report struct {
	Origin      string
	Size        uint64 // the newest checkpoint's size
	Checkpoints int
	// Problem is the first mismatch, nil when the log is intact.
	Problem *Problem
	// KeysProblem is the mismatch CheckOptions.CheckKeys found, "" when
	// none (or when it did not run: it runs only on an intact log), and
	// RowsProblem CheckOptions.CheckRows's.
	KeysProblem string
	RowsProblem string
}

// CheckOptions adds checks of what a log's entries record to Check.
type CheckOptions struct {
	// CheckRecord, if set, sees each entry, with its record, once the
	// entry's bytes, leaf hash, chain link and record digest check out; an
	// error is that entry's problem, reported once the checkpoint of its
	// batch checks out (a problem before it, or with it, comes first).
	CheckRecord func(e verify.Entry, record []byte) error
	// CheckKeys, if set, runs in the same read transaction once every
	// entry and checkpoint checked out (or on a log without entries),
	// with the log's store's keys: e.g. that every receipt key stored was
	// introduced by an entry. An error wrapping ErrKeysMismatch is
	// Report.KeysProblem; any other fails the check.
	CheckKeys func(ctx context.Context, keys store.KeyTx) error
	// CheckRows, if set, runs after CheckKeys, likewise, with the
	// organization's transaction: e.g. that every agent key stored was
	// introduced by an entry. An error wrapping ErrRowsMismatch is
	// Report.RowsProblem. Only an organization's log has rows.
	CheckRows func(ctx context.Context, tx store.TenantTx) error
}

// ErrKeysMismatch: the store's keys are not what the log says of them
// (CheckOptions.CheckKeys).
var ErrKeysMismatch = errors.New("the store's keys do not match the log")

// ErrRowsMismatch: the organization's rows are not what its log says of
// them (CheckOptions.CheckRows).
var ErrRowsMismatch = errors.New("the store's rows do not match the log")

// Problem names the first entry that does not match.
type Problem struct {
	Index  uint64
	Reason string
}

func (p *Problem) Error() string { return fmt.Sprintf("entry %d: %s", p.Index, p.Reason) }

// checkChunk is the most entries Check reads at a time; fewer when they
// reach chunkBytes first.
const checkChunk = 4096

// Check re-reads a whole log from the store and reports the first entry
// whose bytes, leaf hash, chain link, record digest or tree does not match
// the signed checkpoints, or whose batch's checkpoint is gone (as far as
// entry times show where batches ended). verifierKey pins the log key;
// empty trusts the key stored with the log (an operator's self-check, not
// an audit).
func (l *Ledger) Check(ctx context.Context, lg Log, verifierKey string) (Report, error) {
	return l.CheckWith(ctx, lg, verifierKey, CheckOptions{})
}

// CheckWith is Check with the checks of opts.
func (l *Ledger) CheckWith(ctx context.Context, lg Log, verifierKey string, opts CheckOptions) (Report, error) {
	var rep Report
	read := lg.read
	var tx store.TenantTx // with CheckRows
	if opts.CheckRows != nil {
		if lg.readTenant == nil {
			return rep, fmt.Errorf("%w: only an organization's log has rows to check", store.ErrInvalid)
		}
		read = func(ctx context.Context, fn func(context.Context, store.LogTx, store.KeyTx) error) error {
			return lg.readTenant(ctx, func(ctx context.Context, t store.TenantTx) error {
				tx = t
				return fn(ctx, t.Log(), t.Keys())
			})
		}
	}
	err := read(ctx, func(ctx context.Context, lt store.LogTx, kt store.KeyTx) error {
		sizes, err := lt.CheckpointSizes(ctx)
		if err != nil {
			return err
		}
		rep.Checkpoints = len(sizes)
		if len(sizes) == 0 {
			// Any entry, not only one at index 0.
			es, err := lt.EntriesWithin(ctx, 0, math.MaxUint64, 1)
			if err != nil {
				return err
			}
			if len(es) > 0 {
				rep.Problem = &Problem{es[0].Index, "entries exist but no checkpoint signs them"}
				return nil
			}
			// An empty log still answers for the store's keys and rows:
			// what it should hold for a log without entries (e.g. none).
			if found, err := checkStore(ctx, opts, kt, tx, &rep); found || err != nil || verifierKey != "" {
				return err
			}
			// Without a key either, ErrNoLogKey: the log was never begun.
			_, err = l.cfg.Keys.LogVerifier(ctx, kt, lg.scope)
			return err
		}
		if verifierKey == "" {
			if verifierKey, err = l.cfg.Keys.LogVerifier(ctx, kt, lg.scope); err != nil {
				return err
			}
		}
		rep.Size = sizes[len(sizes)-1]
		newest, err := lt.Checkpoint(ctx, rep.Size)
		if err != nil {
			return err
		}
		origin, _, _ := bytes.Cut(newest.Note, []byte("\n"))
		rep.Origin = string(origin)
		rep.Problem, err = l.checkEntries(ctx, lt, verifierKey, sizes, &rep, opts.CheckRecord)
		if err != nil || rep.Problem != nil {
			return err
		}
		_, err = checkStore(ctx, opts, kt, tx, &rep)
		return err
	})
	return rep, err
}

// checkStore runs opts.CheckKeys and opts.CheckRows, those set: a
// mismatch is rep.KeysProblem or rep.RowsProblem (found true), another
// error Check's.
func checkStore(ctx context.Context, opts CheckOptions, kt store.KeyTx, tx store.TenantTx, rep *Report) (found bool, err error) {
	if opts.CheckKeys != nil {
		err = opts.CheckKeys(ctx, kt)
		if errors.Is(err, ErrKeysMismatch) {
			rep.KeysProblem, found, err = err.Error(), true, nil
		}
		if err != nil {
			return false, err
		}
	}
	if opts.CheckRows != nil {
		err = opts.CheckRows(ctx, tx)
		if errors.Is(err, ErrRowsMismatch) {
			rep.RowsProblem, found, err = err.Error(), true, nil
		}
	}
	return found, err
}

func (l *Ledger) checkEntries(ctx context.Context, lt store.LogTx, vkey string, sizes []uint64, rep *Report, checkRecord func(verify.Entry, []byte) error) (*Problem, error) {
	rng := rangeFactory.NewEmptyRange(0)
	computed := map[compact.NodeID][]byte{}
	visit := func(id compact.NodeID, hash []byte) {
		if id.Level > 0 && id.Level%8 == 0 {
			computed[id] = hash
		}
	}
	prev := make([]byte, 32)
	var prevTime time.Time
	// recordProblem is checkRecord's first error, held until the
	// checkpoint of its batch checks out: a forged entry is reported as
	// such, not as what its forged record says.
	var recordProblem *Problem
	next := 0 // index into sizes of the next checkpoint to meet
	batchStart := uint64(0)
	for from, to := uint64(0), uint64(0); from < rep.Size; from = to {
		to = min(from+checkChunk, rep.Size)
		es, err := lt.EntriesWithin(ctx, from, to, chunkBytes)
		if err != nil {
			return nil, err
		}
		if n := len(es); n > 0 && es[n-1].Index+1 < to {
			// Stopped at its byte bound, or entries are missing after it:
			// the next read goes on after its last entry, and finds out.
			to = es[n-1].Index + 1
		}
		for k, i := 0, from; i < to; i++ {
			if k >= len(es) || es[k].Index != i {
				return &Problem{i, "entry is missing"}, nil
			}
			e := es[k]
			k++
			parsed, err := verify.ParseEntry(e.Entry)
			switch {
			case err != nil:
				return &Problem{i, "not a canonical ledger entry: " + err.Error()}, nil
			case parsed.Index != i:
				return &Problem{i, fmt.Sprintf("entry stored at %d says it is entry %d", i, parsed.Index)}, nil
			case !bytes.Equal(rfc6962.DefaultHasher.HashLeaf(e.Entry), e.LeafHash):
				return &Problem{i, "stored leaf hash does not match the entry"}, nil
			case !bytes.Equal(parsed.Prev, prev):
				return &Problem{i, "chain link broken: prev is not the leaf hash of the entry before"}, nil
			}
			if d := sha256.Sum256(e.Record); !bytes.Equal(d[:], parsed.Digest) {
				return &Problem{i, "stored record does not match the entry's digest"}, nil
			}
			if checkRecord != nil && recordProblem == nil {
				if err := checkRecord(parsed, e.Record); err != nil {
					recordProblem = &Problem{i, err.Error()}
				}
			}
			// A batch gives all its entries one time and stores one
			// checkpoint, at its end: where the time changes, a batch
			// ended, and its checkpoint must be there. (Batches sharing
			// a time leave no such trace.)
			if batchStart != i && !parsed.Time.Equal(prevTime) {
				return &Problem{batchStart, fmt.Sprintf("no signed checkpoint of size %d, where a batch ended (entries %d and %d have different times)", i, i-1, i)}, nil
			}
			prevTime = parsed.Time
			if err := rng.Append(e.LeafHash, visit); err != nil {
				return nil, err
			}
			prev = e.LeafHash
			if size := i + 1; next < len(sizes) && sizes[next] == size {
				if p, err := checkCheckpoint(ctx, lt, vkey, rng, size, batchStart, prev); p != nil || err != nil {
					return p, err
				}
				if recordProblem != nil {
					return recordProblem, nil
				}
				next++
				batchStart = size
			}
		}
	}
	if next != len(sizes) {
		return &Problem{batchStart, fmt.Sprintf("checkpoint of size %d has no matching entries", sizes[next])}, nil
	}
	// Anywhere past it, not only next to it: a row planted past a gap
	// would otherwise pass, and block every later append.
	if extra, err := lt.EntriesWithin(ctx, rep.Size, math.MaxUint64, 1); err != nil || len(extra) > 0 {
		if err != nil {
			return nil, err
		}
		return &Problem{extra[0].Index, "entries beyond the newest signed checkpoint"}, nil
	}
	return checkNodes(ctx, lt, computed)
}

func checkCheckpoint(ctx context.Context, lt store.LogTx, vkey string, rng *compact.Range, size, batchStart uint64, last []byte) (*Problem, error) {
	stored, err := lt.Checkpoint(ctx, size)
	if err != nil {
		return nil, err
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, err
	}
	cp, err := verify.VerifyCheckpoint(stored.Note, vkey)
	switch {
	case err != nil:
		return &Problem{batchStart, fmt.Sprintf("checkpoint of size %d does not verify: %v", size, err)}, nil
	case cp.Size() != size || !bytes.Equal(cp.Hash(), stored.Root):
		return &Problem{batchStart, fmt.Sprintf("stored checkpoint of size %d disagrees with its signed note", size)}, nil
	case !bytes.Equal(root, cp.Hash()):
		return &Problem{batchStart, fmt.Sprintf("tree root at size %d does not match its signed checkpoint", size)}, nil
	case !bytes.Equal(stored.LastLeafHash, last):
		return &Problem{size - 1, fmt.Sprintf("checkpoint of size %d records another last leaf", size)}, nil
	}
	hashes := rng.Hashes()
	if len(hashes) != len(stored.RangeHashes) {
		return &Problem{batchStart, fmt.Sprintf("stored compact range at size %d is wrong", size)}, nil
	}
	for i := range hashes {
		if !bytes.Equal(hashes[i], stored.RangeHashes[i]) {
			return &Problem{batchStart, fmt.Sprintf("stored compact range at size %d is wrong", size)}, nil
		}
	}
	return nil, nil
}

// checkNodes compares the stored tile rows above level 0 with the ones the
// entries produce: a wrong one would make served proofs fail, and one
// beyond them would make the append that reaches it fail, and every
// append after it.
func checkNodes(ctx context.Context, lt store.LogTx, computed map[compact.NodeID][]byte) (*Problem, error) {
	perLevel := map[uint]uint64{}
	for id, want := range computed {
		got, err := lt.Nodes(ctx, id.Level, id.Index, id.Index+1)
		if err != nil {
			return nil, err
		}
		if len(got) != 1 || !bytes.Equal(got[0], want) {
			first, _ := id.Coverage()
			return &Problem{first, fmt.Sprintf("stored tree node (level %d, index %d) does not match the entries", id.Level, id.Index)}, nil
		}
		perLevel[id.Level]++
	}
	// The entries make nodes 0 … n-1 at each level they reach; the store
	// keeps levels 8, 16, … 56 (its schema refuses others).
	for level := uint(8); level < 64; level += 8 {
		idx, found, err := firstNodeFrom(ctx, lt, level, perLevel[level])
		if err != nil || !found {
			if err != nil {
				return nil, err
			}
			continue
		}
		first := uint64(math.MaxUint64)
		if idx < 1<<(64-level) {
			first, _ = compact.NewNodeID(level, idx).Coverage()
		}
		return &Problem{first, fmt.Sprintf("stored tree node (level %d, index %d) is beyond the tree the entries make: the append that reaches it would fail", level, idx)}, nil
	}
	return nil, nil
}

// firstNodeFrom is the index of the first node stored at level from index
// from on; false when there is none. Only a tampered store has one: the
// search is one read when there is none, about 63 when there is.
func firstNodeFrom(ctx context.Context, lt store.LogTx, level uint, from uint64) (uint64, bool, error) {
	lo, hi := from, uint64(math.MaxInt64) // the store's indexes are int64
	if got, err := lt.Nodes(ctx, level, lo, hi); err != nil || len(got) == 0 {
		return 0, false, err
	}
	for hi-lo > 1 { // a node is in [lo, hi)
		mid := lo + (hi-lo)/2
		got, err := lt.Nodes(ctx, level, lo, mid)
		if err != nil {
			return 0, false, err
		}
		if len(got) > 0 {
			hi = mid
		} else {
			lo = mid
		}
	}
	return lo, true, nil
}
