package identity

import (
	"bytes"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// memberNames are the members of a JOSE header or claims set that this
// package reads, and the forms a case-insensitive reader matches to them.
type memberNames struct {
	names  []string
	folded []string // foldName(names[i])
}

func newMemberNames(names ...string) memberNames {
	m := memberNames{names: names, folded: make([]string, len(names))}
	for i, n := range names {
		m.folded[i] = foldName(n)
	}
	return m
}

var errNotJSON = errors.New("not valid JSON")

// checkMemberNames accepts exactly one JSON object, in valid UTF-8, in
// which no object at any depth has two members of one name, and no member
// of the object has a name that is not one of known's but folds to one.
//
// SPEC: RFC 7515 §4 and RFC 7519 §4 — member names are case-sensitive,
// and a JOSE library (jwx, go-jose) reads {"KID":…} as a header without a
// kid. encoding/json v1 matches a struct field's name case-insensitively,
// and v2's MatchCaseInsensitiveNames also ignores '_' and '-': such readers
// take "KID" for "kid" and "Client-ID" for "client_id". A header or claims
// set with such a name, or with a duplicate, is read two ways: it is
// refused rather than read one of them. Members whose names fold to none
// read here are not looked at (RFC 7515 §4, RFC 7519 §4: ignored). Errors
// quote member names, never values.
//
// internal/signing's checkMemberNames does the same for receipts, with
// nested members: the claims read here are all at the top level.
func checkMemberNames(b []byte, known memberNames) error {
	// A bytes.Buffer is parsed in place, not copied.
	dec := jsontext.NewDecoder(bytes.NewBuffer(b))
	if dec.PeekKind() != '{' {
		return errors.New("not a JSON object")
	}
	if _, err := dec.ReadToken(); err != nil {
		return jsonError(err)
	}
	for dec.PeekKind() != '}' {
		quoted, err := dec.ReadValue() // the name; valid until the next read
		if err != nil {
			return jsonError(err)
		}
		name := quoted[1 : len(quoted)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			if name, err = jsontext.AppendUnquote(nil, quoted); err != nil {
				return errNotJSON
			}
		}
		if exact, folds := known.foldsTo(name); folds {
			return fmt.Errorf("member %q is not %q", name, exact)
		}
		// Checks duplicates and UTF-8 inside the value too.
		if err := dec.SkipValue(); err != nil {
			return jsonError(err)
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return jsonError(err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return errors.New("not exactly one JSON object")
	}
	return nil
}

// foldsTo reports the name in m that name is not, but that a
// case-insensitive reader matches it to.
func (m memberNames) foldsTo(name []byte) (string, bool) {
	for _, n := range m.names {
		if string(name) == n {
			return "", false
		}
	}
	folded := foldName(string(name))
	for i, f := range m.folded {
		if f == folded {
			return m.names[i], true
		}
	}
	return "", false
}

// jsonError names a duplicate member; any other error is errNotJSON, whose
// text quotes nothing from the input.
func jsonError(err error) error {
	if err == nil {
		return nil
	}
	if se, ok := errors.AsType[*jsontext.SyntacticError](err); ok && errors.Is(err, jsontext.ErrDuplicateName) {
		return fmt.Errorf("duplicate member %q", se.JSONPointer.LastToken())
	}
	return errNotJSON
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
