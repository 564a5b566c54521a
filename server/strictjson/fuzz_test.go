package strictjson

import (
	"bytes"
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// fuzzOpts keeps inputs small enough for the fuzzer to reach every limit.
var fuzzOpts = Options{MaxBytes: 4096, MaxDepth: 8}

// FuzzDecode checks Decode against a naive reference written independently
// of its token pre-pass: a byte walk over input that json.Valid accepted.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"action":{"type":"payment.send","amount":{"value":"1.00","currency":"EUR"},"params":{"po":"PO-77"}},"reason":"r"}`,
		`{"a":1,"a":2}`,
		`{"Type":1,"type":2}`,
		`{"k":1,"\u212a":2}`,
		`{"action":{"Type":"a.b"},"rea\u017fon":"r"}`,
		`{"a":[[[[[[[[1]]]]]]]]}`,
		`{"a":{"b":{"c":{"d":{"e":{"f":{"g":{}}}}}}}}`,
		`{} {}`,
		`{}x`,
		`[]`,
		`{"s":"\ud800"}`,
		`{"s":"\ud83d\ude00"}`,
		`{"s":"\\ud800"}`,
		"{\"s\":\"\xff\"}",
		` {"n":1e400} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m map[string]any
		err := Decode(data, &m, fuzzOpts)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			if !isSentinel(e.Kind) {
				t.Fatalf("unexpected kind %v", e.Kind)
			}
			assertSafeMessage(t, err.Error())
		}

		accepted := err == nil
		if accepted {
			if !json.Valid(data) {
				t.Fatalf("accepted invalid JSON %q", data)
			}
			depth, dup, _ := refWalk(data)
			if dup {
				t.Fatalf("accepted duplicate keys in %q", data)
			}
			if depth > fuzzOpts.MaxDepth {
				t.Fatalf("accepted depth %d > %d in %q", depth, fuzzOpts.MaxDepth, data)
			}
		}
		if want := refAccepts(data, fuzzOpts); accepted != want {
			t.Fatalf("Decode(%q) accepted=%v (err %v), reference says %v", data, accepted, err, want)
		}

		// A struct target only adds rules (unknown fields, types): it may
		// reject what the map accepted, never the reverse.
		var r request
		serr := Decode(data, &r, fuzzOpts)
		if serr == nil && !accepted {
			t.Fatalf("struct target accepted %q that the map target rejected: %v", data, err)
		} else if serr != nil {
			assertSafeMessage(t, serr.Error())
		}
		// Names are matched exactly: encoding/json told to match them so
		// finds no unknown field in what Decode accepted.
		if serr == nil && exactUnknownField(data) {
			t.Fatalf("accepted %q, which has a name that is no field's exactly", data)
		}
	})
}

// exactUnknownField reports whether encoding/json, with v1 semantics but
// names matched exactly, finds an unknown field of request in data.
func exactUnknownField(data []byte) bool {
	err := jsonv2.Unmarshal(data, &request{}, json.DefaultOptionsV1(),
		jsonv2.MatchCaseInsensitiveNames(false), jsonv2.RejectUnknownMembers(true))
	return err != nil && strings.HasPrefix(err.Error(), "json: unknown field ")
}

func isSentinel(err error) bool {
	for _, s := range []error{ErrEmpty, ErrTooLarge, ErrInvalidUTF8, ErrSyntax, ErrNotObject,
		ErrTooDeep, ErrDuplicateKey, ErrTrailingData, ErrUnknownField, ErrType, ErrInvalidValue} {
		if err == s {
			return true
		}
	}
	return false
}

// refAccepts is the reference rule set for a map target.
func refAccepts(data []byte, opts Options) bool {
	if len(data) > opts.MaxBytes || !utf8.Valid(data) || !json.Valid(data) {
		return false
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return false
	}
	depth, dup, lone := refWalk(data)
	return depth <= opts.MaxDepth && !dup && !lone
}

// refWalk walks input that json.Valid accepted and reports its nesting depth,
// whether an object repeats a key (exactly or by strings.EqualFold), and
// whether a string escapes a lone surrogate.
func refWalk(data []byte) (maxDepth int, dup, lone bool) {
	var stack [][]string // keys seen per open container; nil for arrays
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{', '[':
			stack = append(stack, []string{})
			maxDepth = max(maxDepth, len(stack))
		case '}', ']':
			stack = stack[:len(stack)-1]
		case '"':
			end := i + 1
			for data[end] != '"' {
				if data[end] == '\\' {
					end++
				}
				end++
			}
			s, ok := refUnquote(data[i+1 : end])
			lone = lone || !ok
			j := end + 1
			for j < len(data) && strings.IndexByte(" \t\r\n", data[j]) >= 0 {
				j++
			}
			if j < len(data) && data[j] == ':' {
				top := len(stack) - 1
				for _, k := range stack[top] {
					if k == s || strings.EqualFold(k, s) {
						dup = true
					}
				}
				stack[top] = append(stack[top], s)
			}
			i = end
		}
	}
	return maxDepth, dup, lone
}

// refUnquote decodes the inside of a valid JSON string literal; ok is false
// for a lone surrogate escape.
func refUnquote(b []byte) (string, bool) {
	var out []rune
	for i := 0; i < len(b); {
		if b[i] != '\\' {
			r, n := utf8.DecodeRune(b[i:])
			out = append(out, r)
			i += n
			continue
		}
		esc := b[i+1]
		i += 2
		switch esc {
		case 'u':
			u, _ := strconv.ParseUint(string(b[i:i+4]), 16, 32)
			r := rune(u)
			i += 4
			if utf16.IsSurrogate(r) {
				if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
					return "", false
				}
				u2, _ := strconv.ParseUint(string(b[i+2:i+6]), 16, 32)
				r = utf16.DecodeRune(r, rune(u2))
				if r == utf8.RuneError {
					return "", false
				}
				i += 6
			}
			out = append(out, r)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		default: // '"', '\\', '/'
			out = append(out, rune(esc))
		}
	}
	return string(out), true
}
