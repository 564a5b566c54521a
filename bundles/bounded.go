package bundles

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// MaxPrintedSize bounds, in bytes, what one call of a builtin that prints
// a value (sprintf, json.marshal, …) may print, and the decision object an
// evaluation may return. A policy input is at most a 64 KiB request and
// what the service adds to it, so printing the whole input fits many times
// over.
const MaxPrintedSize = 1 << 20

// printingBuiltins are the builtins that print or serialise every value
// they are given, in one call: those the evaluation timeout cannot stop
// while they work through a value built from shared parts. A rule holding
// the last one twice doubles a value's printed size at almost no cost, so
// 24 rules make a value of a few hundred bytes in memory that prints to
// gigabytes (one sprintf of it was 3.5 s and 1.3 GiB, one json.marshal
// 41 s and 3.3 GiB).
var printingBuiltins = []string{
	ast.Sprintf.Name,
	ast.JSONMarshal.Name,
	ast.YAMLMarshal.Name,
	ast.InternalTemplateString.Name, // $"…{x}…"
	ast.JWTEncodeSign.Name,          // marshals its header and payload objects
}

// init bounds the printing builtins for every evaluation in the process,
// base and organization policies alike: each call first measures what its
// arguments would print, stopping as soon as the measure passes
// MaxPrintedSize, and halts the evaluation (the decision denies,
// policy_error) instead of printing more. OPA looks a builtin up in one
// process-wide table, so there is no per-query way to do this.
func init() {
	for _, name := range printingBuiltins {
		impl := topdown.GetBuiltin(name)
		if impl == nil {
			panic("bundles: OPA has no implementation of " + name)
		}
		topdown.RegisterBuiltinFunc(name, boundPrinted(name, impl))
	}
}

func boundPrinted(name string, impl topdown.BuiltinFunc) topdown.BuiltinFunc {
	return func(bctx topdown.BuiltinContext, operands []*ast.Term, iter func(*ast.Term) error) error {
		budget := MaxPrintedSize
		for _, t := range operands {
			if budget = withinPrinted(t.Value, budget); budget < 0 {
				return topdown.Halt{Err: &topdown.Error{
					Code:     topdown.BuiltinErr,
					Message:  fmt.Sprintf("%s: its arguments would print to more than %d bytes", name, MaxPrintedSize),
					Location: bctx.Location,
				}}
			}
		}
		return impl(bctx, operands, iter)
	}
}

// withinPrinted returns budget less about as many bytes as v prints to in
// JSON (a separator more per element), or a negative number as soon as that passes budget. Every value
// costs at least one byte, so it visits at most budget values, however
// many times v holds the same parts.
func withinPrinted(v ast.Value, budget int) int {
	switch v := v.(type) {
	case ast.String:
		return budget - len(v) - 2
	case ast.Number:
		return budget - len(v)
	case ast.Boolean:
		if v {
			return budget - 4
		}
		return budget - 5
	case ast.Null:
		return budget - 4
	case *ast.Array:
		budget -= 2
		for i := 0; i < v.Len() && budget >= 0; i++ {
			budget = withinPrinted(v.Elem(i).Value, budget-1)
		}
		return budget
	case ast.Set:
		budget -= 2
		// Until stops the iteration when it returns true.
		v.Until(func(t *ast.Term) bool {
			budget = withinPrinted(t.Value, budget-1)
			return budget < 0
		})
		return budget
	case ast.Object:
		budget -= 2
		v.Until(func(k, t *ast.Term) bool {
			if budget = withinPrinted(k.Value, budget-2); budget < 0 {
				return true
			}
			budget = withinPrinted(t.Value, budget)
			return budget < 0
		})
		return budget
	default:
		// Refs, vars and calls are not values a builtin is given; count
		// their text.
		return budget - len(v.String())
	}
}

// boundedResult converts a query result to Go as rego does, but refuses a
// result that would print to more than MaxPrintedSize: the conversion
// builds every part of a value as many times as the value holds it.
func boundedResult(t *ast.Term, _ *rego.EvalContext) (any, error) {
	if withinPrinted(t.Value, MaxPrintedSize) < 0 {
		return nil, fmt.Errorf("the result would print to more than %d bytes", MaxPrintedSize)
	}
	return ast.JSON(t.Value)
}
