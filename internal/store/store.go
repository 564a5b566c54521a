// Package store owns every byte AgentSigna keeps: the interfaces the rest of
// the service programs against, the sentinel errors, and the two backends
// (sqlite/, postgres/) with their embedded migrations (migrations/).
//
// The only way to reach data is a transaction closure: InTenantTx for one
// organization's data, InPlatformTx for the platform plane's. Inside
// InTenantTx a backend confines every statement to that tenant — by opening
// the tenant's own file (SQLite) or by setting app.tenant_id for the
// transaction, on a connection the service bound, under FORCE ROW LEVEL
// SECURITY (PostgreSQL). Code outside this
// package tree never sees SQL, a pool or a *sql.DB, and nothing here offers
// an update or delete path for append-only records.
//
// Record ids (agents, counterparties, decisions, receipts, cases) are
// generated here (NewID) and validated on every call (CheckID); every
// argument is validated before it reaches a database, and refusals are
// ErrInvalid with a message that quotes no value.
package store

import (
	"context"
	"time"
)

// TenantStore is what the tenant plane gets: one organization at a time.
type TenantStore interface {
	// InTenantTx runs fn in a transaction confined to tenantID. The
	// transaction commits if fn returns nil and rolls back otherwise. An
	// unknown tenant is ErrNotFound; a malformed id is ErrInvalid. When a
	// method of tx fails, fn must return that error: the transaction may be
	// spent (PostgreSQL aborts it) and committing it fails.
	InTenantTx(ctx context.Context, tenantID string, fn func(ctx context.Context, tx TenantTx) error) error
	// InTenantReadTx is InTenantTx for reading only: every write in it
	// fails (ErrReadOnly), and it does not wait for, nor hold up, the
	// organization's writers. It reads one snapshot throughout, of what was
	// committed when it first read: SQLite's WAL readers, a REPEATABLE
	// READ, READ ONLY PostgreSQL transaction.
	InTenantReadTx(ctx context.Context, tenantID string, fn func(ctx context.Context, tx TenantTx) error) error
	// ReadDecisionInputs reads what the decision service needs about a
	// request before it evaluates it, committed data only and no write:
	// on PostgreSQL in one round trip, each statement on its own
	// snapshot under the default READ COMMITTED (the Idempotency-Key
	// lookup may see a commit the rest does not; the batch's check under
	// the log's lock settles such a race), on
	// SQLite in one statement (two when an Idempotency-Key names a
	// decision) on one snapshot.
	// An unknown tenant is ErrNotFound; a row it does not have is a nil
	// field.
	ReadDecisionInputs(ctx context.Context, tenantID string, q DecisionInputsQuery) (DecisionInputs, error)
	// ResolveTenant maps a slug to the organization's public directory
	// entry (id, slug, status) — all the tenant plane may know of the
	// platform's tenants table.
	ResolveTenant(ctx context.Context, slug string) (TenantRef, error)
	// ResolveTenantID is ResolveTenant by id. Every agent request makes
	// it, so the answer is remembered (store.TenantRefs): a change the
	// store's own InPlatformTx commits is seen at once, one made by
	// another process or replica within TenantRefLifetime.
	ResolveTenantID(ctx context.Context, id string) (TenantRef, error)
	// ResolveAgent returns the organization an agent id was registered
	// in (ErrNotFound if none): how the token endpoint finds the tenant of
	// an assertion before trusting anything in it.
	ResolveAgent(ctx context.Context, agentID string) (TenantRef, error)
	Ping(ctx context.Context) error
}

// PlatformStore is what the platform plane gets: organizations, never their
// business data.
type PlatformStore interface {
	InPlatformTx(ctx context.Context, fn func(ctx context.Context, tx PlatformTx) error) error
	// InPlatformReadTx is InPlatformTx for reading only, as InTenantReadTx
	// is InTenantTx's: every write fails (ErrReadOnly), it does not wait
	// for the platform's writers, and it reads one snapshot throughout.
	InPlatformReadTx(ctx context.Context, fn func(ctx context.Context, tx PlatformTx) error) error
	Ping(ctx context.Context) error
}

// Backend is a whole store, as opened by cmd/agentsigna. Each plane is handed
// only its half.
type Backend interface {
	TenantStore
	PlatformStore
	// Close waits for open transactions to finish and releases files and
	// connections.
	Close() error
}

// TenantTx is one transaction on one organization's data.
type TenantTx interface {
	// TenantID is the organization every statement of this transaction is
	// confined to.
	TenantID() string
	// Savepoint runs fn inside the transaction as a unit of its own: if fn
	// fails, what it wrote is undone and the transaction goes on without
	// it (SQL SAVEPOINT / ROLLBACK TO). fn's error is returned as is —
	// unless the transaction itself ended under fn (ErrTxAborted): then
	// the caller must give it up.
	Savepoint(ctx context.Context, fn func(context.Context) error) error
	// Pipeline runs fn with DecisionTx.Record deferred: the records fn
	// makes are checked and queued, and written together when fn returns
	// (a few multi-row statements; on PostgreSQL in one round trip).
	// Other calls run at once, and do not see the queued records. A
	// Savepoint inside fn that fails drops the records it queued, as it
	// undoes its other writes. Nested, the outermost Pipeline writes. The
	// first error of a queued record is Pipeline's, and the records around
	// it may or may not be written: run it inside a Savepoint, and roll
	// back on error.
	Pipeline(ctx context.Context, fn func(context.Context) error) error

	// Settings: the organization's key/value settings (mutable).
	PutSetting(ctx context.Context, key, value string) error
	GetSetting(ctx context.Context, key string) (Setting, error)
	ListSettings(ctx context.Context) ([]Setting, error)
	DeleteSetting(ctx context.Context, key string) error

	// Log is the organization's transparency log; Keys its signing keys.
	Log() LogTx
	Keys() KeyTx
	// Policies are the organization's policy bundles and activations.
	Policies() PolicyTx

	// Agents are the organization's machine actors and their public keys;
	// AssertionJTIs the client assertions they have already used.
	Agents() AgentTx
	AssertionJTIs() JTITx
	// Counterparties are the parties the organization's agents deal with.
	Counterparties() CounterpartyTx
	// Decisions, Receipts and Cases are the decision records (DESIGN §3).
	Decisions() DecisionTx
	Receipts() ReceiptTx
	Cases() CaseTx
}

// PlatformTx is one transaction on the platform plane's data.
type PlatformTx interface {
	CreateTenant(ctx context.Context, t Tenant) (Tenant, error)
	GetTenant(ctx context.Context, id string) (Tenant, error)
	GetTenantBySlug(ctx context.Context, slug string) (Tenant, error)
	ListTenants(ctx context.Context) ([]Tenant, error)
	SetTenantStatus(ctx context.Context, id string, status TenantStatus) error

	// Log is the platform plane's own transparency log; Keys its keys.
	Log() LogTx
	Keys() KeyTx
}

// LogTx reads and extends one transparency log inside the transaction that
// returned it. There is deliberately no update or delete method, and the
// database refuses both.
type LogTx interface {
	// LockLog serialises writers of this log until the transaction ends,
	// across processes sharing the database (an advisory lock in
	// PostgreSQL; SQLite's write lock is already taken at BEGIN).
	LockLog(ctx context.Context) error
	// LatestCheckpoint is the newest checkpoint; ErrNotFound for an empty log.
	LatestCheckpoint(ctx context.Context) (LedgerCheckpoint, error)
	// Checkpoint is the checkpoint of exactly size entries.
	Checkpoint(ctx context.Context, size uint64) (LedgerCheckpoint, error)
	// CheckpointSizes lists the sizes that have a checkpoint, ascending.
	CheckpointSizes(ctx context.Context) ([]uint64, error)
	// AppendLog writes one batch: its entries (consecutive, starting at the
	// current size), the tree nodes it completed, and its checkpoint
	// (whose size is the new size). ErrConflict if another writer got there
	// first.
	AppendLog(ctx context.Context, entries []LedgerEntry, nodes []LedgerNode, cp LedgerCheckpoint) error
	// Entries returns the entries with from <= index < to, in order.
	Entries(ctx context.Context, from, to uint64) ([]LedgerEntry, error)
	// EntriesWithin is Entries that stops after the first entry to bring
	// the bytes of the entries and records it returns to maxBytes or more:
	// at least one entry when [from, to) holds any. A reader of a whole
	// log goes on after the last one returned.
	EntriesWithin(ctx context.Context, from, to uint64, maxBytes int) ([]LedgerEntry, error)
	// EntryByLeafHash finds the first entry with that leaf hash.
	EntryByLeafHash(ctx context.Context, leafHash []byte) (LedgerEntry, error)
	// LeafHashes returns the leaf hashes of entries [from, to).
	LeafHashes(ctx context.Context, from, to uint64) ([][]byte, error)
	// Nodes returns the stored hashes at level (a multiple of 8) with
	// from <= index < to.
	Nodes(ctx context.Context, level uint, from, to uint64) ([][]byte, error)
}

// PolicyTx stores an organization's policy bundles. Bundles, activations
// and verification keys are written once; the active revision is the newest
// activation.
type PolicyTx interface {
	// InsertBundle stores an uploaded revision; ErrConflict if the
	// revision exists.
	InsertBundle(ctx context.Context, b PolicyBundle) error
	// Bundle returns one revision, bytes included.
	Bundle(ctx context.Context, revision string) (PolicyBundle, error)
	// Bundles lists every revision, oldest first, without the bytes.
	Bundles(ctx context.Context) ([]PolicyBundle, error)
	// Activate appends an activation of a stored revision; its Seq is
	// assigned (one past the newest).
	Activate(ctx context.Context, a PolicyActivation) (PolicyActivation, error)
	// Activations lists every activation, oldest first; the last is active.
	Activations(ctx context.Context) ([]PolicyActivation, error)
	// ActiveBundle returns the newest activation and its bundle;
	// ErrNotFound if none was ever activated.
	ActiveBundle(ctx context.Context) (PolicyActivation, PolicyBundle, error)
	AddVerificationKey(ctx context.Context, k PolicyVerificationKey) error
	VerificationKeys(ctx context.Context) ([]PolicyVerificationKey, error)
}

// PolicyBundle is one uploaded OPA bundle revision.
type PolicyBundle struct {
	Revision   string
	Digest     []byte // SHA-256 of Bundle
	Bundle     []byte // the tar.gz as uploaded; empty in Bundles()
	Manifest   string // the bundle's .manifest, JSON
	Signed     bool
	UploadedBy string
	UploadedAt time.Time
	// LedgerIndex is the policy.upload entry that records the revision,
	// given to InsertBundle (required) and read back; nil for a bundle
	// stored before bundles named their entry.
	LedgerIndex *uint64
}

// PolicyActivation makes a revision the active one.
type PolicyActivation struct {
	// Seq orders activations; the newest is active. Given to Activate,
	// it must be the next (ErrConflict otherwise); 0 takes the next.
	Seq         uint64
	Revision    string
	Rollback    bool
	ActivatedBy string // who asked
	ApprovedBy  string // the second person (four eyes); may equal "" for local CLI use
	ActivatedAt time.Time
	// LedgerIndex is the index of the activation's entry in the
	// organization's log; nil for one stored before the index was kept.
	// Activate requires it (ErrInvalid without).
	LedgerIndex *uint64
}

// PolicyVerificationKey is a registered bundle-signing public key (PEM).
type PolicyVerificationKey struct {
	KID       string
	PublicPEM string
	// Algorithm is the signature algorithm the key verifies (RS256…RS512,
	// PS256…PS512, ES256…ES512); "" for a key registered before it was
	// kept: RS256 for an RSA key, the curve's for an ECDSA key.
	Algorithm string
	CreatedAt time.Time
	// LedgerIndex is the policy.verification_key entry that registered
	// the key, given to AddVerificationKey (required) and read back; nil
	// for a key stored before keys named their entry.
	LedgerIndex *uint64
}

// KeyTx stores signing keys. Keys are retired, never deleted or changed.
type KeyTx interface {
	// InsertSigningKey stores a key. A log, an organization's receipts
	// and its access tokens each have at most one active key: a second
	// active key of a purpose is ErrConflict, as is a kid already taken.
	// That refusal leaves the transaction usable, so that a caller that
	// lost a race to create a first key can read the one that won (on
	// PostgreSQL the insert waits for that key's transaction to end).
	// Retire the active key before inserting its successor.
	InsertSigningKey(ctx context.Context, k SigningKey) error
	// SigningKeys lists the keys of a purpose, oldest first.
	SigningKeys(ctx context.Context, purpose KeyPurpose) ([]SigningKey, error)
	RetireSigningKey(ctx context.Context, kid string, at time.Time) error
}

// TenantStatus is an organization's lifecycle state.
type TenantStatus string

const (
	TenantActive    TenantStatus = "active"
	TenantSuspended TenantStatus = "suspended"
)

// Tenant is an organization, as the platform plane sees it.
type Tenant struct {
	ID        string // UUID, lower-case canonical form; generated when empty
	Slug      string // URL name, e.g. "acme"
	Name      string
	Status    TenantStatus
	CreatedAt time.Time
}

// TenantRef is the directory entry the tenant plane may read.
type TenantRef struct {
	ID     string
	Slug   string
	Status TenantStatus
}

// Setting is one organization setting.
type Setting struct {
	Key       string
	Value     string
	UpdatedAt time.Time
}

// LedgerEntry is one leaf of a transparency log.
type LedgerEntry struct {
	Index     uint64
	Entry     []byte // the exact leaf bytes
	LeafHash  []byte // RFC 6962 leaf hash, 32 bytes
	Record    []byte // the record the entry's digest covers
	CreatedAt time.Time
}

// LedgerNode is a stored tree hash at a level that is a multiple of 8: the
// rows of the tlog-tiles tiles above level 0.
type LedgerNode struct {
	Level uint
	Index uint64
	Hash  []byte
}

// LedgerCheckpoint is one signed checkpoint and the state needed to extend
// the tree from it.
type LedgerCheckpoint struct {
	Size         uint64
	Root         []byte
	RangeHashes  [][]byte // the compact range [0, Size), left to right
	LastLeafHash []byte   // the leaf hash of entry Size-1 (the next entry's prev)
	Note         []byte   // the signed note
	CreatedAt    time.Time
}

// KeyPurpose says what a signing key signs.
type KeyPurpose string

const (
	PurposeLog     KeyPurpose = "log"     // checkpoints (C2SP signed note)
	PurposeReceipt KeyPurpose = "receipt" // receipts (JWS)
	PurposeToken   KeyPurpose = "token"   // access tokens (JWS)
)

// KeyStatus is a signing key's state: active keys sign, retired keys only
// verify.
type KeyStatus string

const (
	KeyActive  KeyStatus = "active"
	KeyRetired KeyStatus = "retired"
)

// SigningKey is a stored key pair; the private half is sealed with the
// master key and never leaves internal/signing in the clear.
type SigningKey struct {
	KID           string
	Purpose       KeyPurpose
	Algorithm     string
	PublicKey     []byte
	SealedPrivate []byte
	Status        KeyStatus
	CreatedAt     time.Time
	RetiredAt     time.Time // zero while active
}
