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
//   - every number a finite IEEE 754 double, and every integer within
//     ±2^53: RFC 8785 canonicalizes numbers as doubles, so two larger
//     integers could share one digest.
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
		if len(name) > MaxRequestString {
			return nil, invalid("action.params has a member name longer than %d bytes", MaxRequestString)
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
		if len(t) > MaxRequestString {
			return nil, invalid("action.params has a string longer than %d bytes", MaxRequestString)
		}
		return t, nil
	case json.Number:
		if err := checkNumber(t); err != nil {
			return nil, err
		}
		return t, nil
	case bool, nil:
		return t, nil
	}
	return nil, errParamsSyntax
}

// checkNumber accepts what every I-JSON reader reads as the same number.
func checkNumber(n json.Number) error {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		if errors.Is(err, strconv.ErrRange) || err == nil {
			return invalid("action.params has a number beyond the range of a double (RFC 7493)")
		}
		return errParamsSyntax
	}
	if !strings.ContainsAny(string(n), ".eE") {
		// Compared as an integer: as a double, 2^53+1 would pass as 2^53.
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || i > maxSafeInteger || i < -maxSafeInteger {
			return invalid("action.params has an integer beyond ±(2^53−1) (RFC 7493); send it as a string")
		}
	}
	return nil
}
