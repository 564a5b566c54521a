package decision

import (
	"slices"
	"strings"

	"github.com/agentsigna/agentsigna/bundles"
)

// ReasonBankDetails is the base's escalation of a bank-details change
// (policies/base: high_risk_category:counterparty.bank_details).
const ReasonBankDetails = "high_risk_category:counterparty.bank_details"

// bankDetailKeys are the member names, compared case-insensitively, that
// carry a bank account's details.
var bankDetailKeys = []string{
	"bank", "bank_details", "bank_account", "bank_account_number", "account_number",
	"iban", "bic", "swift", "swift_code", "swift_bic", "routing_number", "aba", "sort_code",
}

// bankDetailsIn reports whether params carry bank details: a member with
// one of bankDetailKeys' names, at any depth (params nest at most
// MaxParamsDepth levels).
func bankDetailsIn(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for name, member := range v {
			if slices.Contains(bankDetailKeys, strings.ToLower(name)) || bankDetailsIn(member) {
				return true
			}
		}
	case []any:
		return slices.ContainsFunc(v, bankDetailsIn)
	}
	return false
}

// withBankDetailsRule is the base verdict with its one rule that runs in
// Go (see policies/base): an action whose params carry bank details is a
// bank-details change, whatever its type, escalated for two people. It
// is not in the Rego, whose verdicts are memoized by the input paths
// they read: params, which rarely repeat, would make every lookup miss.
func withBankDetailsRule(base bundles.Verdict, a Action) bundles.Verdict {
	if a.Params == nil || !bankDetailsIn(a.Params) {
		return base
	}
	if !slices.Contains(base.Escalate, ReasonBankDetails) {
		base.Escalate = append(slices.Clone(base.Escalate), ReasonBankDetails)
	}
	base.MinApprovals = max(base.MinApprovals, 2)
	return base
}
