package bundles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/agentsigna/agentsigna/internal/text"
	"github.com/agentsigna/agentsigna/policies"
)

// Verdict bounds: a verdict's reasons travel into receipts, cases and the
// ledger, and its approvals into cases, so a policy cannot inflate them.
const (
	MaxReasons      = 32
	MaxReasonLength = 200
	MaxApprovals    = 10
)

// Policy is a compiled policy, base or organization: one prepared query,
// safe for concurrent use. A Policy never changes; activating another
// revision means building another Policy.
type Policy struct {
	revision string
	digest   string
	digest64 string // an organization's bundle's: Bundle.DigestBase64
	query    rego.PreparedEvalQuery
	memo     *memo   // nil: every input is evaluated
	remote   *remote // non-nil: the policy evaluates in a worker (Workers.Load), and query is unset
}

// Revision is the bundle's manifest revision (for the base policy, its
// digest).
func (p *Policy) Revision() string { return p.revision }

// Isolated reports whether the policy evaluates in a worker process
// (Workers.Load) rather than in this one.
func (p *Policy) Isolated() bool { return p.remote != nil }

// Wake starts the policy's worker again if it was stopped for idleness
// (WorkerOptions.IdleAfter), and waits until it has started and compiled
// the bundle: so that a caller can give that start its own time rather
// than an evaluation's deadline. It returns ctx's error if ctx ends
// first, and nil otherwise, at once for a policy compiled in this process
// or whose worker runs. A start that fails leaves the policy's
// evaluations failing (ErrEval), as a worker that exited does, until a
// later start succeeds.
func (p *Policy) Wake(ctx context.Context) error {
	if p == nil || p.remote == nil {
		return nil
	}
	return p.remote.wake(ctx)
}

// Digest is the hex SHA-256 of the bundle's tar.gz (for the base policy,
// policies.BaseRevision(): its Rego's; decision.Evaluator.BaseRevision
// covers its rule in Go too).
func (p *Policy) Digest() string { return p.digest }

// DigestBase64 is an organization's bundle's SHA-256 in standard base64
// (Bundle.DigestBase64), as receipts cite it; "" for the base policy.
func (p *Policy) DigestBase64() string { return p.digest64 }

// Compile compiles a bundle that passed Read into its Policy: modules
// checked for forbidden builtins (ErrForbiddenBuiltin names the builtin and
// file), compiled with Capabilities() in a compiler of their own, data
// checked against rules (a data file may not sit where a rule does), and
// DecisionQuery prepared over the bundle's data alone.
func Compile(ctx context.Context, b *Bundle) (*Policy, error) {
	if b == nil || b.modules == nil {
		return nil, errors.New("bundles: Compile needs a Bundle returned by Read")
	}
	if err := findForbiddenCall(b.modulePaths, b.modules); err != nil {
		return nil, err
	}
	// The compiler calls exists for every rule path; a rule where data
	// already is would be shadowed by, or shadow, that data.
	var conflict []string
	exists := func(p []string) (bool, error) {
		if dataAt(b.data, p) {
			if conflict == nil {
				conflict = slices.Clone(p)
			}
			return true, nil
		}
		return false, nil
	}
	compiler := newCompiler().WithPathConflictsCheck(exists)
	compiler.Compile(b.modules)
	if compiler.Failed() {
		if conflict != nil {
			return nil, fmt.Errorf("%w: data.json sets /%s, where a rule is defined", ErrForbiddenData, strings.Join(conflict, "/"))
		}
		return nil, fmt.Errorf("%w: %s", ErrCompile, compileErrors(compiler.Errors))
	}
	if len(compiler.GetRules(ast.MustParseRef(DecisionQuery))) == 0 {
		return nil, fmt.Errorf("%w: no rule defines it (write `package %s` and a rule named decision)", ErrNoDecision, TenantRoot)
	}
	store := inmem.NewFromObjectWithOpts(b.data,
		inmem.OptRoundTripOnWrite(false),
		// Hand the evaluator AST values, not Go values it would convert on
		// every read of data.tenant.
		inmem.OptReturnASTValuesOnRead(true))
	q, err := prepare(ctx, compiler, DecisionQuery, rego.Store(store))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCompile, err)
	}
	return &Policy{revision: b.Revision, digest: b.Digest, digest64: b.DigestBase64, query: q}, nil
}

// Load is Read then Compile: what an upload, an activation on a replica
// and `agentsigna policy check` all do with a bundle's bytes.
func Load(ctx context.Context, raw []byte, opts ReadOptions) (*Policy, *Bundle, error) {
	b, err := Read(raw, opts)
	if err != nil {
		return nil, nil, err
	}
	p, err := Compile(ctx, b)
	if err != nil {
		return nil, nil, err
	}
	return p, b, nil
}

// CompileBase compiles the embedded base policy (policies.Base) into its
// Policy, prepared once at start. Its revision and digest are
// policies.BaseRevision(), its Rego's (decision.Evaluator.BaseRevision
// covers its rule in Go too).
//
// Its verdicts are memoized by the values of the few input paths it reads
// (action type, agent status, tier and denial count, counterparty id and
// status), which spares most decisions the interpreter's ~40 µs: the base's
// modules are checked to read nothing else and to call no non-deterministic
// builtin (memoPaths), or there is no memo. Organization policies are not
// memoized: they read amounts and parameters, which rarely repeat.
func CompileBase(ctx context.Context) (*Policy, error) {
	files := policies.Base()
	popts := ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: Capabilities(), ProcessAnnotation: true}
	modules := make(map[string]*ast.Module, len(files))
	for _, f := range files {
		m, err := ast.ParseModuleWithOpts(f.Path, string(f.Content), popts)
		if err != nil {
			return nil, fmt.Errorf("bundles: base policy: %w", err)
		}
		modules[f.Path] = m
	}
	compiler := newCompiler()
	if compiler.Compile(modules); compiler.Failed() {
		return nil, fmt.Errorf("bundles: base policy: %w", compiler.Errors)
	}
	q, err := prepare(ctx, compiler, policies.BaseQuery)
	if err != nil {
		return nil, fmt.Errorf("bundles: base policy: %w", err)
	}
	rev := policies.Digest(files)
	p := &Policy{revision: rev, digest: rev, query: q}
	if paths, ok := memoPaths(compiler.Modules); ok {
		p.memo = newMemo(paths)
	}
	return p, nil
}

// newCompiler returns the compiler every policy is compiled with. Print
// statements stay disabled (print compiles to nothing), and schema
// annotations are not used for type checking, since loading them could read
// files named by a $ref.
func newCompiler() *ast.Compiler {
	return ast.NewCompiler().
		WithCapabilities(Capabilities()).
		WithDefaultRegoVersion(ast.RegoV1).
		WithEnablePrintStatements(false).
		WithUseTypeCheckAnnotations(false)
}

func prepare(ctx context.Context, compiler *ast.Compiler, query string, extra ...func(*rego.Rego)) (rego.PreparedEvalQuery, error) {
	opts := append([]func(*rego.Rego){
		rego.Query(query),
		rego.Compiler(compiler),
		// Evaluation sees the same capabilities (and empty allow_net).
		rego.Capabilities(Capabilities()),
	}, extra...)
	return rego.New(opts...).PrepareForEval(ctx)
}

// compileErrors keeps a compile error message to a few lines.
func compileErrors(errs ast.Errors) string {
	const show = 5
	var b strings.Builder
	for i, e := range errs {
		if i == show {
			fmt.Fprintf(&b, "; and %d more", len(errs)-show)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// dataAt reports whether data is set at p, or a non-object sits above it.
func dataAt(data map[string]any, p []string) bool {
	node := data
	for i, seg := range p {
		v, ok := node[seg]
		if !ok {
			return false
		}
		if i == len(p)-1 {
			return true
		}
		obj, isObj := v.(map[string]any)
		if !isObj {
			return true
		}
		node = obj
	}
	return false
}

// Input is a policy input, converted once to OPA's representation and
// shared by the base and the organization evaluation.
type Input struct {
	value ast.Value
}

// NewInput wraps a policy input already in OPA's representation (the
// decision service builds it directly, without converting Go maps).
func NewInput(v ast.Value) Input { return Input{value: v} }

// Verdict is what one policy said about one input (DESIGN §3): allow (the
// organization's only), deny and escalate reasons (sorted, without
// duplicates), and the approvals it requires.
type Verdict struct {
	Allow        bool     `json:"allow"`
	Deny         []string `json:"deny"`
	Escalate     []string `json:"escalate"`
	MinApprovals int      `json:"min_approvals"`
}

// Evaluate evaluates the policy's query on in. The error wraps
// ErrUndefined when there is no result, ErrEvalTimeout when ctx ended first,
// and ErrEval when evaluation failed or the result is not a verdict. The
// caller sets the deadline.
func (p *Policy) Evaluate(ctx context.Context, in Input) (Verdict, error) {
	if in.value == nil {
		return Verdict{}, fmt.Errorf("%w: empty input", ErrEval)
	}
	if err := ctx.Err(); err != nil {
		// Even a memoized answer is not given past the deadline: what a
		// decision costs must not decide whether it times out.
		return Verdict{}, fmt.Errorf("%w: %w", ErrEvalTimeout, err)
	}
	if p.memo == nil {
		return p.evaluate(ctx, in)
	}
	key, h := p.memo.key(in.value)
	if v, ok := p.memo.get(key, h); ok {
		return v, nil
	}
	v, err := p.evaluate(ctx, in)
	if err == nil {
		p.memo.put(key, h, v)
	}
	return v, err
}

// Close releases what the policy holds outside this process: a policy
// Workers.Load returned stops its worker once evaluations that already
// hold the policy have had the time to end (WorkerOptions.KillAfter);
// evaluating it after that fails. Close does nothing to a policy compiled
// in this process, and may be called more than once.
func (p *Policy) Close() {
	if p != nil && p.remote != nil {
		p.remote.close(p.remote.ws.opts.KillAfter)
	}
}

func (p *Policy) evaluate(ctx context.Context, in Input) (v Verdict, err error) {
	if p.remote != nil {
		return p.remote.evaluate(ctx, in)
	}
	// OPA panics on some values a policy can build (a comparison of a
	// number of more than a million fraction digits: "illegal value"), and
	// the caller may not be a goroutine that recovers. The evaluation's
	// state is its own, so a panic fails it and nothing else.
	defer func() {
		if r := recover(); r != nil {
			msg := fmt.Sprint(r)
			if len(msg) > 200 {
				msg = msg[:200] + "…"
			}
			v, err = Verdict{}, fmt.Errorf("%w: the evaluation panicked: %s", ErrEval, strings.ToValidUTF8(msg, "?"))
		}
	}()
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(in.value), rego.EvalGenerateJSON(boundedResult))
	if ctxErr := ctx.Err(); ctxErr != nil {
		return Verdict{}, fmt.Errorf("%w: %w", ErrEvalTimeout, ctxErr)
	}
	if err != nil {
		return Verdict{}, fmt.Errorf("%w: %v", ErrEval, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return Verdict{}, ErrUndefined
	}
	if len(rs) > 1 {
		return Verdict{}, fmt.Errorf("%w: %d results", ErrEval, len(rs))
	}
	return parseVerdict(rs[0].Expressions[0].Value)
}

// parseVerdict reads a decision object strictly: a key it does not know,
// or a value of the wrong type, fails closed (ErrEval, so the decision is
// denied) rather than being ignored: a misspelt "escalte" must not turn an
// escalation into an allow.
func parseVerdict(v any) (Verdict, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return Verdict{}, fmt.Errorf("%w: the decision is a %T, not an object", ErrEval, v)
	}
	var out Verdict
	for k, v := range obj {
		switch k {
		case "allow":
			b, ok := v.(bool)
			if !ok {
				return Verdict{}, fmt.Errorf("%w: allow is a %T, not a boolean", ErrEval, v)
			}
			out.Allow = b
		case "deny", "escalate":
			reasons, err := parseReasons(k, v)
			if err != nil {
				return Verdict{}, err
			}
			if k == "deny" {
				out.Deny = reasons
			} else {
				out.Escalate = reasons
			}
		case "min_approvals":
			n, ok := v.(json.Number)
			if !ok {
				return Verdict{}, fmt.Errorf("%w: min_approvals is a %T, not a number", ErrEval, v)
			}
			i, err := n.Int64()
			if err != nil || checkApprovals(i) != nil {
				return Verdict{}, fmt.Errorf("%w: min_approvals %s is not an integer from 0 to %d", ErrEval, n, MaxApprovals)
			}
			out.MinApprovals = int(i)
		default:
			return Verdict{}, fmt.Errorf("%w: unknown decision field %q (allowed: allow, deny, escalate, min_approvals)", ErrEval, printable(k))
		}
	}
	return out, nil
}

// check checks a verdict that crossed from a worker as parseVerdict
// checked it there: the worker runs policy code, so the service does not
// take its word.
func (v Verdict) check() error {
	for _, l := range []struct {
		field   string
		reasons []string
	}{{"deny", v.Deny}, {"escalate", v.Escalate}} {
		if err := checkReasons(l.field, l.reasons); err != nil {
			return err
		}
		if !slices.IsSorted(l.reasons) || len(slices.Compact(slices.Clone(l.reasons))) != len(l.reasons) {
			return fmt.Errorf("%w: %s reasons are not sorted and distinct", ErrEval, l.field)
		}
	}
	return checkApprovals(int64(v.MinApprovals))
}

func parseReasons(field string, v any) ([]string, error) {
	list, ok := v.([]any) // sets and arrays both arrive as []any
	if !ok {
		return nil, fmt.Errorf("%w: %s is a %T, not a set of strings", ErrEval, field, v)
	}
	out := make([]string, 0, min(len(list), MaxReasons+1))
	for _, r := range list {
		s, ok := r.(string)
		if !ok {
			return nil, errReasons(field)
		}
		out = append(out, s)
	}
	if err := checkReasons(field, out); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// checkReasons checks a deny or escalate list: at most MaxReasons
// reasons, each a printable string of 1 to MaxReasonLength bytes.
func checkReasons(field string, reasons []string) error {
	if len(reasons) > MaxReasons {
		return fmt.Errorf("%w: %s has %d reasons, limit %d", ErrEval, field, len(reasons), MaxReasons)
	}
	for _, r := range reasons {
		if r == "" || len(r) > MaxReasonLength || text.Line.Check(r) != nil {
			return errReasons(field)
		}
	}
	return nil
}

func errReasons(field string) error {
	return fmt.Errorf("%w: %s reasons must be printable strings of 1 to %d bytes", ErrEval, field, MaxReasonLength)
}

// checkApprovals checks min_approvals: an integer from 0 to MaxApprovals.
func checkApprovals(n int64) error {
	if n < 0 || n > MaxApprovals {
		return fmt.Errorf("%w: min_approvals %d is not an integer from 0 to %d", ErrEval, n, MaxApprovals)
	}
	return nil
}
