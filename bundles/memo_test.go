package bundles

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestBaseIsMemoizedByWhatItReads(t *testing.T) {
	p, err := CompileBase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.memo == nil {
		t.Fatal("the base policy is not memoizable: it reads input other than through fixed paths, or calls a non-deterministic builtin")
	}
	var got []string
	for _, path := range p.memo.paths {
		got = append(got, path.String())
	}
	// Adding a path is fine (update this list); a high-cardinality one
	// (amount, params, time) would make the memo useless.
	want := []string{"action.type", "agent.risk_tier", "agent.stats.denials_1h", "agent.status", "counterparty.id", "counterparty.status"}
	if !slices.Equal(got, want) {
		t.Errorf("base reads %q, want %q", got, want)
	}
}

func TestMemoPathsRefusesWhatPathsCannotDescribe(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		ok   bool
	}{
		{"fixed paths", "x if input.a.b == 1\ny if input.c", true},
		{"path inside another ref", "x if data.tenant.t[input.a]", true},
		{"input as a whole", "x if object.get(input, \"a\", 1) == 1", false},
		{"input under a variable", "x if input[k] == 1", false},
		{"input iterated", "x if { some v in input; v == 1 }", false},
		{"numeric index", "x if input.a[0] == 1", false},
		{"clock", "x if time.now_ns() > input.t", false},
		{"randomness", "x if rand.intn(\"k\", 2) == input.t", false},
		{"with", "y if input.a\nx if y with input.a as 1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Parse and compile with every builtin: this tests the analysis,
			// not the capabilities.
			m, err := ast.ParseModuleWithOpts("p.rego", "package t\n\n"+tc.src+"\n", ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				t.Fatal(err)
			}
			c := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
			if c.Compile(map[string]*ast.Module{"p.rego": m}); c.Failed() {
				t.Fatal(c.Errors)
			}
			if _, ok := memoPaths(c.Modules); ok != tc.ok {
				t.Errorf("memoizable = %v, want %v", ok, tc.ok)
			}
		})
	}
}

// The memo answers exactly what evaluation answers, for inputs that vary
// in every field the base reads and in fields it does not.
func TestMemoMatchesEvaluation(t *testing.T) {
	ctx := context.Background()
	p, err := CompileBase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...any) any { return xs[rng.IntN(len(xs))] }
	for i := range 3000 {
		doc := map[string]any{
			"action": map[string]any{
				"type":   pick("payment.send", "funds.transfer", "report.generate", "counterparty.bank_details.update", "access.grant", "data.export_all", 7),
				"amount": map[string]any{"value": fmt.Sprint(rng.IntN(5000)), "currency": "EUR"},
			},
			"agent": map[string]any{
				"status":    pick("active", "suspended", nil),
				"risk_tier": pick("low", "medium", "high", "critical", "root"),
				"stats":     map[string]any{"denials_1h": pick(0, 4, 5, 6, "x")},
			},
			"time": fmt.Sprint(i),
		}
		switch rng.IntN(4) {
		case 0: // no counterparty
		case 1:
			doc["counterparty"] = map[string]any{"id": "", "status": "verified"}
		default:
			doc["counterparty"] = map[string]any{"id": pick("cp_1", "cp_2"), "status": pick("new", "verified", "blocked")}
		}
		in, err := inputOf(doc)
		if err != nil {
			t.Fatal(err)
		}
		want, err := p.evaluate(ctx, in) // no memo
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.Evaluate(ctx, in) // memo, filled or not
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("input %v: memoized %+v, evaluated %+v", doc, got, want)
		}
		got.Escalate = append(got.Escalate, "mutated by the caller")
		if again, _ := p.Evaluate(ctx, in); fmt.Sprint(again) != fmt.Sprint(want) {
			t.Fatalf("a caller changed the memo: %+v", again)
		}
	}
	if p.memo.size == 0 || p.memo.size > maxMemoEntries {
		t.Errorf("memo holds %d entries", p.memo.size)
	}
}
