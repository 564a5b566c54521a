package decision

import (
	"time"
)

// Input is the policy input, what Rego sees as `input` (DESIGN §3 "Policy
// input"). The JSON form is the same document; counterparty bank details
// are never part of it.
type Input struct {
	Action Action `json:"action"`
	Reason string `json:"reason"`
	Agent  Agent  `json:"agent"`
	// Counterparty is nil when the action names none; input.counterparty
	// is then undefined in Rego.
	Counterparty *Counterparty `json:"counterparty,omitempty"`
	Tenant       Tenant        `json:"tenant"`
	Time         time.Time     `json:"time"`
}

// Action is the action as the agent requested it.
type Action struct {
	Type         string         `json:"type"`
	Resource     string         `json:"resource,omitempty"`
	Counterparty string         `json:"counterparty,omitempty"`
	Amount       *Amount        `json:"amount,omitempty"`
	Params       map[string]any `json:"params,omitempty"`
}

// Amount is a decimal string and an ISO 4217 currency code.
type Amount struct {
	Value    string `json:"value"`
	Currency string `json:"currency"`
}

// Agent is the requesting agent.
type Agent struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Sponsor   string     `json:"sponsor"`
	RiskTier  string     `json:"risk_tier"` // low | medium | high | critical
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
	Stats     AgentStats `json:"stats"`
}

// AgentStats are the agent's recent decision counts.
type AgentStats struct {
	Decisions1h  int `json:"decisions_1h"`
	Denials1h    int `json:"denials_1h"`
	Decisions24h int `json:"decisions_24h"`
}

// Counterparty is the counterparty the action names.
type Counterparty struct {
	ID            string    `json:"id"`
	Status        string    `json:"status"` // new | verified | blocked
	CreatedAt     time.Time `json:"created_at"`
	PaymentsCount int       `json:"payments_count"`
}

// Tenant is the organization the agent belongs to.
type Tenant struct {
	ID   string `json:"id"`
	Slug string `json:"slug"`
}

// Document returns the input as the JSON document Rego sees, built directly
// from Go values (the policy engine converts maps, slices and scalars
// without a JSON round trip). Times are RFC 3339 in UTC.
func (in *Input) Document() map[string]any {
	action := map[string]any{"type": in.Action.Type}
	if in.Action.Resource != "" {
		action["resource"] = in.Action.Resource
	}
	if in.Action.Counterparty != "" {
		action["counterparty"] = in.Action.Counterparty
	}
	if a := in.Action.Amount; a != nil {
		action["amount"] = map[string]any{"value": a.Value, "currency": a.Currency}
	}
	if in.Action.Params != nil {
		action["params"] = in.Action.Params
	}
	doc := map[string]any{
		"action": action,
		"reason": in.Reason,
		"agent": map[string]any{
			"id":         in.Agent.ID,
			"name":       in.Agent.Name,
			"sponsor":    in.Agent.Sponsor,
			"risk_tier":  in.Agent.RiskTier,
			"status":     in.Agent.Status,
			"created_at": rfc3339(in.Agent.CreatedAt),
			"stats": map[string]any{
				"decisions_1h":  in.Agent.Stats.Decisions1h,
				"denials_1h":    in.Agent.Stats.Denials1h,
				"decisions_24h": in.Agent.Stats.Decisions24h,
			},
		},
		"tenant": map[string]any{"id": in.Tenant.ID, "slug": in.Tenant.Slug},
		"time":   rfc3339(in.Time),
	}
	if c := in.Counterparty; c != nil {
		doc["counterparty"] = map[string]any{
			"id":             c.ID,
			"status":         c.Status,
			"created_at":     rfc3339(c.CreatedAt),
			"payments_count": c.PaymentsCount,
		}
	}
	return doc
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
