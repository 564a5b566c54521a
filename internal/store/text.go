package store

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// checkLabel validates a short human-readable field (a name, a sponsor): 1 to
// max bytes of UTF-8, not blank, no control or bidirectional-override
// characters — it is shown to approvers and printed one line per record.
func checkLabel(field, s string, max int) error {
	if strings.TrimSpace(s) == "" || len(s) > max {
		return fmt.Errorf("%w: %s must be 1-%d bytes", ErrInvalid, field, max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrInvalid, field)
	}
	for _, r := range s {
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("%w: %s contains a control character", ErrInvalid, field)
		}
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
