package bundles

import (
	"context"
	"errors"
	"fmt"
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

// TestPrintingBuiltinsBounded: a builtin that prints a value a policy
// built from shared parts halts the evaluation (ErrEval, so the decision
// denies with policy_error) before it prints more than MaxPrintedSize,
// while printing a value within the bound works as before.
func TestPrintingBuiltinsBounded(t *testing.T) {
	// 2^17 copies of a 30-byte array print to about 4 MiB; 2^14, to
	// about 512 KiB.
	const over, under = 17, 14
	for _, tc := range []struct{ name, expr string }{
		{"sprintf", `sprintf("%v", [X])`},
		{"sprintf extra argument", `sprintf("%d", [1, X])`},
		{"json.marshal", `json.marshal(X)`},
		{"yaml.marshal", `yaml.marshal(X)`},
		{"template string", `$"{X}"`},
		{"io.jwt.encode_sign", `io.jwt.encode_sign({"alg": "HS256"}, {"v": X}, {"kty": "oct", "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"})`},
		{"io.jwt.encode_sign header", `io.jwt.encode_sign({"alg": "HS256", "x": X}, {}, {"kty": "oct", "k": "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"})`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy := func(n int) string {
				return "package tenant\n\n" + sharedValue(n) +
					"\ndecision := {\"allow\": count(" + strings.ReplaceAll(tc.expr, "X", fmt.Sprintf("x%d", n)) + ") > 0}\n"
			}
			p, err := policyFrom(t, map[string]string{"tenant/p.rego": policy(under)})
			if err != nil {
				t.Fatal(err)
			}
			if v, err := p.Evaluate(context.Background(), payment(t)); err != nil || !v.Allow {
				t.Fatalf("printing %d copies: verdict %+v, err %v; want an allow", 1<<under, v, err)
			}

			p, err = policyFrom(t, map[string]string{"tenant/p.rego": policy(over)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err = p.Evaluate(ctx, payment(t))
			if !errors.Is(err, ErrEval) || errors.Is(err, ErrEvalTimeout) {
				t.Fatalf("printing %d copies: err %v, want ErrEval", 1<<over, err)
			}
			want := fmt.Sprintf("would print to more than %d bytes", MaxPrintedSize)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("err %q does not say %q", err, want)
			}
		})
	}
}

// TestDecisionResultBounded: a decision object that would print to more
// than MaxPrintedSize is refused before rego converts it to Go, which
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
	if withinPrinted(v, MaxPrintedSize) >= 0 {
		t.Error("a value of 2^40 arrays measured within the bound")
	}
}
