package decision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/agentsigna/agentsigna/bundles"
)

// DefaultTimeout bounds one decision's policy evaluation, base and
// organization together (DESIGN §3: 100 ms).
const DefaultTimeout = 100 * time.Millisecond

// Options configure an Evaluator; the zero value is the default.
type Options struct {
	// Timeout bounds one evaluation (both policies); 0 means DefaultTimeout.
	Timeout time.Duration
	// OrganizationEvaluations bounds how many evaluations of one
	// organization's policy run at once in this process; 0 means half the
	// processors (GOMAXPROCS), at least 1. A policy in a worker process
	// is not counted: its worker evaluates one at a time.
	OrganizationEvaluations int
}

func (o Options) withDefaults() (Options, error) {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Timeout < 0 {
		return o, fmt.Errorf("decision: negative timeout %v", o.Timeout)
	}
	if o.OrganizationEvaluations == 0 {
		o.OrganizationEvaluations = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if o.OrganizationEvaluations < 0 {
		return o, fmt.Errorf("decision: negative OrganizationEvaluations %d", o.OrganizationEvaluations)
	}
	return o, nil
}

// Evaluator evaluates inputs against the base policy, compiled once when it
// is built, and each organization's active policy from its Engine. It is
// safe for concurrent use.
type Evaluator struct {
	base *bundles.Policy
	// baseRevision is BaseRevision.
	baseRevision string
	engine       *bundles.Engine
	timeout      time.Duration
	// perOrganization is Options.OrganizationEvaluations; places holds, by
	// organization id, a channel of that capacity with a token per
	// evaluation of its policy running.
	perOrganization int
	places          sync.Map
}

// NewEvaluator compiles the base policy and returns an Evaluator that reads
// organizations' active policies from engine.
func NewEvaluator(ctx context.Context, engine *bundles.Engine, opts Options) (*Evaluator, error) {
	if engine == nil {
		return nil, errors.New("decision: NewEvaluator needs an engine")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	base, err := bundles.CompileBase(ctx)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(base.Revision() + "\x00" + bankRuleRevision))
	return &Evaluator{base: base, baseRevision: hex.EncodeToString(sum[:]), engine: engine, timeout: opts.Timeout,
		perOrganization: opts.OrganizationEvaluations}, nil
}

// Wake starts the worker of the organization's active policy again if it
// was stopped for idleness, and waits for it until ctx ends
// (bundles.Policy.Wake): that start then takes the caller's time, not the
// evaluation's deadline. It returns only ctx's error.
func (e *Evaluator) Wake(ctx context.Context, orgID string) error {
	return e.engine.Active(orgID).Wake(ctx)
}

// BaseRevision is the revision of the base policy decisions are made
// under: its Rego's and its rule in Go's (withBankDetailsRule), hashed
// together.
func (e *Evaluator) BaseRevision() string { return e.baseRevision }

// PolicyRevisions says which policies made a decision (the receipt's
// policy claim). TenantBundleSHA256 is the SHA-256 of the organization's
// bundle (its tar.gz) in standard base64, as DESIGN §3 writes every hash
// in JSON (bundles.Policy.DigestBase64); `policy check`/`push` and policy
// ledger entries give the same digest in hex (bundles.Policy.Digest; see
// policyRecord).
type PolicyRevisions struct {
	BaseRevision       string `json:"base_revision"`
	TenantRevision     string `json:"tenant_revision,omitempty"`
	TenantBundleSHA256 string `json:"tenant_bundle_sha256,omitempty"`
}

// Evaluation is a combined decision with what it was made of.
type Evaluation struct {
	Combined
	Policy PolicyRevisions `json:"policy"`
	// Base and Tenant are the two verdicts as they entered Combine, after
	// failures were turned into deny reasons.
	Base   bundles.Verdict `json:"base"`
	Tenant bundles.Verdict `json:"tenant"`
	// Errors are the evaluation failures behind a policy_error or
	// policy_timeout, for operators and `policy simulate`. Their text may
	// quote the policy or the input: never send them to an agent.
	Errors []string `json:"-"`
}

// Evaluate decides in against the base policy and the active policy of the
// organization in.Tenant.ID (none active: no authority).
func (e *Evaluator) Evaluate(ctx context.Context, in Input) Evaluation {
	return e.EvaluateWith(ctx, e.engine.Active(in.Tenant.ID), in)
}

// EvaluateWith decides in against the base policy and tenant, which need
// not be active: `policy simulate` and replays evaluate a candidate
// revision. tenant nil means no organization policy.
//
// Failures become verdicts before Combine sees them. A policy that errs,
// returns something that is not a verdict, or runs out of time denies
// (policy_error, policy_timeout): a broken policy is not routed to people.
// An organization decision that is undefined denies too (no_authority,
// DESIGN §3 "undefined results deny"): a policy whose every branch missed,
// a typo in an input path say, is not routed to people either. A policy
// that answers {} (`default decision := {}`) and an organization with no
// policy grant nothing, and the base's escalations go to people. The base
// always answers, so its silence is a fault (policy_error). One deadline,
// Options.Timeout, covers both evaluations.
func (e *Evaluator) EvaluateWith(ctx context.Context, tenant *bundles.Policy, in Input) Evaluation {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()

	ev := Evaluation{Policy: PolicyRevisions{BaseRevision: e.baseRevision}}
	if tenant != nil {
		ev.Policy.TenantRevision = tenant.Revision()
		ev.Policy.TenantBundleSHA256 = tenant.DigestBase64()
	}
	value, err := in.value()
	pin := bundles.NewInput(value)
	if err != nil {
		ev.Base = failed(err)
		ev.Errors = append(ev.Errors, "input: "+err.Error())
	} else {
		v, err := e.base.Evaluate(ctx, pin)
		if err != nil {
			// The base always answers; silence from it is a fault, not
			// the absence of authority.
			v = failed(err)
			ev.Errors = append(ev.Errors, "base policy: "+err.Error())
		} else {
			v = withBankDetailsRule(v, in.Action)
		}
		ev.Base = v
		if tenant != nil {
			v, err := e.evaluateOrganization(ctx, in.Tenant.ID, tenant, pin)
			switch {
			case errors.Is(err, bundles.ErrUndefined):
				v = bundles.Verdict{Deny: []string{ReasonNoAuthority}}
			case err != nil:
				v = failed(err)
				ev.Errors = append(ev.Errors, "organization policy: "+err.Error())
			}
			ev.Tenant = v
		}
	}
	// The base grants nothing, whatever its rules say.
	ev.Base.Allow = false
	ev.Base, ev.Tenant = listsNotNull(ev.Base), listsNotNull(ev.Tenant)
	ev.Combined = Combine(ev.Base, ev.Tenant)
	return ev
}

// evaluateOrganization evaluates an organization's policy once one of the
// organization's places is free (Options.OrganizationEvaluations). A
// builtin's call runs to its end whatever the deadline (OPA checks for
// cancellation between evaluation steps): a policy that overruns keeps a
// core and its memory past the timeout. The places bound how much of the
// process one organization's policy holds so; its other requests wait for
// a place within their own timeout, and deny (policy_timeout) rather than
// start another. A policy in a worker process needs no places: what it
// holds is its worker's, one processor at most, and its requests wait in
// the worker's queue within their own timeout.
func (e *Evaluator) evaluateOrganization(ctx context.Context, orgID string, p *bundles.Policy, in bundles.Input) (bundles.Verdict, error) {
	if p.Isolated() {
		return p.Evaluate(ctx, in)
	}
	slots := e.placesOf(orgID)
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return bundles.Verdict{}, fmt.Errorf("%w: waiting for the organization's other evaluations to end", bundles.ErrEvalTimeout)
	}
	defer func() { <-slots }()
	return p.Evaluate(ctx, in)
}

// placesOf is the organization's places: a token in it per evaluation of
// its policy running.
func (e *Evaluator) placesOf(orgID string) chan struct{} {
	places, ok := e.places.Load(orgID)
	if !ok {
		places, _ = e.places.LoadOrStore(orgID, make(chan struct{}, e.perOrganization))
	}
	return places.(chan struct{})
}

// listsNotNull gives a verdict empty lists rather than nil ones, so that
// its JSON says [] rather than null.
func listsNotNull(v bundles.Verdict) bundles.Verdict {
	if v.Deny == nil {
		v.Deny = []string{}
	}
	if v.Escalate == nil {
		v.Escalate = []string{}
	}
	return v
}

// failed is the verdict of a policy that could not answer: deny.
func failed(err error) bundles.Verdict {
	if errors.Is(err, bundles.ErrEvalTimeout) {
		return bundles.Verdict{Deny: []string{ReasonPolicyTimeout}}
	}
	return bundles.Verdict{Deny: []string{ReasonPolicyError}}
}
