package signing

import (
	"bytes"
	"encoding/json/jsontext"
	"errors"
	"io"
	"strconv"
)

// maxDoubleText is how jsontext writes a number it clamped to ±MaxFloat64.
const maxDoubleText = "1.7976931348623157e+308"

// Canonical returns the RFC 8785 (JCS) form of the JSON value b, which it
// does not modify: members sorted by their names' UTF-16 code units,
// numbers as ECMAScript doubles, strings in their minimal escaping, no
// whitespace. It refuses what is not I-JSON (RFC 7493), as RFC 8785 asks:
// invalid UTF-8, duplicate member names, numbers beyond a double's range.
//
// It is the standard library's canonicalizer: a fifth of the time and a
// hundredth of the allocations of github.com/gowebpki/jcs on a decision
// record. That one stays in the tests as a second implementation that must
// agree (FuzzCanonicalMatchesJCS).
func Canonical(b []byte) ([]byte, error) {
	v := jsontext.Value(bytes.Clone(b))
	if err := v.Canonicalize(); err != nil {
		return nil, err
	}
	// jsontext clamps a number past a double's range (1e400) to the
	// largest double, where RFC 8785 refuses it: two different inputs
	// would share one canonical form. Only an output holding that number
	// can come from one, so only then are the input's numbers read again.
	if bytes.Contains(v, []byte(maxDoubleText)) {
		if err := checkNumberRange(b); err != nil {
			return nil, err
		}
	}
	return v, nil
}

var errNumberRange = errors.New("a number is beyond the range of an IEEE 754 double")

// checkNumberRange refuses a JSON text with a number that does not fit a
// double.
func checkNumberRange(b []byte) error {
	d := jsontext.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.ReadToken()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if tok.Kind() == '0' {
			if _, err := strconv.ParseFloat(tok.String(), 64); err != nil {
				return errNumberRange
			}
		}
	}
}
