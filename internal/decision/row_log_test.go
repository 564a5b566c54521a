package decision_test

import (
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// RowLog refuses a log whose agent, counterparty and policy entries contradict one
// another (ledger verify reports the entry): the service never writes one,
// so one means a bug, or entries it did not write.
func TestRowLogRefusesContradictoryEntries(t *testing.T) {
	const agent = "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	registered := `{"event":"agent_registered","agent_id":"` + agent + `","risk_tier":"low","key_id":"k1","public_jwk":{"kty":"OKP"}}`
	for _, tc := range []struct {
		name    string
		entries [][3]string // kind, subject, record
		want    string
	}{
		{"registered twice", [][3]string{{"agent.registered", agent, registered}, {"agent.registered", agent, registered}}, "registered again"},
		{"a record about another agent", [][3]string{{"agent.registered", "agt_bbbbbbbbbbbbbbbbbbbbbbbbbb", registered}}, "does not name its agent"},
		{"registered after a rotation", [][3]string{{"agent.key_rotated", agent,
			`{"event":"agent_key_rotated","agent_id":"` + agent + `","key_id":"k2","public_jwk":{"kty":"OKP"},"retired_key_ids":[]}`},
			{"agent.registered", agent, registered}}, "registered again, or after entries changed it"},
		{"a key retired that is not active", [][3]string{{"agent.registered", agent, registered}, {"agent.key_rotated", agent,
			`{"event":"agent_key_rotated","agent_id":"` + agent + `","key_id":"k2","public_jwk":{"kty":"OKP"},"retired_key_ids":["k9"]}`}}, "not one of its active keys"},
		{"a key introduced twice", [][3]string{{"agent.registered", agent, registered}, {"agent.key_rotated", agent,
			`{"event":"agent_key_rotated","agent_id":"` + agent + `","key_id":"k1","public_jwk":{"kty":"OKP"},"retired_key_ids":[]}`}}, "introduced again"},
		{"a registration without a key", [][3]string{{"agent.registered", agent, `{"event":"agent_registered","agent_id":"` + agent + `","risk_tier":"low"}`}}, "names no key"},
		{"a counterparty recorded twice", [][3]string{{"counterparty.created", "cp_a", `{"counterparty_id":"cp_a","status":"new"}`},
			{"counterparty.created", "cp_a", `{"counterparty_id":"cp_a","status":"verified"}`}}, "recorded again"},
		{"a counterparty record about another", [][3]string{{"counterparty.created", "cp_a", `{"counterparty_id":"cp_b"}`}}, "does not name its counterparty"},
		{"a revision uploaded twice", [][3]string{{"policy.upload", "v1", `{"event":"upload","revision":"v1","bundle_sha256":"aa"}`},
			{"policy.upload", "v1", `{"event":"upload","revision":"v1","bundle_sha256":"bb"}`}}, "uploaded again"},
		{"an upload record about another revision", [][3]string{{"policy.upload", "v1", `{"event":"upload","revision":"v2","bundle_sha256":"aa"}`}}, "does not name its revision"},
		{"an upload without its digest", [][3]string{{"policy.upload", "v1", `{"event":"upload","revision":"v1"}`}}, "does not name its revision and SHA-256"},
		{"a verification key registered twice", [][3]string{{"policy.verification_key", "k1", `{"event":"verification_key","kid":"k1","public_pem":"A"}`},
			{"policy.verification_key", "k1", `{"event":"verification_key","kid":"k1","public_pem":"B"}`}}, "registered again"},
		{"a verification key record about another", [][3]string{{"policy.verification_key", "k1", `{"event":"verification_key","kid":"k2","public_pem":"A"}`}}, "does not name its key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows := decision.NewRowLog()
			var err error
			for i, e := range tc.entries {
				if err = rows.Entry(verify.Entry{Index: uint64(i), Kind: e[0], Subject: e[1]}, []byte(e[2])); err != nil {
					break
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error saying %q", err, tc.want)
			}
		})
	}
}
