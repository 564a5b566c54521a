package decision

import (
	"slices"
	"testing"

	"github.com/agentsigna/agentsigna/bundles"
)

// TestCombine covers every branch of the combination, in its order.
func TestCombine(t *testing.T) {
	type v = bundles.Verdict
	for _, tc := range []struct {
		name         string
		base, tenant v
		want         Outcome
		reasons      []string
		approvals    int
	}{
		// 1. deny if any deny.
		{"base deny", v{Deny: []string{"agent_not_active"}, MinApprovals: 1}, v{Allow: true}, Deny, []string{"agent_not_active"}, 0},
		{"tenant deny", v{MinApprovals: 1}, v{Allow: true, Deny: []string{"embargo"}}, Deny, []string{"embargo"}, 0},
		{"both deny, base first, no duplicates", v{Deny: []string{"z_base", "a_base"}}, v{Deny: []string{"m", "a_base"}}, Deny, []string{"a_base", "z_base", "m"}, 0},
		{"deny beats base escalate", v{Deny: []string{"d"}, Escalate: []string{"e"}, MinApprovals: 2}, v{Allow: true}, Deny, []string{"d"}, 0},
		{"tenant deny beats base escalate", v{Escalate: []string{"high_risk_category:access"}, MinApprovals: 2}, v{Deny: []string{"no"}}, Deny, []string{"no"}, 0},
		{"timeout denies", v{MinApprovals: 1}, v{Deny: []string{ReasonPolicyTimeout}}, Deny, []string{ReasonPolicyTimeout}, 0},
		// 2. else escalate if any escalate.
		{"base escalate", v{Escalate: []string{"unverified_counterparty"}, MinApprovals: 1}, v{}, Escalate, []string{"unverified_counterparty"}, 1},
		{"tenant escalate", v{MinApprovals: 1}, v{Escalate: []string{"big"}}, Escalate, []string{"big"}, 1},
		{"tenant allow cannot skip a base escalation", v{Escalate: []string{"high_risk_category:counterparty.bank_details"}, MinApprovals: 2}, v{Allow: true}, Escalate, []string{"high_risk_category:counterparty.bank_details"}, 2},
		{"tenant min_approvals below the base", v{Escalate: []string{"high_risk_category:policy"}, MinApprovals: 2}, v{Allow: true, MinApprovals: 1}, Escalate, []string{"high_risk_category:policy"}, 2},
		{"tenant min_approvals zero", v{Escalate: []string{"x"}, MinApprovals: 2}, v{MinApprovals: 0}, Escalate, []string{"x"}, 2},
		{"tenant min_approvals above the base", v{Escalate: []string{"x"}, MinApprovals: 1}, v{Escalate: []string{"y"}, MinApprovals: 3}, Escalate, []string{"x", "y"}, 3},
		{"at least one approval", v{}, v{Escalate: []string{"y"}}, Escalate, []string{"y"}, 1},
		// 3. else allow only on the tenant's allow.
		{"tenant allow", v{MinApprovals: 1}, v{Allow: true}, Allow, []string{}, 0},
		{"base allow grants nothing", v{Allow: true, MinApprovals: 1}, v{}, Deny, []string{ReasonNoAuthority}, 0},
		// 4. else no authority.
		{"tenant silent", v{MinApprovals: 1}, v{}, Deny, []string{ReasonNoAuthority}, 0},
		{"tenant allow false", v{MinApprovals: 1}, v{Allow: false, MinApprovals: 5}, Deny, []string{ReasonNoAuthority}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Combine(tc.base, tc.tenant)
			if got.Outcome != tc.want || !slices.Equal(got.Reasons, tc.reasons) || got.ApprovalsRequired != tc.approvals {
				t.Errorf("Combine = %s %q %d, want %s %q %d", got.Outcome, got.Reasons, got.ApprovalsRequired, tc.want, tc.reasons, tc.approvals)
			}
			if got.Reasons == nil {
				t.Error("reasons must be a list (JSON [] not null)")
			}
		})
	}
}

// Combine must not alias its arguments' slices: a caller keeps them.
func TestCombineDoesNotAlias(t *testing.T) {
	base := bundles.Verdict{Deny: []string{"b", "a"}}
	got := Combine(base, bundles.Verdict{})
	got.Reasons[0] = "changed"
	if base.Deny[0] != "b" || base.Deny[1] != "a" {
		t.Errorf("base verdict changed: %q", base.Deny)
	}
}
