package decision

import (
	"encoding/json"
	"strings"
	"testing"
)

// The policy reads params' numbers as the receipt and the ledger carry
// them, in their RFC 8785 form, not as the agent spelled them: a rule
// matching the text of 12345 matches 1.2345e4 too, and what it judged is
// what is signed.
func TestParamsNumbersReadAsSigned(t *testing.T) {
	r := DecisionRequest{Action: RequestAction{Type: "vendor.update",
		Params: json.RawMessage(`{"a":1.2345e4,"b":0.50,"c":1E+2,"d":-0,"e":[2.50e1,{"f":100e-2}]}`)}}
	v, err := r.validate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(v.params)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":12345,"b":0.5,"c":100,"d":0,"e":[25,{"f":1}]}`
	if string(got) != want {
		t.Errorf("the policy reads %s, want %s", got, want)
	}
	if !strings.Contains(string(v.action), `"params":`+want) {
		t.Errorf("the signed action %s does not carry the params the policy read", v.action)
	}
}
