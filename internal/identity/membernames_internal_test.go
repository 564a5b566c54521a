package identity

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestCheckMemberNames(t *testing.T) {
	known := newMemberNames("kid", "client_id")
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
		err := checkMemberNames([]byte(tc.in), known)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || err.Error() != tc.err) {
			t.Errorf("%s: got %v, want %q", tc.in, err, tc.err)
		}
	}
	// Values are never quoted.
	if err := checkMemberNames([]byte(`{"KID":"secret-value"}`), known); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("error %v", err)
	}
}

// jsonNames are the member names encoding/json reads into a struct of type
// t: its fields' names, and those of the structs it embeds.
func jsonNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && name == "":
			names = append(names, jsonNames(f.Type)...)
		case !f.IsExported() || name == "-":
		case name == "":
			names = append(names, f.Name)
		default:
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Every member a struct of this package reads must be in its memberNames,
// and nothing else: the case variants of a member missed would not be
// refused, and those of one too many would be refused for no reason.
func TestMemberNamesAreWhatIsRead(t *testing.T) {
	for _, tc := range []struct {
		v     any
		names memberNames
	}{
		{header{}, headerMembers},
		{assertionClaims{}, assertionClaimMembers},
		{verifiedClaimsJSON{}, accessClaimMembers},
	} {
		got := slices.Sorted(slices.Values(tc.names.names))
		if want := jsonNames(reflect.TypeOf(tc.v)); !slices.Equal(got, want) {
			t.Errorf("%T reads %v, its memberNames are %v", tc.v, want, got)
		}
	}
}
