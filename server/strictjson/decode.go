package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"reflect"
	"strconv"
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
// The decoding is encoding/json/v2's, which matches member names to struct
// fields exactly and refuses the others. A target type with a way around
// that (a catch-all field, case:ignore, a named interface type) or that
// json/v2 cannot decode is ErrInvalidTarget whatever the body. Decode into
// zero values.
func Decode(data []byte, v any, opts Options) error {
	opts = opts.withDefaults()
	if rv := reflect.ValueOf(v); rv.Kind() != reflect.Pointer || rv.IsNil() || checkTarget(rv.Type()) != nil {
		return newError(ErrInvalidTarget, "", -1)
	}
	switch {
	case len(bytes.TrimLeft(data, " \t\r\n")) == 0:
		return newError(ErrEmpty, "", -1)
	case len(data) > opts.MaxBytes:
		return newError(ErrTooLarge, "", -1)
	case !utf8.Valid(data):
		return newError(ErrInvalidUTF8, "", int64(firstInvalidUTF8(data)))
	}
	pre := scanner{data: data, maxDepth: opts.MaxDepth}
	if err := pre.run(); err != nil {
		return err
	}
	if err := jsonv2.Unmarshal(data, v, decodeOptions); err != nil {
		return decodeError(err, data)
	}
	return nil
}

var decodeOptions = jsonv2.JoinOptions(
	jsonv2.RejectUnknownMembers(true),
	jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, v *any) error {
		var err error
		*v, err = anyValue(dec)
		return err
	})),
)

// anyValue reads the next value as json/v2 would into an interface{}, but
// with numbers as json.Number: json/v2 has no UseNumber.
func anyValue(dec *jsontext.Decoder) (any, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{':
		m := make(map[string]any)
		for dec.PeekKind() != '}' {
			name, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			key := name.String() // before the next read voids name
			if m[key], err = anyValue(dec); err != nil {
				return nil, err
			}
		}
		_, err = dec.ReadToken()
		return m, err
	case '[':
		l := []any{}
		for dec.PeekKind() != ']' {
			e, err := anyValue(dec)
			if err != nil {
				return nil, err
			}
			l = append(l, e)
		}
		_, err = dec.ReadToken()
		return l, err
	case '0':
		return json.Number(tok.String()), nil
	case '"':
		return tok.String(), nil
	case 't', 'f':
		return tok.Bool(), nil
	default: // 'n'
		return nil, nil
	}
}

// decodeError turns a json/v2 error, whose text names Go types and quotes
// client values, into an *Error that does neither.
func decodeError(err error, data []byte) error {
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		// The pre-pass has refused every syntax error; json/v2 still finds
		// two map keys that convert to one ("0" and "-0" into map[int]T).
		if errors.Is(syn.Err, jsontext.ErrDuplicateName) {
			return newError(ErrDuplicateKey, pointerPath(data, syn.JSONPointer), syn.ByteOffset)
		}
		return newError(ErrSyntax, "", syn.ByteOffset)
	}
	var sem *jsonv2.SemanticError
	if !errors.As(err, &sem) {
		return newError(ErrInvalidValue, "", -1)
	}
	path := pointerPath(data, sem.JSONPointer)
	switch {
	case errors.Is(sem.Err, jsonv2.ErrUnknownName):
		return newError(ErrUnknownField, path, -1)
	case sem.Err != nil:
		// json/v2 gives a cause when the value's JSON type was right and
		// the value was not: out of range, a map key that is no number, an
		// array of another length, the field's own decoder refusing it.
		return newError(ErrInvalidValue, path, sem.ByteOffset)
	}
	e := newError(ErrType, path, sem.ByteOffset)
	e.expected = jsonKind(sem.GoType)
	return e
}

// pointerPath renders a JSON Pointer into data as a path. A pointer cannot
// tell an array index from a member named by digits, so data says which
// each step is; where it cannot, the path stops there.
func pointerPath(data []byte, ptr jsontext.Pointer) string {
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	var segs []segment
	for tok := range ptr.Tokens() {
		switch dec.PeekKind() {
		case '{':
			if _, err := dec.ReadToken(); err != nil {
				return formatPath(segs)
			}
			for {
				if dec.PeekKind() != '"' {
					return formatPath(segs)
				}
				name, err := dec.ReadToken()
				if err != nil {
					return formatPath(segs)
				}
				if name.String() == tok {
					break
				}
				if dec.SkipValue() != nil {
					return formatPath(segs)
				}
			}
			segs = append(segs, segment{key: tok})
		case '[':
			n, err := strconv.Atoi(tok)
			if err != nil || n < 0 {
				return formatPath(segs)
			}
			if _, err := dec.ReadToken(); err != nil {
				return formatPath(segs)
			}
			for range n {
				if dec.SkipValue() != nil {
					return formatPath(segs)
				}
			}
			segs = append(segs, segment{index: n, isIndex: true})
		default:
			return formatPath(segs)
		}
	}
	return formatPath(segs)
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
		if t.Elem().Kind() == reflect.Uint8 && !hasDecoder(t.Elem()) {
			return "string" // base64, as json/v2 reads bytes
		}
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
