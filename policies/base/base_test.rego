# Tests for the base policy, run by `make test` (policies/policies_test.go,
# through OPA's tester package) and by `opa test policies/base`.
package agentsigna.base_test

import data.agentsigna.base

# object.union merges objects recursively: with_field replaces a field
# outright, so that a test can take a nested field away.
#
# ok_input is an ordinary, harmless request: an active low-tier agent with a
# clean record sends a small payment to a verified counterparty. Each test
# changes one thing.
ok_input := {
	"action": {
		"type": "payment.send",
		"resource": "invoice:INV-2291",
		"counterparty": "cp_1",
		"amount": {"value": "120.00", "currency": "EUR"},
		"params": {},
	},
	"reason": "Pay approved invoice INV-2291",
	"agent": {
		"id": "agt_1",
		"name": "ap-bot",
		"sponsor": "usr_1",
		"risk_tier": "low",
		"status": "active",
		"created_at": "2025-01-01T00:00:00Z",
		"stats": {"decisions_1h": 3, "denials_1h": 0, "decisions_24h": 12},
	},
	"counterparty": {"id": "cp_1", "status": "verified", "created_at": "2024-06-01T00:00:00Z", "payments_count": 7},
	"tenant": {"id": "t_1", "slug": "acme"},
	"time": "2025-03-01T10:00:00Z",
}

with_field(obj, key, value) := object.union(object.remove(obj, {key}), {key: value})

with_action_type(t) := object.union(ok_input, {"action": object.union(ok_input.action, {"type": t})})

with_agent(patch) := object.union(ok_input, {"agent": object.union(ok_input.agent, patch)})

with_counterparty_status(s) := object.union(ok_input, {"counterparty": object.union(ok_input.counterparty, {"status": s})})

without_counterparty := object.remove(ok_input, {"counterparty"})

# --- the ordinary case ---------------------------------------------------------

test_ordinary_payment_has_no_objection if {
	d := base.decision with input as ok_input
	d == {"deny": set(), "escalate": set(), "min_approvals": 1}
}

test_ordinary_read_has_no_objection if {
	d := base.decision with input as with_action_type("report.generate")
	d == {"deny": set(), "escalate": set(), "min_approvals": 1}
}

# --- deny ----------------------------------------------------------------------

test_deny_agent_suspended if {
	"agent_not_active" in base.deny with input as with_agent({"status": "suspended"})
}

test_deny_agent_without_status if {
	"agent_not_active" in base.deny with input as with_field(ok_input, "agent", object.remove(ok_input.agent, {"status"}))
}

test_active_agent_not_denied if {
	not "agent_not_active" in base.deny with input as ok_input
}

test_deny_blocked_counterparty if {
	"counterparty_blocked" in base.deny with input as with_counterparty_status("blocked")
}

test_deny_blocked_counterparty_for_any_action if {
	blocked := object.union(with_counterparty_status("blocked"), {"action": object.union(ok_input.action, {"type": "report.generate"})})
	"counterparty_blocked" in base.deny with input as blocked
}

test_deny_action_type_not_a_string if {
	"invalid_action_type" in base.deny with input as object.union(ok_input, {"action": {"type": 7}})
}

test_deny_action_type_missing if {
	"invalid_action_type" in base.deny with input as with_field(ok_input, "action", object.remove(ok_input.action, {"type"}))
}

# --- always escalated categories -----------------------------------------------

test_escalate_bank_details_update if {
	"high_risk_category:counterparty.bank_details" in base.escalate with input as with_action_type("counterparty.bank_details.update")
}

test_escalate_bank_details_namespace_itself if {
	"high_risk_category:counterparty.bank_details" in base.escalate with input as with_action_type("counterparty.bank_details")
}

# A type named like a bank-details change is one: a near name is no way
# around the escalation (and a false alarm costs an approval, not money).
test_escalate_bank_details_lookalikes if {
	every t in [
		"counterparty.bank_details_update", "counterparty.bank_detailsx",
		"counterparty.update_bank_account", "counterparty.set_iban", "counterparty.bank.update",
	] {
		"high_risk_category:counterparty.bank_details" in base.escalate with input as with_action_type(t)
		base.min_approvals == 2 with input as with_action_type(t)
	}
}

test_bank_words_outside_counterparty_not_bank_details if {
	every t in ["report.bank_holidays", "payment.send"] {
		not "high_risk_category:counterparty.bank_details" in base.escalate with input as with_action_type(t)
	}
}

test_escalate_counterparty_create if {
	"high_risk_category:counterparty.create" in base.escalate with input as with_action_type("counterparty.create")
}

test_escalate_counterparty_create_subtypes if {
	"high_risk_category:counterparty.create" in base.escalate with input as with_action_type("counterparty.create.bulk")
}

test_escalate_counterparty_create_lookalikes if {
	every t in ["counterparty.create_bulk", "counterparty.created_report"] {
		"high_risk_category:counterparty.create" in base.escalate with input as with_action_type(t)
	}
}

test_counterparty_update_not_create if {
	not "high_risk_category:counterparty.create" in base.escalate with input as with_action_type("counterparty.update")
}

test_counterparty_read_not_escalated if {
	d := base.decision with input as with_action_type("counterparty.read")
	d.escalate == set()
}

test_escalate_agent_changes if {
	every t in ["agent.create", "agent.credential.rotate", "agent.tier.raise"] {
		"high_risk_category:agent" in base.escalate with input as with_action_type(t)
	}
}

test_escalate_policy_changes if {
	"high_risk_category:policy" in base.escalate with input as with_action_type("policy.activate")
}

test_escalate_access_grants if {
	"high_risk_category:access" in base.escalate with input as with_action_type("access.grant")
}

test_escalate_data_export_prefix if {
	every t in ["data.export", "data.export_all", "data.exports.csv", "data.export.customers"] {
		"high_risk_category:data.export" in base.escalate with input as with_action_type(t)
	}
}

test_escalate_data_delete_prefix if {
	every t in ["data.delete", "data.delete_all", "data.delete.customer"] {
		"high_risk_category:data.delete" in base.escalate with input as with_action_type(t)
	}
}

test_data_read_not_escalated if {
	d := base.decision with input as with_action_type("data.read")
	d.escalate == set()
}

# --- money movement ------------------------------------------------------------

test_escalate_payment_to_new_counterparty if {
	"unverified_counterparty" in base.escalate with input as with_counterparty_status("new")
}

test_escalate_funds_to_unverified_counterparty if {
	req := object.union(with_counterparty_status("new"), {"action": object.union(ok_input.action, {"type": "funds.transfer"})})
	"unverified_counterparty" in base.escalate with input as req
}

test_escalate_payment_counterparty_without_status if {
	req := with_field(ok_input, "counterparty", object.remove(ok_input.counterparty, {"status"}))
	"unverified_counterparty" in base.escalate with input as req
}

test_escalate_payment_without_counterparty if {
	d := base.decision with input as without_counterparty
	"no_counterparty" in d.escalate
	not "unverified_counterparty" in d.escalate
}

test_escalate_payment_counterparty_with_empty_id if {
	"no_counterparty" in base.escalate with input as object.union(ok_input, {"counterparty": {"id": "", "status": "verified"}})
}

test_non_money_action_without_counterparty_not_escalated if {
	req := object.union(without_counterparty, {"action": {"type": "report.generate"}})
	d := base.decision with input as req
	d.escalate == set()
}

test_escalate_money_movement_by_high_tier_agent if {
	"high_tier_money_movement" in base.escalate with input as with_agent({"risk_tier": "high"})
}

test_escalate_money_movement_by_critical_tier_agent if {
	"high_tier_money_movement" in base.escalate with input as with_agent({"risk_tier": "critical"})
}

test_escalate_money_movement_by_unknown_tier_agent if {
	"high_tier_money_movement" in base.escalate with input as with_agent({"risk_tier": "root"})
}

test_escalate_money_movement_by_agent_without_tier if {
	req := with_field(ok_input, "agent", object.remove(ok_input.agent, {"risk_tier"}))
	"high_tier_money_movement" in base.escalate with input as req
}

test_medium_tier_money_movement_not_escalated if {
	d := base.decision with input as with_agent({"risk_tier": "medium"})
	d.escalate == set()
}

test_high_tier_non_money_action_not_escalated if {
	req := object.union(with_agent({"risk_tier": "critical"}), {"action": {"type": "report.generate"}})
	d := base.decision with input as req
	d.escalate == set()
}

# --- recent denials ------------------------------------------------------------

test_escalate_any_action_after_five_denials if {
	req := object.union(with_agent({"stats": {"decisions_1h": 9, "denials_1h": 5, "decisions_24h": 9}}), {"action": {"type": "report.generate"}})
	"recent_denials" in base.escalate with input as req
}

test_four_denials_not_escalated if {
	d := base.decision with input as with_agent({"stats": {"decisions_1h": 9, "denials_1h": 4, "decisions_24h": 9}})
	d.escalate == set()
}

test_escalate_when_denial_count_missing if {
	req := with_field(ok_input, "agent", object.remove(ok_input.agent, {"stats"}))
	"recent_denials" in base.escalate with input as req
}

# --- approvals -----------------------------------------------------------------

test_two_approvals_for_bank_details if {
	base.min_approvals == 2 with input as with_action_type("counterparty.bank_details.update")
}

test_two_approvals_for_access if {
	base.min_approvals == 2 with input as with_action_type("access.grant")
}

test_two_approvals_for_policy if {
	base.min_approvals == 2 with input as with_action_type("policy.activate")
}

test_one_approval_otherwise if {
	every t in ["payment.send", "agent.create", "counterparty.create", "data.export", "report.generate"] {
		base.min_approvals == 1 with input as with_action_type(t)
	}
}

# --- combinations --------------------------------------------------------------

test_reasons_accumulate if {
	req := object.union(with_agent({"risk_tier": "high", "status": "suspended"}), {"counterparty": {"id": "cp_9", "status": "blocked"}})
	d := base.decision with input as req
	d.deny == {"agent_not_active", "counterparty_blocked"}
	d.escalate == {"unverified_counterparty", "high_tier_money_movement"}
}
