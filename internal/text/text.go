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
	// Name names someone or something (who uploaded or activated a
	// policy, an agent, an organization): as Line, and without the
	// right-to-left marks either, which a name has no need of (Fold, which
	// compares names, removes them).
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

// Fold is the key under which two names are compared: close to Unicode's
// NFKC_Casefold (UAX #44; UAX #31 compares identifiers so), each letter
// then taken to the least code point of its case orbit (so the key is
// mostly upper case: Fold("Straße") is "STRASSE"), and each run of white
// space one space, none around. Compatibility forms fold to the plain
// letter (full-width "ａ" to "a"), case folds fully ("ß" to "ss"), and the
// default-ignorable code points a renderer shows as nothing (zero-width
// space and joiners, soft hyphen, variation selectors, bidirectional
// marks) are removed, so that "alice", "Alice", "ａｌｉｃｅ", "al\u200bice"
// and " alice " are one name. Letters of other scripts that look alike
// (Cyrillic "а", Latin "a") stay two. It is a key, not a name to show.
//
// Fold(Fold(s)) is Fold(s): NFKC and case folding can each undo the
// other's form, so they are applied until neither changes anything.
func Fold(name string) string {
	s := name
	for range maxFoldRounds {
		next := foldOnce(s)
		if next == s {
			break
		}
		s = next
	}
	return s
}

// maxFoldRounds bounds Fold's rounds; every code point reaches its fixed
// point within two (TestFoldIsIdempotent).
const maxFoldRounds = 4

func foldOnce(s string) string {
	s = cases.Fold().String(norm.NFKC.String(s))
	s = strings.Map(func(r rune) rune {
		if ignorable(r) {
			return -1
		}
		return caseClass(r)
	}, s)
	return norm.NFKC.String(strings.Join(strings.Fields(s), " "))
}

// caseClass is the least code point of r's simple case folding orbit
// (unicode.SimpleFold): one letter for all of its cases. x/text's
// cases.Fold maps Cherokee lower case to upper and upper to lower
// (golang/go#46101), so Fold cannot rely on it alone.
func caseClass(r rune) rune {
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}

// Named reports whether name names something: once folded, it holds a
// letter or a digit. A name of nothing but invisible code points, marks,
// blanks that are not white space (U+2800) or punctuation is no name.
func Named(name string) bool {
	return strings.IndexFunc(Fold(name), func(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }) >= 0
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
