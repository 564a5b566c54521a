package jose

import (
	"errors"
	"testing"
)

func TestParseHeader(t *testing.T) {
	h, err := ParseHeader([]byte(`{"alg":"EdDSA","kid":"k1","typ":"JWT","x5u":"ignored"}`))
	if err != nil || h.Alg != "EdDSA" || h.Kid != "k1" || h.Typ != "JWT" {
		t.Fatalf("ParseHeader = %+v, %v", h, err)
	}
	for in, want := range map[string]error{
		`{"alg":"EdDSA","crit":["exp"]}`:  ErrUnsupportedHeader,
		`{"alg":"EdDSA","crit":null}`:     ErrUnsupportedHeader,
		`{"alg":"EdDSA","b64":false}`:     ErrUnsupportedHeader,
		`{"alg":"EdDSA","KID":"k1"}`:      nil, // refused, not ErrUnsupportedHeader
		`{"Alg":"EdDSA"}`:                 nil,
		`{"alg":"EdDSA","alg":"none"}`:    nil,
		`{"alg":"EdDSA","typ":["a","b"]}`: ErrNotJSON,
		`["alg"]`:                         nil,
	} {
		_, err := ParseHeader([]byte(in))
		if err == nil || (want != nil && !errors.Is(err, want)) {
			t.Errorf("ParseHeader(%s) = %v, want an error (%v)", in, err, want)
		}
	}
}
