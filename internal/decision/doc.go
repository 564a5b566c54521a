// Package decision owns the decision of DESIGN §3: the policy input an
// agent's request becomes ([Input]), its evaluation against the base policy
// and the organization's active policy ([Evaluator]), and their combination
// ([Combine]) — deny if anything denies, else escalate if anything
// escalates, else allow only on the organization's explicit allow, else deny
// with no_authority — which lives here, in Go, so that no policy can change
// it. Around that core: request validation ([DecisionRequest]), the decision
// service that records each decision, its receipt or case in the ledger and
// the store ([Service]), and organizations' policy revisions ([Policies]).
// Approvals of cases arrive with the tenant users.
//
// It must never let a policy failure allow anything: an error, a timeout or
// a malformed result is a deny with a reason (policy_error, policy_timeout),
// and silence is no authority. It must never compile or load bundles itself
// (package bundles does), reach a database other than through the store, or
// put evaluation error text in an agent-facing response.
package decision
