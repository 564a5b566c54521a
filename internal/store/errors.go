package store

import "errors"

// Sentinel errors returned (wrapped) by every backend. Callers test them with
// errors.Is; the server maps them to HTTP statuses in exactly one place.
// Messages never carry SQL text, parameters or file paths.
var (
	// ErrNotFound: the row, tenant or file asked for does not exist (or is
	// not visible to the tenant asking, which is the same thing to a caller).
	ErrNotFound = errors.New("not found")
	// ErrConflict: a uniqueness constraint refused the write.
	ErrConflict = errors.New("conflict")
	// ErrAppendOnly: an UPDATE or DELETE reached an append-only table and the
	// database refused it.
	ErrAppendOnly = errors.New("append-only: rows are written once")
	// ErrInvalid: an argument failed validation before reaching the database
	// (a malformed tenant id, an empty key…).
	ErrInvalid = errors.New("invalid argument")
	// ErrUnavailable: the database cannot be reached or is closed.
	ErrUnavailable = errors.New("store unavailable")
	// ErrTxAborted: the transaction ended under the caller — the database
	// rolled it back (SQLite does on a full disk or an I/O error) or the
	// connection failed — so nothing of it will commit, and nothing more
	// may be run in it as if it were open.
	ErrTxAborted = errors.New("transaction aborted")
	// ErrReadOnly: a write in a read-only transaction (InTenantReadTx,
	// InPlatformReadTx).
	ErrReadOnly = errors.New("read-only transaction")
	// ErrSchema: the database schema is not this binary's: older, and the
	// process may not migrate it (run `agentsigna migrate`), newer, or
	// built from migrations whose text differs (recreate it).
	ErrSchema = errors.New("schema mismatch")
)
