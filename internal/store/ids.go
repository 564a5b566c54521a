package store

import (
	"crypto/rand"
	"fmt"
	"strings"
)

// Prefixes of the record ids the store generates: an id is the prefix, an
// underscore and 26 lower-case base32 characters (130 random bits), e.g.
// "agt_3h7kq…". The prefix says what the id names, so an id of one kind
// pasted where another is expected fails validation instead of matching.
const (
	PrefixAgent        = "agt"
	PrefixCounterparty = "cp"
	PrefixDecision     = "dec"
	PrefixReceipt      = "rct"
	PrefixCase         = "case"
)

// idRandLen is the length of an id's random part (rand.Text's output).
const idRandLen = 26

// NewID returns a fresh random id with prefix (one of the Prefix
// constants): prefix + "_" + 26 characters of [a-z2-7].
func NewID(prefix string) string {
	return prefix + "_" + strings.ToLower(rand.Text())
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
