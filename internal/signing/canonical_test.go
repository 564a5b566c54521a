package signing

import (
	"bytes"
	"testing"

	"github.com/gowebpki/jcs"
)

// canonicalSeeds exercise what RFC 8785 pins down: member order by UTF-16
// code units (a supplementary-plane name sorts before U+FFFD-range ones),
// ECMAScript number forms, minimal string escapes.
var canonicalSeeds = []string{
	`{}`,
	`{"b":1,"a":2}`,
	`{"\u20ac":1,"\ud83d\ude00":2,"\ufb33":3,"a":4,"A":5,"":6}`,
	`{"n":[1e21,1e20,1e-7,1e-6,-0,0.1,123456789012345678901234567890,5e-324,1.7976931348623157e308,-1.5E+3]}`,
	`{"s":"<>&\u2028\u2029\u0000\u001f\u007f\"\\\/ \t\n\r\b\f é"}`,
	"{ \"nested\" : { \"z\" : [ {\"y\":null,\"x\":true} , false ] , \"a\" : \"\" } }\n",
	`{"type":"payment.send","amount":{"value":"1250.00","currency":"EUR"},"params":{"invoice":"INV-1","note":"Q4"}}`,
	`[1,"two",{"three":3}]`,
	`"just a string"`,
	`{"dup":1,"dup":2}`,
	"{\"bad\":\"\xff\"}",
	`{"lone":"\ud800"}`,
	`{"big":1e400}`,
	`{"big":-1e309,"max":1.7976931348623157e308}`,
	`{"max":1.7976931348623157e308,"s":"1.7976931348623157e+308"}`,
	`{"tiny":1e-400}`,
}

// Canonical agrees with a second, independent RFC 8785 implementation on
// everything it accepts, and leaves its input alone. It may refuse more
// (duplicate names, invalid UTF-8: not I-JSON), never less.
func FuzzCanonicalMatchesJCS(f *testing.F) {
	for _, s := range canonicalSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		got, err := Canonical(in)
		if !bytes.Equal(in, orig) {
			t.Fatalf("Canonical modified its input")
		}
		if err != nil {
			return
		}
		want, jerr := jcs.Transform(orig)
		if jerr != nil {
			t.Fatalf("Canonical accepted %q as %q; jcs refuses it: %v", orig, got, jerr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("input %q\nCanonical = %q\njcs       = %q", orig, got, want)
		}
		if again, err := Canonical(got); err != nil || !bytes.Equal(again, got) {
			t.Fatalf("Canonical is not idempotent on %q: %q, %v", got, again, err)
		}
	})
}

// The seeds that are not I-JSON are refused; the others canonicalize to
// what RFC 8785 says.
func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		`{"b":1,"a":2}`: `{"a":2,"b":1}`,
		`{"\u20ac":1,"\ud83d\ude00":2,"\ufb33":3,"a":4}`:      "{\"a\":4,\"\u20ac\":1,\"\U0001F600\":2,\"\ufb33\":3}",
		`{"n":[1e21,1e-7,-0,123456789012345678901234567890]}`: `{"n":[1e+21,1e-7,0,1.2345678901234568e+29]}`,
		`{"s":"<>&\u2028\u0000\u001f\/"}`:                     "{\"s\":\"<>&\u2028\\u0000\\u001f/\"}",
		`{"max":-1.7976931348623157e308}`:                     `{"max":-1.7976931348623157e+308}`,
	} {
		got, err := Canonical([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("Canonical(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{`{"dup":1,"dup":2}`, "{\"bad\":\"\xff\"}", `{"lone":"\ud800"}`, `{"big":1e400}`, `{"max":1.7976931348623157e308,"big":[-1e309]}`, `{"a":1`, ``} {
		if got, err := Canonical([]byte(in)); err == nil {
			t.Errorf("Canonical(%q) = %q; want it refused", in, got)
		}
	}
}
