package strictjson

import (
	"cmp"
	"encoding"
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// encoding/json matches a member name to a struct field case-insensitively,
// under Unicode simple folding ("TYPE", "Type" and "ty\u017fe" would all fill
// a field named "type"), and DisallowUnknownFields refuses only names that
// fold to no field. So the pre-pass checks names itself, against a shape of
// the target type: in an object that decodes into a struct, a member name
// must be a field's JSON name byte for byte (after unescaping), or it is an
// unknown field. The decoder then never sees a name it would fold.

// shape is what the pre-pass knows of the Go type a JSON value decodes into:
// the exact names of a struct's fields and what a container holds. A nil
// *shape is a value whose member names are not the target's to check: an
// interface (decoded as maps), a type with its own decoder (json.RawMessage,
// time.Time), a scalar.
type shape struct {
	kind   shapeKind
	fields map[string]*shape // shapeStruct: by exact JSON name
	elem   *shape            // shapeMap, shapeList: of each member or element
}

type shapeKind uint8

const (
	shapeStruct shapeKind = iota + 1 // decodes from an object; names are fields
	shapeMap                         // decodes from an object; names are keys
	shapeList                        // decodes from an array
)

// errUnsupportedTarget: a struct type whose fields this package does not
// model as encoding/json does. Decode refuses it (ErrInvalidTarget) rather
// than guess which names it would accept.
var errUnsupportedTarget = errors.New("unsupported struct type")

type shapeResult struct {
	shape *shape
	err   error
}

// shapeCache holds the shape of each target type Decode was given.
var shapeCache sync.Map // reflect.Type → shapeResult

// shapeOf returns the shape of t, built once per type.
func shapeOf(t reflect.Type) (*shape, error) {
	if r, ok := shapeCache.Load(t); ok {
		r := r.(shapeResult)
		return r.shape, r.err
	}
	b := shapeBuilder{seen: make(map[reflect.Type]*shape)}
	s := b.of(t)
	r, _ := shapeCache.LoadOrStore(t, shapeResult{shape: s, err: b.err})
	return r.(shapeResult).shape, r.(shapeResult).err
}

type shapeBuilder struct {
	seen map[reflect.Type]*shape // recursive types share their shape
	err  error
}

func (b *shapeBuilder) of(t reflect.Type) *shape {
	for {
		// encoding/json calls a method of t or *t before it looks at t's
		// kind; it derefs pointers one at a time, checking each.
		if implementsAny(t, unmarshalerTypes) {
			return nil
		}
		if t.Kind() != reflect.Pointer {
			break
		}
		t = t.Elem()
	}
	if s, ok := b.seen[t]; ok {
		return s
	}
	var s *shape
	switch t.Kind() {
	case reflect.Struct:
		s = &shape{kind: shapeStruct}
		b.seen[t] = s
		fields, err := structFields(t)
		if err != nil {
			b.err = cmp.Or(b.err, err)
			return s
		}
		s.fields = make(map[string]*shape, len(fields))
		for _, f := range fields {
			s.fields[f.name] = b.of(f.typ)
		}
	case reflect.Map:
		s = &shape{kind: shapeMap}
		b.seen[t] = s
		s.elem = b.of(t.Elem())
	case reflect.Slice, reflect.Array:
		s = &shape{kind: shapeList}
		b.seen[t] = s
		s.elem = b.of(t.Elem())
	}
	return s
}

var (
	unmarshalerTypes = []reflect.Type{
		reflect.TypeFor[json.Unmarshaler](),
		reflect.TypeFor[jsonv2.UnmarshalerFrom](),
		reflect.TypeFor[encoding.TextUnmarshaler](),
	}
	methodTypes = append([]reflect.Type{
		reflect.TypeFor[json.Marshaler](),
		reflect.TypeFor[jsonv2.MarshalerTo](),
		reflect.TypeFor[encoding.TextMarshaler](),
		reflect.TypeFor[encoding.TextAppender](),
	}, unmarshalerTypes...)
	jsontextValueType = reflect.TypeFor[jsontext.Value]()
)

// implementsAny reports whether t or *t implements one of ifaces.
func implementsAny(t reflect.Type, ifaces []reflect.Type) bool {
	for _, iface := range ifaces {
		if t.Implements(iface) || reflect.PointerTo(t).Implements(iface) {
			return true
		}
	}
	return false
}

// field is a struct field that a JSON member name selects.
type field struct {
	name    string
	hasName bool // named by its json tag, not by its Go name
	depth   int  // of embedding: 1 for root's own fields
	typ     reflect.Type
}

// structFields lists the fields of root that encoding/json (Go 1.27, whose
// v1 API runs on encoding/json/v2's makeStructFields) matches member names
// against: exported fields not tagged "-", named by their tag or else their
// Go name; the fields of embedded structs promoted, breadth-first; of fields
// with one name, the shallowest wins, then the one named by a tag, and none
// when that leaves a tie. An embedded map or jsontext.Value (an inlined
// "fallback" that takes every other name) is not modelled, nor is a tag that
// parseTag does not read: such a type is errUnsupportedTarget.
func structFields(root reflect.Type) ([]field, error) {
	type entry struct {
		typ           reflect.Type
		depth         int
		visitChildren bool
	}
	queue := []entry{{root, 0, true}}
	seen := map[reflect.Type]bool{root: true}
	var all []field
	for i := 0; i < len(queue); i++ {
		qe := queue[i]
		t := qe.typ
		for j := range t.NumField() {
			sf := t.Field(j)
			tag, _ := sf.Tag.Lookup("json")
			if tag == "-" || (!sf.IsExported() && !sf.Anonymous) {
				continue
			}
			opts, err := parseTag(sf.Name, tag)
			if err != nil {
				return nil, err
			}
			tf := sf.Type
			if tf.Kind() == reflect.Pointer && tf.Name() == "" {
				tf = tf.Elem()
			}
			embed := opts.embed || (sf.Anonymous && !opts.hasName && tf.Kind() == reflect.Struct)
			if embed && opts.hasName {
				embed = false // a named field is a field, whatever its options
			}
			if embed {
				if tf.Kind() == reflect.Struct {
					if qe.visitChildren {
						queue = append(queue, entry{tf, qe.depth + 1, !seen[tf]})
					}
					seen[tf] = true
					continue
				}
				if !sf.IsExported() {
					continue
				}
				if tf == jsontextValueType || (tf.Kind() == reflect.Map && tf.Key().Kind() == reflect.String && !implementsAny(tf.Key(), methodTypes)) {
					return nil, errUnsupportedTarget // an inlined fallback
				}
				// Any other embedded type is an ordinary field.
			}
			if !sf.IsExported() {
				// Only an unexported embedded struct (given a name) is
				// still a field, when encoding/json can reach into it.
				if !(sf.Anonymous && tf.Kind() == reflect.Struct) || implementsAny(tf, methodTypes) {
					continue
				}
				if opts.omitzero && implementsAny(tf, []reflect.Type{reflect.TypeFor[interface{ IsZero() bool }]()}) {
					continue
				}
			}
			all = append(all, field{name: opts.name, hasName: opts.hasName, depth: qe.depth + 1, typ: sf.Type})
		}
	}
	slices.SortStableFunc(all, func(x, y field) int {
		return cmp.Or(strings.Compare(x.name, y.name), cmp.Compare(x.depth, y.depth), boolCompare(!x.hasName, !y.hasName))
	})
	kept := all[:0]
	for len(all) > 0 {
		n := 1
		for n < len(all) && all[n].name == all[0].name {
			n++
		}
		if n == 1 || all[0].depth != all[1].depth || all[0].hasName != all[1].hasName {
			kept = append(kept, all[0])
		}
		all = all[n:]
	}
	return kept, nil
}

func boolCompare(x, y bool) int {
	switch {
	case !x && y:
		return -1
	case x && !y:
		return +1
	}
	return 0
}

type tagOptions struct {
	name     string
	hasName  bool // a name before the first comma
	embed    bool
	omitzero bool
}

// parseTag reads a json struct tag as encoding/json/v2's parseFieldOptions
// does, for what decides member names. A name holding a quote, a backquote or
// a backslash, a name of invalid UTF-8, or an option that is neither an
// identifier nor `case:ignore`/`case:strict` (`format:…`, which encoding/json
// refuses anyway under its v1 API) is errUnsupportedTarget.
func parseTag(goName, tag string) (tagOptions, error) {
	out := tagOptions{name: goName}
	name, rest, hasOptions := strings.Cut(tag, ",")
	if name != "" {
		if strings.ContainsAny(name, "\\'\"`") || !utf8.ValidString(name) {
			return out, errUnsupportedTarget
		}
		out.name, out.hasName = name, true
	}
	if !hasOptions {
		return out, nil
	}
	for opt := range strings.SplitSeq(rest, ",") {
		switch opt {
		case "embed":
			out.embed = true
		case "omitzero":
			out.omitzero = true
		case "", "omitempty", "string", "case:ignore", "case:strict":
		default:
			// `format:…` is not an identifier. Any identifier is an
			// option encoding/json ignores.
			if !isOption(opt) {
				return out, errUnsupportedTarget
			}
		}
	}
	return out, nil
}

func isOption(s string) bool {
	for i, r := range s {
		if r != '_' && !unicode.IsLetter(r) && (i == 0 || !unicode.IsNumber(r)) {
			return false
		}
	}
	return s != ""
}
