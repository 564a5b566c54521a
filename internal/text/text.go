// Package text holds the rules for strings this service shows to people:
// approvers, auditors, administrators. What an agent, a policy or an
// administrator writes is recorded, signed and shown later, so it must
// read as what it is: no control character that a terminal or log viewer
// acts on (U+0000 among them, which PostgreSQL's text refuses), and none
// of the bidirectional embeddings, overrides and isolates that make text
// read otherwise than it is (CVE-2021-42574). Each field takes the Rule
// that fits it; there is one place that says what each allows.
package text

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// A Rule is what one kind of field may hold.
type Rule uint8

const (
	// Lines is free text that may span lines (a request's reason, an
	// action's resource and params): tabs, CR, LF and the Unicode line
	// and paragraph separators are allowed, and the marks right-to-left
	// text needs (U+200E, U+200F, U+061C).
	Lines Rule = iota
	// Line is one line of text (a policy's deny or escalate reason): as
	// Lines, with no tab or line break of any kind.
	Line
	// Name names someone (who uploaded or activated a policy): as Line,
	// and without the right-to-left marks, which would make one name two
	// (see Fold).
	Name
)

// Check returns nil if s follows r, or an error naming the first rune
// that does not ("holds the control character U+0000"), for its caller to
// wrap with the field's name.
func (r Rule) Check(s string) error {
	for i, c := range s {
		if c == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return errors.New("is not valid UTF-8")
			}
		}
		switch {
		case c == '\t' || c == '\n' || c == '\r' || c == '\u2028' || c == '\u2029':
			if r != Lines {
				return fmt.Errorf("holds the line break or tab %U", c)
			}
		case unicode.Is(unicode.Cc, c):
			return fmt.Errorf("holds the control character %U", c)
		case c == '\u200e' || c == '\u200f' || c == '\u061c':
			if r == Name {
				return fmt.Errorf("holds the bidirectional mark %U", c)
			}
		case unicode.Is(unicode.Bidi_Control, c):
			return fmt.Errorf("holds the bidirectional control %U", c)
		}
	}
	return nil
}

// Fold is the form in which two names are compared: Unicode's
// NFKC_Casefold (UAX #31, as PRECIS and IDNA compare identifiers), without
// surrounding space. Compatibility forms fold to the plain letter
// (full-width "ａ" to "a"), case folds, and the default-ignorable code
// points a renderer shows as nothing (zero-width space and joiners, soft
// hyphen, variation selectors, bidirectional marks) are removed, so that
// "alice", "Alice", "ａｌｉｃｅ" and "al\u200bice" are one name.
func Fold(name string) string {
	s := norm.NFKC.String(name)
	s = strings.Map(func(r rune) rune {
		if ignorable(r) {
			return -1
		}
		return r
	}, s)
	return strings.TrimSpace(norm.NFKC.String(cases.Fold().String(s)))
}

// ignorable reports whether r is a Default_Ignorable_Code_Point (Unicode
// DerivedCoreProperties: Other_Default_Ignorable_Code_Point, Cf and
// Variation_Selector, less white space and the format characters that
// are visible: interlinear annotation, Egyptian hieroglyph controls and
// prepended concatenation marks).
func ignorable(r rune) bool {
	switch {
	case unicode.Is(unicode.White_Space, r),
		r >= 0xfff9 && r <= 0xfffb,
		r >= 0x13430 && r <= 0x1343f,
		unicode.Is(unicode.Prepended_Concatenation_Mark, r):
		return false
	}
	return unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) ||
		unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Variation_Selector, r)
}
