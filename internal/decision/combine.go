package decision

import (
	"slices"

	"github.com/agentsigna/agentsigna/bundles"
)

// Outcome is the answer to an agent (DESIGN §3 "Response").
type Outcome string

// The outcomes.
const (
	Allow    Outcome = "allow"
	Deny     Outcome = "deny"
	Escalate Outcome = "escalate"
)

// Reasons the evaluation itself gives. They are part of the reason
// vocabulary of policies/base, and as stable.
const (
	// ReasonNoAuthority: nothing denied or escalated, and the organization's
	// policy did not allow (or answered {}): every request starts with no
	// authority. Also the deny of an organization decision that is
	// undefined, whatever the base escalates.
	ReasonNoAuthority = "no_authority"
	// ReasonPolicyError: a policy failed to evaluate or returned something
	// that is not a verdict.
	ReasonPolicyError = "policy_error"
	// ReasonPolicyTimeout: a policy did not answer within the timeout.
	ReasonPolicyTimeout = "policy_timeout"
)

// Combined is the outcome of a base and an organization verdict.
type Combined struct {
	Outcome Outcome `json:"outcome"`
	// Reasons: the deny reasons of a deny, the escalate reasons of an
	// escalation, none for an allow. Base reasons first, then the
	// organization's, each sorted, without duplicates.
	Reasons []string `json:"reasons"`
	// ApprovalsRequired is set for an escalation only: the larger of the
	// two verdicts' min_approvals, and at least 1.
	ApprovalsRequired int `json:"approvals_required,omitempty"`
}

// Combine applies DESIGN §3 "Combination", in this order:
//
//  1. deny if either verdict has a deny reason;
//  2. else escalate if either has an escalate reason, requiring
//     max(base.min_approvals, tenant.min_approvals) approvals — so an
//     organization can raise the base's count, never lower it, and its allow
//     cannot skip a base escalation;
//  3. else allow if the organization's verdict says allow (the base's Allow
//     is ignored: the base grants nothing);
//  4. else deny with no_authority.
func Combine(base, tenant bundles.Verdict) Combined {
	switch {
	case len(base.Deny) > 0 || len(tenant.Deny) > 0:
		return Combined{Outcome: Deny, Reasons: joinReasons(base.Deny, tenant.Deny)}
	case len(base.Escalate) > 0 || len(tenant.Escalate) > 0:
		return Combined{
			Outcome:           Escalate,
			Reasons:           joinReasons(base.Escalate, tenant.Escalate),
			ApprovalsRequired: max(base.MinApprovals, tenant.MinApprovals, 1),
		}
	case tenant.Allow:
		return Combined{Outcome: Allow, Reasons: []string{}}
	default:
		return Combined{Outcome: Deny, Reasons: []string{ReasonNoAuthority}}
	}
}

// joinReasons returns base's reasons then the organization's that base did
// not give, each list sorted.
func joinReasons(base, tenant []string) []string {
	out := slices.Clone(base)
	slices.Sort(out)
	out = slices.Compact(out)
	extra := slices.Clone(tenant)
	slices.Sort(extra)
	for _, r := range slices.Compact(extra) {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}
