package strictjson

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors. Decode wraps them in an *Error; test them with errors.Is.
var (
	// ErrEmpty: the body is empty or only whitespace.
	ErrEmpty = errors.New("empty body")
	// ErrTooLarge: the body is longer than Options.MaxBytes.
	ErrTooLarge = errors.New("body too large")
	// ErrInvalidUTF8: the body is not valid UTF-8, or a string escapes a lone
	// UTF-16 surrogate (\ud800 without its pair), which encoding/json would
	// silently turn into U+FFFD (RFC 7493 §2.1 forbids both).
	ErrInvalidUTF8 = errors.New("invalid UTF-8")
	// ErrSyntax: the body is not JSON.
	ErrSyntax = errors.New("syntax error")
	// ErrNotObject: the top-level value is not an object.
	ErrNotObject = errors.New("top-level value is not an object")
	// ErrTooDeep: objects and arrays nest deeper than Options.MaxDepth.
	ErrTooDeep = errors.New("nesting too deep")
	// ErrDuplicateKey: an object repeats a key, exactly or up to case.
	ErrDuplicateKey = errors.New("duplicate key")
	// ErrTrailingData: something other than whitespace follows the value.
	ErrTrailingData = errors.New("trailing data after the value")
	// ErrUnknownField: a key of an object that decodes into a struct is
	// not, byte for byte, the JSON name of one of its fields.
	ErrUnknownField = errors.New("unknown field")
	// ErrType: a value has the wrong JSON type for its field.
	ErrType = errors.New("wrong type")
	// ErrInvalidValue: a value of the right JSON type that its field
	// refused: out of range, an array of another length, a map key that
	// its key type does not parse, or the field's own decoder
	// (UnmarshalJSON/UnmarshalText) said no.
	ErrInvalidValue = errors.New("invalid value")
	// ErrInvalidTarget: Decode was given something it cannot decode into
	// (nil, not a pointer, a type that lets member names other than its
	// fields' through or that json/v2 refuses). A programming error, not
	// a client error.
	ErrInvalidTarget = errors.New("invalid decode target")
)

// Error is the only error type Decode returns. Its message is safe to show a
// client: it names the kind, the JSON path and the offset, never a value.
type Error struct {
	// Kind is one of the sentinel errors above.
	Kind error
	// Path is the JSON path of the problem ("$", "$.action.params.x",
	// "$.items[3]"), or "" when unknown. Keys are escaped and truncated.
	Path string
	// Offset is the byte offset of the problem in the input, or -1.
	Offset int64
	// expected names the JSON type that was expected (ErrType only).
	expected string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.expected != "" {
		b.WriteString(" (expected ")
		b.WriteString(e.expected)
		b.WriteString(")")
	}
	if e.Path != "" {
		b.WriteString(" at ")
		b.WriteString(e.Path)
	}
	if e.Offset >= 0 {
		b.WriteString(" (offset ")
		b.WriteString(strconv.FormatInt(e.Offset, 10))
		b.WriteString(")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Kind }

func newError(kind error, path string, offset int64) *Error {
	return &Error{Kind: kind, Path: path, Offset: offset}
}
