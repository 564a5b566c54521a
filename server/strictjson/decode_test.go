package strictjson

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// request mirrors the shape of the decision request (DESIGN.md §3).
type request struct {
	Action action `json:"action"`
	Reason string `json:"reason"`
}

type action struct {
	Type   string         `json:"type"`
	Amount *amount        `json:"amount,omitempty"`
	Params map[string]any `json:"params,omitempty"`
	Tags   []string       `json:"tags,omitempty"`
	Count  int            `json:"count,omitempty"`
	At     *time.Time     `json:"at,omitempty"`
}

type amount struct {
	Value    string `json:"value"`
	Currency string `json:"currency"`
}

func TestDecodeAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"minimal", `{"action":{"type":"payment.send"},"reason":"pay"}`},
		{"empty object", `{}`},
		{"surrounding whitespace", " \t\r\n{\"reason\":\"x\"} \n\t"},
		{"full request", `{"action":{"type":"payment.send","amount":{"value":"1250.00","currency":"EUR"},"params":{"po":"PO-77"}},"reason":"Pay approved invoice INV-2291"}`},
		{"depth exactly 8", `{"action":{"params":{"a":{"b":{"c":{"d":{"e":{}}}}}}}}`},
		{"depth 8 with arrays", `{"action":{"params":{"a":[[[[[1]]]]]}}}`},
		{"same key in different objects", `{"action":{"type":"a","params":{"type":"b","x":{"TYPE":1}}}}`},
		{"unicode and surrogate pair", `{"reason":"café 😀 \ud83d\ude00 \u00e9"}`},
		{"replacement character itself", `{"reason":"\ufffd and ` + "\uFFFD" + `"}`},
		{"escaped backslash then ud800", `{"reason":"\\ud800"}`},
		{"all simple escapes", `{"reason":"\" \\ \/ \b \f \n \r \t"}`},
		{"null fields", `{"action":null,"reason":null}`},
		{"huge number in params", `{"action":{"params":{"n":1e400}}}`},
		{"time value", `{"action":{"at":"2026-01-02T03:04:05Z"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r request
			if err := Decode([]byte(tc.in), &r, Options{}); err != nil {
				t.Fatalf("Decode(%s) = %v, want nil", tc.in, err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	long := strings.Repeat("k", 200)
	for _, tc := range []struct {
		name     string
		in       string
		opts     Options
		want     error
		wantPath string // checked when not empty
	}{
		{name: "empty", in: ``, want: ErrEmpty},
		{name: "whitespace only", in: " \n\t ", want: ErrEmpty},
		{name: "over MaxBytes", in: `{"reason":"0123456789"}`, opts: Options{MaxBytes: 10}, want: ErrTooLarge},
		{name: "over default size", in: `{"reason":"` + strings.Repeat("a", DefaultMaxBytes) + `"}`, want: ErrTooLarge},

		{name: "invalid UTF-8 in value", in: "{\"reason\":\"\xff\"}", want: ErrInvalidUTF8},
		{name: "invalid UTF-8 in key", in: "{\"\xc3\x28\":1}", want: ErrInvalidUTF8},
		{name: "overlong UTF-8", in: "{\"reason\":\"\xc0\xaf\"}", want: ErrInvalidUTF8},
		{name: "lone high surrogate", in: `{"reason":"\ud800"}`, want: ErrInvalidUTF8, wantPath: "$.reason"},
		{name: "lone low surrogate", in: `{"reason":"x\udc00y"}`, want: ErrInvalidUTF8},
		{name: "high then non-low", in: `{"reason":"\ud800\u0041"}`, want: ErrInvalidUTF8},
		{name: "reversed pair", in: `{"reason":"\udc00\ud800"}`, want: ErrInvalidUTF8},
		{name: "lone surrogate in key", in: `{"action":{"params":{"\udbff":1}}}`, want: ErrInvalidUTF8, wantPath: "$.action.params"},

		{name: "missing value", in: `{"a":}`, want: ErrSyntax},
		{name: "trailing comma", in: `{"reason":"x",}`, want: ErrSyntax},
		{name: "single quotes", in: `{'reason':'x'}`, want: ErrSyntax},
		{name: "leading zero", in: `{"action":{"params":{"n":01}}}`, want: ErrSyntax},
		{name: "NaN", in: `{"action":{"params":{"n":NaN}}}`, want: ErrSyntax},
		{name: "truncated", in: `{"reason":"x"`, want: ErrSyntax},
		{name: "truncated after colon", in: `{"reason":`, want: ErrSyntax},
		{name: "missing colon", in: `{"reason" "x"}`, want: ErrSyntax},
		{name: "raw newline in string", in: "{\"reason\":\"a\nb\"}", want: ErrSyntax},
		{name: "comment", in: `{"reason":"x" /* c */}`, want: ErrSyntax},

		{name: "array", in: `[]`, want: ErrNotObject},
		{name: "string", in: `"s"`, want: ErrNotObject},
		{name: "number", in: `1`, want: ErrNotObject},
		{name: "null", in: `null`, want: ErrNotObject},
		{name: "true", in: `true`, want: ErrNotObject},

		{name: "depth 9 objects", in: `{"action":{"params":{"a":{"b":{"c":{"d":{"e":{"f":{}}}}}}}}}`, want: ErrTooDeep, wantPath: "$.action.params.a.b.c.d.e.f"},
		{name: "depth 9 arrays", in: `{"action":{"params":{"a":[[[[[[1]]]]]]}}}`, want: ErrTooDeep, wantPath: "$.action.params.a[0][0][0][0][0]"},
		{name: "custom depth", in: `{"action":{"params":{}}}`, opts: Options{MaxDepth: 2}, want: ErrTooDeep},
		{name: "very deep", in: strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000), want: ErrTooDeep},

		{name: "duplicate top-level", in: `{"reason":"a","reason":"b"}`, want: ErrDuplicateKey, wantPath: "$.reason"},
		{name: "duplicate nested", in: `{"action":{"type":"a","type":"b"}}`, want: ErrDuplicateKey, wantPath: "$.action.type"},
		{name: "duplicate in params", in: `{"action":{"params":{"x":1,"y":2,"x":3}}}`, want: ErrDuplicateKey, wantPath: "$.action.params.x"},
		{name: "duplicate in array element", in: `{"action":{"params":{"l":[{},{"a":1,"a":1}]}}}`, want: ErrDuplicateKey, wantPath: "$.action.params.l[1].a"},
		{name: "duplicate by case", in: `{"Reason":"a","reason":"b"}`, want: ErrDuplicateKey},
		{name: "duplicate by case nested", in: `{"action":{"type":"a","TYPE":"b"}}`, want: ErrDuplicateKey},
		{name: "duplicate via escape", in: `{"reason":"a","\u0072eason":"b"}`, want: ErrDuplicateKey},
		{name: "duplicate via long s", in: `{"reason":"a","rea\u017fon":"b"}`, want: ErrDuplicateKey},
		{name: "duplicate via Kelvin sign", in: `{"action":{"params":{"k":1,"\u212a":2}}}`, want: ErrDuplicateKey},

		{name: "second object", in: `{} {}`, want: ErrTrailingData},
		{name: "garbage after", in: `{}x`, want: ErrTrailingData},
		{name: "extra close", in: `{"a":1}}`, want: ErrTrailingData},
		{name: "null after", in: `{}null`, want: ErrTrailingData},
		{name: "array after", in: "{}\n[]", want: ErrTrailingData},

		{name: "unknown top-level", in: `{"reason":"x","extra":1}`, want: ErrUnknownField, wantPath: "$.extra"},
		{name: "unknown nested", in: `{"action":{"type":"a","typo":1}}`, want: ErrUnknownField, wantPath: "$.action.typo"},
		{name: "unknown deep", in: `{"action":{"amount":{"value":"1","currency":"EUR","fee":"1"}}}`, want: ErrUnknownField, wantPath: "$.action.amount.fee"},
		{name: "unknown with name also in params", in: `{"action":{"params":{"x":1}},"x":2}`, want: ErrUnknownField},

		{name: "string for number", in: `{"action":{"count":"SECRET-VALUE"}}`, want: ErrType, wantPath: "$.action.count"},
		{name: "number for string", in: `{"reason":12345}`, want: ErrType, wantPath: "$.reason"},
		{name: "object for string", in: `{"reason":{}}`, want: ErrType, wantPath: "$.reason"},
		{name: "number too large for int", in: `{"action":{"count":1e400}}`, want: ErrInvalidValue, wantPath: "$.action.count"},
		{name: "fraction for int", in: `{"action":{"count":1.5}}`, want: ErrInvalidValue, wantPath: "$.action.count"},
		{name: "wrong element type", in: `{"action":{"tags":["a",1]}}`, want: ErrType},
		{name: "bad time", in: `{"action":{"at":"yesterday-SECRET"}}`, want: ErrInvalidValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r request
			err := Decode([]byte(tc.in), &r, tc.opts)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode(%.80q) = %v, want %v", tc.in, err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *strictjson.Error", err)
			}
			if tc.wantPath != "" && e.Path != tc.wantPath {
				t.Errorf("path = %q, want %q (error %q)", e.Path, tc.wantPath, err)
			}
			assertSafeMessage(t, err.Error())
		})
	}
	t.Run("long key is truncated", func(t *testing.T) {
		err := Decode([]byte(`{"`+long+`":1}`), &request{}, Options{})
		if !errors.Is(err, ErrUnknownField) || strings.Contains(err.Error(), long[:40]) {
			t.Fatalf("got %q", err)
		}
	})
}

func TestDecodeTarget(t *testing.T) {
	var r request
	for _, v := range []any{nil, r, (*request)(nil)} {
		if err := Decode([]byte(`{}`), v, Options{}); !errors.Is(err, ErrInvalidTarget) {
			t.Errorf("Decode into %T = %v, want ErrInvalidTarget", v, err)
		}
	}
}

func TestDecodeKeepsNumbersExact(t *testing.T) {
	var m map[string]any
	if err := Decode([]byte(`{"v":1250.10000000000000001}`), &m, Options{}); err != nil {
		t.Fatal(err)
	}
	if n, ok := m["v"].(json.Number); !ok || n.String() != "1250.10000000000000001" {
		t.Fatalf("v = %#v, want json.Number with the exact text", m["v"])
	}
}

func TestPathEscapesKeys(t *testing.T) {
	for _, tc := range []struct {
		segs []segment
		want string
	}{
		{nil, "$"},
		{[]segment{{key: "action"}, {key: "params"}, {index: 3, isIndex: true}}, "$.action.params[3]"},
		{[]segment{{key: "a b"}}, `$["a b"]`},
		{[]segment{{key: "new\nline"}}, `$["new\nline"]`},
		{[]segment{{key: "é"}}, `$["\u00e9"]`},
		{[]segment{{key: ""}}, `$[""]`},
		{[]segment{{key: "1abc"}}, `$["1abc"]`},
		{[]segment{{key: strings.Repeat("x", 40)}}, `$["` + strings.Repeat("x", 32) + `..."]`},
		// Escaping makes a key up to four times longer: the path is cut
		// before the segment that would pass the bound.
		{[]segment{{key: strings.Repeat("\x01", 32)}, {key: strings.Repeat("\x01", 32)}, {key: "a"}},
			`$["` + strings.Repeat(`\x01`, 32) + `"]...`},
	} {
		if got := formatPath(tc.segs); got != tc.want {
			t.Errorf("formatPath(%v) = %s, want %s", tc.segs, got, tc.want)
		}
	}
}

// assertSafeMessage fails when an error message could carry client data in
// a dangerous form: it must be short printable ASCII and echo no value.
func assertSafeMessage(t *testing.T, msg string) {
	t.Helper()
	if len(msg) > 400 {
		t.Errorf("message is %d bytes long", len(msg))
	}
	for _, c := range []byte(msg) {
		if c < 0x20 || c > 0x7e {
			t.Fatalf("message %q has a non-printable byte %#x", msg, c)
		}
	}
	if strings.Contains(msg, "SECRET") {
		t.Errorf("message %q echoes a value", msg)
	}
}
