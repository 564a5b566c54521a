package identity

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/jose"
)

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

// Every member a struct of this package reads must be in its Members,
// and nothing else: the case variants of a member missed would not be
// refused, and those of one too many would be refused for no reason.
func TestMemberNamesAreWhatIsRead(t *testing.T) {
	for _, tc := range []struct {
		v     any
		names jose.Members
	}{
		{jose.Header{}, jose.HeaderMembers},
		{assertionClaims{}, assertionClaimMembers},
		{verifiedClaimsJSON{}, accessClaimMembers},
	} {
		got := slices.Sorted(maps.Keys(tc.names))
		if want := jsonNames(reflect.TypeOf(tc.v)); !slices.Equal(got, want) {
			t.Errorf("%T reads %v, its Members are %v", tc.v, want, got)
		}
	}
}
