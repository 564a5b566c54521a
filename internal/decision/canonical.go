package decision

import (
	"encoding/json/jsontext"
	"strconv"
)

// canonicalObject writes one JSON object in RFC 8785 form, member by
// member, for the records whose shape is fixed (canonicalJSON would
// marshal them and parse them again). The caller gives the members in
// RFC 8785 order (for ASCII names, byte order) and values that are
// canonical already; strings are quoted as RFC 8785 quotes them
// (jsontext.AppendQuote). Objects nest with open and close.
type canonicalObject struct {
	b   []byte
	sep byte  // written before the next member: '{' first, then ','
	err error // the first string that was not valid UTF-8
}

func newCanonicalObject(size int) *canonicalObject {
	return &canonicalObject{b: make([]byte, 0, size), sep: '{'}
}

func (o *canonicalObject) name(name string) {
	o.b = append(o.b, o.sep, '"')
	o.b = append(o.b, name...)
	o.b = append(o.b, '"', ':')
	o.sep = ','
}

func (o *canonicalObject) quote(s string) {
	b, err := jsontext.AppendQuote(o.b, s)
	if err != nil && o.err == nil {
		o.err = err
	}
	o.b = b
}

func (o *canonicalObject) string(name, v string) { o.name(name); o.quote(v) }
func (o *canonicalObject) raw(name string, v []byte) {
	o.name(name)
	o.b = append(o.b, v...)
}
func (o *canonicalObject) int(name string, v int) {
	o.name(name)
	o.b = strconv.AppendInt(o.b, int64(v), 10)
}

// strings writes an array of strings; nil is null, as encoding/json has it.
func (o *canonicalObject) strings(name string, v []string) {
	o.name(name)
	if v == nil {
		o.b = append(o.b, "null"...)
		return
	}
	o.b = append(o.b, '[')
	for i, s := range v {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.quote(s)
	}
	o.b = append(o.b, ']')
}

// open starts a member whose value is an object; close ends it.
func (o *canonicalObject) open(name string) { o.name(name); o.sep = '{' }
func (o *canonicalObject) close() {
	if o.sep == '{' { // no member
		o.b = append(o.b, '{')
	}
	o.b = append(o.b, '}')
	o.sep = ','
}

// end ends the object and returns it, or the first string that was not
// valid UTF-8.
func (o *canonicalObject) end() ([]byte, error) {
	o.close()
	if o.err != nil {
		return nil, o.err
	}
	return o.b, nil
}
