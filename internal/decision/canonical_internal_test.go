package decision

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/agentsigna/agentsigna/internal/signing"
)

// The shortcuts that reuse the canonical action give exactly what
// canonicalizing the whole again gives.
func TestCanonicalShortcuts(t *testing.T) {
	for _, body := range []string{
		`{"action":{"type":"payment.send"}}`,
		`{"action":{"type":"payment.send","resource":"invoice:INV-1","counterparty":"cp_aaaaaaaaaaaaaaaaaaaaaaaaaa","amount":{"value":"1250.00","currency":"EUR"},"params":{"z":1,"a":[1.50,"\u00e9",{"y":null,"b":true}],"po":"PO-77"}},"reason":"pay it"}`,
		`{"action":{"type":"grant.access","params":{"e":1e3,"unicode":"\ud83d\ude00 <&> \u2028 control \u0001"}},"reason":"quote \" backslash \\ tab \t line\r\n \u00e9"}`,
		`{"action":{"type":"vendor.update_bank"},"reason":""}`,
	} {
		var r DecisionRequest
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		v, err := r.validate()
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		whole, err := canonicalJSON(r)
		if err != nil {
			t.Fatal(err)
		}
		spliced, err := canonicalRequest(v.action, r.Reason)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(whole, spliced) {
			t.Errorf("canonical request\n got %s\nwant %s", spliced, whole)
		}
		digest, err := signing.ActionDigest(v.action)
		if err != nil {
			t.Fatal(err)
		}
		if got := signing.CanonicalActionDigest(v.action); got != digest {
			t.Errorf("action digest %s, ActionDigest says %s", got, digest)
		}
	}
}
