package bundles

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// A policy input crosses to a worker in a compact binary form rather than
// JSON: decoding JSON into Go values and converting those to OPA's took
// as long as the evaluation itself. Each value is a tag byte, then:
//
//	'n', 't', 'f'   null, true, false: nothing
//	'd', 's'        a number (its decimal text) or a string: length, bytes
//	'a', 'S'        an array or a set: count, the elements
//	'o'             an object: count, then key and value of each member
//
// Lengths and counts are unsigned varints.

// maxValueDepth bounds how deeply a decoded value nests (the decision
// input is a few levels deep; params are bounded by the request's own
// limits well below this).
const maxValueDepth = 256

var errValue = errors.New("malformed policy input")

// appendValue appends v in the worker's form.
func appendValue(b []byte, v ast.Value) ([]byte, error) {
	switch v := v.(type) {
	case ast.Null:
		return append(b, 'n'), nil
	case ast.Boolean:
		if v {
			return append(b, 't'), nil
		}
		return append(b, 'f'), nil
	case ast.Number:
		return appendBytes(append(b, 'd'), string(v)), nil
	case ast.String:
		return appendBytes(append(b, 's'), string(v)), nil
	case *ast.Array:
		b = binary.AppendUvarint(append(b, 'a'), uint64(v.Len()))
		var err error
		for i := range v.Len() {
			if b, err = appendValue(b, v.Elem(i).Value); err != nil {
				return nil, err
			}
		}
		return b, nil
	case ast.Set:
		b = binary.AppendUvarint(append(b, 'S'), uint64(v.Len()))
		var err error
		for _, t := range v.Slice() {
			if b, err = appendValue(b, t.Value); err != nil {
				return nil, err
			}
		}
		return b, nil
	case ast.Object:
		b = binary.AppendUvarint(append(b, 'o'), uint64(v.Len()))
		var err error
		for _, k := range v.Keys() {
			if b, err = appendValue(b, k.Value); err != nil {
				return nil, err
			}
			if b, err = appendValue(b, v.Get(k).Value); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: a %T is not a value", errValue, v)
}

func appendBytes(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decodeValue reads one value of the worker's form, the whole of b.
func decodeValue(b []byte) (ast.Value, error) {
	d := valueDecoder{b: b}
	t, err := d.term(0)
	if err != nil {
		return nil, err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the value", errValue, len(d.b))
	}
	return t.Value, nil
}

type valueDecoder struct{ b []byte }

func (d *valueDecoder) uvarint() (int, error) {
	n, k := binary.Uvarint(d.b)
	// A count or length can be no larger than what is left to read (each
	// element takes at least a byte), which also bounds what it allocates.
	if k <= 0 || n > uint64(len(d.b)-k) {
		return 0, fmt.Errorf("%w: a bad length", errValue)
	}
	d.b = d.b[k:]
	return int(n), nil
}

func (d *valueDecoder) text() (string, error) {
	n, err := d.uvarint()
	if err != nil {
		return "", err
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s, nil
}

func (d *valueDecoder) term(depth int) (*ast.Term, error) {
	if depth > maxValueDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", errValue, maxValueDepth)
	}
	if len(d.b) == 0 {
		return nil, fmt.Errorf("%w: cut short", errValue)
	}
	tag := d.b[0]
	d.b = d.b[1:]
	switch tag {
	case 'n':
		return ast.NullTerm(), nil
	case 't', 'f':
		return ast.BooleanTerm(tag == 't'), nil
	case 'd':
		s, err := d.text()
		if err != nil {
			return nil, err
		}
		if !isJSONNumber(s) {
			return nil, fmt.Errorf("%w: %q is not a number", errValue, printable(s))
		}
		return ast.NumberTerm(json.Number(s)), nil
	case 's':
		s, err := d.text()
		if err != nil {
			return nil, err
		}
		return ast.StringTerm(s), nil
	case 'a', 'S':
		n, err := d.uvarint()
		if err != nil {
			return nil, err
		}
		elems := make([]*ast.Term, n)
		for i := range elems {
			if elems[i], err = d.term(depth + 1); err != nil {
				return nil, err
			}
		}
		if tag == 'S' {
			return ast.SetTerm(elems...), nil
		}
		return ast.ArrayTerm(elems...), nil
	case 'o':
		n, err := d.uvarint()
		if err != nil {
			return nil, err
		}
		members := make([][2]*ast.Term, n)
		for i := range members {
			if members[i][0], err = d.term(depth + 1); err != nil {
				return nil, err
			}
			if members[i][1], err = d.term(depth + 1); err != nil {
				return nil, err
			}
		}
		return ast.ObjectTerm(members...), nil
	}
	return nil, fmt.Errorf("%w: tag %q", errValue, tag)
}

// isJSONNumber reports whether s is a JSON number and nothing else.
func isJSONNumber(s string) bool {
	digit := func(c byte) bool { return '0' <= c && c <= '9' }
	return s != "" && (s[0] == '-' || digit(s[0])) && digit(s[len(s)-1]) && json.Valid([]byte(s))
}
