package decision_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/ledger"
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
		{"a counterparty recorded twice", [][3]string{{"counterparty.created", "cp_a", `{"event":"counterparty_created","counterparty_id":"cp_a","status":"new"}`},
			{"counterparty.created", "cp_a", `{"event":"counterparty_created","counterparty_id":"cp_a","status":"verified"}`}}, "recorded again"},
		{"a counterparty adopted after it was recorded", [][3]string{{"counterparty.created", "cp_a", `{"event":"counterparty_created","counterparty_id":"cp_a","status":"new"}`},
			{"counterparty.adopted", "cp_a", `{"event":"counterparty_adopted","counterparty_id":"cp_a","status":"verified"}`}}, "recorded again"},
		{"a counterparty record about another", [][3]string{{"counterparty.created", "cp_a", `{"event":"counterparty_created","counterparty_id":"cp_b"}`}}, "does not name its counterparty"},
		{"a counterparty record of another event", [][3]string{{"counterparty.created", "cp_a", `{"event":"counterparty_adopted","counterparty_id":"cp_a"}`}}, "or its event"},
		{"an upload record about another revision", [][3]string{{"policy.upload", "v1", `{"event":"upload","revision":"v2","bundle_sha256":"aa"}`}}, "does not name its revision"},
		{"an upload without its digest", [][3]string{{"policy.upload", "v1", `{"event":"upload","revision":"v1"}`}}, "does not name its revision and SHA-256"},
		{"a verification key entry of another event", [][3]string{{"policy.verification_key", "k1", `{"event":"upload","kid":"k1","public_pem":"A"}`}}, "does not name its key"},
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

// Builds before 2026-11-28 logged a policy change whose write then failed: a
// second add-key of one id (the store kept the first), or an upload whose
// insert failed and was made again. Such a log and its rows, honest, pass
// ledger verify: a row may match any of its subject's entries. A key id
// the log registered that the store does not hold still fails it.
func TestRowLogPolicyEntriesOfOlderBuilds(t *testing.T) {
	e := newServiceEnv(t, "sqlite")
	ctx := context.Background()
	raw := permissiveBundle(t)
	b, err := e.policies.Upload(ctx, e.org, raw, "usr_author")
	if err != nil {
		t.Fatal(err)
	}
	first := newPEMKey(t)
	if err := e.policies.AddVerificationKey(ctx, e.org, "ci", "", first, "usr_admin"); err != nil {
		t.Fatal(err)
	}
	// What the older builds left: entries whose rows were never stored.
	orphan := func(kind, subject, record string) {
		t.Helper()
		if _, err := e.ledger.Append(ctx, e.log(), ledger.Entry{Kind: kind, Subject: subject, Record: []byte(record)}); err != nil {
			t.Fatal(err)
		}
	}
	second, _ := json.Marshal(string(newPEMKey(t)))
	orphan("policy.verification_key", "ci", `{"algorithm":"ES256","by":"usr_admin","event":"verification_key","kid":"ci","public_pem":`+string(second)+`}`)
	orphan("policy.upload", b.Revision, `{"event":"upload","revision":"`+b.Revision+`","bundle_sha256":"`+strings.Repeat("0", 64)+`","by":"usr_author"}`)
	check := func() *ledger.Report {
		t.Helper()
		rows := decision.NewRowLog()
		rep, err := e.ledger.CheckWith(ctx, e.log(), "", ledger.CheckOptions{CheckRecord: rows.Entry, CheckRows: rows.Rows})
		if err != nil {
			t.Fatal(err)
		}
		return &rep
	}
	if rep := check(); rep.Problem != nil || rep.RowsProblem != "" {
		t.Fatalf("honest data of an older build: %v, %s", rep.Problem, rep.RowsProblem)
	}
	orphan("policy.verification_key", "gone", `{"algorithm":"ES256","by":"usr_admin","event":"verification_key","kid":"gone","public_pem":`+string(second)+`}`)
	if rep := check(); !strings.Contains(rep.RowsProblem, `bundle verification key "gone" was registered by entry`) {
		t.Fatalf("a key id the store does not hold: %v, %q", rep.Problem, rep.RowsProblem)
	}
}
