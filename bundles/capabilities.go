package bundles

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// forbiddenBuiltins returns the builtins of OPA v1.22.3 that policies evaluated
// here may not call, with the reason. Every other builtin of that version was
// reviewed and stays (TestEveryBuiltinReviewed fails when an OPA upgrade adds
// one, so that it is reviewed before a policy can use it).
//
// The rule (DESIGN §3): nothing may reach outside the process or the
// request, because a policy is code written by an organization and run
// inside our service, next to other organizations' data and our secrets.
// Decisions must also be reproducible from their recorded input, for
// `policy simulate` replays and auditors.
//
// Reviewed and kept, although OPA marks them non-deterministic or they touch
// something besides their arguments:
//   - time.now_ns: the clock, read-only; policies should prefer input.time,
//     which the decision records.
//   - io.jwt.decode_verify (checks exp/nbf against the clock),
//     io.jwt.encode_sign and io.jwt.encode_sign_raw (randomized ECDSA/PSS
//     signatures): pure crypto over their arguments, no key store, no fetch.
//   - providers.aws.sign_req: computes a SigV4 signature; sends nothing.
//   - crypto.x509.parse_and_verify_certificates(_with_options): verify a
//     chain against its own first certificate, not the system's roots.
//   - net.cidr_* other than lookups: arithmetic on addresses (cidr_expand
//     checks for cancellation, so the timeout bounds it).
//   - rego.metadata.*: read the policy's own annotations.
//   - trace and print: print is erased at compile time (print statements
//     are not enabled), so a policy cannot write into our logs; trace only
//     reaches an explain tracer, which the server never attaches.
//
// A builtin runs to its end once called: OPA checks for cancellation
// between evaluation steps, not inside one. Those whose one call can work
// without bound on what the policy builds (a loop, a parser) are
// forbidden, or a single decision would hold the CPU and gigabytes of
// memory for seconds past the evaluation timeout. Those that print a
// value, and the regex builtins, stay with a bound on one call
// (bounded.go, boundedregex.go). Those that work in proportion to their
// input (json.unmarshal, yaml.unmarshal) stay; the decision package bounds
// how many of one organization's evaluations run at once.
func forbiddenBuiltins() map[string]string {
	return map[string]string{
		"http.send":          "makes HTTP requests",
		"net.lookup_ip_addr": "makes DNS queries",
		"opa.runtime":        "reveals the server's environment variables and configuration",
		// Both resolve "$ref"s in schemas: file:// references read the server's
		// file system whatever allow_net says, http(s) ones fetch over the network.
		"json.match_schema":  "resolves schema $refs from the file system and the network",
		"json.verify_schema": "resolves schema $refs from the file system and the network",
		// One call ignores the evaluation timeout: "{{range 300000000}}" is
		// 7 s and 2 GB; a parse of megabytes the policy concatenated, 8 s
		// and 4.6 GB.
		"strings.render_template": "runs a template, whose loops the evaluation timeout cannot stop",
		"rego.parse_module":       "parses Rego of any size in one call, which the evaluation timeout cannot stop",
		// bits.lsh(1, 40000000) is one call of 10.6 s (a 40-million-bit
		// number, then its decimal string); its second argument alone sets
		// the size, where other arithmetic grows at most by squaring, step
		// by step.
		"bits.lsh": "shifts by any number of bits in one call, which the evaluation timeout cannot stop",
		// A layered graph of 2 nodes a layer written as a literal: 20
		// layers are 3.1 s and 1.2 GiB, each layer doubling both.
		"graph.reachable_paths": "lists every path, exponentially many, in one call, which the evaluation timeout cannot stop",
		// An indent of 1 MiB (20 doublings) over 400 numbers: 11.8 s and
		// 2 GiB in one call. json.marshal stays.
		"json.marshal_with_options": "repeats an indent or prefix of any length on every line in one call, which the evaluation timeout cannot stop",
		// Validating a query checks every pair of fields that overlap: a
		// 64 KB query of 8192 fields was 4.6 s in one graphql.is_valid.
		// The ones that take a schema object also convert it whole, so a
		// value built from shared parts costs its printed size. An agent's
		// action has no use for GraphQL.
		"graphql.is_valid":         "validates a query in time quadratic in its size, in one call, which the evaluation timeout cannot stop",
		"graphql.parse":            "validates a query in time quadratic in its size, in one call, which the evaluation timeout cannot stop",
		"graphql.parse_and_verify": "validates a query in time quadratic in its size, in one call, which the evaluation timeout cannot stop",
		"graphql.parse_query":      "parses a query of any size in one call, which the evaluation timeout cannot stop",
		"graphql.parse_schema":     "parses a schema of any size in one call, which the evaluation timeout cannot stop",
		"graphql.schema_is_valid":  "converts and validates a schema of any size in one call, which the evaluation timeout cannot stop",
		// Intersecting two globs backtracks: 63 bytes of ".*a" and "a"
		// took 6 s in one call, each ".*a" more about eight times that.
		"regex.globs_match": "intersects two patterns in time exponential in their length, in one call, which the evaluation timeout cannot stop",
		// OPA walks a node again for every path that reaches it: two
		// nodes a layer, each linked to both of the next, 96 edges were
		// 12.9 s and 3.7 GiB in one call.
		"graph.reachable": "walks a graph in time exponential in its layers, in one call, which the evaluation timeout cannot stop",
		// Nested objects are compared whole, and an array against a set
		// probes the set once per element, stepping over every colliding
		// hash: 2^16 elements against a set of 16,384 numbers, 70 s.
		"object.subset": "compares its operands in time quadratic in their size, in one call, which the evaluation timeout cannot stop",
		// Randomness makes a decision impossible to replay from its input.
		"rand.intn":    "is random, so decisions could not be replayed",
		"uuid.rfc4122": "is random, so decisions could not be replayed",
	}
}

// Capabilities returns the capabilities every policy is compiled and
// evaluated with: OPA v1.22.3's, without the forbidden builtins and the
// deprecated ones, and with
// allow_net empty (not absent: absent means any host) so that nothing left
// can reach a host either. It returns a new value on each call.
func Capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	forbidden := forbiddenBuiltins()
	caps.Builtins = slices.DeleteFunc(caps.Builtins, func(b *ast.Builtin) bool {
		_, drop := forbidden[b.Name]
		// A deprecated builtin cannot be called in Rego v1, but `with f as
		// re_match` could still name one: without them, it cannot.
		return drop || b.Deprecated
	})
	caps.AllowNet = []string{}
	return caps
}

// ForbiddenBuiltin is a builtin organization policies may not call.
type ForbiddenBuiltin struct {
	Name string
	Why  string
}

// ForbiddenBuiltins lists the builtins organization policies may not call,
// sorted by name.
func ForbiddenBuiltins() []ForbiddenBuiltin {
	forbidden := forbiddenBuiltins()
	out := make([]ForbiddenBuiltin, 0, len(forbidden))
	for name, why := range forbidden {
		out = append(out, ForbiddenBuiltin{Name: name, Why: why})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// findForbiddenCall returns an error naming the first call, in file order,
// to a forbidden builtin in modules (sorted by path), or to sprintf with a
// format checkSprintfFormat refuses. The compiler would reject calls to a
// forbidden builtin too ("undefined function"); this says why, and where.
func findForbiddenCall(paths []string, modules map[string]*ast.Module) error {
	forbidden := forbiddenBuiltins()
	for _, p := range paths {
		var found error
		check := func(op ast.Ref, args []*ast.Term, loc *ast.Location) {
			if found != nil {
				return
			}
			name := op.String()
			if why, ok := forbidden[name]; ok {
				found = fmt.Errorf("%w: %s: %s %s, which organization policies may not do", ErrForbiddenBuiltin, where(p, loc), name, why)
				return
			}
			if name == sprintfName {
				if err := checkSprintfFormat(args); err != nil {
					found = fmt.Errorf("%w: %s: sprintf %v", ErrForbiddenBuiltin, where(p, loc), err)
				}
			}
		}
		ast.NewGenericVisitor(func(x any) bool {
			switch x := x.(type) {
			case *ast.Expr:
				if x.IsCall() {
					check(x.Operator(), x.Operands(), x.Location)
				}
			case ast.Call:
				if len(x) > 0 {
					if op, ok := x[0].Value.(ast.Ref); ok {
						check(op, x[1:], x[0].Location)
					}
				}
			case *ast.With:
				// `f(…) with f as sprintf` calls sprintf with whatever
				// f was given: no format this check could read.
				// Parsed, the name is a Var; a dotted one would be a Ref.
				if x.Value.String() == sprintfName && found == nil {
					found = fmt.Errorf("%w: %s: sprintf may not stand in for another function (with … as sprintf)", ErrForbiddenBuiltin, where(p, x.Location))
				}
			}
			return found != nil
		}).Walk(modules[p])
		if found != nil {
			return found
		}
	}
	return nil
}

const sprintfName = "sprintf"

// maxSprintfPadding bounds the sum of the widths and precisions a sprintf
// format gives.
const maxSprintfPadding = 4096

// checkSprintfFormat refuses a sprintf whose format alone could make one
// call's output any size: Go's fmt pads to any width up to a million, and
// prints a float to any precision, per verb. "%*d" twice a thousand times,
// widths taken from the arguments, was 16.5 s and 4.1 GiB in one call; a
// literal of 800 KB of "%999[1]d", 2.2 s. The format must be a string
// literal, its verbs may take no width or precision from the arguments
// (*), and those it gives may sum to 4096 at most. It does not bound what
// printing the arguments costs: a value the policy built from shared parts
// prints in full (the README's "Known limits of that bound").
func checkSprintfFormat(args []*ast.Term) error {
	if len(args) == 0 {
		return nil // the compiler refuses the arity
	}
	format, ok := args[0].Value.(ast.String)
	if !ok {
		return errors.New("takes its format as a string literal only")
	}
	f := string(format)
	shown := f
	if len(shown) > 40 {
		shown = shown[:40] + "…"
	}
	// Every run of digits in a verb counts (an argument index too, which
	// only errs on the safe side).
	padding := 0
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		for i++; i < len(f); i++ {
			c := f[i]
			if c == '*' {
				return fmt.Errorf("format %q takes a width or precision from its arguments (*)", shown)
			}
			if c >= '0' && c <= '9' {
				n := 0
				for ; i < len(f) && f[i] >= '0' && f[i] <= '9'; i++ {
					if n = 10*n + int(f[i]-'0'); padding+n > maxSprintfPadding {
						return fmt.Errorf("format %q gives widths and precisions of more than %d in all", shown, maxSprintfPadding)
					}
				}
				padding += n
				i--
				continue
			}
			if !strings.ContainsRune(".[]+-# ", rune(c)) {
				break // the verb, or %%
			}
		}
	}
	return nil
}

// where formats a position in a bundle file.
func where(path string, loc *ast.Location) string {
	if loc == nil {
		return path
	}
	return fmt.Sprintf("%s:%d", path, loc.Row)
}
