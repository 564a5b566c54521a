# `opa test .` from the repository root runs these. The package lives under
# the bundle root (tenant) so that `opa build -b .` accepts the repository.
package tenant.decision_test

import data.tenant

payment := {
	"action": {
		"type": "payment.send",
		"resource": "invoice:INV-2291",
		"counterparty": "cp_1",
		"amount": {"value": "250.00", "currency": "EUR"},
		"params": {"po": "PO-77"},
	},
	"reason": "Pay approved invoice INV-2291",
	"agent": {
		"id": "agt_1", "name": "ap-bot", "sponsor": "usr_1",
		"risk_tier": "low", "status": "active", "created_at": "2025-01-01T00:00:00Z",
		"stats": {"decisions_1h": 1, "denials_1h": 0, "decisions_24h": 4},
	},
	"counterparty": {"id": "cp_1", "status": "verified", "created_at": "2024-06-01T00:00:00Z", "payments_count": 7},
	"tenant": {"id": "t_1", "slug": "acme"},
	"time": "2025-03-01T10:00:00Z",
}

with_field(obj, key, value) := object.union(object.remove(obj, {key}), {key: value})

paying(value, currency) := with_field(payment, "action", object.union(payment.action, {"amount": {"value": value, "currency": currency}}))

test_small_payment_allowed if {
	tenant.decision == {"allow": true} with input as payment
}

test_payment_at_the_limit_allowed if {
	tenant.decision.allow with input as paying("1000.00", "EUR")
}

test_medium_tier_agent_allowed if {
	tenant.decision.allow with input as with_field(payment, "agent", object.union(payment.agent, {"risk_tier": "medium"}))
}

test_payment_above_limit_escalated if {
	tenant.decision == {"escalate": {"amount_above_limit"}, "min_approvals": 1} with input as paying("1000.01", "EUR")
}

test_large_payment_needs_two_approvals if {
	tenant.decision == {"escalate": {"amount_above_limit"}, "min_approvals": 2} with input as paying("25000.01", "EUR")
}

test_large_unverified_payment_escalated if {
	req := with_field(paying("5000", "EUR"), "counterparty", object.union(payment.counterparty, {"status": "new"}))
	tenant.decision.escalate == {"amount_above_limit"} with input as req
}

test_unverified_counterparty_not_allowed if {
	tenant.decision == {} with input as with_field(payment, "counterparty", object.union(payment.counterparty, {"status": "new"}))
}

test_no_counterparty_not_allowed if {
	tenant.decision == {} with input as object.remove(payment, {"counterparty"})
}

test_high_tier_agent_not_allowed if {
	tenant.decision == {} with input as with_field(payment, "agent", object.union(payment.agent, {"risk_tier": "high"}))
}

test_other_currency_escalated if {
	tenant.decision == {"escalate": {"currency_without_limit"}} with input as paying("10.00", "USD")
}

test_malformed_amount_not_allowed if {
	tenant.decision == {} with input as paying("a lot", "EUR")
}

test_missing_amount_not_allowed if {
	tenant.decision == {} with input as with_field(payment, "action", object.remove(payment.action, {"amount"}))
}

test_report_allowed if {
	tenant.decision == {"allow": true} with input as with_field(payment, "action", {"type": "report.generate", "resource": "report:q1"})
}

test_everything_else_left_to_default_deny if {
	every t in ["payment.refund", "funds.transfer", "data.export", "counterparty.create"] {
		tenant.decision == {} with input as with_field(payment, "action", object.union(payment.action, {"type": t}))
	}
}
