package server

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

func TestPeekClaims(t *testing.T) {
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	hdr := b64(`{"alg":"EdDSA"}`)
	for _, tc := range []struct {
		name, jws, sub, tenant string
		laxOnly                bool // strict, peekClaims reads nothing of it
	}{
		{"both", hdr + "." + b64(`{"sub":"agt_1","tenant":"t-1","x":[1]}`) + ".sig", "agt_1", "t-1", false},
		{"tenant only", hdr + "." + b64(`{"tenant":"t-1"}`) + ".sig", "", "t-1", false},
		{"two parts", hdr + "." + b64(`{"sub":"a","tenant":"t"}`), "", "", false},
		{"four parts", hdr + "." + b64(`{"sub":"a","tenant":"t"}`) + ".sig.more", "", "", false},
		{"not base64url", hdr + ".%%%.sig", "", "", false},
		{"not JSON", hdr + "." + b64(`tenant=t`) + ".sig", "", "", false},
		{"a number for sub", hdr + "." + b64(`{"sub":7,"tenant":"t"}`) + ".sig", "", "", false},
		{"payload over 16 KiB", hdr + "." + b64(`{"tenant":"t","pad":"`+strings.Repeat("x", 16<<10)+`"}`) + ".sig", "", "", false},
		// Read two ways: the verifier refuses them, so strict reads nothing.
		{"sub twice", hdr + "." + b64(`{"sub":"agt_1","sub":"agt_2","tenant":"t"}`) + ".sig", "agt_2", "t", true},
		{"Sub beside sub", hdr + "." + b64(`{"sub":"agt_1","Sub":"agt_2","tenant":"t"}`) + ".sig", "agt_2", "t", true},
		{"TENANT", hdr + "." + b64(`{"sub":"agt_1","TENANT":"t"}`) + ".sig", "agt_1", "t", true},
	} {
		for _, strict := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, strict %v", tc.name, strict), func(t *testing.T) {
				sub, tenant := tc.sub, tc.tenant
				if strict && tc.laxOnly {
					sub, tenant = "", ""
				}
				if gotSub, gotTenant := peekClaims(tc.jws, strict); gotSub != sub || gotTenant != tenant {
					t.Errorf("peekClaims = %q, %q; want %q, %q", gotSub, gotTenant, sub, tenant)
				}
			})
		}
	}
}
