package bundles

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Bounds on one call of a builtin whose cost is not proportional to what
// a policy can build in its evaluation time. OPA checks the evaluation
// timeout between steps, never inside a builtin, so without them one call
// holds a core and gigabytes for seconds (figures in each comment, measured
// on the 2-core machine this was written on).
const (
	// maxPrintedSize bounds, in bytes, what one call of a builtin that
	// prints, serialises or walks a whole value may be given, and the
	// decision object an evaluation may return. A policy input is at most
	// a 64 KiB request and what the service adds to it, so printing the
	// whole input fits many times over.
	maxPrintedSize = 1 << 20
	// maxYAMLPrintedSize is maxPrintedSize for yaml.marshal, which costs
	// about a microsecond a byte: 2^16 copies of a small object were 2.45 s
	// and 580 MiB. Twice the largest request fits.
	maxYAMLPrintedSize = 1 << 17
	// maxStringWork bounds |text| × |other| for the string builtins whose
	// cost is their product: indexof over non-ASCII text (a 256 KB text and
	// a 128 KB needle, 1.24 s), trim with a non-ASCII cutset, and
	// strings.replace_n's generic replacer (1.50 s at 512 KB × 256 KB).
	maxStringWork = 1 << 28
	// maxCIDRPairs bounds net.cidr_contains_matches(a, b) when both
	// hold more than one address: the pairs [i, j] of its result hash to
	// i + j, so they collide (128 × 128 CIDRs, 5.6 s; 16,384 against two
	// addresses, 17 s). Against a single address the pairs hash apart,
	// and maxCIDRs bounds the list (8192 against one: 11 ms).
	maxCIDRPairs = 2048
	maxCIDRs     = 1 << 16
	// maxFilterKeys bounds the keys or paths object.filter, object.remove,
	// json.filter and json.remove are given: numbers in [1, 2) all hash
	// alike, so 8192 of them were 5.4 s in one object.filter.
	maxFilterKeys = 1024
	// maxGlobPattern bounds a glob.match pattern, in bytes: a nested one
	// recurses once per level (about 7 MB of "{a," was 2.1 s and 790 MiB).
	maxGlobPattern = 4096
	// maxFlattened bounds the elements array.flatten returns: arrays
	// holding the same array print to their product (2^12 × 2^14: 2.9 s,
	// 1 GiB).
	maxFlattened = 1 << 16
	// maxProductDigits bounds the digits of the numbers product
	// multiplies, which its result reaches (2^16 numbers of 16 digits:
	// 3.8 s, 2.3 GiB). A number's digits count its exponent: OPA makes
	// 1e30000 an exact integer of 30,001 digits.
	maxProductDigits = 4096
	// maxSumDigits bounds the digits of the long numbers sum adds, each
	// made exact first (2^16 × 1e30000: 8.4 s, 5.2 GiB); numbers of up to
	// shortNumber digits take OPA's fast paths and do not count.
	maxSumDigits = 1 << 20
	shortNumber  = 20
	// maxFlattenedBytes bounds the bytes of the strings array.flatten
	// returns: building the array hashes each string whole (2^16 copies of
	// a 1 MiB string: 5.8 s).
	maxFlattenedBytes = 1 << 24
)

// bound checks a builtin's operands before OPA runs it: nil, or what is
// too large.
type bound func(operands []*ast.Term) error

// bounds returns the builtins that are bounded, with their check. Those
// that print a value are there because a value a policy builds from shared
// parts (a rule holding the last one twice) is small in memory but prints
// in full: 24 doublings were 3.5 s and 1.3 GiB in one sprintf, 41 s and
// 3.3 GiB in one json.marshal.
func bounds() map[string]bound {
	printed := printedWithin(maxPrintedSize)
	b := map[string]bound{
		ast.Sprintf.Name:                printed,
		ast.JSONMarshal.Name:            printed,
		ast.YAMLMarshal.Name:            printedWithin(maxYAMLPrintedSize),
		ast.InternalTemplateString.Name: printed,           // $"…{x}…"
		ast.JWTEncodeSign.Name:          printed,           // marshals its header and payload
		ast.ProvidersAWSSignReqObj.Name: printed,           // marshals the request body
		ast.URLQueryEncodeObject.Name:   printed,           // converts to JSON first
		ast.ObjectUnion.Name:            printed,           // merges recursively
		ast.ObjectUnionN.Name:           printed,           // copies every object
		ast.JSONPatch.Name:              patchOps(printed), // a failed "test" prints both values
		ast.IndexOf.Name:                stringProduct(0, 1),
		ast.IndexOfN.Name:               stringProduct(0, 1),
		ast.Trim.Name:                   stringProduct(0, 1),
		ast.TrimLeft.Name:               stringProduct(0, 1),
		ast.TrimRight.Name:              stringProduct(0, 1),
		ast.ReplaceN.Name:               replaceWork,
		ast.NetCIDRContainsMatches.Name: cidrPairs,
		ast.ObjectFilter.Name:           keysWithin(1),
		ast.ObjectRemove.Name:           keysWithin(1),
		ast.JSONFilter.Name:             keysWithin(1),
		ast.JSONRemove.Name:             keysWithin(1),
		ast.GlobMatch.Name:              patternWithin(maxGlobPattern),
		ast.ArrayFlatten.Name:           flattened,
		ast.Product.Name:                digitsWithin(maxProductDigits, 0),
		ast.Sum.Name:                    digitsWithin(maxSumDigits, shortNumber),
		ast.RegexIsValid.Name:           patternWithin(maxRegexPatternBytes), // it parses the pattern
	}
	for name, call := range regexBuiltins {
		b[name] = call.check(name)
	}
	return b
}

// init replaces OPA's implementation of each bounded builtin, for every
// evaluation in the process (base and organization policies alike), with
// one that checks its operands first and halts the evaluation when a check
// fails: the decision denies (policy_error). OPA looks a builtin up in one
// process-wide table, so there is no per-query way to do this.
func init() {
	for name, check := range bounds() {
		impl := topdown.GetBuiltin(name)
		if impl == nil {
			panic("bundles: OPA has no implementation of " + name)
		}
		topdown.RegisterBuiltinFunc(name, bounded(name, check, impl))
	}
}

func bounded(name string, check bound, impl topdown.BuiltinFunc) topdown.BuiltinFunc {
	return func(bctx topdown.BuiltinContext, operands []*ast.Term, iter func(*ast.Term) error) error {
		if err := check(operands); err != nil {
			return topdown.Halt{Err: &topdown.Error{
				Code:     topdown.BuiltinErr,
				Message:  name + ": " + err.Error(),
				Location: bctx.Location,
			}}
		}
		return impl(bctx, operands, iter)
	}
}

// printedWithin bounds what all of a builtin's operands print to together.
func printedWithin(limit int) bound {
	return func(operands []*ast.Term) error {
		budget := limit
		for _, t := range operands {
			if budget = withinPrinted(t.Value, budget); budget < 0 {
				return fmt.Errorf("its arguments would print to more than %d bytes", limit)
			}
		}
		return nil
	}
}

// withinPrinted returns budget less about as many bytes as v prints to in
// JSON (a separator more per element), or a negative number as soon as
// that passes budget. Every value costs at least one byte, so it visits at
// most budget values, however many times v holds the same parts.
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

// stringProduct bounds the product of the lengths of two string operands.
// Operands of other types are left to OPA's type errors.
func stringProduct(i, j int) bound {
	return func(operands []*ast.Term) error {
		a, ok1 := operands[i].Value.(ast.String)
		b, ok2 := operands[j].Value.(ast.String)
		if ok1 && ok2 && int64(len(a))*int64(len(b)) > maxStringWork {
			return fmt.Errorf("strings of %d and %d bytes are more work than one call may do (their product may be %d)", len(a), len(b), maxStringWork)
		}
		return nil
	}
}

// replaceWork bounds strings.replace_n(patterns, value): the length of
// value times the length of all the patterns' keys.
func replaceWork(operands []*ast.Term) error {
	patterns, ok1 := operands[0].Value.(ast.Object)
	value, ok2 := operands[1].Value.(ast.String)
	if !ok1 || !ok2 {
		return nil
	}
	keys := int64(0)
	patterns.Foreach(func(k, _ *ast.Term) {
		if s, ok := k.Value.(ast.String); ok {
			keys += int64(len(s))
		}
	})
	if keys*int64(len(value)) > maxStringWork {
		return fmt.Errorf("patterns of %d bytes over a string of %d bytes are more work than one call may do (their product may be %d)", keys, len(value), maxStringWork)
	}
	return nil
}

// cidrPairs bounds net.cidr_contains_matches(cidrs, cidrs_or_ips): each is
// a string or a collection of them.
func cidrPairs(operands []*ast.Term) error {
	a, b := collectionLen(operands[0].Value), collectionLen(operands[1].Value)
	if min(a, b) > 1 && a*b > maxCIDRPairs {
		return fmt.Errorf("%d × %d pairs of addresses are more than one call may compare (%d)", a, b, maxCIDRPairs)
	}
	if max(a, b) > maxCIDRs {
		return fmt.Errorf("%d addresses are more than one call may compare (%d)", max(a, b), maxCIDRs)
	}
	return nil
}

// keysWithin bounds the number of keys or paths in operand i.
func keysWithin(i int) bound {
	return func(operands []*ast.Term) error {
		if n := collectionLen(operands[i].Value); n > maxFilterKeys {
			return fmt.Errorf("%d keys or paths are more than one call may take (%d)", n, maxFilterKeys)
		}
		return nil
	}
}

// collectionLen is the number of elements of an array, set or object, and
// 1 for any other value.
func collectionLen(v ast.Value) int {
	switch v := v.(type) {
	case *ast.Array:
		return v.Len()
	case ast.Set:
		return v.Len()
	case ast.Object:
		return v.Len()
	default:
		return 1
	}
}

// patternWithin bounds the bytes of a pattern given as the first operand.
func patternWithin(limit int) bound {
	return func(operands []*ast.Term) error {
		if p, ok := operands[0].Value.(ast.String); ok && len(p) > limit {
			return fmt.Errorf("a pattern of %d bytes is longer than one call may take (%d)", len(p), limit)
		}
		return nil
	}
}

// patchOps refuses json.patch "copy" operations (each can double what a
// later one copies: 24 levels of two copies made a 5 KB patch print 1.5 GiB
// in its "test" error), then checks the operands with then.
func patchOps(then bound) bound {
	return func(operands []*ast.Term) error {
		if ops, ok := operands[1].Value.(*ast.Array); ok {
			for i := range ops.Len() {
				if op, ok := ops.Elem(i).Value.(ast.Object); ok {
					if v := op.Get(ast.InternedTerm("op")); v != nil && v.Value.Compare(ast.String("copy")) == 0 {
						return fmt.Errorf("operation %d is a copy, which organization policies may not use (each copy can double what the next copies)", i)
					}
				}
			}
		}
		return then(operands)
	}
}

// flattened bounds what array.flatten returns (it flattens one level):
// its elements, and the bytes of its strings.
func flattened(operands []*ast.Term) error {
	a, ok := operands[0].Value.(*ast.Array)
	if !ok {
		return nil
	}
	n, bytes := 0, 0
	add := func(t *ast.Term) {
		n++
		if s, ok := t.Value.(ast.String); ok {
			bytes += len(s)
		}
	}
	for i := range a.Len() {
		if nested, ok := a.Elem(i).Value.(*ast.Array); ok {
			nested.Foreach(add)
		} else {
			add(a.Elem(i))
		}
		if n > maxFlattened || bytes > maxFlattenedBytes {
			return fmt.Errorf("it would return more than %d elements or %d bytes of strings, more than one call may", maxFlattened, maxFlattenedBytes)
		}
	}
	return nil
}

// digitsWithin bounds the digits of the numbers in a collection, a
// number's exponent counted as digits; numbers of at most short digits are
// not counted.
func digitsWithin(limit, short int) bound {
	return func(operands []*ast.Term) error {
		digits := 0
		count := func(t *ast.Term) {
			if n, ok := t.Value.(ast.Number); ok {
				if d := numberDigits(n); d > short {
					digits = min(digits+d, limit+1)
				}
			}
		}
		switch c := operands[0].Value.(type) {
		case *ast.Array:
			c.Foreach(count)
		case ast.Set:
			c.Foreach(count)
		}
		if digits > limit {
			return fmt.Errorf("numbers of more than %d digits in all, exponents counted, are more than one call may take", limit)
		}
		return nil
	}
}

// hugeNumber is what numberDigits says of an exponent past a billion: more
// than any bound, and far from overflowing when added to another.
const hugeNumber = 1 << 30

// numberDigits is about the number of digits of n written out without an
// exponent: its length, plus the exponent's value when it has one.
func numberDigits(n ast.Number) int {
	s := string(n)
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return min(len(s), hugeNumber)
	}
	exp, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
	if err != nil || exp > hugeNumber || exp < -hugeNumber {
		return hugeNumber
	}
	if exp < 0 {
		exp = -exp
	}
	return min(i+exp, hugeNumber)
}

// boundedResult converts a query result to Go as rego does, but refuses a
// result that would print to more than maxPrintedSize: the conversion
// builds every part of a value as many times as the value holds it.
func boundedResult(t *ast.Term, _ *rego.EvalContext) (any, error) {
	if withinPrinted(t.Value, maxPrintedSize) < 0 {
		return nil, fmt.Errorf("the result would print to more than %d bytes", maxPrintedSize)
	}
	return ast.JSON(t.Value)
}
