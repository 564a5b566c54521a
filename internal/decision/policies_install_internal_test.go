package decision

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/agentsigna/agentsigna/bundles"
)

// TestInstallKeepsTheNewerActivation: an older activation's load that
// finishes after a newer activation was installed leaves the newer policy
// in the engine; installing the same activation again (a second load of
// it) does replace what the engine holds.
func TestInstallKeepsTheNewerActivation(t *testing.T) {
	ev, engine := newEvaluator(t, Options{})
	p := NewPolicies(nil, nil, engine, PoliciesOptions{})
	const org = "t_1" // defaultInput's tenant
	ctx := context.Background()
	in := defaultInput()
	in.Action = Action{Type: "invoice.approve"} // acme grants no authority for it; older-1 allows it
	evaluate := func(wantRevision string, want Outcome, reasons ...string) {
		t.Helper()
		got := ev.Evaluate(ctx, in)
		if got.Policy.TenantRevision != wantRevision || got.Outcome != want || strings.Join(got.Reasons, ",") != strings.Join(reasons, ",") {
			t.Fatalf("decided under %q: %s %q (%q), want under %q: %s %q", got.Policy.TenantRevision, got.Outcome, got.Reasons, got.Errors, wantRevision, want, reasons)
		}
	}

	newer, older := acmePolicy(t), allowEverythingPolicy(t, "older-1")
	if got := ev.EvaluateWith(ctx, older, in); got.Outcome != Allow {
		t.Fatalf("older-1 does not tell itself apart from acme: %s %q", got.Outcome, got.Reasons)
	}
	p.install(org, 2, newer)
	evaluate("acme-example-1", Deny, ReasonNoAuthority)

	// Activation 1's load finishes late.
	p.install(org, 1, older)
	if engine.Active(org) != newer {
		rev, _ := engine.ActiveRevision(org)
		t.Fatalf("an older activation's load replaced the newer policy: the engine holds %q", rev)
	}
	evaluate("acme-example-1", Deny, ReasonNoAuthority)
	if !p.Current(org, 2) {
		t.Fatal("Current(2) is false once activation 1's load finished after activation 2's")
	}
	if !p.Current(org, 1) || p.Current(org, 3) {
		t.Fatalf("Current(1) = %v, Current(3) = %v with activation 2 installed", p.Current(org, 1), p.Current(org, 3))
	}

	// Activation 2 loaded again: the same seq is not older, and replaces.
	again := acmePolicy(t)
	p.install(org, 2, again)
	if engine.Active(org) != again {
		t.Fatal("a second load of the installed activation did not replace the engine's policy")
	}
	evaluate("acme-example-1", Deny, ReasonNoAuthority)
	if !p.Current(org, 2) || p.Current(org, 3) {
		t.Fatalf("Current(2) = %v, Current(3) = %v after activation 2 was loaded again", p.Current(org, 2), p.Current(org, 3))
	}
}

// allowEverythingPolicy compiles a bundle of revision rev whose policy
// allows everything.
func allowEverythingPolicy(t testing.TB, rev string) *bundles.Policy {
	t.Helper()
	raw, err := bundles.PackFS(fstest.MapFS{
		".manifest":            {Data: []byte(`{"revision":"` + rev + `","roots":["tenant"],"rego_version":1}`)},
		"tenant/decision.rego": {Data: []byte("package tenant\n\ndecision := {\"allow\": true}\n")},
	}, bundles.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	policy, _, err := bundles.Load(context.Background(), raw, bundles.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return policy
}
