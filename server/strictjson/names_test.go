package strictjson

import (
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestDecodeNamesMatchExactly: encoding/json matches a member name to a
// struct field case-insensitively and under Unicode simple folding, so
// "Type", "TYPE" and "rea\u017fon" (U+017F, long s) each decoded into a field
// whose name is spelled otherwise. A name must be the field's name byte for
// byte; any other is an unknown field, named by its path.
func TestDecodeNamesMatchExactly(t *testing.T) {
	req := func() any { return &request{} }
	shp := func() any { return &nested{} }
	for _, tc := range []struct {
		name, in string
		target   func() any
		wantPath string
	}{
		{"upper case, outer first", `{"ACTION":{"TYPE":"report.generate"}}`, req, "$.ACTION"},
		{"title case nested", `{"action":{"Type":"report.generate"}}`, req, "$.action.Type"},
		{"long s escaped", `{"action":{"type":"report.generate"},"rea\u017fon":"x"}`, req, `$["rea\u017fon"]`},
		{"long s raw", `{"action":{"type":"report.generate","tagſ":["x"]}}`, req, `$.action["tag\u017f"]`},
		{"upper case top-level", `{"REASON":"x"}`, req, "$.REASON"},
		{"deep", `{"action":{"amount":{"Value":"1","currency":"EUR"}}}`, req, "$.action.amount.Value"},
		{"Kelvin sign", `{"by\u212aey":{}}`, shp, `$["by\u212aey"]`},
		{"in an array element", `{"list":[{"name":"a"},{"Name":"b"}]}`, shp, "$.list[1].Name"},
		{"in a map value", `{"byKey":{"K":{"NAME":"a"}}}`, shp, "$.byKey.K.NAME"},
		{"through a pointer", `{"ptr":{"Name":"a"}}`, shp, "$.ptr.Name"},
		{"promoted from an embedded struct", `{"Inner":"x"}`, shp, "$.Inner"},
		{"a Go field name, not its tag", `{"Ptr":{}}`, shp, "$.Ptr"},
		{"an ignored field", `{"Skip":1}`, shp, "$.Skip"},
		{"an unexported field", `{"hidden":1}`, shp, "$.hidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Decode([]byte(tc.in), tc.target(), Options{})
			if !errors.Is(err, ErrUnknownField) {
				t.Fatalf("Decode(%s) = %v, want ErrUnknownField", tc.in, err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *strictjson.Error", err)
			}
			if e.Path != tc.wantPath {
				t.Errorf("path = %q, want %q", e.Path, tc.wantPath)
			}
			if want := "unknown field at " + tc.wantPath; err.Error() != want {
				t.Errorf("message = %q, want %q", err, want)
			}
			assertSafeMessage(t, err.Error())
		})
	}
}

type nested struct {
	List   []named          `json:"list"`
	ByKey  map[string]named `json:"byKey"`
	Ptr    *named           `json:"ptr"`
	Skip   int              `json:"-"`
	hidden int
	embedded
	Raw json.RawMessage `json:"raw"`
	Any any             `json:"any"`
}

type named struct {
	Name string `json:"name"`
}

type embedded struct {
	Inner string `json:"inner"`
}

func TestDecodeExactNames(t *testing.T) {
	var r request
	in := `{"action":{"type":"payment.send","amount":{"value":"1.00","currency":"EUR"},"params":{"Type":1,"x":{"Reason":[]}},"tags":["a"],"count":2},"\u0072eason":"r"}`
	if err := Decode([]byte(in), &r, Options{}); err != nil {
		t.Fatal(err)
	}
	if r.Action.Type != "payment.send" || r.Action.Amount.Value != "1.00" || r.Action.Count != 2 || r.Reason != "r" || len(r.Action.Params) != 2 {
		t.Fatalf("decoded %+v", r)
	}

	var s nested
	in = `{"list":[{"name":"a"}],"byKey":{"K":{"name":"b"}},"ptr":{"name":"c"},"inner":"d","raw":{"Any":{"NAME":1}},"any":{"Name":[{"X":1},true,false,null,"s"]}}`
	if err := Decode([]byte(in), &s, Options{}); err != nil {
		t.Fatal(err)
	}
	want := nested{
		List:     []named{{"a"}},
		ByKey:    map[string]named{"K": {"b"}},
		Ptr:      &named{"c"},
		embedded: embedded{"d"},
		Raw:      json.RawMessage(`{"Any":{"NAME":1}}`),
		Any:      map[string]any{"Name": []any{map[string]any{"X": json.Number("1")}, true, false, nil, "s"}},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("decoded %+v, want %+v", s, want)
	}
}

// Types json/v2 decodes by less common rules.
type (
	fcInner struct {
		A, B string
		C    string `json:"c"`
	}
	fcSelf struct {
		Name string
		Next *fcSelf `json:"next"`
	}
	fcText       struct{ V string }
	shapesTarget struct {
		T    fcText          `json:"t"`
		M    map[int]fcInner `json:"m"`
		A    [2]fcInner      `json:"a"`
		PP   **fcInner       `json:"pp"`
		Self fcSelf          `json:"self"`
		Time time.Time       `json:"time"`
	}
)

func (t *fcText) UnmarshalText([]byte) error { return nil }

// TestDecodeShapes: names are checked in every struct a body reaches
// (through maps, arrays, pointers, recursion) and in none that a type with
// its own decoder reads.
func TestDecodeShapes(t *testing.T) {
	var x shapesTarget
	in := `{"t":"x","m":{"1":{"A":"a"}},"a":[{"B":"b"},{}],"pp":{"c":"c"},"self":{"Name":"n","next":{"Name":"m"}},"time":"2026-01-02T03:04:05Z"}`
	if err := Decode([]byte(in), &x, Options{}); err != nil {
		t.Fatal(err)
	}
	if x.M[1].A != "a" || x.A[0].B != "b" || (**x.PP).C != "c" || x.Self.Next.Name != "m" || x.Time.Year() != 2026 {
		t.Fatalf("decoded %+v", x)
	}
	for _, tc := range []struct {
		in       string
		wantPath string // "" when another error than an unknown field is wanted
	}{
		{`{"m":{"1":{"a":"a"}}}`, `$.m["1"].a`},
		{`{"a":[{},{"b":"b"}]}`, "$.a[1].b"},
		{`{"pp":{"C":"c"}}`, "$.pp.C"},
		{`{"self":{"next":{"next":{"NAME":1}}}}`, "$.self.next.next.NAME"},
		{`{"M":{}}`, "$.M"},
		// A type with a decoder of its own: the names are its to judge.
		{`{"t":{"v":1}}`, ""},
		{`{"time":{"Time":1}}`, ""},
		// A value of another JSON type than the field's: a type error.
		{`{"m":[{"a":1}]}`, ""},
		{`{"a":{"x":1}}`, ""},
	} {
		err := Decode([]byte(tc.in), &shapesTarget{}, Options{})
		switch {
		case tc.wantPath == "" && (err == nil || errors.Is(err, ErrUnknownField) || errors.Is(err, ErrInvalidTarget)):
			t.Errorf("Decode(%s) = %v, want the decoder's error (a client's)", tc.in, err)
		case tc.wantPath != "" && (!errors.Is(err, ErrUnknownField) || err.Error() != "unknown field at "+tc.wantPath):
			t.Errorf("Decode(%s) = %v, want unknown field at %s", tc.in, err, tc.wantPath)
		}
	}
}

// TestDecodeErrorPaths: a JSON Pointer cannot tell an array index from a
// member named by digits; the path shown does, from the body.
func TestDecodeErrorPaths(t *testing.T) {
	var v struct {
		L []map[string][]int `json:"l"`
		M map[string]struct {
			N int `json:"n"`
		} `json:"m"`
	}
	for in, want := range map[string]string{
		`{"l":[{},{"0":[1,"x"]}]}`:          `wrong type (expected number) at $.l[1]["0"][1]`,
		`{"m":{"0":{"n":1},"1":{"n":"x"}}}`: `wrong type (expected number) at $.m["1"].n`,
		`{"m":{"2":{"N":1}}}`:               `unknown field at $.m["2"].N`,
	} {
		err := Decode([]byte(in), &v, Options{})
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Decode(%s) = %v", in, err)
		}
		if got := e.Kind.Error() + strings.TrimPrefix(err.Error(), e.Kind.Error()); !strings.HasPrefix(got, want) {
			t.Errorf("Decode(%s) = %q, want %q", in, got, want)
		}
	}
}

// Value is a named empty interface: json/v2 would decode its numbers as
// float64, out of reach of the json.Number unmarshaler for interface{}.
type Value any

// TestDecodeRefusesTargetsItCannotDecode: a target with a way around exact
// names or unknown members, or one json/v2 refuses, is a programming error
// (a 500 in the handler) whatever the body, never a body decoded with
// names unchecked or a 400 for the client.
func TestDecodeRefusesTargetsItCannotDecode(t *testing.T) {
	for name, v := range map[string]any{
		"inline map fallback": &struct {
			A     int            `json:"a"`
			Extra map[string]any `json:",inline"`
		}{},
		"unknown fallback": &struct {
			Rest jsontext.Value `json:",unknown"`
		}{},
		"case:ignore": &struct {
			A int `json:"a_b,case:ignore"`
		}{},
		"nocase": &struct {
			A int `json:"a,nocase"`
		}{},
		"named empty interface": &struct {
			V Value `json:"v"`
		}{},
		"non-empty interface": &struct {
			E error `json:"e"`
		}{},
		"v1's dash-comma": &struct {
			D int `json:"-,"`
		}{},
		"format option": &struct {
			B int `json:"b,format:xyz"`
		}{},
		"nested, unreachable by {}": &struct {
			L []map[string]*struct {
				A int `json:"a,case:ignore"`
			} `json:"l"`
		}{},
		"malformed quoted name": &struct {
			A int `json:"'a"`
		}{},
		"embedded RawMessage": &struct {
			json.RawMessage
			A int `json:"a"`
		}{},
		"embedded unexported pointer": &struct {
			*fcInner
			Z int `json:"z"`
		}{},
		"a channel": &struct {
			C chan int `json:"c"`
		}{},
	} {
		if err := Decode([]byte(`{}`), v, Options{}); !errors.Is(err, ErrInvalidTarget) {
			t.Errorf("%s: Decode = %v, want ErrInvalidTarget", name, err)
		}
	}
}

// TestDecodeErrorKinds: each refusal json/v2 makes is told as what it is.
func TestDecodeErrorKinds(t *testing.T) {
	var v struct {
		M map[int]string `json:"m"`
		A [2]int         `json:"a"`
		B []byte         `json:"b"`
	}
	for in, want := range map[string]string{
		`{"m":{"0":"x","-0":"y"}}`: `duplicate key at $.m["-0"]`,
		`{"a":[1,2,3]}`:            `invalid value at $.a`,
		`{"b":"!!"}`:               `invalid value at $.b`,
		`{"b":[1,2]}`:              `wrong type (expected string) at $.b`,
		`{"m":{"x":"y"}}`:          `invalid value at $.m.x`,
	} {
		err := Decode([]byte(in), &v, Options{})
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Decode(%s) = %v, want %q", in, err, want)
		}
	}
}
