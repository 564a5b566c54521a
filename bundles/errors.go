package bundles

import "errors"

// ErrInvalidBundle is wrapped by every error that rejects a bundle at
// intake or compilation: the server maps it to one problem type, and
// errors.Is with a more specific sentinel below tells the reasons apart.
var ErrInvalidBundle = errors.New("invalid bundle")

// rejection is a specific reason for rejecting a bundle; it matches
// ErrInvalidBundle as well as itself.
type rejection struct{ msg string }

func (r *rejection) Error() string        { return r.msg }
func (r *rejection) Is(target error) bool { return target == ErrInvalidBundle }

// Archive and path errors.
var (
	ErrTooLarge           error = &rejection{"bundle is larger than the upload limit"}
	ErrMalformedArchive   error = &rejection{"bundle is not a well-formed tar.gz archive"}
	ErrDecompressionLimit error = &rejection{"bundle expands beyond the decompressed size limit"}
	ErrTooManyFiles       error = &rejection{"bundle has more entries than allowed"}
	ErrPathTooLong        error = &rejection{"bundle entry path is too long"}
	ErrAbsolutePath       error = &rejection{"bundle entry has an absolute path"}
	ErrPathTraversal      error = &rejection{"bundle entry path escapes the bundle root (..)"}
	ErrInvalidPath        error = &rejection{"bundle entry path is not a clean relative path"}
	ErrLinkEntry          error = &rejection{"bundle contains a link (symbolic or hard); links are not allowed"}
	ErrNonRegularEntry    error = &rejection{"bundle contains an entry that is neither a file nor a directory"}
	ErrDuplicatePath      error = &rejection{"bundle contains the same path twice"}
	ErrUnsupportedFile    error = &rejection{"bundle contains a file AgentSigna does not accept"}
)

// Content errors.
var (
	ErrManifest         error = &rejection{"bundle manifest is missing or invalid"}
	ErrForbiddenRoot    error = &rejection{`bundle declares a root outside "tenant"`}
	ErrForbiddenPackage error = &rejection{`bundle defines a package outside its roots (organization policies live under package tenant)`}
	ErrForbiddenData    error = &rejection{"bundle places data outside its roots or over a rule"}
	ErrParse            error = &rejection{"bundle file does not parse"}
	ErrForbiddenBuiltin error = &rejection{"bundle calls a builtin that is not available to organization policies"}
	ErrCompile          error = &rejection{"bundle does not compile"}
	ErrNoDecision       error = &rejection{"bundle does not define data.tenant.decision"}
)

// Signature errors.
var (
	ErrUnsigned         error = &rejection{"bundle is not signed, and the organization accepts only signed bundles"}
	ErrSignedWithoutKey error = &rejection{"bundle is signed, but no verification key was given to check the signature"}
	ErrSignature        error = &rejection{"bundle signature does not verify"}
)

// ErrVerificationKey rejects a key offered for bundle verification: not a
// PEM public key, an HMAC algorithm, or a key that does not fit its algorithm.
var ErrVerificationKey = errors.New("unusable bundle verification key")

// ErrWorker: no policy worker could be started (the system refused a
// process or pipe, or Workers is closed). Unlike ErrInvalidBundle, it
// says nothing about the bundle, and may pass.
var ErrWorker = errors.New("policy worker unavailable")

// Activation order errors (CheckUpload, CheckActivation).
var (
	ErrRevisionConflict = errors.New("revision already uploaded with different content")
	ErrAlreadyActive    = errors.New("revision is already active")
	ErrRollbackRequired = errors.New("revision is older than the active one: activate it as an explicit rollback")
	ErrNotRollback      = errors.New("rollback requested, but the revision is not older than the active one")
)

// Evaluation errors. internal/decision turns them into deny reasons.
var (
	// ErrUndefined: the query had no result (no rule produced a decision).
	ErrUndefined = errors.New("policy result is undefined")
	// ErrEvalTimeout: the evaluation ran out of time or was cancelled.
	ErrEvalTimeout = errors.New("policy evaluation timed out")
	// ErrEval: the evaluation failed, or its result is not a valid verdict.
	ErrEval = errors.New("policy evaluation failed")
)
