package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// commitTimeout bounds one batch transaction. It does not come from any
// caller's context: one caller giving up must not fail the others' batch.
const commitTimeout = 30 * time.Second

// committedTimeout bounds the read that tells whether a batch whose
// transaction failed committed after all (committed).
const committedTimeout = 5 * time.Second

var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

type request struct {
	ctx     context.Context
	entries []Entry // committed consecutively, in one batch
	check   checkAt // nil: none
	write   Write   // nil: entries only
	digests [][sha256.Size]byte
	res     []Appended
	err     error
	done    chan struct{}
	sent    time.Time // when append was called: queued from here
	// claimed is set once by whichever comes first: the writer taking the
	// request into a commit (it then answers it on done), or its caller
	// giving up before that (the writer then drops it unanswered).
	claimed atomic.Bool
}

// writer is one log's committer: a goroutine that takes whatever requests
// have queued (up to MaxBatch), commits them in one transaction, answers
// them, and repeats. While it commits, new requests queue for the next
// batch — the group commit.
type writer struct {
	log     Log
	reqs    chan *request
	stop    chan struct{}
	pending int // requests sent or about to be sent; guarded by Ledger.mu
}

// writerFor returns the log's writer, starting it if needed, and counts the
// caller as pending so an idle writer cannot exit under it.
func (l *Ledger) writerFor(lg Log) (*writer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	w, ok := l.writers[lg.key]
	if !ok {
		w = &writer{log: lg, reqs: make(chan *request, l.cfg.MaxBatch), stop: make(chan struct{})}
		l.writers[lg.key] = w
		l.wg.Add(1)
		go l.run(w)
	}
	w.pending++
	return w, nil
}

func (l *Ledger) release(w *writer, n int) {
	l.mu.Lock()
	w.pending -= n
	l.mu.Unlock()
}

func (l *Ledger) run(w *writer) {
	defer l.wg.Done()
	idle := time.NewTimer(l.cfg.IdleTimeout)
	defer idle.Stop()
	for {
		select {
		case r := <-w.reqs:
			batch := l.gather(w, r)
			l.release(w, len(batch))
			l.commit(w.log, batch)
			idle.Reset(l.cfg.IdleTimeout)
		case <-idle.C:
			l.mu.Lock()
			if w.pending == 0 {
				delete(l.writers, w.log.key)
				l.mu.Unlock()
				return
			}
			l.mu.Unlock()
			idle.Reset(l.cfg.IdleTimeout)
		case <-w.stop:
			// Answer every request already counted as pending, then stop.
			// A pending sender either delivers or (its context done)
			// releases itself, so this ends.
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case r := <-w.reqs:
					batch := l.gather(w, r)
					l.release(w, len(batch))
					l.commit(w.log, batch)
				case <-tick.C:
					l.mu.Lock()
					done := w.pending == 0
					l.mu.Unlock()
					if done {
						return
					}
				}
			}
		}
	}
}

// gather takes the first request and whatever else is queued, up to
// MaxBatch, lingering up to MaxWait for more when configured.
//
// A request's entries always go into the same batch, so a batch may exceed
// MaxBatch by one request's worth; once MaxBatch entries are in, it closes.
func (l *Ledger) gather(w *writer, first *request) []*request {
	batch := []*request{first}
	n := len(first.entries)
	for n < l.cfg.MaxBatch {
		select {
		case r := <-w.reqs:
			batch = append(batch, r)
			n += len(r.entries)
			continue
		default:
		}
		break
	}
	if l.cfg.MaxWait > 0 && n < l.cfg.MaxBatch {
		t := time.NewTimer(l.cfg.MaxWait)
		defer t.Stop()
	linger:
		for n < l.cfg.MaxBatch {
			select {
			case r := <-w.reqs:
				batch = append(batch, r)
				n += len(r.entries)
			case <-t.C:
				break linger
			}
		}
	}
	return batch
}

// commit writes one batch and answers every request in it.
func (l *Ledger) commit(lg Log, batch []*request) {
	live := batch[:0:0]
	for _, r := range batch {
		if !r.claimed.CompareAndSwap(false, true) {
			continue // its caller gave up before the writer took it
		}
		if r.ctx.Err() != nil {
			// Its caller is going: do not log what nobody will learn of.
			r.err = r.ctx.Err()
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	start := time.Now()
	for _, r := range live {
		l.queued.Observe(start.Sub(r.sent))
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	var err error
	var head store.LedgerCheckpoint // the batch's, once signed
	if lg.tenant != nil {
		err = lg.tenant(ctx, func(ctx context.Context, tx store.TenantTx) error {
			return l.appendBatch(ctx, lg, tx.Log(), tx.Keys(), tx, live, &head)
		})
	} else {
		err = lg.in(ctx, func(ctx context.Context, lt store.LogTx, kt store.KeyTx) error {
			return l.appendBatch(ctx, lg, lt, kt, nil, live, &head)
		})
	}
	if err != nil && head.Size > 0 && !errors.Is(err, store.ErrTxAborted) && l.committed(lg, head) {
		// The transaction failed after the batch signed its checkpoint,
		// yet the checkpoint is stored: the failure was the COMMIT's
		// answer, lost with its connection, or the timeout as the commit
		// went through. The entries are in the log, so their callers are
		// told so: told otherwise, they would append them again (found by
		// review: a token issued twice in the log, an agent registered
		// under two ids).
		l.cfg.Logger.Warn("ledger batch reported a failure, but it committed", slog.String("log", lg.scope.Origin),
			slog.Int("entries", len(live)), slog.Any("error", err))
		err = nil
	}
	// Before any request is answered: a caller that learns of its entry
	// finds its batch counted.
	l.committing.Since(start)
	if err != nil {
		l.cfg.Logger.Error("ledger batch failed", slog.String("log", lg.scope.Origin), slog.Int("entries", len(live)), slog.Any("error", err))
	} else if head.Size > 0 {
		// Committed: the next batch builds on it. (A batch whose every
		// request failed its check signed nothing.)
		l.trust(lg, head)
	}
	for _, r := range live {
		if err != nil {
			r.err = err
			r.res = nil
		}
		close(r.done)
	}
}

// committed says whether head, the checkpoint a batch signed before its
// transaction failed, is the one stored at its size: whether the batch
// committed after all. When the store cannot say, it did not, as far as
// the callers learn: the failure stands. (A transaction that ended under
// a write, ErrTxAborted, committed nothing: not asked.) It asks for a
// short while: the callers of the batch and those queued behind it wait.
func (l *Ledger) committed(lg Log, head store.LedgerCheckpoint) bool {
	ctx, cancel := context.WithTimeout(context.Background(), committedTimeout)
	defer cancel()
	var stored store.LedgerCheckpoint
	err := lg.read(ctx, func(ctx context.Context, lt store.LogTx, _ store.KeyTx) error {
		var err error
		stored, err = lt.Checkpoint(ctx, head.Size)
		return err
	})
	return err == nil && bytes.Equal(stored.Note, head.Note)
}

// appendBatch runs inside the batch transaction: lock the log, extend the
// tree from the newest checkpoint, sign, store, then run the requests'
// writes (tt is the organization's transaction; nil for the platform log).
// A write's failure is its request's error, not the batch's. A write may
// run twice (the second time after its first run was rolled back).
func (l *Ledger) appendBatch(ctx context.Context, lg Log, lt store.LogTx, kt store.KeyTx, tt store.TenantTx, batch []*request, head *store.LedgerCheckpoint) error {
	if err := lt.LockLog(ctx); err != nil {
		return err
	}
	stored, err := lt.LatestCheckpoint(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		stored = store.LedgerCheckpoint{LastLeafHash: make([]byte, 32)}
	case err != nil:
		return err
	}
	batch, err = l.runChecks(ctx, tt, batch, stored.Size)
	if err != nil || len(batch) == 0 {
		return err
	}
	cp, err := l.appendEntries(ctx, lg, lt, kt, batch, stored, head)
	if err != nil {
		return err
	}
	var writes []*request
	for _, r := range batch {
		for i := range r.res {
			r.res[i].Checkpoint = cp
		}
		if r.write != nil {
			writes = append(writes, r)
		}
	}
	if len(writes) == 0 {
		return nil
	}
	if tt == nil {
		return fmt.Errorf("%w: a write on a log without an organization store", store.ErrInvalid)
	}
	// All writes under one savepoint and pipelined first: a savepoint
	// and a round trip each would cost PostgreSQL three round trips per
	// request, holding up the batch. Should one fail, the savepoint undoes
	// them all, and they run again one savepoint each, so that only the
	// failing one fails.
	err = tt.Savepoint(ctx, func(ctx context.Context) error {
		return tt.Pipeline(ctx, func(ctx context.Context) error {
			for _, r := range writes {
				if err := r.write(ctx, tt, r.res); err != nil {
					return err
				}
			}
			return nil
		})
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrTxAborted):
		// The transaction is gone with the entries: the batch fails.
		return err
	case len(writes) == 1:
		writes[0].err = err
		return nil
	}
	for _, r := range writes {
		r.err = tt.Savepoint(ctx, func(ctx context.Context) error { return r.write(ctx, tt, r.res) })
		if errors.Is(r.err, store.ErrTxAborted) {
			return r.err
		}
	}
	return nil
}

// runChecks answers (from a clean slate: the transaction may be a retry)
// which requests go into the log: those without a check, and those whose
// check passes. A failed check is its request's error, with no entries.
// Checks only read, so they run without a savepoint each (three round
// trips on PostgreSQL where the read is one, with the log locked): a
// statement that fails the transaction fails the batch, as any other
// statement of the batch would. An AppendAllAndChange's change runs here
// too, under the savepoint it brings. size is the stored tree's: each
// check is told the index its request's first entry takes should the
// batch commit, after the entries of the requests before it that passed.
func (l *Ledger) runChecks(ctx context.Context, tt store.TenantTx, batch []*request, size uint64) ([]*request, error) {
	in := batch[:0:0]
	next := size
	for _, r := range batch {
		r.err, r.res = nil, nil
		if r.check != nil {
			r.err = r.check(ctx, tt, next) // only organizations' logs take checks
			if errors.Is(r.err, store.ErrTxAborted) {
				return nil, r.err
			}
		}
		if r.err == nil {
			in = append(in, r)
			next += uint64(len(r.entries))
		}
	}
	return in, nil
}

// appendEntries extends the tree from head, the newest checkpoint stored,
// once it is trusted (checkHead), signs and stores the batch's entries
// (the log is locked), and sets signed to the checkpoint row it stored.
func (l *Ledger) appendEntries(ctx context.Context, lg Log, lt store.LogTx, kt store.KeyTx, batch []*request, head store.LedgerCheckpoint, signed *store.LedgerCheckpoint) (Checkpoint, error) {
	rng, err := rangeFactory.NewRange(0, head.Size, head.RangeHashes)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: stored compact range at size %d: %v", ErrUntrustedHead, head.Size, err)
	}
	key, err := l.cfg.Keys.LogKey(ctx, kt, lg.scope)
	if err != nil {
		return Checkpoint{}, err
	}
	if err := l.checkHead(ctx, lg, lt, key.Verifier, head, rng); err != nil {
		l.cfg.Logger.Error("ledger: refusing to extend an altered log", slog.String("log", lg.scope.Origin),
			slog.Uint64("stored_size", head.Size), slog.Any("error", err))
		return Checkpoint{}, err
	}

	now := l.cfg.Now().UTC()
	prev := head.LastLeafHash
	var entries []store.LedgerEntry
	var nodes []store.LedgerNode
	// Every node this batch can need for its own inclusion proofs: the
	// compact range it starts from and every node it creates.
	known := make(map[compact.NodeID][]byte, 4*len(batch)+len(head.RangeHashes))
	for i, id := range compact.RangeNodes(0, head.Size, nil) {
		known[id] = head.RangeHashes[i]
	}
	visit := func(id compact.NodeID, hash []byte) {
		known[id] = hash
		// Only levels 8, 16, … are stored: they are the tlog-tiles rows;
		// everything between is recomputed from them.
		if id.Level > 0 && id.Level%8 == 0 {
			nodes = append(nodes, store.LedgerNode{Level: id.Level, Index: id.Index, Hash: hash})
		}
	}
	idx := head.Size
	for _, r := range batch {
		r.res = make([]Appended, len(r.entries))
		for i, en := range r.entries {
			e := verify.Entry{V: 1, Index: idx, Time: now, Kind: en.Kind, Subject: en.Subject, Digest: r.digests[i][:], Prev: prev}
			leaf, err := e.Marshal()
			if err != nil {
				return Checkpoint{}, fmt.Errorf("%w: %v", store.ErrInvalid, err)
			}
			lh := rfc6962.DefaultHasher.HashLeaf(leaf)
			known[compact.NewNodeID(0, idx)] = lh
			if err := rng.Append(lh, visit); err != nil {
				return Checkpoint{}, err
			}
			entries = append(entries, store.LedgerEntry{Index: idx, Entry: leaf, LeafHash: lh, Record: en.Record})
			r.res[i] = Appended{Index: idx, Entry: leaf, LeafHash: lh}
			prev = lh
			idx++
		}
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return Checkpoint{}, err
	}
	size := idx
	for _, r := range batch {
		for i := range r.res {
			if r.res[i].Proof, err = batchInclusionProof(known, r.res[i].Index, size); err != nil {
				return Checkpoint{}, err
			}
		}
	}
	// SPEC: c2sp.org/tlog-checkpoint — origin, size, root; no extension
	// lines (time lives in the entries). The note key name is the origin.
	body := log.Checkpoint{Origin: key.Signer.Name(), Size: size, Hash: root}.Marshal()
	signedNote, err := note.Sign(&note.Note{Text: string(body)}, key.Signer)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("ledger: sign checkpoint: %w", err)
	}
	row := store.LedgerCheckpoint{Size: size, Root: root, RangeHashes: rng.Hashes(), LastLeafHash: prev, Note: signedNote}
	if err := lt.AppendLog(ctx, entries, nodes, row); err != nil {
		return Checkpoint{}, err
	}
	*signed = row
	return Checkpoint{Size: size, Root: root, Note: signedNote}, nil
}

// batchInclusionProof is the RFC 6962 inclusion proof of the leaf at index
// in the tree of size, from the nodes a batch knows: it holds every node
// the proof of one of its own leaves against its own checkpoint needs (the
// left siblings are nodes of the compact range the batch started from, or
// were made by the batch; nothing lies to the right of the batch). A
// missing node would be a bug, and fails the batch.
func batchInclusionProof(known map[compact.NodeID][]byte, index, size uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, ok := known[id]
		if !ok {
			return nil, fmt.Errorf("ledger: internal: node %+v of the proof of %d in %d is not in the batch", id, index, size)
		}
		hashes[i] = h
	}
	if hashes, err = nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren); err != nil {
		return nil, err
	}
	if hashes == nil {
		hashes = [][]byte{} // a one-entry tree: an empty proof, not none
	}
	return hashes, nil
}
