package decision

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/agentsigna/agentsigna/internal/signing"
)

// parseParams checks an action's params and returns them as the Go values
// the policy input carries (objects as maps, numbers as json.Number, so no
// amount is rounded through float64); nil for no params. The rules
// (DESIGN §3, RFC 7493):
//
//   - one JSON object, nothing after it;
//   - nesting ≤ MaxParamsDepth, arrays counting like objects;
//   - no two members of one object with the same name (compared exactly,
//     as RFC 8785 sorts them);
//   - every string, member names included, valid UTF-8 of at most
//     MaxRequestString bytes;
//   - every number a finite IEEE 754 double, every integer within ±2^53,
//     and every number exactly the value of its RFC 8785 form: RFC 8785
//     writes numbers as doubles, so 9.9999999999999999 would be judged
//     by the policy as less than 10 and signed in the receipt as 10, and
//     two different numbers could share one digest.
//
// Errors never quote a member name or a value: the names are the agent's data.
func parseParams(raw json.RawMessage) (map[string]any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	if !utf8.Valid(raw) {
		return nil, invalid("action.params is not valid UTF-8")
	}
	p := paramsParser{dec: json.NewDecoder(bytes.NewReader(raw))}
	p.dec.UseNumber()
	tok, err := p.dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, invalid("action.params must be a JSON object")
	}
	m, err := p.object(1)
	if err != nil {
		return nil, err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, invalid("action.params must be one JSON object")
	}
	return m, nil
}

type paramsParser struct{ dec *json.Decoder }

var errParamsSyntax = invalid("action.params is not valid JSON")

// object reads the members of an object whose '{' was just read, at depth.
func (p *paramsParser) object(depth int) (map[string]any, error) {
	if depth > MaxParamsDepth {
		return nil, invalid("action.params is nested deeper than %d levels", MaxParamsDepth)
	}
	m := map[string]any{}
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, errParamsSyntax
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errParamsSyntax
		}
		// Names and strings are shown to approvers as the reason is:
		// the same rules (checkString), no control or bidi override.
		if err := checkString("an action.params member name", name); err != nil {
			return nil, err
		}
		if _, dup := m[name]; dup {
			return nil, invalid("action.params has two members with the same name in one object")
		}
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		m[name] = v
	}
	if _, err := p.dec.Token(); err != nil { // '}'
		return nil, errParamsSyntax
	}
	return m, nil
}

// array reads the elements of an array whose '[' was just read, at depth.
func (p *paramsParser) array(depth int) ([]any, error) {
	if depth > MaxParamsDepth {
		return nil, invalid("action.params is nested deeper than %d levels", MaxParamsDepth)
	}
	list := []any{}
	for p.dec.More() {
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	if _, err := p.dec.Token(); err != nil { // ']'
		return nil, errParamsSyntax
	}
	return list, nil
}

// value reads one value inside a container at depth.
func (p *paramsParser) value(depth int) (any, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, errParamsSyntax
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return p.object(depth + 1)
		case '[':
			return p.array(depth + 1)
		}
		return nil, errParamsSyntax
	case string:
		if err := checkString("an action.params string", t); err != nil {
			return nil, err
		}
		return t, nil
	case json.Number:
		// The policy reads the number as the receipt and the ledger
		// carry it: in its RFC 8785 form, not as the agent spelled it
		// (1.2345e4 is 12345), so that a rule matching its text matches
		// what is signed.
		return canonicalNumber(t)
	case bool, nil:
		return t, nil
	}
	return nil, errParamsSyntax
}

// canonicalNumber accepts what every I-JSON reader reads as the same
// number, and returns its RFC 8785 form.
func canonicalNumber(n json.Number) (json.Number, error) {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		if errors.Is(err, strconv.ErrRange) || err == nil {
			return "", invalid("action.params has a number beyond the range of a double (RFC 7493)")
		}
		return "", errParamsSyntax
	}
	if !strings.ContainsAny(string(n), ".eE") {
		// Compared as an integer: as a double, 2^53+1 would pass as 2^53.
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || i > maxSafeInteger || i < -maxSafeInteger {
			return "", invalid("action.params has an integer beyond ±(2^53−1) (RFC 7493); send it as a string")
		}
	}
	// The receipt, the ledger and the request digest carry the RFC 8785
	// form: the agent's spelling must be that value exactly.
	canonical, err := signing.Canonical([]byte(n))
	if err != nil {
		return "", invalid("action.params has a number beyond the range of a double (RFC 7493)")
	}
	if !sameDecimal(string(n), string(canonical)) {
		return "", invalid("action.params has a number with more precision than a double holds (RFC 7493); send it as a string")
	}
	return json.Number(canonical), nil
}

// sameDecimal reports whether two JSON numbers are the same decimal value
// (1.50, 15e-1 and 1.5 are; 0.10000000000000001 and 0.1 are not),
// comparing their digits and exponents as text: no arithmetic on an
// exponent a sender chose.
func sameDecimal(a, b string) bool {
	an, ad, ae, aok := decimalParts(a)
	bn, bd, be, bok := decimalParts(b)
	return aok && bok && ad == bd && (ad == "" || an == bn && ae == be)
}

// decimalParts splits a JSON number into its sign, its significant digits
// (no leading or trailing zeros; "" for zero) and the power of ten they
// are scaled by. ok is false for what is not a JSON number, or an
// exponent of more than 9 digits.
func decimalParts(s string) (neg bool, digits string, exp int, ok bool) {
	neg = strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, e, hasExp := strings.Cut(strings.ToLower(s), "e")
	if hasExp {
		e = strings.TrimPrefix(e, "+")
		if len(strings.TrimPrefix(e, "-")) > 9 {
			return false, "", 0, false
		}
		var err error
		if exp, err = strconv.Atoi(e); err != nil {
			return false, "", 0, false
		}
	}
	whole, frac, _ := strings.Cut(mant, ".")
	digits = strings.TrimLeft(whole+frac, "0")
	exp -= len(frac)
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	if trimmed == "" {
		return neg, "", 0, true
	}
	for _, c := range trimmed {
		if c < '0' || c > '9' {
			return false, "", 0, false
		}
	}
	return neg, trimmed, exp, true
}
