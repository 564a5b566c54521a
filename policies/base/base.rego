# METADATA
# title: AgentSigna base policy
# description: |
#   The hard rules of DESIGN §3 that no organization's policy can loosen. It is
#   compiled into the binary and evaluated in its own compiler, apart from the
#   organization's bundle; Go combines the two (deny > escalate > tenant allow >
#   deny no_authority), so nothing here can be overridden from a tenant bundle.
#
#   Every rule is written to fail closed: a missing or unexpected field in the
#   input (no status, an unknown tier, no denial count) trips the rule rather
#   than letting the action through. Hence the shape `not <positive helper>`
#   throughout: `x != "active"` is undefined, not true, when x is missing, and
#   OPA evaluates the refs of `not f(input.x)` and `not input.x in s` outside
#   the negation, so those are false, not true, when input.x is missing.
#
#   Reason strings are a stable, machine-readable contract: receipts, cases,
#   the ledger and organizations' dashboards key on them. Add new ones; never
#   rename one.
#
#   One hard rule runs in Go, beside this policy: an action whose params carry
#   bank details (a member named like iban, bankDetails, account_number, …, or
#   a string that is an IBAN, at any depth) escalates as
#   high_risk_category:counterparty.bank_details with two approvals, whatever
#   its type (decision.bankDetailsIn). This policy's verdicts are memoized by
#   the input paths it reads, and params, which rarely repeat, would make
#   every lookup miss. The base revision receipts carry covers both.
package agentsigna.base

# decision is what Go evaluates (policies.BaseQuery).
decision := {
	"deny": deny,
	"escalate": escalate,
	"min_approvals": min_approvals,
}

# --- deny ---------------------------------------------------------------------

deny contains "agent_not_active" if not agent_active

deny contains "counterparty_blocked" if input.counterparty.status == "blocked"

# The boundary validates the type before evaluation; this keeps the base
# closed if a caller forgets to.
deny contains "invalid_action_type" if not action_type_is_string

# --- escalate -----------------------------------------------------------------

# High-risk categories escalate whatever the agent's trust or the tenant's policy.
escalate contains sprintf("high_risk_category:%s", [category]) if {
	some category in high_risk_categories
}

escalate contains "no_counterparty" if {
	money_movement
	not has_counterparty
}

escalate contains "unverified_counterparty" if {
	money_movement
	has_counterparty
	not counterparty_verified
}

# Only low and medium tiers may move money without a human: an unknown or
# missing tier counts as high.
escalate contains "high_tier_money_movement" if {
	money_movement
	not low_tier
}

# An agent that keeps being refused may be compromised or confused: every
# action it asks for goes to a human until its recent record is clean. A
# missing count counts as too many.
escalate contains "recent_denials" if not few_recent_denials

# --- approvals ----------------------------------------------------------------

# Two people for the changes that hand out money routes or power.
min_approvals := 2 if {
	two_person_action
} else := 1

# --- helpers ------------------------------------------------------------------

max_recent_denials := 5

agent_active if input.agent.status == "active"

action_type_is_string if is_string(input.action.type)

low_tier if input.agent.risk_tier in {"low", "medium"}

few_recent_denials if {
	is_number(input.agent.stats.denials_1h)
	input.agent.stats.denials_1h < max_recent_denials
}

has_counterparty if {
	is_string(input.counterparty.id)
	input.counterparty.id != ""
}

counterparty_verified if input.counterparty.status == "verified"

money_movement if startswith(input.action.type, "payment.")

money_movement if startswith(input.action.type, "funds.")

# high_risk_categories is the set of categories (reason suffixes) the action
# type falls in.
# counterparty.bank_details and everything named like it: any counterparty
# action whose type speaks of a bank or an IBAN (the actions under
# counterparty.bank_details, counterparty.bank_details_update,
# counterparty.update_bank_account, counterparty.set_iban).
high_risk_categories contains "counterparty.bank_details" if bank_details_action

# counterparty.create and everything named like it (counterparty.create.bulk,
# counterparty.create_bulk): a sub-type must not be a way around the
# creation's escalation.
high_risk_categories contains "counterparty.create" if startswith(input.action.type, "counterparty.create")

high_risk_categories contains "agent" if startswith(input.action.type, "agent.")

high_risk_categories contains "policy" if startswith(input.action.type, "policy.")

high_risk_categories contains "access" if startswith(input.action.type, "access.")

# data.export* and data.delete* are prefixes, not namespaces: data.export_all
# and data.exports.csv are exports too.
high_risk_categories contains "data.export" if startswith(input.action.type, "data.export")

high_risk_categories contains "data.delete" if startswith(input.action.type, "data.delete")

two_person_action if bank_details_action

two_person_action if startswith(input.action.type, "access.")

two_person_action if startswith(input.action.type, "policy.")

bank_details_action if {
	startswith(input.action.type, "counterparty.")
	some word in ["bank", "iban"]
	contains(input.action.type, word)
}
