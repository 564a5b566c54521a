package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Defaults match the decision API contract (DESIGN.md §3).
const (
	DefaultMaxBytes = 64 << 10
	DefaultMaxDepth = 8
)

// Options bound the input. Zero or negative values mean the default.
type Options struct {
	// MaxBytes is the largest body accepted, in bytes.
	MaxBytes int
	// MaxDepth is the deepest nesting of objects and arrays accepted; the
	// top-level object is depth 1.
	MaxDepth int
}

func (o Options) withDefaults() Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	return o
}

// Decode decodes data, a single JSON object, into v (a non-nil pointer),
// after checking every rule in the package comment. Numbers decoded into an
// interface{} become json.Number, so no amount is rounded through float64.
// On error v may be partly filled and must be discarded; the error is an
// *Error wrapping one of the package's sentinels.
//
// Member names are checked against v's type, not its value: a struct that
// an interface field of v already points to (encoding/json decodes into it)
// is matched up to case. Decode into zero values.
func Decode(data []byte, v any, opts Options) error {
	opts = opts.withDefaults()
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return newError(ErrInvalidTarget, "", -1)
	}
	root, err := shapeOf(rv.Type())
	if err != nil {
		return newError(ErrInvalidTarget, "", -1)
	}
	switch {
	case len(bytes.TrimLeft(data, " \t\r\n")) == 0:
		return newError(ErrEmpty, "", -1)
	case len(data) > opts.MaxBytes:
		return newError(ErrTooLarge, "", -1)
	case !utf8.Valid(data):
		// encoding/json would replace bad bytes with U+FFFD and carry on.
		return newError(ErrInvalidUTF8, "", int64(firstInvalidUTF8(data)))
	}
	pre := scanner{data: data, maxDepth: opts.MaxDepth, root: root}
	if err := pre.run(); err != nil {
		return err
	}
	if pre.unknown != nil {
		return pre.unknown
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, data, opts)
	}
	return nil
}

// decodeError turns an encoding/json error, whose text names Go types and
// quotes client values, into an *Error that does neither.
func decodeError(err error, data []byte, opts Options) error {
	var typeErr *json.UnmarshalTypeError
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		// A Go 1.27+ (json/v2-backed) type error may wrap the error of a
		// field's own UnmarshalJSON/UnmarshalText: the value, not its type,
		// was wrong.
		e := newError(ErrInvalidValue, fieldPath(typeErr.Field), typeErr.Offset)
		if errors.Unwrap(typeErr) == nil {
			e.Kind, e.expected = ErrType, jsonKind(typeErr.Type)
		}
		return e
	case errors.As(err, &syn):
		return newError(ErrSyntax, "", syn.Offset)
	}
	var target *json.InvalidUnmarshalError
	if errors.As(err, &target) {
		return newError(ErrInvalidTarget, "", -1)
	}
	// encoding/json reports an unknown field only as text:
	// `json: unknown field "name"`.
	if quoted, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		e := newError(ErrUnknownField, "", -1)
		if name, uerr := strconv.Unquote(quoted); uerr == nil {
			e.Path = unknownFieldPath(data, name, opts)
		}
		return e
	}
	return newError(ErrInvalidValue, "", -1)
}

// fieldPath turns UnmarshalTypeError.Field ("action.list.1.value") into a
// JSON path. Since Go 1.27 the field holds map keys too, so every segment is
// escaped and truncated like any client key. A key holding a "." is split:
// the path is then approximate, never unsafe.
func fieldPath(field string) string {
	if field == "" {
		return ""
	}
	parts := strings.Split(field, ".")
	segs := make([]segment, 0, len(parts))
	for _, p := range parts {
		if n, err := strconv.Atoi(p); err == nil && n >= 0 && p == strconv.Itoa(n) {
			segs = append(segs, segment{index: n, isIndex: true})
			continue
		}
		segs = append(segs, segment{key: p})
	}
	return formatPath(segs)
}

// unknownFieldPath finds where the key name occurs; when it occurs in more
// than one place the path is not told, rather than guessed.
func unknownFieldPath(data []byte, name string, opts Options) string {
	s := scanner{data: data, maxDepth: opts.MaxDepth, findKey: name}
	if s.run() != nil || len(s.found) != 1 {
		return ""
	}
	return s.found[0]
}

// jsonKind names the JSON type a Go type decodes from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return ""
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	// A type with its own decoder says what it accepts, not its Kind.
	if p := reflect.PointerTo(t); p.Implements(reflect.TypeFor[json.Unmarshaler]()) {
		return ""
	} else if p.Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		return "string"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	default:
		return ""
	}
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}
