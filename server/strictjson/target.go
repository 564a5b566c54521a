package strictjson

import (
	"encoding"
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
)

// json/v2 matches names exactly and refuses unknown members, but a struct
// can opt out of both: a field tagged `inline` or `unknown` catches every
// other name, one tagged `case:ignore` (or `nocase`) matches up to case,
// `_` and `-`, and an embedded json.RawMessage lends the struct its
// decoder. A named empty interface type is decoded with float64 numbers,
// which the unmarshaler for `any` cannot reach. So every type a body could
// reach is checked once, before the first body is decoded, for those and
// for what json/v2 refuses of an empty object. (The cache is per type, as
// encoding/json's own is.)

// targets caches checkTarget's answer for each type Decode was given.
var targets sync.Map // reflect.Type → targetResult

// checkTarget returns nil when t (a pointer type) can hold a body under
// every rule of the package comment, else why not.
func checkTarget(t reflect.Type) error {
	if r, ok := targets.Load(t); ok {
		return r.(targetResult).err
	}
	c := targetChecker{seen: make(map[reflect.Type]bool)}
	c.check(t)
	r, _ := targets.LoadOrStore(t, targetResult{c.err})
	return r.(targetResult).err
}

type targetResult struct{ err error }

type targetChecker struct {
	seen map[reflect.Type]bool
	err  error
}

var anyType = reflect.TypeFor[any]()

func (c *targetChecker) check(t reflect.Type) {
	for c.err == nil && !c.seen[t] {
		c.seen[t] = true
		if hasDecoder(t) {
			if promotesDecoder(t) {
				c.err = fmt.Errorf("%v: a decoder promoted from an embedded field reads the whole struct", t)
			}
			return // the type's own method reads its value
		}
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			t = t.Elem()
			continue
		case reflect.Map:
			c.check(t.Key())
			t = t.Elem()
			continue
		case reflect.Interface:
			if t != anyType {
				c.err = fmt.Errorf("%v: only interface{} values can be decoded", t)
			}
		case reflect.Struct:
			c.checkStruct(t)
		case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
			c.err = fmt.Errorf("%v: not a JSON type", t)
		}
		return
	}
}

// allowedOption reports whether a json tag option leaves member names
// alone.
func allowedOption(opt string) bool {
	switch opt {
	case "omitempty", "omitzero", "string":
		return true
	}
	return false
}

// promotesDecoder reports whether struct t has its decoder only because an
// embedded field's is promoted (an embedded json.RawMessage would take
// the whole object, unknown members and all).
func promotesDecoder(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		if f := t.Field(i); f.Anonymous && hasDecoder(f.Type) {
			return true
		}
	}
	return false
}

func (c *targetChecker) checkStruct(t reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _ := f.Tag.Lookup("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue // json/v2 neither reads nor writes it
		}
		if !f.IsExported() && f.Type.Kind() == reflect.Pointer {
			// json/v2 cannot allocate it: a member meant for it would be
			// refused as the client's error.
			c.err = fmt.Errorf("%v.%s: an embedded unexported pointer cannot be decoded into", t, f.Name)
			return
		}
		if _, opts, ok := strings.Cut(tag, ","); ok {
			for opt := range strings.SplitSeq(opts, ",") {
				if !allowedOption(opt) {
					c.err = fmt.Errorf("%v.%s: json tag option %q would let other names through", t, f.Name, opt)
					return
				}
			}
		}
		c.check(f.Type)
		if c.err != nil {
			return
		}
	}
	// What json/v2 itself refuses in a struct (a malformed tag, two fields
	// of one name) it says only once a body reaches that struct: here.
	if err := jsonv2.Unmarshal([]byte(`{}`), reflect.New(t).Interface(), decodeOptions); err != nil {
		var sem *jsonv2.SemanticError
		if errors.As(err, &sem) && sem.Err != nil {
			err = sem.Err
		}
		c.err = fmt.Errorf("%v: %w", t, err)
	}
}

// hasDecoder reports whether values of t are decoded by a method of their
// own (json/v2 calls it before it looks at t's kind).
func hasDecoder(t reflect.Type) bool {
	for _, iface := range []reflect.Type{
		reflect.TypeFor[json.Unmarshaler](),
		reflect.TypeFor[jsonv2.UnmarshalerFrom](),
		reflect.TypeFor[encoding.TextUnmarshaler](),
	} {
		if t.Implements(iface) || reflect.PointerTo(t).Implements(iface) {
			return true
		}
	}
	return false
}
