package store

import (
	"fmt"
	"time"

	"github.com/agentsigna/agentsigna/internal/text"
)

// CheckLabel validates a short human-readable field (a name, a sponsor,
// who made a change): 1 to max bytes, a text.Name (one line, no control
// or bidirectional character) that names something (text.Named: a letter
// or digit, not blanks or invisible code points). It is shown to
// approvers and auditors, and printed one line per record.
func CheckLabel(field, s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("%w: %s must be 1-%d bytes", ErrInvalid, field, max)
	}
	if err := text.Name.Check(s); err != nil {
		return fmt.Errorf("%w: %s %v", ErrInvalid, field, err)
	}
	if !text.Named(s) {
		return fmt.Errorf("%w: %s must name something (a letter or digit)", ErrInvalid, field)
	}
	return nil
}

// checkToken validates an opaque identifier chosen by a client or a policy
// (a key id, a revision): 0 (when optional) or 1 to max bytes of visible
// ASCII.
func checkToken(field, s string, max int, optional bool) error {
	if s == "" && optional {
		return nil
	}
	if s == "" || len(s) > max {
		return fmt.Errorf("%w: %s must be 1-%d bytes", ErrInvalid, field, max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return fmt.Errorf("%w: %s must be visible ASCII", ErrInvalid, field)
		}
	}
	return nil
}

// StoredTime is t as every backend stores and returns it: UTC, truncated
// to the microsecond (PostgreSQL's precision), or now when t is zero. The
// store applies it to every time it writes, so a value handed back by a
// write equals the value read back later, on either backend.
func StoredTime(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UTC().Truncate(time.Microsecond)
}
