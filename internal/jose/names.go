// Package jose reads JOSE JSON (RFC 7515, RFC 7519) as every JOSE reader
// reads it. Check refuses texts that readers read differently for their
// member names: a duplicate name, or a name that is not one a reader
// interprets but that a case-insensitive reader takes for it. ParseHeader
// reads a compact JWS's protected header by exact name.
//
// SPEC: RFC 7515 §4 and RFC 7519 §4 — JOSE member names are
// case-sensitive, and a JOSE library (jwx, go-jose) reads {"KID":…} as a
// header without a kid. encoding/json v1 matches a struct field's name
// case-insensitively, and v2's MatchCaseInsensitiveNames also ignores '_'
// and '-': such readers take "KID" for "kid" and "Decision-ID" for
// "decision_id". A text with such a name, or with a duplicate, is read two
// ways: Check refuses it rather than have it read one of them.
package jose

import (
	"bytes"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// Members names the members a reader interprets in a JSON object. Each
// name maps to the members interpreted in its value when that is an object,
// or an array of objects; to nil when the value is read whole or not at all.
type Members map[string]Members

// Flat is the Members of an object whose members' values are read whole.
func Flat(names ...string) Members {
	m := make(Members, len(names))
	for _, n := range names {
		m[n] = nil
	}
	return m
}

// Check accepts exactly one JSON object, in valid UTF-8, in which no
// object has two members of one name and no object that known describes
// has a member whose name is not one of known's but folds to one (see the
// package doc). Members known does not describe are not looked at (RFC
// 7515 §4, RFC 7519 §4: ignored). Errors quote member names, never values.
func Check(b []byte, known Members) error { return check(b, known, foldName) }

// CheckCaseFolded is Check for a text only readers that fold case alone
// read, as encoding/json v1 does (OPA reads bundle signatures so): to
// them a name that differs from a known one by '_' or '-' is another
// member, and is accepted ("key-id" beside "keyid").
func CheckCaseFolded(b []byte, known Members) error { return check(b, known, foldCase) }

func check(b []byte, known Members, fold func(string) string) error {
	// A bytes.Buffer is parsed in place, not copied.
	dec := jsontext.NewDecoder(bytes.NewBuffer(b))
	if dec.PeekKind() != '{' {
		return errors.New("not a JSON object")
	}
	if err := checkValueNames(dec, known, fold); err != nil {
		return err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return errors.New("not exactly one JSON object")
	}
	return nil
}

// checkValueNames reads the next value, checking the names of its members
// against known when it is an object, and of its elements' when an array.
// The decoder refuses duplicate names and invalid UTF-8 at any depth.
func checkValueNames(dec *jsontext.Decoder, known Members, fold func(string) string) error {
	if known == nil {
		return jsonError(dec.SkipValue())
	}
	switch dec.PeekKind() {
	case '[':
		if _, err := dec.ReadToken(); err != nil {
			return jsonError(err)
		}
		for dec.PeekKind() != ']' {
			if err := checkValueNames(dec, known, fold); err != nil {
				return err
			}
		}
		_, err := dec.ReadToken()
		return jsonError(err)
	case '{':
	default:
		return jsonError(dec.SkipValue())
	}
	if _, err := dec.ReadToken(); err != nil {
		return jsonError(err)
	}
	for dec.PeekKind() != '}' {
		quoted, err := dec.ReadValue() // valid until the next read
		if err != nil {
			return jsonError(err)
		}
		name := quoted[1 : len(quoted)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			if name, err = jsontext.AppendUnquote(nil, quoted); err != nil {
				return ErrNotJSON
			}
		}
		inner, ok := known[string(name)]
		if !ok {
			if exact, folds := foldsToMember(string(name), known, fold); folds {
				return fmt.Errorf("member %q is not %q", name, exact)
			}
		}
		if err := checkValueNames(dec, inner, fold); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return jsonError(err)
}

// ErrNotJSON: the text is not valid JSON. Its text quotes nothing from
// the input.
var ErrNotJSON = errors.New("not valid JSON")

// jsonError names a duplicate member; any other error is ErrNotJSON.
func jsonError(err error) error {
	if err == nil {
		return nil
	}
	if se, ok := errors.AsType[*jsontext.SyntacticError](err); ok && errors.Is(err, jsontext.ErrDuplicateName) {
		return fmt.Errorf("duplicate member %q", se.JSONPointer.LastToken())
	}
	return ErrNotJSON
}

// foldsToMember reports the name in known that name is not, but that a
// case-insensitive reader matches it to.
func foldsToMember(name string, known Members, fold func(string) string) (string, bool) {
	folded := fold(name)
	for exact := range known {
		if fold(exact) == folded {
			return exact, true
		}
	}
	return "", false
}

// foldName is name as encoding/json/v2 matches it case-insensitively
// (v1 matches a subset): Unicode simple case folding, so the Kelvin sign
// U+212A is 'k', without '_' and '-'.
func foldName(name string) string {
	var b strings.Builder
	for _, r := range name {
		if r == '_' || r == '-' {
			continue
		}
		b.WriteRune(foldRune(r))
	}
	return b.String()
}

// foldCase is name as encoding/json v1 matches it: Unicode simple case
// folding alone.
func foldCase(name string) string {
	var b strings.Builder
	for _, r := range name {
		b.WriteRune(foldRune(r))
	}
	return b.String()
}

// foldRune returns the smallest rune of r's case-folding orbit.
func foldRune(r rune) rune {
	for {
		next := unicode.SimpleFold(r)
		if next <= r {
			return next
		}
		r = next
	}
}
