package bundles

import "fmt"

// KnownRevision is a revision an organization uploaded: its manifest
// revision and the digest of its bundle.
type KnownRevision struct {
	Revision string
	Digest   string
}

// Revision order. A manifest revision is an opaque string (a git commit id,
// a date, a version): comparing strings says nothing about which came first.
// So "older" is defined by the organization's history, the revisions in the
// order they were first uploaded (the store's sequence), oldest first: a
// revision is older than the active one when it was first uploaded before
// it. A revision string names one bundle forever: the same revision with
// another digest is refused.

// CheckUpload reports whether candidate may be added to history:
// ErrRevisionConflict when its revision is already there with another
// digest. Uploading the same bundle again is not an error (the caller keeps
// one copy).
func CheckUpload(history []KnownRevision, candidate KnownRevision) error {
	if i := indexOf(history, candidate.Revision); i >= 0 && history[i].Digest != candidate.Digest {
		return fmt.Errorf("%w: %q is %s, not %s", ErrRevisionConflict, candidate.Revision, history[i].Digest, candidate.Digest)
	}
	return nil
}

// CheckActivation reports whether candidate may become the active revision
// when active is ("" for none), given history (see above). rollback is the
// caller's explicit statement that it means to go back:
//
//   - a revision uploaded before the active one needs rollback
//     (ErrRollbackRequired without it);
//   - rollback for any other revision (new, uploaded after the active one,
//     or nothing active) is refused with ErrNotRollback, so that the ledger
//     never records a rollback that was not one;
//   - the active revision itself: ErrAlreadyActive;
//   - a revision reused with another digest: ErrRevisionConflict.
//
// A candidate not in history yet counts as the newest.
func CheckActivation(history []KnownRevision, active string, candidate KnownRevision, rollback bool) error {
	if err := CheckUpload(history, candidate); err != nil {
		return err
	}
	if active != "" && candidate.Revision == active {
		return fmt.Errorf("%w: %q", ErrAlreadyActive, active)
	}
	c, a := indexOf(history, candidate.Revision), indexOf(history, active)
	older := c >= 0 && a >= 0 && c < a
	switch {
	case older && !rollback:
		return fmt.Errorf("%w: %q was uploaded before the active %q", ErrRollbackRequired, candidate.Revision, active)
	case !older && rollback:
		return fmt.Errorf("%w: %q", ErrNotRollback, candidate.Revision)
	}
	return nil
}

func indexOf(history []KnownRevision, revision string) int {
	if revision == "" {
		return -1
	}
	for i, h := range history {
		if h.Revision == revision {
			return i
		}
	}
	return -1
}
