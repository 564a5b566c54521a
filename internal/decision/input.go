package decision

import (
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
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

// Document returns the input as the JSON document Rego sees. Times are
// RFC 3339 in UTC. The evaluator builds the same document as OPA's value
// directly (value); the load harness sends this one to opa run.
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

// inputTerms are the input's member names, and the words its enumerations
// take: one shared term each, not one per request. Terms are not changed
// once built (OPA shares its interned ones the same way).
var inputTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{
		"action", "type", "resource", "counterparty", "amount", "value", "currency", "params",
		"reason", "agent", "id", "name", "sponsor", "risk_tier", "status", "created_at",
		"stats", "decisions_1h", "denials_1h", "decisions_24h", "tenant", "slug", "time",
		"payments_count", "low", "medium", "high", "critical", "active", "suspended",
		"revoked", "new", "verified", "blocked",
	} {
		m[s] = ast.StringTerm(s)
	}
	return m
}()

// term is s's shared term, or a new one.
func term(s string) *ast.Term {
	if t, ok := inputTerms[s]; ok {
		return t
	}
	return ast.StringTerm(s)
}

// value is Document as the policy engine's value, built directly: half the
// time and allocations of converting Document's maps (BenchmarkInputValue).
// TestInputValueIsDocument holds it to ast.InterfaceToValue(Document()).
func (in *Input) value() (ast.Value, error) {
	action := make([][2]*ast.Term, 0, 5)
	action = append(action, ast.Item(term("type"), ast.StringTerm(in.Action.Type)))
	if in.Action.Resource != "" {
		action = append(action, ast.Item(term("resource"), ast.StringTerm(in.Action.Resource)))
	}
	if in.Action.Counterparty != "" {
		action = append(action, ast.Item(term("counterparty"), ast.StringTerm(in.Action.Counterparty)))
	}
	if a := in.Action.Amount; a != nil {
		action = append(action, ast.Item(term("amount"), ast.ObjectTerm(
			ast.Item(term("value"), ast.StringTerm(a.Value)),
			ast.Item(term("currency"), term(a.Currency)),
		)))
	}
	if in.Action.Params != nil {
		params, err := ast.InterfaceToValue(in.Action.Params)
		if err != nil {
			return nil, err
		}
		action = append(action, ast.Item(term("params"), ast.NewTerm(params)))
	}
	a := &in.Agent
	doc := make([][2]*ast.Term, 0, 6)
	doc = append(doc,
		ast.Item(term("action"), ast.ObjectTerm(action...)),
		ast.Item(term("reason"), ast.StringTerm(in.Reason)),
		ast.Item(term("agent"), ast.ObjectTerm(
			ast.Item(term("id"), ast.StringTerm(a.ID)),
			ast.Item(term("name"), ast.StringTerm(a.Name)),
			ast.Item(term("sponsor"), ast.StringTerm(a.Sponsor)),
			ast.Item(term("risk_tier"), term(a.RiskTier)),
			ast.Item(term("status"), term(a.Status)),
			ast.Item(term("created_at"), ast.StringTerm(rfc3339(a.CreatedAt))),
			ast.Item(term("stats"), ast.ObjectTerm(
				ast.Item(term("decisions_1h"), ast.InternedTerm(a.Stats.Decisions1h)),
				ast.Item(term("denials_1h"), ast.InternedTerm(a.Stats.Denials1h)),
				ast.Item(term("decisions_24h"), ast.InternedTerm(a.Stats.Decisions24h)),
			)),
		)),
		ast.Item(term("tenant"), ast.ObjectTerm(
			ast.Item(term("id"), ast.StringTerm(in.Tenant.ID)),
			ast.Item(term("slug"), ast.StringTerm(in.Tenant.Slug)),
		)),
		ast.Item(term("time"), ast.StringTerm(rfc3339(in.Time))),
	)
	if c := in.Counterparty; c != nil {
		doc = append(doc, ast.Item(term("counterparty"), ast.ObjectTerm(
			ast.Item(term("id"), ast.StringTerm(c.ID)),
			ast.Item(term("status"), term(c.Status)),
			ast.Item(term("created_at"), ast.StringTerm(rfc3339(c.CreatedAt))),
			ast.Item(term("payments_count"), ast.InternedTerm(c.PaymentsCount)),
		)))
	}
	return ast.NewObject(doc...), nil
}
