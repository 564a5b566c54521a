package signing

import (
	"strings"
	"testing"
)

func TestCheckMemberNames(t *testing.T) {
	known := jsonMembers{"kid": nil, "risk_tier": nil, "list": {"at": nil}}
	for _, tc := range []struct {
		json string
		ok   bool
	}{
		{`{"kid":"k","risk_tier":"low","list":[{"at":1},{"at":2}]}`, true},
		{`{"\u006bid":"k"}`, true},                    // "kid", escaped: the same name
		{`{"kids":"k","tier":1,"ID":2}`, true},        // not one of known's, folded or not
		{`{"list":[[{"at":1}]],"x":{"KID":1}}`, true}, // names are checked where known says
		{`{"\u004bID":"k"}`, false},                   // "KID", escaped
		{`{"\u212aid":"k"}`, false},                   // Kelvin sign
		{`{"RiskTier":"low"}`, false},                 // v2's case-insensitive match drops '_'
		{`{"risk-tier":"low"}`, false},
		{`{"list":[{"at":1},{"AT":2}]}`, false},
		{`{"x":[{"a":1,"a":2}]}`, false},
		{"{\"kid\":\"\xff\"}", false},
		{`{"kid":"k"} {}`, false},
		{`["kid"]`, false},
		{`{"kid":`, false},
		{``, false},
	} {
		err := checkMemberNames([]byte(tc.json), known)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.json, err, tc.ok)
		}
	}
	// Errors name members, never values.
	for json, want := range map[string]string{
		`{"kid":"secret","kid":"secret2"}`: `duplicate member "kid"`,
		`{"KID":"secret"}`:                 `member "KID" is not "kid"`,
		`{"kid":"secret`:                   errNotJSON.Error(),
	} {
		err := checkMemberNames([]byte(json), known)
		if err == nil || err.Error() != want || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v, want %s", json, err, want)
		}
	}
}
