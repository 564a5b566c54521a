package store

import (
	"crypto/rand"
	"fmt"
	"strings"
	"time"
)

// Prefixes of the record ids the store generates: an id is the prefix, an
// underscore and 26 lower-case base32 characters (see NewID), e.g.
// "agt_3h7kq…". The prefix says what the id names, so an id of one kind
// pasted where another is expected fails validation instead of matching.
const (
	PrefixAgent        = "agt"
	PrefixCounterparty = "cp"
	PrefixDecision     = "dec"
	PrefixReceipt      = "rct"
	PrefixCase         = "case"
)

// idRandLen is the length of an id's part after the prefix.
const idRandLen = 26

// idTimeLen characters of an id carry its creation time in milliseconds
// (50 bits, enough for 35,000 years); the other 16 are random (80 bits).
const idTimeLen = 10

// sortedBase32 is the base32 alphabet [a-z2-7] in ASCII order, so that the
// time part of ids sorts as the times do.
const sortedBase32 = "234567abcdefghijklmnopqrstuvwxyz"

// NewID returns a fresh id with prefix (one of the Prefix constants):
// prefix + "_" + 26 characters of [a-z2-7], the first 10 the creation time
// in milliseconds, sortable, the last 16 random (80 bits). Ids made close in
// time sort close together, as UUIDv7 and ULID do: each new row of a
// table keyed by id lands beside the last one instead of on a random
// index page, which is most of what a batch of inserts writes.
func NewID(prefix string) string {
	return newIDAt(prefix, time.Now())
}

func newIDAt(prefix string, t time.Time) string {
	var b [idRandLen]byte
	ms := uint64(max(t.UnixMilli(), 0))
	for i := idTimeLen - 1; i >= 0; i-- {
		b[i] = sortedBase32[ms&31]
		ms >>= 5
	}
	copy(b[idTimeLen:], strings.ToLower(rand.Text())[:idRandLen-idTimeLen])
	return prefix + "_" + string(b[:])
}

// CheckID reports ErrInvalid unless id is prefix + "_" + 26 characters of
// [a-z2-7] — the only shape NewID produces. The message never quotes the id.
func CheckID(prefix, id string) error {
	rest, ok := strings.CutPrefix(id, prefix+"_")
	if !ok || len(rest) != idRandLen {
		return fmt.Errorf("%w: %s id must be %s_ and %d base32 characters", ErrInvalid, prefix, prefix, idRandLen)
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return fmt.Errorf("%w: %s id must be %s_ and %d base32 characters", ErrInvalid, prefix, prefix, idRandLen)
		}
	}
	return nil
}
