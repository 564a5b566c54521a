package strictjson

import (
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"reflect"
	"slices"
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
	in = `{"list":[{"name":"a"}],"byKey":{"K":{"name":"b"}},"ptr":{"name":"c"},"inner":"d","raw":{"Any":{"NAME":1}},"any":{"Name":[{"X":1}]}}`
	if err := Decode([]byte(in), &s, Options{}); err != nil {
		t.Fatal(err)
	}
	want := nested{
		List:     []named{{"a"}},
		ByKey:    map[string]named{"K": {"b"}},
		Ptr:      &named{"c"},
		embedded: embedded{"d"},
		Raw:      json.RawMessage(`{"Any":{"NAME":1}}`),
		Any:      map[string]any{"Name": []any{map[string]any{"X": json.Number("1")}}},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("decoded %+v, want %+v", s, want)
	}
}

// Types whose fields encoding/json names by its less common rules.
type (
	fcInner struct {
		A, B string
		C    string `json:"c"`
	}
	fcOther struct {
		A string
		C int `json:"c"`
		D string
	}
	fcTagged struct {
		B string `json:"B"`
	}
	fcHidden struct {
		E string
		F string `json:"f"`
	}
	fcMore struct{ G string }
	fcOpts struct{ H string }
	fcSelf struct {
		*fcSelf
		Name string
		Next *fcSelf `json:"next"`
	}
	FcMap   map[string]int
	fcDeep  struct{ fcInner }
	fcTimes struct{ time.Time } // a promoted method: the struct has a decoder
	fcText  struct{ V string }
	fcRules struct {
		fcInner           // A, B, c promoted
		*fcOther          // A and c tie with fcInner's: neither; D promoted (a nil *fcOther cannot be filled)
		fcTagged          // B named by a tag beats fcInner's B
		fcHidden          // unexported, its exported fields promoted
		fcDeep            // deeper than fcInner: loses every name
		FcMap             // an embedded map without the embed option: a field
		Named    fcInner  `json:"named"`            // named: not embedded
		Inlined  fcMore   `json:",embed"`           // embedded by option
		Both     fcTagged `json:"both,embed"`       // named: a field after all
		Opts     fcOpts   `json:",omitempty,embed"` // options dropped, embedded
		Dash     int      `json:"-,"`
		Skip     int      `json:"-"`
		Odd      int      `json:"odd,omitempty,string,whatever"`
		Uni      int      `json:"ünï"`
		Time     fcTimes  `json:"time"`
		hidden   int
	}
)

func (t *fcText) UnmarshalText([]byte) error { return nil }

// TestFieldsMatchEncodingJSON checks structFields against encoding/json
// itself: a name is in the table if and only if encoding/json, matching
// names exactly, takes it for a field.
func TestFieldsMatchEncodingJSON(t *testing.T) {
	for _, typ := range []reflect.Type{
		reflect.TypeFor[fcRules](), reflect.TypeFor[fcSelf](), reflect.TypeFor[fcDeep](),
		reflect.TypeFor[request](), reflect.TypeFor[action](), reflect.TypeFor[nested](),
	} {
		fields, err := structFields(typ)
		if err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		table := map[string]bool{}
		var names []string
		for _, f := range fields {
			table[f.name] = true
			names = append(names, f.name)
		}
		if want, ok := wantFields[typ]; ok && !slices.Equal(names, want) {
			t.Errorf("%v: fields %q, want %q", typ, names, want)
		}
		candidates := map[string]bool{"": true}
		var collect func(reflect.Type, int)
		collect = func(t reflect.Type, depth int) {
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			if t.Kind() != reflect.Struct || depth > 3 {
				return
			}
			for i := range t.NumField() {
				sf := t.Field(i)
				name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
				for _, n := range []string{sf.Name, name, strings.ToLower(sf.Name), strings.ToUpper(name)} {
					candidates[n] = true
				}
				collect(sf.Type, depth+1)
			}
		}
		collect(typ, 0)
		for name := range candidates {
			if got, want := table[name], decoderKnows(t, typ, name); got != want {
				t.Errorf("%v: %q in the table = %v, encoding/json knows it = %v", typ, name, got, want)
			}
		}
	}
}

var wantFields = map[reflect.Type][]string{
	reflect.TypeFor[fcRules](): {"-", "B", "D", "E", "FcMap", "G", "H", "both", "f", "named", "odd", "time", "ünï"},
	reflect.TypeFor[fcSelf]():  {"Name", "next"},
}

// decoderKnows reports whether encoding/json (v1 semantics, names matched
// exactly) decodes the member name into a field of typ.
func decoderKnows(t *testing.T, typ reflect.Type, name string) bool {
	t.Helper()
	in, err := json.Marshal(map[string]any{name: nil})
	if err != nil {
		t.Fatal(err)
	}
	err = jsonv2.Unmarshal(in, reflect.New(typ).Interface(), json.DefaultOptionsV1(),
		jsonv2.MatchCaseInsensitiveNames(false), jsonv2.RejectUnknownMembers(true))
	return err == nil || !strings.HasPrefix(err.Error(), "json: unknown field ")
}

type shapesTarget struct {
	T  fcText          `json:"t"`
	M  map[int]fcInner `json:"m"`
	A  [2]fcInner      `json:"a"`
	PP **fcInner       `json:"pp"`
}

func TestDecodeShapes(t *testing.T) {
	var r fcRules
	in := `{"B":"b","E":"e","f":"f","FcMap":{"x":1},"named":{"A":"a"},"both":{"B":"b"},"-":1,"ünï":2,"odd":"3","G":"g","H":"h","time":"2026-01-02T03:04:05Z"}`
	if err := Decode([]byte(in), &r, Options{}); err != nil {
		t.Fatal(err)
	}
	if r.fcTagged.B != "b" || r.fcHidden.E != "e" || r.FcMap["x"] != 1 || r.Named.A != "a" || r.Both.B != "b" || r.Dash != 1 || r.Uni != 2 || r.Odd != 3 || r.Inlined.G != "g" || r.Opts.H != "h" || r.Time.Year() != 2026 {
		t.Fatalf("decoded %+v", r)
	}
	var x shapesTarget
	if err := Decode([]byte(`{"m":{"1":{"A":"a"}},"a":[{"B":"b"}],"pp":{"c":"c"}}`), &x, Options{}); err != nil {
		t.Fatal(err)
	}
	if x.M[1].A != "a" || x.A[0].B != "b" || (**x.PP).C != "c" {
		t.Fatalf("decoded %+v", x)
	}

	rules := func() any { return &fcRules{} }
	self := func() any { return &fcSelf{} }
	shapes := func() any { return &shapesTarget{} }
	for _, tc := range []struct {
		in       string
		target   func() any
		wantPath string // "" when the decoder's own error is wanted
	}{
		{`{"A":"x"}`, rules, "$.A"},                                // a tie
		{`{"c":"x"}`, rules, "$.c"},                                // a tie
		{`{"Named":{}}`, rules, "$.Named"},                         // a Go name under a tag
		{`{"hidden":1}`, rules, "$.hidden"},                        // unexported
		{`{"Skip":1}`, rules, "$.Skip"},                            // "-"
		{`{"fcInner":{}}`, rules, "$.fcInner"},                     // embedded, so no member of its own
		{`{"named":{"a":"x"}}`, rules, "$.named.a"},                // inside a named field
		{`{"next":{"next":{"NAME":1}}}`, self, "$.next.next.NAME"}, // a recursive type
		{`{"m":{"1":{"a":"a"}}}`, shapes, `$.m["1"].a`},
		{`{"a":[{},{"b":"b"}]}`, shapes, "$.a[1].b"},
		{`{"pp":{"C":"c"}}`, shapes, "$.pp.C"},
		// A type with a decoder of its own: the names are its to judge.
		{`{"time":{"Time":1}}`, rules, ""},
		{`{"t":{"v":1}}`, shapes, ""},
		// A value of another JSON type than the field's: a type error.
		{`{"m":[{"a":1}]}`, shapes, ""},
		{`{"a":{"x":1}}`, shapes, ""},
	} {
		err := Decode([]byte(tc.in), tc.target(), Options{})
		switch {
		case tc.wantPath == "" && (err == nil || errors.Is(err, ErrUnknownField)):
			t.Errorf("Decode(%s) = %v, want the decoder's error", tc.in, err)
		case tc.wantPath != "" && (!errors.Is(err, ErrUnknownField) || err.Error() != "unknown field at "+tc.wantPath):
			t.Errorf("Decode(%s) = %v, want unknown field at %s", tc.in, err, tc.wantPath)
		}
	}
}

// TestDecodeCaseIgnoreIsExactToo: a field tagged case:ignore is matched up
// to case even by encoding/json's exact mode; here it is matched exactly.
func TestDecodeCaseIgnoreIsExactToo(t *testing.T) {
	var v struct {
		A int `json:"a,case:ignore"`
	}
	if err := Decode([]byte(`{"a":1}`), &v, Options{}); err != nil || v.A != 1 {
		t.Fatalf("exact: %v %+v", err, v)
	}
	if err := Decode([]byte(`{"A":1}`), &v, Options{}); !errors.Is(err, ErrUnknownField) {
		t.Fatalf("Decode = %v, want ErrUnknownField", err)
	}
}

// TestDecodeRefusesUnmodelledTargets: a struct whose names this package
// cannot tell as encoding/json would is a programming error, never a body
// decoded with names unchecked.
func TestDecodeRefusesUnmodelledTargets(t *testing.T) {
	for name, v := range map[string]any{
		"embedded map fallback": &struct {
			A     int
			Extra map[string]any `json:",embed"`
		}{},
		"embedded jsontext.Value": &struct {
			Rest jsontext.Value `json:",embed"`
		}{},
		"quoted name": &struct {
			A int `json:"'a'"`
		}{},
		"format option": &struct {
			A time.Time `json:"a,format:RFC3339"`
		}{},
		"bad case value": &struct {
			A int `json:"a,case:upper"`
		}{},
		"nested, unreachable": &struct {
			L []struct {
				A int `json:"a\"b"`
			}
		}{},
	} {
		if err := Decode([]byte(`{}`), v, Options{}); !errors.Is(err, ErrInvalidTarget) {
			t.Errorf("%s: Decode = %v, want ErrInvalidTarget", name, err)
		}
	}
}
