package decision_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/server/strictjson"
)

func TestValidate(t *testing.T) {
	cp := store.NewID(store.PrefixCounterparty)
	long := strings.Repeat("é", 512) + "x" // 1025 bytes
	for _, tc := range []struct {
		name string
		body string // the request as the HTTP layer decodes it
		ok   bool
	}{
		{"DESIGN example", `{"action":{"type":"payment.send","resource":"invoice:INV-2291","counterparty":"` + cp + `","amount":{"value":"1250.00","currency":"EUR"},"params":{"po":"PO-77"}},"reason":"Pay approved invoice INV-2291"}`, true},
		{"type only", `{"action":{"type":"report.generate"}}`, true},
		{"five segments", `{"action":{"type":"a.b.c.d.e"}}`, true},
		{"zero amount", `{"action":{"type":"payment.send","amount":{"value":"0","currency":"JPY"}}}`, true},
		{"six decimals", `{"action":{"type":"payment.send","amount":{"value":"0.000001","currency":"XAU"}}}`, true},
		{"fifteen digits", `{"action":{"type":"payment.send","amount":{"value":"999999999999999.99","currency":"USD"}}}`, true},
		{"params depth 4", `{"action":{"type":"a.b","params":{"a":{"b":{"c":{"d":1}}}}}}`, true},
		{"params depth 4 in arrays", `{"action":{"type":"a.b","params":{"a":[[[1]]]}}}`, true},
		{"params of every kind", `{"action":{"type":"a.b","params":{"s":"x","n":-1.5e3,"i":-9007199254740991,"t":true,"f":false,"z":null,"l":[],"o":{}}}}`, true},
		// Written otherwise than RFC 8785 writes them, but the same value.
		{"numbers a double holds", `{"action":{"type":"a.b","params":{"a":0.1,"b":1.50,"c":15E-1,"d":-0,"e":0.0e10,"f":1e21,"g":5e-324,"h":1.7976931348623157e308,"i":9007199254740992.0,"j":100e-2}}}`, true},
		{"same name in two objects", `{"action":{"type":"a.b","params":{"x":{"k":1},"y":{"k":1}}}}`, true},
		{"empty params", `{"action":{"type":"a.b","params":{}}}`, true},
		{"string of 1024 bytes", `{"action":{"type":"a.b","resource":"` + strings.Repeat("r", 1024) + `"}}`, true},

		{"no type", `{"action":{"resource":"x"}}`, false},
		{"one segment", `{"action":{"type":"payment"}}`, false},
		{"six segments", `{"action":{"type":"a.b.c.d.e.f"}}`, false},
		{"upper case", `{"action":{"type":"Payment.send"}}`, false},
		{"leading digit", `{"action":{"type":"1payment.send"}}`, false},
		{"trailing dot", `{"action":{"type":"payment.send."}}`, false},
		{"type over 256 bytes", `{"action":{"type":"a.` + strings.Repeat("b", 300) + `"}}`, false},
		{"amount with comma", `{"action":{"type":"payment.send","amount":{"value":"1,000.00","currency":"EUR"}}}`, false},
		{"negative amount", `{"action":{"type":"payment.send","amount":{"value":"-5","currency":"EUR"}}}`, false},
		{"exponent", `{"action":{"type":"payment.send","amount":{"value":"1e3","currency":"EUR"}}}`, false},
		{"leading zero", `{"action":{"type":"payment.send","amount":{"value":"007","currency":"EUR"}}}`, false},
		{"seven decimals", `{"action":{"type":"payment.send","amount":{"value":"1.0000001","currency":"EUR"}}}`, false},
		{"sixteen digits", `{"action":{"type":"payment.send","amount":{"value":"1000000000000000","currency":"EUR"}}}`, false},
		{"bare dot", `{"action":{"type":"payment.send","amount":{"value":"1.","currency":"EUR"}}}`, false},
		{"empty amount", `{"action":{"type":"payment.send","amount":{"value":"","currency":""}}}`, false},
		{"amount without currency", `{"action":{"type":"payment.send","amount":{"value":"1"}}}`, false},
		{"lower-case currency", `{"action":{"type":"payment.send","amount":{"value":"1","currency":"eur"}}}`, false},
		{"unknown currency", `{"action":{"type":"payment.send","amount":{"value":"1","currency":"EUX"}}}`, false},
		{"withdrawn currency", `{"action":{"type":"payment.send","amount":{"value":"1","currency":"HRK"}}}`, false},
		{"no currency code", `{"action":{"type":"payment.send","amount":{"value":"1","currency":"XXX"}}}`, false},
		{"long resource", `{"action":{"type":"a.b","resource":"` + long + `"}}`, false},
		{"long reason", `{"action":{"type":"a.b"},"reason":"` + long + `"}`, false},
		{"long param string", `{"action":{"type":"a.b","params":{"k":"` + long + `"}}}`, false},
		{"long param name", `{"action":{"type":"a.b","params":{"` + long + `":1}}}`, false},
		{"long string deep in params", `{"action":{"type":"a.b","params":{"l":[{"k":["` + long + `"]}]}}}`, false},
		{"bad counterparty id", `{"action":{"type":"payment.send","counterparty":"agt_aaaaaaaaaaaaaaaaaaaaaaaaaa"}}`, false},
		{"params depth 5", `{"action":{"type":"a.b","params":{"a":{"b":{"c":{"d":{}}}}}}}`, false},
		{"params depth 5 in arrays", `{"action":{"type":"a.b","params":{"a":[[[[]]]]}}}`, false},
		{"params not an object", `{"action":{"type":"a.b","params":[1]}}`, false},
		{"params a string", `{"action":{"type":"a.b","params":"x"}}`, false},
		{"params null", `{"action":{"type":"a.b","params":null}}`, false},
		{"integer beyond 2^53", `{"action":{"type":"a.b","params":{"n":9007199254740993}}}`, false},
		{"integer 2^53", `{"action":{"type":"a.b","params":{"n":-9007199254740992}}}`, false},
		{"number beyond a double", `{"action":{"type":"a.b","params":{"n":1e400}}}`, false},
		// RFC 8785 would write these as another number than the policy read.
		{"more digits than a double", `{"action":{"type":"a.b","params":{"n":9.9999999999999999}}}`, false},
		{"0.1 and then some", `{"action":{"type":"a.b","params":{"n":0.10000000000000001}}}`, false},
		{"2^53+1 as a decimal", `{"action":{"type":"a.b","params":{"n":9007199254740993.0}}}`, false},
		{"2^53+1 with an exponent", `{"action":{"type":"a.b","params":{"n":9007199254740993e0}}}`, false},
		{"below a double's least", `{"action":{"type":"a.b","params":{"n":1e-400}}}`, false},
		{"deep in params", `{"action":{"type":"a.b","params":{"l":[{"n":[1.00000000000000001]}]}}}`, false},
		{"exponent of ten digits", `{"action":{"type":"a.b","params":{"n":1e-1000000000}}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req decision.DecisionRequest
			if err := strictjson.Decode([]byte(tc.body), &req, strictjson.Options{}); err != nil {
				t.Fatalf("the boundary refused it already: %v", err)
			}
			err := req.Validate()
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, decision.ErrInvalidRequest)) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && (strings.Contains(err.Error(), long) || strings.Contains(err.Error(), "EUX")) {
				t.Fatalf("error quotes the request: %v", err)
			}
		})
	}
}

// TestValidateWhatTheBoundaryCatches: a Go caller that skips the boundary
// decoder still cannot get duplicate names, bad UTF-8 or trailing data past
// Validate: the receipt's action must be I-JSON.
func TestValidateWhatTheBoundaryCatches(t *testing.T) {
	for name, params := range map[string]string{
		"duplicate names":          `{"po":"PO-77","po":"PO-78"}`,
		"duplicate names deep":     `{"l":[{"a":1,"a":2}]}`,
		"invalid UTF-8":            "{\"k\":\"\xff\"}",
		"lone surrogate":           `{"k":"\ud800"}`,
		"two objects":              `{"a":1}{"b":2}`,
		"not JSON":                 `{"a":}`,
		"unterminated":             `{"a":[1,2}`,
		"string over 1024 escaped": `{"k":"` + strings.Repeat(`\u00e9`, 513) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			req := decision.DecisionRequest{Action: decision.RequestAction{Type: "a.b", Params: json.RawMessage(params)}}
			if err := req.Validate(); !errors.Is(err, decision.ErrInvalidRequest) {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
	bad := decision.DecisionRequest{Action: decision.RequestAction{Type: "a.b", Resource: "\xff"}}
	if err := bad.Validate(); !errors.Is(err, decision.ErrInvalidRequest) {
		t.Fatalf("invalid UTF-8 resource: %v", err)
	}
}

// Text shown to approvers holds no control character but line breaks and
// tabs, and no bidirectional embedding, override or isolate; the marks
// right-to-left text needs are fine.
func TestValidateControlCharacters(t *testing.T) {
	for s, ok := range map[string]bool{
		"Pay INV-2291\n\tsee the thread\r\n": true,
		"שלם חשבונית\u200f INV-2291":         true,
		"\u200e\u061c":                       true,
		"pay\x00invoice":                     false, // PostgreSQL's text refuses U+0000
		"pay\x1binvoice":                     false,
		"pay\x7finvoice":                     false,
		"pay\u0085invoice":                   false,
		"pay \u202eeciovni":                  false, // reads "pay invoice" backwards
		"pay \u2066x\u2069":                  false,
		"pay \u202ax":                        false,
	} {
		q, _ := json.Marshal(s)
		for _, req := range []decision.DecisionRequest{
			{Action: decision.RequestAction{Type: "a.b"}, Reason: s},
			{Action: decision.RequestAction{Type: "a.b", Resource: s}},
			// params, also shown to approvers, names and strings alike
			{Action: decision.RequestAction{Type: "a.b", Params: json.RawMessage(`{"iban":` + string(q) + `}`)}},
			{Action: decision.RequestAction{Type: "a.b", Params: json.RawMessage(`{"lines":[{"memo":` + string(q) + `}]}`)}},
			{Action: decision.RequestAction{Type: "a.b", Params: json.RawMessage(`{` + string(q) + `:1}`)}},
		} {
			if err := req.Validate(); (err == nil) != ok || (err != nil && !errors.Is(err, decision.ErrInvalidRequest)) {
				t.Errorf("Validate(%+q) = %v, want ok %v", s, err, ok)
			}
		}
	}
}

// A params member name or string is bounded as the reason is: at most
// MaxRequestString bytes.
func TestValidateParamsStringLength(t *testing.T) {
	for _, tc := range []struct {
		n  int
		ok bool
	}{{decision.MaxRequestString, true}, {decision.MaxRequestString + 1, false}} {
		s := strings.Repeat("x", tc.n)
		for _, params := range []string{`{"memo":"` + s + `"}`, `{"` + s + `":1}`, `{"lines":["` + s + `"]}`} {
			req := decision.DecisionRequest{Action: decision.RequestAction{Type: "a.b", Params: json.RawMessage(params)}}
			if err := req.Validate(); (err == nil) != tc.ok || (err != nil && !errors.Is(err, decision.ErrInvalidRequest)) {
				t.Errorf("params with %d bytes (%.20s…): %v, want ok %v", tc.n, params, err, tc.ok)
			}
		}
	}
}

func TestIsCurrency(t *testing.T) {
	for code, want := range map[string]bool{
		"EUR": true, "USD": true, "JPY": true, "CHF": true, "XCG": true, "ZWG": true, "SLE": true, "XAU": true, "CLF": true,
		"": false, "eur": false, "EURO": false, "EU": false, "XTS": false, "XXX": false, "DEM": false, "ZWL": false, "HRK": false,
	} {
		if got := decision.IsCurrency(code); got != want {
			t.Errorf("IsCurrency(%q) = %v", code, got)
		}
	}
}
