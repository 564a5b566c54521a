package server

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestPeekClaims(t *testing.T) {
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	hdr := b64(`{"alg":"EdDSA"}`)
	for _, tc := range []struct {
		name, jws, sub, tenant string
	}{
		{"both", hdr + "." + b64(`{"sub":"agt_1","tenant":"t-1","x":[1]}`) + ".sig", "agt_1", "t-1"},
		{"tenant only", hdr + "." + b64(`{"tenant":"t-1"}`) + ".sig", "", "t-1"},
		{"two parts", hdr + "." + b64(`{"sub":"a","tenant":"t"}`), "", ""},
		{"four parts", hdr + "." + b64(`{"sub":"a","tenant":"t"}`) + ".sig.more", "", ""},
		{"not base64url", hdr + ".%%%.sig", "", ""},
		{"not JSON", hdr + "." + b64(`tenant=t`) + ".sig", "", ""},
		{"a number for sub", hdr + "." + b64(`{"sub":7,"tenant":"t"}`) + ".sig", "", ""},
		{"payload over 16 KiB", hdr + "." + b64(`{"tenant":"t","pad":"`+strings.Repeat("x", 16<<10)+`"}`) + ".sig", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if sub, tenant := peekClaims(tc.jws); sub != tc.sub || tenant != tc.tenant {
				t.Errorf("peekClaims = %q, %q; want %q, %q", sub, tenant, tc.sub, tc.tenant)
			}
		})
	}
}
