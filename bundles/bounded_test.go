package bundles

import (
	"context"
	"errors"
	"fmt"
	"regexp/syntax"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// sharedValue returns Rego rules x0…xN where each x holds the one before
// twice: xN is a few hundred bytes in memory and prints to about
// 2^N times x0's size.
func sharedValue(n int) string {
	var b strings.Builder
	b.WriteString("x0 := [\"abcdefghijklmnopqrstuvwxyz\"]\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "x%d := [x%d, x%d]\n", i, i-1, i-1)
	}
	return b.String()
}

// TestPrintingBuiltinsBounded: a builtin that prints or walks a whole
// value a policy built from shared parts halts the evaluation (ErrEval, so
// the decision denies with policy_error) before it prints more than its
// bound, while a value within the bound is not refused.
func TestPrintingBuiltinsBounded(t *testing.T) {
	// 2^n copies of a 30-byte array print to about 2^n × 32 bytes: 2^14
	// to 512 KiB and 2^17 to 4 MiB against maxPrintedSize, 2^10 to 32 KiB
	// and 2^13 to 256 KiB against yaml.marshal's 64 KiB.
	const key = `{"kty": "oct", "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}`
	const aws = `{"aws_access_key": "AKIDEXAMPLE", "aws_secret_access_key": "secret", "aws_service": "s3", "aws_region": "eu-west-1"}`
	for _, tc := range []struct {
		name, expr  string
		under, over int
		limit       int
	}{
		{"sprintf", `sprintf("%v", [X])`, 14, 17, maxPrintedSize},
		{"sprintf extra argument", `sprintf("%d", [1, X])`, 14, 17, maxPrintedSize},
		{"json.marshal", `json.marshal(X)`, 14, 17, maxPrintedSize},
		{"yaml.marshal", `yaml.marshal(X)`, 10, 13, maxYAMLPrintedSize},
		{"template string", `$"{X}"`, 14, 17, maxPrintedSize},
		{"io.jwt.encode_sign", `io.jwt.encode_sign({"alg": "HS256"}, {"v": X}, ` + key + `)`, 14, 17, maxPrintedSize},
		{"io.jwt.encode_sign header", `io.jwt.encode_sign({"alg": "HS256", "x": X}, {}, ` + key + `)`, 14, 17, maxPrintedSize},
		{"providers.aws.sign_req", `providers.aws.sign_req({"method": "POST", "url": "https://example.com/", "body": X}, ` + aws + `, 0)`, 14, 17, maxPrintedSize},
		// encode_object refuses nested arrays, but only after converting
		// them: under the bound the call is undefined, not refused.
		{"urlquery.encode_object", `urlquery.encode_object({"k": object.get({"k": X}, "k", "")})`, 14, 17, maxPrintedSize},
		{"object.union", `object.union({"a": X}, {"b": 1})`, 14, 17, maxPrintedSize},
		{"object.union_n", `object.union_n([{"a": 1}, {"b": X}])`, 14, 17, maxPrintedSize},
		{"json.patch", `json.patch({"a": X}, [{"op": "add", "path": "/b", "value": 1}])`, 14, 17, maxPrintedSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy := func(n int) string {
				return "package tenant\n\n" + sharedValue(n) +
					"\ndecision := {\"allow\": count(" + strings.ReplaceAll(tc.expr, "X", fmt.Sprintf("x%d", n)) + ") > 0}\n"
			}
			refused := fmt.Sprintf("would print to more than %d bytes", tc.limit)
			p, err := policyFrom(t, map[string]string{"tenant/p.rego": policy(tc.under)})
			if err != nil {
				t.Fatal(err)
			}
			v, err := p.Evaluate(context.Background(), payment(t))
			if err != nil && strings.Contains(err.Error(), refused) || err == nil && !v.Allow {
				t.Fatalf("printing %d copies: verdict %+v, err %v; want it not refused", 1<<tc.under, v, err)
			}

			p, err = policyFrom(t, map[string]string{"tenant/p.rego": policy(tc.over)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err = p.Evaluate(ctx, payment(t))
			if !errors.Is(err, ErrEval) || errors.Is(err, ErrEvalTimeout) || !strings.Contains(err.Error(), refused) {
				t.Fatalf("printing %d copies: err %v, want ErrEval saying %q", 1<<tc.over, err, refused)
			}
		})
	}
}

// TestWorkBounded: the builtins whose one call costs the product of their
// operands' sizes, or the square of a count, halt the evaluation past
// their bound, and work as before within it.
func TestWorkBounded(t *testing.T) {
	// str(n, c) is a string of n copies of c, built in the policy.
	str := func(n int, c string) string {
		return fmt.Sprintf(`concat("", [c | some _ in numbers.range(1, %d); c := %q])`, n, c)
	}
	// list(n, s) is n copies of s.
	list := func(n int, s string) string {
		return fmt.Sprintf(`[c | some _ in numbers.range(1, %d); c := %q]`, n, s)
	}
	keys := func(n int) string { return fmt.Sprintf(`[format_int(i, 10) | some i in numbers.range(1, %d)]`, n) }
	for _, tc := range []struct {
		name, expr string
		refused    string // "" when the call must not be refused
	}{
		{"indexof", `indexof(` + str(20000, "é") + `, ` + str(10000, "é") + `) >= -1`, "more work"},
		{"indexof within", `indexof(` + str(1000, "é") + `, ` + str(100, "é") + `) >= -1`, ""},
		{"indexof_n", `count(indexof_n(` + str(20000, "a") + `, ` + str(20000, "a") + `)) >= 0`, "more work"},
		{"trim", `trim(` + str(20000, "é") + `, ` + str(20000, "è") + `) != "x"`, "more work"},
		{"trim within", `trim(` + str(1000, "é") + `, ` + str(100, "è") + `) != "x"`, ""},
		{"trim_left", `trim_left(` + str(20000, "é") + `, ` + str(20000, "è") + `) != "x"`, "more work"},
		{"trim_right", `trim_right(` + str(20000, "é") + `, ` + str(20000, "è") + `) != "x"`, "more work"},
		{"strings.replace_n", `strings.replace_n({` + str(20000, "ab") + `: "x", "c": "d"}, ` + str(10000, "a") + `) != "x"`, "more work"},
		{"strings.replace_n within", `strings.replace_n({"b": "x"}, "abc") == "axc"`, ""},
		{"net.cidr_contains_matches", `count(net.cidr_contains_matches(` + list(64, "10.0.0.0/8") + `, ` + list(64, "10.1.2.3") + `)) >= 0`, "pairs of addresses"},
		{"net.cidr_contains_matches within", `count(net.cidr_contains_matches(` + list(32, "10.0.0.0/8") + `, ` + list(32, "10.1.2.3") + `)) > 0`, ""},
		{"net.cidr_contains_matches blocklist", `count(net.cidr_contains_matches(` + list(8192, "10.0.0.0/8") + `, "10.1.2.3")) > 0`, ""},
		{"net.cidr_contains_matches long blocklist", `count(net.cidr_contains_matches(` + list(maxCIDRs+1, "10.0.0.0/8") + `, "10.1.2.3")) > 0`, "addresses are more"},
		// Against two addresses the pairs collide again.
		{"net.cidr_contains_matches against two", `count(net.cidr_contains_matches(` + list(1025, "10.0.0.0/8") + `, ["10.1.2.3", "10.1.2.4"])) > 0`, "pairs of addresses"},
		{"object.filter", `count(object.filter({"1": 1}, ` + keys(maxFilterKeys+1) + `)) >= 0`, "keys or paths"},
		{"object.filter within", `count(object.filter({"1": 1}, ` + keys(maxFilterKeys) + `)) == 1`, ""},
		{"object.remove", `count(object.remove({"1": 1}, ` + keys(maxFilterKeys+1) + `)) >= 0`, "keys or paths"},
		{"json.filter", `count(json.filter({"1": 1}, ` + keys(maxFilterKeys+1) + `)) >= 0`, "keys or paths"},
		{"json.remove", `count(json.remove({"1": 1}, ` + keys(maxFilterKeys+1) + `)) >= 0`, "keys or paths"},
		{"json.remove within", `count(json.remove({"1": 1}, ` + keys(maxFilterKeys) + `)) == 0`, ""},
		{"glob.match", `glob.match(` + str(maxGlobPattern+1, "a") + `, [], "a") == false`, "longer than"},
		{"glob.match within", `glob.match(` + str(maxGlobPattern, "a") + `, [], "a") == false`, ""},
		// Every node linked to every other: 129 × 128 edges.
		{"array.flatten", `count(array.flatten([numbers.range(1, 40000), numbers.range(1, 40000)])) > 0`, "elements"},
		{"array.flatten within", `count(array.flatten([numbers.range(1, 30000), numbers.range(1, 30000), 1])) == 60001`, ""},
		{"json.patch copy", `count(json.patch({"a": 1}, [{"op": "copy", "from": "/a", "path": "/b"}])) > 0`, "is a copy"},
		{"json.patch move", `count(json.patch({"a": 1}, [{"op": "move", "from": "/a", "path": "/b"}])) == 1`, ""},
		// 16 digits each: 257 of them are 4112 digits.
		{"product", `product([n | some _ in numbers.range(1, 257); n := 9999999999999999]) > 0`, "digits"},
		{"product within", `product([n | some _ in numbers.range(1, 256); n := 9999999999999999]) > 0`, ""},
		{"product of a set", `product({n | some i in numbers.range(1000000000000000, 1000000000000256); n := i}) > 0`, "digits"},
		// OPA makes 1e30000 an exact integer of 30,001 digits.
		{"product of an exponent", `product([2, 1e30000]) > 0`, "digits"},
		{"sum of exponents", `sum([n | some _ in numbers.range(1, 40); n := 1e30000]) > 0`, "digits"},
		{"sum within", `sum([1e3000, 2]) > 0`, ""},
		// Short numbers take OPA's fast paths and do not count.
		{"sum of many short numbers", `sum(numbers.range(1, 200000)) > 0`, ""},
		// An exponent past what an int holds counts as huge, not as a
		// negative number that would cancel the long ones before it.
		{"product past an overflowing exponent", `product(array.concat([x | some _ in numbers.range(1, 256); x := 1e30000], json.unmarshal("[1, 1e9223372036854775807]"))) > 0`, "digits"},
		{"sum past an overflowing exponent", `sum(array.concat([1e30000], json.unmarshal("[1e9223372036854775807, 1e9223372036854775807]"))) > 0`, "digits"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkBound(t, tc.expr, tc.refused) })
	}
}

// checkBound evaluates a policy whose decision allows when expr is true:
// with refused "", it must allow; otherwise the evaluation must fail
// (ErrEval) saying refused.
func checkBound(t *testing.T, expr, refused string) {
	t.Helper()
	p, err := policyFrom(t, map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": " + expr + "}\n"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Evaluate(context.Background(), payment(t))
	if refused == "" {
		if err != nil || !v.Allow {
			t.Fatalf("verdict %+v, err %v; want an allow", v, err)
		}
		return
	}
	if !errors.Is(err, ErrEval) || !strings.Contains(err.Error(), refused) {
		t.Fatalf("verdict %+v, err %v; want ErrEval saying %q", v, err, refused)
	}
}

// TestFlattenedStringsBounded: array.flatten hashes every string it
// returns whole, so the bytes of its strings are bounded too.
func TestFlattenedStringsBounded(t *testing.T) {
	policy := func(copies int) string {
		return "package tenant\n\n" + `s0 := "abcdefghijklmnop"
s1 := concat("", [s0, s0, s0, s0, s0, s0, s0, s0, s0, s0, s0, s0, s0, s0, s0, s0])
s2 := concat("", [s1, s1, s1, s1, s1, s1, s1, s1, s1, s1, s1, s1, s1, s1, s1, s1])
s3 := concat("", [s2, s2, s2, s2, s2, s2, s2, s2, s2, s2, s2, s2, s2, s2, s2, s2])
s4 := concat("", [s3, s3, s3, s3, s3, s3, s3, s3, s3, s3, s3, s3, s3, s3, s3, s3])
` + fmt.Sprintf("decision := {\"allow\": count(array.flatten([[s4 | some _ in numbers.range(1, %d)]])) > 0}\n", copies)
	}
	// s4 is 1 MiB: 16 copies are the bound, 17 more.
	p, err := policyFrom(t, map[string]string{"tenant/p.rego": policy(16)})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := p.Evaluate(context.Background(), payment(t)); err != nil || !v.Allow {
		t.Fatalf("16 MiB: verdict %+v, err %v; want an allow", v, err)
	}
	p, err = policyFrom(t, map[string]string{"tenant/p.rego": policy(17)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Evaluate(context.Background(), payment(t)); !errors.Is(err, ErrEval) || !strings.Contains(err.Error(), "bytes of strings") {
		t.Fatalf("17 MiB: err %v, want ErrEval for the bytes of strings", err)
	}
}

// TestDecisionResultBounded: a decision object that would print to more
// than maxPrintedSize is refused before rego converts it to Go, which
// would build every shared part once per place it appears.
func TestDecisionResultBounded(t *testing.T) {
	p, err := policyFrom(t, map[string]string{"tenant/p.rego": "package tenant\n\n" + sharedValue(17) +
		"\ndecision := {\"allow\": true, \"x\": x17}\n"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Evaluate(context.Background(), payment(t))
	if !errors.Is(err, ErrEval) || !strings.Contains(err.Error(), "the result would print to more than") {
		t.Fatalf("err %v, want ErrEval for the size of the result", err)
	}
}

func TestWithinPrinted(t *testing.T) {
	for _, tc := range []struct {
		rego string
		want int // bytes of compact JSON, as json.marshal prints
	}{
		{`"abc"`, 5},
		{`12.5`, 4},
		{`true`, 4},
		{`false`, 5},
		{`null`, 4},
		{`[]`, 2},
		{`[1, "a", null]`, 12},
		{`{"a": 1, "bc": [true]}`, 19},
		{`{1, 2}`, 5},
	} {
		v := ast.MustParseTerm(tc.rego).Value
		got := 1000 - withinPrinted(v, 1000)
		// The measure counts a separator per element, one more than
		// JSON prints in each array, set or object; never less.
		if got < tc.want || got > tc.want+2 {
			t.Errorf("%s: measured %d bytes, JSON is %d", tc.rego, got, tc.want)
		}
	}
	// The walk stops at the budget: a value printing to 2^40 arrays
	// measures at once.
	v := ast.NewArray()
	for range 40 {
		v = ast.NewArray(ast.NewTerm(v), ast.NewTerm(v))
	}
	if withinPrinted(v, maxPrintedSize) >= 0 {
		t.Error("a value of 2^40 arrays measured within the bound")
	}
}

// TestRegexBounded: a regex builtin whose pattern compiles to more than
// maxRegexInstructions, or whose pattern and text are more than
// maxRegexWork together, halts the evaluation before OPA compiles or runs
// it; within the bounds, each works as before.
func TestRegexBounded(t *testing.T) {
	big := strings.Repeat("[a-z]{1000}", 17) // 17,000 instructions
	slow := "[ab]{1000}c"                    // 1,003 instructions
	text := func(n int) string {
		return fmt.Sprintf(`concat("", array.concat([], [s | some _ in numbers.range(1, %d); s := "ab"]))`, n/2)
	}
	for _, tc := range []struct {
		name, expr string
		refused    string // "" when the call must work
	}{
		{"match", `regex.match("^[a-z]+$", "abc")`, ""},
		{"match large pattern", fmt.Sprintf(`regex.match(%q, "abc")`, big), "compiles to about"},
		{"match too much work", fmt.Sprintf(`regex.match(%q, %s)`, slow, text(10000)), "more work"},
		{"match within the work", fmt.Sprintf(`regex.match(%q, %s) == false`, slow, text(4000)), ""},
		{"split", fmt.Sprintf(`count(regex.split(%q, %s)) > 0`, slow, text(10000)), "more work"},
		{"find_n", fmt.Sprintf(`count(regex.find_n(%q, "abc", 1)) >= 0`, big), "compiles to about"},
		{"find_all_string_submatch_n", fmt.Sprintf(`count(regex.find_all_string_submatch_n(%q, %s, -1)) >= 0`, slow, text(10000)), "more work"},
		{"replace", `regex.replace("abc", "b", "x") == "axc"`, ""},
		{"replace large pattern", fmt.Sprintf(`regex.replace("abc", %q, "x") != ""`, big), "compiles to about"},
		{"replace too much work", fmt.Sprintf(`regex.replace(%s, %q, "x") != ""`, text(10000), slow), "more work"},
		{"template_match", `regex.template_match("urn:foo:{.*}", "urn:foo:bar:baz", "{", "}")`, ""},
		// The templates do not parse as patterns themselves ("(" is
		// outside the delimiters, so it is quoted).
		{"template_match large part", fmt.Sprintf(`regex.template_match("(urn:<%s>", "(urn:abc", "<", ">")`, big), "compiles to about"},
		{"template_match too much work", fmt.Sprintf(`regex.template_match("(<%s>", concat("", ["(", %s]), "<", ">")`, slow, text(10000)), "more work"},
		{"pattern longer than parsed", fmt.Sprintf(`regex.match(%q, "a")`, strings.Repeat("a", maxRegexPatternBytes+1)), "longer than 4096 bytes"},
		{"is_valid of a long pattern", fmt.Sprintf(`regex.is_valid(%q)`, strings.Repeat("a", maxRegexPatternBytes+1)), "longer than"},
		{"is_valid", fmt.Sprintf(`regex.is_valid(%q)`, strings.Repeat("a", maxRegexPatternBytes)), ""},
		{"pattern within the length parsed", fmt.Sprintf(`regex.match(%q, "a") == false`, strings.Repeat("a", maxRegexPatternBytes)), ""},
		// Every match is a value: the text itself is bounded.
		{"find_n long text", fmt.Sprintf(`count(regex.find_n("", %s, -1)) > 0`, text(maxRegexText+2)), "longer than"},
		{"split long text", fmt.Sprintf(`count(regex.split("x", %s)) > 0`, text(maxRegexText+2)), "longer than"},
		{"match long text", fmt.Sprintf(`regex.match("x", %s) == false`, text(maxRegexText+2)), ""},
		// Go copies every capture group on every step.
		{"submatches of many groups", fmt.Sprintf(`count(regex.find_all_string_submatch_n(%q, %s, -1)) >= 0`, strings.Repeat("(.)", 1000), text(2000)), "groups"},
		{"match of many groups", fmt.Sprintf(`regex.match(%q, %s) == false`, strings.Repeat("(.)", 1000)+"x", text(2000)), ""},
		{"replace expanding $1", fmt.Sprintf(`regex.replace(%s, "(.*)", %s) != ""`, text(65536), strings.ReplaceAll(text(2048), `"ab"`, `"$1"`)), "could build more"},
		{"replace expanding $1 within", `regex.replace("abc", "(b)", "<$1>") == "a<b>c"`, ""},
		// A class holds its ranges: \pL about 700.
		{"classes' ranges", fmt.Sprintf(`regex.match(%q, "a")`, strings.Repeat(`\pL`, 200)), "ranges"},
		{"classes' ranges within", `regex.match("^\\pL{1,64}$", "abc")`, ""},
		// OPA compiles each part alone first, as ^part$; a part that does
		// not parse alone ("\\" at its end) still compiles so.
		{"template part measured as OPA compiles it", fmt.Sprintf(`regex.template_match("<%s\\>", "a", "<", ">")`, big), "compiles to about"},
		{"template whole failing after a part", fmt.Sprintf(`regex.template_match("<%s><\\Qx>", "a", "<", ">")`, big), "compiles to about"},
		// OPA compiles every part on every call: two parts of 9,000
		// instructions are 18,000, even when the whole then fails.
		{"template parts summed", fmt.Sprintf(`regex.template_match("<%s><%s><\\Qx>", "a", "<", ">")`, strings.Repeat("[a-z]{1000}", 9), strings.Repeat("[a-z]{1000}", 9)), "compiles to about"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkBound(t, tc.expr, tc.refused) })
	}
}

// TestRegexInvalidLeftToOPA: a pattern that does not parse, or a template
// whose delimiters are not one byte each or do not balance, is OPA's to
// report (a builtin error: the call is undefined), not a bound's.
func TestRegexInvalidLeftToOPA(t *testing.T) {
	for _, expr := range []string{
		`regex.match("(", "a")`,
		`regex.template_match("urn:<a", "urn:a", "<", ">")`,
		`regex.template_match("urn:a>", "urn:a", "<", ">")`,
		// Too large a part to compile, were OPA to take these delimiters.
		`regex.template_match("urn:<<` + strings.Repeat("[a-z]{1000}", 17) + `>>", "urn:a", "<<", ">>")`,
	} {
		p, err := policyFrom(t, map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": " + expr + "}\n"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Evaluate(context.Background(), payment(t)); !errors.Is(err, ErrUndefined) {
			t.Errorf("%s: err %v, want ErrUndefined", expr, err)
		}
	}
}

// TestNumberDigits: a number's digits count its exponent, and an exponent
// too large for an int counts as huge, never as a negative number.
func TestNumberDigits(t *testing.T) {
	for _, tc := range []struct {
		n    string
		want int
	}{
		{"12", 2},
		{"-1.25", 5},
		{"1e5", 6},
		{"1E+5", 6},
		{"-1.5e-3", 7},
		{"1e30000", 30001},
		{"1e1073741825", hugeNumber},
		{"1e-1073741825", hugeNumber},
		{"1e9223372036854775807", hugeNumber},
		{"1e99999999999999999999", hugeNumber},
	} {
		if got := numberDigits(ast.Number(tc.n)); got != tc.want {
			t.Errorf("numberDigits(%s) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

// TestProgSize: the estimates are never below what Go compiles (its
// instructions, and the ranges of their character classes), so the bounds
// hold.
func TestProgSize(t *testing.T) {
	for _, p := range []string{
		"a", "abc", "^[a-z0-9-]{1,64}$", "(a|bc|d)*x+y?", "[ab]{1000}c", "(?:a{10,20}){5}",
		"(?i)hello", `\pL{100}`, "^DE[0-9]{20}$", "(a*)*", "x{0,5}", "x{3,}", ".",
	} {
		re, err := syntax.Parse(p, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := syntax.Compile(re.Simplify())
		if err != nil {
			t.Fatal(err)
		}
		insts := int64(len(prog.Inst))
		var ranges int64
		for _, inst := range prog.Inst {
			if inst.Op == syntax.InstRune {
				ranges += int64(len(inst.Rune) / 2)
			}
		}
		size, gotRanges := progSize(re)
		if size < insts-3 || size > 2*insts+8 {
			t.Errorf("%s: estimated %d instructions, Go compiles %d", p, size, insts)
		}
		if gotRanges < ranges || gotRanges > 2*ranges+8 {
			t.Errorf("%s: estimated %d class ranges, Go's program holds %d", p, gotRanges, ranges)
		}
	}
}

// TestEvaluatePanicFails: OPA panics comparing a number of more than a
// million fraction digits; the evaluation fails (ErrEval) instead of the
// panic reaching the caller, and the policy still answers after.
func TestEvaluatePanicFails(t *testing.T) {
	p, err := policyFrom(t, map[string]string{"tenant/p.rego": `package tenant

d0 := "1234567890123456"
d1 := concat("", [d0, d0])
d2 := concat("", [d1, d1])
d3 := concat("", [d2, d2])
d4 := concat("", [d3, d3])
d5 := concat("", [d4, d4])
d6 := concat("", [d5, d5])
d7 := concat("", [d6, d6])
d8 := concat("", [d7, d7])
d9 := concat("", [d8, d8])
d10 := concat("", [d9, d9])
d11 := concat("", [d10, d10])
d12 := concat("", [d11, d11])
d13 := concat("", [d12, d12])
d14 := concat("", [d13, d13])
d15 := concat("", [d14, d14])
d16 := concat("", [d15, d15])

decision := {"allow": true} if input.action.type == "payment.send"

decision := {"allow": to_number(concat("", ["0.", d16])) < 1} if input.action.type == "boom"
`})
	if err != nil {
		t.Fatal(err)
	}
	boom, err := inputOf(map[string]any{"action": map[string]any{"type": "boom"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Evaluate(context.Background(), boom)
	if !errors.Is(err, ErrEval) || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("err %v, want ErrEval for a panic", err)
	}
	if v, err := p.Evaluate(context.Background(), payment(t)); err != nil || !v.Allow {
		t.Fatalf("after the panic: verdict %+v, err %v; want an allow", v, err)
	}
}
