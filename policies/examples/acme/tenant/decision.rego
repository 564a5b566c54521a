# METADATA
# title: ACME Corp — agent authorization policy
# description: |
#   What ACME's agents may do on their own. AgentSigna evaluates
#   data.tenant.decision under its base policy, which already escalates
#   payments to unverified counterparties, money movement by high-tier agents,
#   bank-detail changes and the other high-risk categories: nothing here can
#   loosen that, so this policy only grants what ACME is happy to automate and
#   adds its own escalations. Anything it does not allow is denied
#   (no_authority).
#
#   Limits live in data.json (data.tenant) so that changing a threshold is a
#   data change reviewed like any other, not a code change.
package tenant

# decision is the entry point AgentSigna evaluates. It reads as a table: the
# first branch whose conditions hold decides. When none does, the policy says
# nothing ({}), and AgentSigna denies the action.
default decision := {}

# Reports are read-only: always fine.
decision := {"allow": true} if {
	input.action.type in data.tenant.always_allowed
}

# A small payment to a counterparty we verified, by an agent we trust with money.
else := {"allow": true} if {
	input.action.type == "payment.send"
	limits := data.tenant.limits["payment.send"]
	to_number(input.action.amount.value) <= to_number(limits.max_amount[input.action.amount.currency])
	input.counterparty.status == "verified"
	input.agent.risk_tier in limits.agent_tiers
}

# A very large payment: a person decides, and a second one confirms.
else := {"escalate": {"amount_above_limit"}, "min_approvals": 2} if {
	input.action.type == "payment.send"
	limits := data.tenant.limits["payment.send"]
	to_number(input.action.amount.value) > to_number(limits.two_approvals_above[input.action.amount.currency])
}

# Above the limit: a person decides.
else := {"escalate": {"amount_above_limit"}, "min_approvals": 1} if {
	input.action.type == "payment.send"
	limits := data.tenant.limits["payment.send"]
	to_number(input.action.amount.value) > to_number(limits.max_amount[input.action.amount.currency])
}

# A currency we set no limit for goes to a person rather than being refused.
else := {"escalate": {"currency_without_limit"}} if {
	input.action.type == "payment.send"
	currency := input.action.amount.currency
	not data.tenant.limits["payment.send"].max_amount[currency]
}

# Everything else (a payment to an unverified counterparty or by a high-tier
# agent within the limit, a malformed amount, any other action) reaches no
# branch: the base policy escalates what must be escalated, and the rest is
# denied.
