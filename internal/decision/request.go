package decision

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/text"
)

// ErrInvalidRequest: a decision request breaks a rule of DESIGN §3
// "Request" (the HTTP layer answers 400). The message names the field and
// the rule, never the value the agent sent.
var ErrInvalidRequest = errors.New("invalid decision request")

// DecisionRequest is the body of POST /v1/decisions (DESIGN §3 "Request").
// The HTTP layer decodes it with server/strictjson (size, overall depth,
// unknown fields, duplicate keys, UTF-8); Validate checks the rest.
type DecisionRequest struct {
	Action RequestAction `json:"action"`
	// Reason is why the agent asks, shown to approvers; optional.
	Reason string `json:"reason,omitempty"`
}

// RequestAction is the action an agent asks to take. Empty optional fields
// and absent ones are the same request.
type RequestAction struct {
	Type         string  `json:"type"`
	Resource     string  `json:"resource,omitempty"`
	Counterparty string  `json:"counterparty,omitempty"`
	Amount       *Amount `json:"amount,omitempty"`
	// Params is kept as the agent's JSON text, not a map: a map would
	// silently keep the last of two members with one name, and the request
	// must be I-JSON (RFC 7493) for its hash and the receipt's
	// action_sha256 (RFC 8785) to mean one thing.
	Params json.RawMessage `json:"params,omitempty"`
}

// Bounds of a request, beyond what the boundary decoder checks.
const (
	// MaxRequestString bounds every string of a request, member names in
	// params included (DESIGN §3: strings ≤ 1024 bytes).
	MaxRequestString = 1024
	// MaxActionType is the store's bound on an action type; the pattern
	// alone would allow five segments of any length.
	MaxActionType = store.MaxActionType
	// MaxParamsDepth bounds nesting inside params (DESIGN §3: ≤ 4). The
	// params object itself is level 1, as the body is level 1 of the
	// overall depth: {"a":{"b":{"c":{"d":1}}}} is the deepest accepted.
	MaxParamsDepth = 4
	// maxSafeInteger is the largest integer every I-JSON reader holds
	// exactly, and tells from its neighbours (RFC 7493 §2.2: IEEE 754
	// double precision), 2^53−1.
	maxSafeInteger = 1<<53 - 1
)

var (
	// amountPattern: amount.value is a non-negative decimal string — at
	// most 15 integer digits without leading zeros, at most 6 decimals, a
	// dot as separator, no sign, exponent or spaces. 15+6 digits stay exact
	// in any decimal library and are what payment systems carry; there is
	// one spelling per integer part. Negative values are refused: the
	// direction of money is the action's type (payment.send,
	// payment.refund), and a negative amount would slip under every
	// "amount ≤ limit" rule an organization writes.
	amountPattern = regexp.MustCompile(`^(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$`)
)

// Validate checks every rule of DESIGN §3 "Request" that needs no database
// (the counterparty's existence is checked by Service.Decide): the action
// type pattern, the amount's decimal value and ISO 4217 currency, strings
// (params' member names and strings too) of valid UTF-8, at most
// MaxRequestString bytes and without control characters but tab and line
// breaks or bidirectional overrides (checkString), the counterparty id's
// format, and params as one JSON object of depth ≤ MaxParamsDepth, without
// duplicate member names, whose numbers I-JSON readers all read alike. Its
// errors wrap ErrInvalidRequest.
func (r *DecisionRequest) Validate() error {
	_, err := r.validate()
	return err
}

// validRequest is a request that passed Validate, with what the decision
// needs of it, computed once.
type validRequest struct {
	DecisionRequest
	// params are the parsed params (json.Number for numbers), nil when
	// the request has none.
	params map[string]any
	// action is the RFC 8785 canonical JSON of the action: what the
	// decision record, the store and the receipt carry.
	action json.RawMessage
	// sha256 is the SHA-256 of the RFC 8785 canonical JSON of the whole
	// request: what tells an idempotent replay from a reused key.
	sha256 []byte
}

func (r *DecisionRequest) validate() (*validRequest, error) {
	a := &r.Action
	switch {
	case a.Type == "":
		return nil, invalid("action.type is required")
	case len(a.Type) > MaxActionType || !store.IsDottedName(a.Type, 2, 5):
		return nil, invalid("action.type must match ^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*){1,4}$ and be at most %d bytes", MaxActionType)
	}
	if err := checkString("action.resource", a.Resource); err != nil {
		return nil, err
	}
	if err := checkString("reason", r.Reason); err != nil {
		return nil, err
	}
	if a.Counterparty != "" && store.CheckID(store.PrefixCounterparty, a.Counterparty) != nil {
		return nil, invalid("action.counterparty is not a counterparty id")
	}
	if m := a.Amount; m != nil {
		if !amountPattern.MatchString(m.Value) {
			return nil, invalid("action.amount.value must be a non-negative decimal string (up to 15 digits, up to 6 decimals, e.g. \"1250.00\")")
		}
		if !IsCurrency(m.Currency) {
			return nil, invalid("action.amount.currency must be an ISO 4217 currency code")
		}
	}
	params, err := parseParams(a.Params)
	if err != nil {
		return nil, err
	}
	v := &validRequest{DecisionRequest: *r, params: params}
	// The canonical forms are computed here, not later, so that whatever
	// RFC 8785 cannot canonicalize is the agent's 400, not our 500.
	if v.action, err = canonicalAction(&r.Action); err != nil {
		return nil, invalid("action is not I-JSON (RFC 7493)")
	}
	if len(v.action) > store.MaxAction {
		return nil, invalid("action is larger than %d bytes", store.MaxAction)
	}
	whole, err := canonicalRequest(v.action, r.Reason)
	if err != nil {
		return nil, invalid("request is not I-JSON (RFC 7493)")
	}
	sum := sha256.Sum256(whole)
	v.sha256 = sum[:]
	return v, nil
}

// checkString bounds a request string; field names it in the error. Text
// shown to approvers (reason, action.resource, params) may span lines, but
// holds no other control character and no bidirectional embedding,
// override or isolate (text.Lines).
func checkString(field, s string) error {
	if len(s) > MaxRequestString {
		return invalid("%s is longer than %d bytes", field, MaxRequestString)
	}
	if err := text.Lines.Check(s); err != nil {
		return invalid("%s %v", field, err)
	}
	return nil
}

// canonicalRequest is the RFC 8785 form of a request whose action is
// already canonical: its members in RFC 8785 order ("action" < "reason",
// reason omitted when empty, as DecisionRequest marshals), the action
// spliced in rather than parsed again.
func canonicalRequest(action json.RawMessage, reason string) ([]byte, error) {
	o := newCanonicalObject(len(action) + len(reason) + 32)
	o.raw("action", action)
	if reason != "" {
		o.string("reason", reason)
	}
	return o.end()
}

// canonicalAction is the RFC 8785 form of a's JSON, written directly
// rather than marshalled and canonicalized again: members in RFC 8785
// order (amount, counterparty, params, resource, type; empty ones omitted,
// as RequestAction marshals), strings quoted as RFC 8785 quotes them, and
// only params, the agent's own JSON, canonicalized. TestCanonicalShortcuts
// holds it to canonicalJSON(a).
func canonicalAction(a *RequestAction) ([]byte, error) {
	o := newCanonicalObject(192 + len(a.Params) + len(a.Resource))
	if m := a.Amount; m != nil {
		o.open("amount")
		o.string("currency", m.Currency)
		o.string("value", m.Value)
		o.close()
	}
	if a.Counterparty != "" {
		o.string("counterparty", a.Counterparty)
	}
	if len(a.Params) > 0 {
		params, err := signing.Canonical(a.Params)
		if err != nil {
			return nil, err
		}
		o.raw("params", params)
	}
	if a.Resource != "" {
		o.string("resource", a.Resource)
	}
	o.string("type", a.Type)
	return o.end()
}

// canonicalJSON is the RFC 8785 form of v's JSON.
func canonicalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return signing.Canonical(b)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidRequest}, args...)...)
}

// inputAction is the action part of the policy input.
func (v *validRequest) inputAction() Action {
	a := v.Action
	return Action{Type: a.Type, Resource: a.Resource, Counterparty: a.Counterparty, Amount: a.Amount, Params: v.params}
}
