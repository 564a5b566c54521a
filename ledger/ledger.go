package ledger

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/agentsigna/agentsigna/internal/latency"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// Errors callers can test with errors.Is. Store sentinels (ErrNotFound…)
// pass through wrapped.
var (
	// ErrClosed: the ledger is shutting down.
	ErrClosed = errors.New("ledger: closed")
	// ErrNoCheckpoint: no signed checkpoint has that size (proofs are only
	// computed against signed sizes).
	ErrNoCheckpoint = errors.New("ledger: no signed checkpoint of that size")
	// ErrUntrustedHead: the newest stored checkpoint, which an append
	// would extend, is not one the log's key signed over the stored tree,
	// or is older than one this process signed. The store was altered
	// behind the service's back; nothing is appended until an operator
	// has looked (agentsigna ledger verify).
	ErrUntrustedHead = errors.New("ledger: the newest stored checkpoint does not verify; the store was altered (run agentsigna ledger verify)")
	// ErrNotProven: ProvenEntry found no entry at that index proven under
	// the newest checkpoint the log key signed, with its record.
	ErrNotProven = errors.New("ledger: the entry is not proven under the log's newest signed checkpoint")
)

// Limits on what one entry may carry.
const (
	MaxSubject = 1024
	MaxRecord  = 1 << 20
)

// Config configures a Ledger. Defaults fill zero values.
type Config struct {
	Tenants  store.TenantStore
	Platform store.PlatformStore
	Keys     *signing.Keyring
	// Origin prefixes every log's origin: "<Origin>/t/<slug>" for an
	// organization, "<Origin>/platform" for the platform plane. It becomes
	// part of each log's key name when the key is created, and is fixed
	// from then on.
	Origin string
	// MaxBatch bounds how many entries one transaction commits. Default 1024.
	MaxBatch int
	// MaxWait is how long a batch may linger for more entries before it
	// commits. Default 0: an idle log commits the first entry at once, and
	// entries arriving during a commit form the next batch.
	MaxWait time.Duration
	// IdleTimeout stops a log's writer goroutine after that long unused.
	// Default one minute.
	IdleTimeout time.Duration
	Logger      *slog.Logger
	// Now is the clock for entry times. Default time.Now.
	Now func() time.Time
	// Stages, from NewStages, times each append's wait for its batch and
	// each batch's commit; nil: not timed.
	Stages *latency.Family
}

// The stages of an append (Config.Stages): "queued", from the call to its
// batch's transaction starting; "commit", each batch's transaction, from
// its start to its commit (or failure), observed before any of its
// requests is answered. A
// decision's own wait for the ledger is decision.NewStages' "ledger".
const (
	StageQueued = "queued"
	StageCommit = "commit"
)

// NewStages makes the histograms of Config.Stages.
func NewStages() *latency.Family {
	return latency.NewFamily("agentsigna_ledger_append_seconds",
		"How long a ledger append waits for its batch's transaction to start (queued), and how long each batch's transaction takes (commit).",
		"stage", StageQueued, StageCommit)
}

func (c Config) withDefaults() (Config, error) {
	if c.Tenants == nil || c.Platform == nil || c.Keys == nil {
		return c, errors.New("ledger: Tenants, Platform and Keys are required")
	}
	if c.Origin == "" {
		return c, errors.New("ledger: an origin is required")
	}
	if c.MaxBatch < 0 || c.MaxWait < 0 || c.IdleTimeout < 0 {
		return c, errors.New("ledger: limits must not be negative")
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1024
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Ledger appends to and reads every log of one deployment. Safe for
// concurrent use; several Ledgers (processes) may share one database.
type Ledger struct {
	cfg   Config
	tiles *tileCache

	mu      sync.Mutex
	writers map[string]*writer
	closed  bool
	wg      sync.WaitGroup
	// heads are the newest checkpoints this process signed or checked, by
	// log key (guarded by mu): a batch builds on the stored head without
	// verifying it again when it is the one here, and on another only if
	// it extends the one here.
	heads map[string]store.LedgerCheckpoint

	queued, committing *latency.Histogram // Config.Stages; nil: not timed
}

// New returns a Ledger.
func New(cfg Config) (*Ledger, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Ledger{cfg: cfg, tiles: newTileCache(4096), writers: map[string]*writer{}, heads: map[string]store.LedgerCheckpoint{},
		queued: cfg.Stages.Stage(StageQueued), committing: cfg.Stages.Stage(StageCommit)}, nil
}

// Log names one log and how to reach it.
type Log struct {
	key   string // writer and cache key: tenant id, or "platform"
	scope signing.LogScope
	in    func(ctx context.Context, fn func(context.Context, store.LogTx, store.KeyTx) error) error
	// read is in for reading only (a write in fn fails, store.ErrReadOnly):
	// a read transaction, which reads one snapshot and on the embedded
	// store does not queue for the file's one writing connection behind
	// the batches.
	read func(ctx context.Context, fn func(context.Context, store.LogTx, store.KeyTx) error) error
	// tenant runs fn in a transaction of the organization's store, which
	// holds the log, and readTenant in a read transaction; nil for the
	// platform log.
	tenant     func(ctx context.Context, fn func(context.Context, store.TenantTx) error) error
	readTenant func(ctx context.Context, fn func(context.Context, store.TenantTx) error) error
}

// TenantLog is the organization's log. slug names it in the origin of a
// log created now; an existing log keeps the origin its key was made with.
func (l *Ledger) TenantLog(tenantID, slug string) Log {
	tenant := func(ctx context.Context, fn func(context.Context, store.TenantTx) error) error {
		return l.cfg.Tenants.InTenantTx(ctx, tenantID, fn)
	}
	readTenant := func(ctx context.Context, fn func(context.Context, store.TenantTx) error) error {
		return l.cfg.Tenants.InTenantReadTx(ctx, tenantID, fn)
	}
	return Log{
		key:   tenantID,
		scope: signing.LogScope{TenantID: tenantID, Origin: l.cfg.Origin + "/t/" + slug},
		in: func(ctx context.Context, fn func(context.Context, store.LogTx, store.KeyTx) error) error {
			return tenant(ctx, func(ctx context.Context, tx store.TenantTx) error {
				return fn(ctx, tx.Log(), tx.Keys())
			})
		},
		read: func(ctx context.Context, fn func(context.Context, store.LogTx, store.KeyTx) error) error {
			return readTenant(ctx, func(ctx context.Context, tx store.TenantTx) error {
				return fn(ctx, tx.Log(), tx.Keys())
			})
		},
		tenant:     tenant,
		readTenant: readTenant,
	}
}

// PlatformLog is the platform plane's log.
func (l *Ledger) PlatformLog() Log {
	return Log{
		key:   "platform",
		scope: signing.LogScope{Origin: l.cfg.Origin + "/platform"},
		in: func(ctx context.Context, fn func(context.Context, store.LogTx, store.KeyTx) error) error {
			return l.cfg.Platform.InPlatformTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
				return fn(ctx, tx.Log(), tx.Keys())
			})
		},
		read: func(ctx context.Context, fn func(context.Context, store.LogTx, store.KeyTx) error) error {
			return l.cfg.Platform.InPlatformReadTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
				return fn(ctx, tx.Log(), tx.Keys())
			})
		},
	}
}

// Entry is what a caller appends: a record and what it is about. The log
// stores the record and an entry carrying its SHA-256.
type Entry struct {
	Kind    string // e.g. "decision", "receipt", "auth.token_issued"
	Subject string // what the record is about, e.g. a decision id
	Record  []byte // the exact bytes the entry's digest covers
}

func (e Entry) check() error {
	if !verify.ValidKind(e.Kind) {
		return fmt.Errorf("%w: ledger entry kind %q", store.ErrInvalid, e.Kind)
	}
	if len(e.Subject) > MaxSubject {
		return fmt.Errorf("%w: ledger entry subject over %d bytes", store.ErrInvalid, MaxSubject)
	}
	// Checked here, before the entry joins a batch, not only when the
	// batch encodes it: a subject the encoding refuses there fails the
	// whole batch, every other caller's entries with it.
	if !utf8.ValidString(e.Subject) {
		return fmt.Errorf("%w: ledger entry subject is not valid UTF-8", store.ErrInvalid)
	}
	if len(e.Record) > MaxRecord {
		return fmt.Errorf("%w: ledger record over %d bytes", store.ErrInvalid, MaxRecord)
	}
	return nil
}

// Checkpoint is a signed checkpoint.
type Checkpoint struct {
	Size uint64
	Root []byte
	Note []byte // the C2SP signed note
}

// Appended tells a caller where its entry landed.
type Appended struct {
	Index      uint64
	Entry      []byte // the exact leaf bytes
	LeafHash   []byte
	Checkpoint Checkpoint // the checkpoint of the batch that included it
	// Proof is the entry's inclusion proof in Checkpoint (RFC 6962 audit
	// path, [] for a one-entry tree), computed as the batch committed.
	Proof [][]byte
}

// Append adds one entry to a log and returns once the batch holding it is
// durable, with the checkpoint signed for that batch. Many goroutines may
// append at once: they are committed together.
//
// ctx bounds the wait for the writer to take the entries: if it ends
// first, nothing is appended and its error is returned. Once the writer
// has taken them, Append waits for their batch (bounded by the ledger's
// own commit timeout) and reports what happened to it, so a caller is
// never told of a failure for entries that are in the log.
func (l *Ledger) Append(ctx context.Context, log Log, e Entry) (Appended, error) {
	out, err := l.AppendAll(ctx, log, []Entry{e})
	if err != nil {
		return Appended{}, err
	}
	return out[0], nil
}

// AppendAll adds entries to a log consecutively, in one batch (one commit,
// one checkpoint): e.g. a decision and its receipt.
func (l *Ledger) AppendAll(ctx context.Context, log Log, entries []Entry) ([]Appended, error) {
	return l.append(ctx, log, entries, nil, nil)
}

// Write stores what a caller's entries are about, in the organization's
// store, in the transaction that appends them. It sees where they landed:
// indexes, the batch's checkpoint and their inclusion proofs.
type Write func(ctx context.Context, tx store.TenantTx, appended []Appended) error

// AppendAllAndWrite is AppendAll on an organization's log, with write run
// in the batch's transaction once the entries are appended: the rows it
// stores commit with the entries, or neither does. It runs in a savepoint
// of its own, so a failing write fails its caller only: the entries stay
// in the log (it is append-only, and they record what was decided), and
// AppendAllAndWrite returns them with write's error. write runs while the
// log is locked: it should only store rows. It may run twice, the first
// run undone, when a batch-mate's write fails.
func (l *Ledger) AppendAllAndWrite(ctx context.Context, log Log, entries []Entry, write Write) ([]Appended, error) {
	return l.AppendAllAndWriteIf(ctx, log, entries, nil, write)
}

// Precondition decides, in the batch's transaction, whether a caller's entries go
// into the log at all. It only reads; a statement of it that fails the
// transaction fails the whole batch. It does not see the writes of its
// batch-mates (they run after every check), only the changes
// (AppendAllAndChange) of those before it: two requests of one process
// that must exclude each other must not be in flight at once (the decision
// service holds a lock per Idempotency-Key).
type Precondition func(ctx context.Context, tx store.TenantTx) error

// AppendAllAndWriteIf is AppendAllAndWrite with a precondition: check (nil:
// none) runs first, in the batch's transaction with the log locked, before
// the entries are given indexes. If it fails, nothing of the request is in
// the log, write does not run, and check's error is returned with no
// entries. Every batch locks its log, in every process and on every
// replica, so check sees whatever any earlier batch of the log committed:
// e.g. that another replica already stored a decision under the same
// Idempotency-Key, which must not reach the log a second time.
func (l *Ledger) AppendAllAndWriteIf(ctx context.Context, log Log, entries []Entry, check Precondition, write Write) ([]Appended, error) {
	if log.tenant == nil || write == nil {
		return nil, fmt.Errorf("%w: AppendAllAndWriteIf needs an organization's log and a write", store.ErrInvalid)
	}
	var at checkAt
	if check != nil {
		at = func(ctx context.Context, tx store.TenantTx, _ uint64) error { return check(ctx, tx) }
	}
	return l.append(ctx, log, entries, at, write)
}

// AppendAllAndChange appends entries that record a change to an
// organization's rows together with the change itself: both commit or
// neither. A write (AppendAllAndWriteIf) that fails after its check passed
// leaves its entries in the log, which is append-only; change instead
// runs where a check does — in the batch's transaction, the log locked,
// before the entries have indexes — under a savepoint of its own, and its
// error is the request's, with no entries and none of its statements.
// It decides as a check does (a conditional update that finds nothing to
// change fails the request), and is told the index its first entry takes
// should the batch commit (a row it stores can name its entry). Checks
// and changes run in their requests' order: one sees the changes of the
// batch-mates before it, no batch-mate's write.
func (l *Ledger) AppendAllAndChange(ctx context.Context, log Log, entries []Entry, change Change) ([]Appended, error) {
	if log.tenant == nil || change == nil {
		return nil, fmt.Errorf("%w: AppendAllAndChange needs an organization's log and a change", store.ErrInvalid)
	}
	inSavepoint := func(ctx context.Context, tx store.TenantTx, first uint64) error {
		return tx.Savepoint(ctx, func(ctx context.Context) error { return change(ctx, tx, first) })
	}
	return l.append(ctx, log, entries, inSavepoint, nil)
}

// Change makes the change an AppendAllAndChange's entries record, in the
// batch's transaction: nil only having made it, an error only having made
// none. first is the index the first of the entries takes if the batch
// commits; if it does not, neither does the change.
type Change func(ctx context.Context, tx store.TenantTx, first uint64) error

// checkAt is a request's Precondition or Change, told the index its first
// entry would take.
type checkAt func(ctx context.Context, tx store.TenantTx, first uint64) error

func (l *Ledger) append(ctx context.Context, log Log, entries []Entry, check checkAt, write Write) ([]Appended, error) {
	if len(entries) == 0 || len(entries) > l.cfg.MaxBatch {
		return nil, fmt.Errorf("%w: 1-%d entries per append", store.ErrInvalid, l.cfg.MaxBatch)
	}
	r := &request{ctx: ctx, entries: entries, check: check, write: write, digests: make([][sha256.Size]byte, len(entries)), done: make(chan struct{}), sent: time.Now()}
	for i, e := range entries {
		if err := e.check(); err != nil {
			return nil, err
		}
		r.digests[i] = sha256.Sum256(e.Record)
	}
	w, err := l.writerFor(log)
	if err != nil {
		return nil, err
	}
	select {
	case w.reqs <- r:
	case <-ctx.Done():
		l.release(w, 1)
		return nil, ctx.Err()
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		if r.claimed.CompareAndSwap(false, true) {
			// The writer has not taken the request: it will drop it,
			// and nothing of it is logged.
			return nil, ctx.Err()
		}
		// The writer has taken it: its batch may commit, so wait for
		// the answer rather than report a failure for entries (and
		// rows) that become durable. The commit is bounded by
		// commitTimeout, not by this context.
		<-r.done
	}
	return r.res, r.err
}

// Close stops accepting appends and waits for batches in flight.
func (l *Ledger) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	for _, w := range l.writers {
		close(w.stop)
	}
	l.mu.Unlock()
	l.wg.Wait()
}
