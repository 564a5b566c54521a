package jose

import (
	"strings"
	"testing"
)

func TestCheckMemberNames(t *testing.T) {
	known := Members{"kid": nil, "risk_tier": nil, "list": {"at": nil}}
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
		err := Check([]byte(tc.json), known)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.json, err, tc.ok)
		}
	}
	// Errors name members, never values.
	for json, want := range map[string]string{
		`{"kid":"secret","kid":"secret2"}`: `duplicate member "kid"`,
		`{"KID":"secret"}`:                 `member "KID" is not "kid"`,
		`{"kid":"secret`:                   ErrNotJSON.Error(),
	} {
		err := Check([]byte(json), known)
		if err == nil || err.Error() != want || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v, want %s", json, err, want)
		}
	}
}

// Flat members, with the exact errors.
func TestCheckFlat(t *testing.T) {
	known := Flat("kid", "client_id")
	for _, tc := range []struct{ in, err string }{
		{`{"kid":"a","client_id":"b","x":{"KID":1,"kid":2},"y":[{"a":1},{"a":1}]}`, ""},
		{` {"k\u0069d":"a"} `, ""},
		{`{"KID":"a"}`, `member "KID" is not "kid"`},
		{`{"K\u0049D":"a"}`, `member "KID" is not "kid"`},
		{`{"\u212Aid":"a"}`, "member \"\u212Aid\" is not \"kid\""},
		{`{"Client-ID":"a"}`, `member "Client-ID" is not "client_id"`},
		{`{"clientid":"a"}`, `member "clientid" is not "client_id"`},
		{`{"kid":"a","kid":"b"}`, `duplicate member "kid"`},
		{`{"kid":"a","\u006bid":"a"}`, `duplicate member "kid"`},
		{`{"x":{"secret":1,"secret":2}}`, `duplicate member "secret"`},
		{`{"x":[{"a":1,"a":2}]}`, `duplicate member "a"`},
		{`{"kid":"` + "\xff" + `"}`, "not valid JSON"},
		{`{"kid":"\ud800"}`, "not valid JSON"},
		{`{"kid":"a"`, "not valid JSON"},
		{`{"kid":"a"}{}`, "not exactly one JSON object"},
		{`{"kid":"a"} x`, "not exactly one JSON object"},
		{`["kid"]`, "not a JSON object"},
		{``, "not a JSON object"},
	} {
		err := Check([]byte(tc.in), known)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || err.Error() != tc.err) {
			t.Errorf("%s: got %v, want %q", tc.in, err, tc.err)
		}
	}
	// Values are never quoted.
	if err := Check([]byte(`{"KID":"secret-value"}`), known); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("error %v", err)
	}
}

// CheckCaseFolded folds case alone, as encoding/json v1 does: a name
// that differs from a known one by '_' or '-' is another member to such
// a reader; a duplicate, or a case variant, is still refused.
func TestCheckCaseFolded(t *testing.T) {
	known := Flat("keyid", "iss")
	for _, ok := range []string{`{"keyid":"a","key-id":"b","key_id":"c","Iss_":"d"}`, `{"other":1,"OTHER":2}`} {
		if err := CheckCaseFolded([]byte(ok), known); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{`{"keyid":"a","keyid":"b"}`, `{"KeyID":"a"}`, `{"ISS":"a"}`, `{"\u212Aeyid":"a"}`} {
		if err := CheckCaseFolded([]byte(bad), known); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	// Check, for readers that also ignore '_' and '-', refuses what
	// CheckCaseFolded accepts.
	if err := Check([]byte(`{"key-id":"b"}`), known); err == nil {
		t.Error(`Check accepted "key-id" beside a known "keyid"`)
	}
}
