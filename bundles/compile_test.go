package bundles

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestCompileAndEvaluate(t *testing.T) {
	p, err := policyFrom(t, map[string]string{
		"tenant/policy.rego": `package tenant

decision := {"allow": allow, "escalate": escalate, "min_approvals": 2}

default allow := false

allow if to_number(input.action.amount.value) <= data.tenant.limits.eur

escalate contains "big" if to_number(input.action.amount.value) > data.tenant.limits.eur
`,
		"tenant/data.json": `{"limits": {"eur": 1000}}`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Revision() != "r1" || len(p.Digest()) != 64 || len(p.DigestBase64()) != 44 {
		t.Errorf("revision %q digest %q %q", p.Revision(), p.Digest(), p.DigestBase64())
	}
	v, err := p.Evaluate(context.Background(), payment(t))
	if err != nil {
		t.Fatal(err)
	}
	want := Verdict{Allow: true, Deny: nil, Escalate: []string{}, MinApprovals: 2}
	if fmt.Sprint(v) != fmt.Sprint(want) {
		t.Errorf("verdict = %+v, want %+v", v, want)
	}
}

func TestCompileBase(t *testing.T) {
	p, err := CompileBase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Evaluate(context.Background(), payment(t))
	if err != nil {
		t.Fatal(err)
	}
	if v.Allow || len(v.Deny) != 0 || len(v.Escalate) != 0 || v.MinApprovals != 1 {
		t.Errorf("base verdict on an ordinary payment = %+v", v)
	}
}

func TestCompileRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string
		want    error
		message string
	}{
		{"http.send", map[string]string{"tenant/p.rego": "package tenant\n\nx := http.send({\"method\": \"GET\", \"url\": \"http://169.254.169.254/\"})\n\ndecision := {\"allow\": x.status_code == 200}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:3: http.send makes HTTP requests"},
		{"http.send with output argument", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": true} if {\n\thttp.send({\"method\": \"GET\", \"url\": \"http://x/\"}, resp)\n\tresp.status_code == 200\n}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:4: http.send"},
		{"opa.runtime in a second file", map[string]string{
			"tenant/a.rego": allowAll,
			"tenant/b.rego": "package tenant.b\n\nenv := opa.runtime().env\n",
		}, ErrForbiddenBuiltin, "tenant/b.rego:3: opa.runtime reveals"},
		{"strings.render_template", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": count(strings.render_template(\"{{range 300000000}}{{end}}\", {})) > 0}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:3: strings.render_template runs a template"},
		{"rego.parse_module", map[string]string{"tenant/p.rego": "package tenant\n\nm := rego.parse_module(\"p.rego\", concat(\"\", [\"package p\\n\", input.reason]))\n\ndecision := {\"allow\": m != null}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:3: rego.parse_module parses"},
		{"bits.lsh", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": bits.lsh(1, 40000000) > 0}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:3: bits.lsh shifts"},
		{"net.lookup_ip_addr nested", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": count(net.lookup_ip_addr(\"example.com\")) > 0}\n"},
			ErrForbiddenBuiltin, "net.lookup_ip_addr"},
		{"json.match_schema", map[string]string{"tenant/p.rego": "package tenant\n\nok := json.match_schema(input, {\"$ref\": \"file:///etc/passwd\"})\n"},
			ErrForbiddenBuiltin, "json.match_schema"},
		{"rand.intn", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": rand.intn(\"x\", 2) == 1}\n"},
			ErrForbiddenBuiltin, "rand.intn"},
		{"graph.reachable_paths", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": count(graph.reachable_paths({\"a\": [\"b\"], \"b\": []}, {\"a\"})) > 0}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:3: graph.reachable_paths lists every path"},
		{"json.marshal_with_options", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": count(json.marshal_with_options([1, 2], {\"pretty\": true, \"indent\": input.reason})) > 0}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:3: json.marshal_with_options repeats"},
		{"graphql.is_valid", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": graphql.is_valid(input.reason, \"type Query { a: String }\")}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:3: graphql.is_valid validates a query in time quadratic"},
		{"graphql.schema_is_valid", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": graphql.schema_is_valid(input.schema)}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:3: graphql.schema_is_valid converts"},
		{"graph.reachable", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": count(graph.reachable({\"a\": [\"b\"]}, [\"a\"])) > 0}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:3: graph.reachable walks"},
		{"object.subset", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": object.subset({\"a\": 1}, {\"a\": 1})}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:3: object.subset compares"},
		{"regex.globs_match", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": regex.globs_match(\"a.*\", \"ab*\")}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:3: regex.globs_match intersects"},
		// Deprecated builtins cannot be called in v1, nor stand in for
		// another (re_match would run regex.match unbounded).
		{"with … as a deprecated builtin", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": m} if {\n\tm := regex.match(\"a\", \"a\") with regex.match as re_match\n}\n"},
			ErrCompile, "re_match"},
		// sprintf stays, with a format that bounds what one call prints.
		{"sprintf with a format from a variable", map[string]string{"tenant/p.rego": "package tenant\n\nf := concat(\"\", [\"%\", \"*d\"])\n\ndecision := {\"allow\": count(sprintf(f, [1000000, 1])) > 0}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:5: sprintf takes its format as a string literal only"},
		{"sprintf with a width from the arguments", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": count(sprintf(\"%*d\", [1000000, 1])) > 0}\n"},
			ErrForbiddenBuiltin, "takes a width or precision from its arguments"},
		{"sprintf with a precision from the arguments", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": count(sprintf(\"%.*f\", [1000000, 1])) > 0}\n"},
			ErrForbiddenBuiltin, "takes a width or precision from its arguments"},
		{"sprintf with a width of 4097", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": count(sprintf(\"%s%4097d\", [\"x\", 1])) > 0}\n"},
			ErrForbiddenBuiltin, "more than 4096 in all"},
		{"sprintf with a precision of a million", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": count(sprintf(\"%.1000000f\", [1])) > 0}\n"},
			ErrForbiddenBuiltin, "more than 4096 in all"},
		{"sprintf with a width of twenty digits", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": count(sprintf(\"%99999999999999999999d\", [1])) > 0}\n"},
			ErrForbiddenBuiltin, "more than 4096 in all"},
		{"sprintf with widths of more than 4096 in all", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": count(sprintf(\"" + strings.Repeat("%999[1]d", 5) + "\", [1])) > 0}\n"},
			ErrForbiddenBuiltin, "more than 4096 in all"},
		{"sprintf standing in for another function", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": count(x) > 0} if {\n\tx := concat(\"%s\", [\"a\"]) with concat as sprintf\n}\n"},
			ErrForbiddenBuiltin, "tenant/p.rego:4: sprintf may not stand in"},
		{"undefined function", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": no_such.fn(1)}\n"},
			ErrCompile, "no_such.fn"},
		{"unsafe variable", map[string]string{"tenant/p.rego": "package tenant\n\ndecision := {\"allow\": x}\n"},
			ErrCompile, "tenant/p.rego:3"},
		{"no decision", map[string]string{"tenant/p.rego": "package tenant\n\nallow := true\n"},
			ErrNoDecision, "data.tenant.decision"},
		{"decision in another package", map[string]string{"tenant/p.rego": "package tenant.acme\n\ndecision := {\"allow\": true}\n"},
			ErrNoDecision, ""},
		{"data where a rule is", map[string]string{"tenant/p.rego": allowAll + "\nlimits := 5\n", "tenant/data.json": `{"limits": 10}`},
			ErrForbiddenData, "/tenant/limits"},
		{"data under a rule", map[string]string{"tenant/p.rego": allowAll + "\nlimits := {\"eur\": 5}\n", "tenant/data.json": `{"limits": {"usd": 10}}`},
			ErrForbiddenData, "/tenant/limits"},
		{"scalar data above a rule", map[string]string{"tenant/p.rego": allowAll + "\nlimits.eur := 5\n", "tenant/data.json": `{"limits": 10}`},
			ErrForbiddenData, "/tenant/limits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policyFrom(t, tc.files)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidBundle) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("err = %q, want it to mention %q", err, tc.message)
			}
		})
	}
}

func TestCompileKeepsPureHelpers(t *testing.T) {
	_, err := policyFrom(t, map[string]string{"tenant/p.rego": `package tenant

decision := {"allow": allow}

allow if {
	net.cidr_contains("10.0.0.0/8", "10.1.2.3")
	time.now_ns() > 0
	regex.match("^INV-[0-9]+$", "INV-1")
	print("print compiles to nothing")
	trace("so does trace, without a tracer")
	units.parse_bytes("1KiB") == 1024
	sprintf("%s: %05.2f %d%% %[1]q %-999v %999[1]s %999[1]s %1000[1]s", ["a", 1.5, 7, "b"]) != ""
}
`})
	if err != nil {
		t.Fatal(err)
	}
}

// Capabilities must leave out every forbidden builtin and every deprecated
// one, keep the rest of OPA's, and forbid all hosts.
func TestCapabilities(t *testing.T) {
	caps := Capabilities()
	if caps.AllowNet == nil || len(caps.AllowNet) != 0 {
		t.Errorf("AllowNet = %#v, want empty and non-nil", caps.AllowNet)
	}
	all := ast.CapabilitiesForThisVersion()
	deprecated := 0
	for _, b := range all.Builtins {
		if b.Deprecated {
			deprecated++
			if caps.ContainsBuiltin(b.Name) {
				t.Errorf("deprecated %s is still available", b.Name)
			}
		}
	}
	if deprecated == 0 {
		t.Error("OPA declares no deprecated builtin: is the check still needed?")
	}
	if got, want := len(caps.Builtins), len(all.Builtins)-len(ForbiddenBuiltins())-deprecated; got != want {
		t.Errorf("%d builtins, want %d", got, want)
	}
	for _, f := range ForbiddenBuiltins() {
		if caps.ContainsBuiltin(f.Name) {
			t.Errorf("%s is still available", f.Name)
		}
		if !all.ContainsBuiltin(f.Name) {
			t.Errorf("%s is not an OPA builtin (renamed?)", f.Name)
		}
	}
	// A new value every time: nobody can widen everyone's capabilities.
	caps.Builtins = nil
	if len(Capabilities().Builtins) == 0 {
		t.Error("Capabilities returns shared state")
	}
}

// TestEveryBuiltinReviewed fails when the OPA version in use has a builtin
// that was not reviewed (testdata/reviewed-builtins.txt lists those of OPA
// v1.22.3, all reviewed for the capabilities above): review the new one
// (does it reach outside the process? is it random?), forbid it in
// capabilities.go or not, then add it to the list.
func TestEveryBuiltinReviewed(t *testing.T) {
	f, err := os.Open("testdata/reviewed-builtins.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	reviewed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			reviewed[line] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var unreviewed []string
	for _, b := range ast.CapabilitiesForThisVersion().Builtins {
		if !reviewed[b.Name] {
			unreviewed = append(unreviewed, b.Name)
		}
	}
	slices.Sort(unreviewed)
	unreviewed = slices.Compact(unreviewed)
	if len(unreviewed) > 0 {
		t.Errorf("builtins not reviewed for organization policies: %s", strings.Join(unreviewed, ", "))
	}
}

// Schema annotations are not loaded: a $ref in one must not reach a host at
// compile time (nor a file, which allow_net would not stop).
func TestCompileDoesNotFetchAnnotationSchemas(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"type":"object"}`))
	}))
	defer srv.Close()
	_, err := policyFrom(t, map[string]string{"tenant/p.rego": `package tenant

# METADATA
# schemas:
#   - input: {"$ref": "` + srv.URL + `/schema.json"}
decision := {"allow": input.x == 1}
`})
	if err != nil {
		t.Fatal(err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("compiling fetched the schema %d times", n)
	}
}

func TestEvaluateErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		rule string
		want error
	}{
		{"undefined", `decision := {"allow": true} if input.nothing`, ErrUndefined},
		{"not an object", `decision := true`, ErrEval},
		{"allow not a boolean", `decision := {"allow": "yes"}`, ErrEval},
		{"misspelt field", `decision := {"allow": true, "escalte": {"x"}}`, ErrEval},
		{"reasons not strings", `decision := {"deny": {1}}`, ErrEval},
		{"reasons not a set", `decision := {"deny": "x"}`, ErrEval},
		{"empty reason", `decision := {"deny": {""}}`, ErrEval},
		{"reason with a newline", `decision := {"deny": {"a\nb"}}`, ErrEval},
		{"too many reasons", `decision := {"escalate": {sprintf("r%d", [i]) | some i in numbers.range(1, 40)}}`, ErrEval},
		{"min_approvals not a number", `decision := {"min_approvals": "2"}`, ErrEval},
		{"min_approvals fractional", `decision := {"min_approvals": 1.5}`, ErrEval},
		{"min_approvals negative", `decision := {"min_approvals": -1}`, ErrEval},
		{"min_approvals too high", `decision := {"min_approvals": 11}`, ErrEval},
		{"conflict at run time", "x := 1 if input.action.type\nx := 2 if input.time\ndecision := {\"allow\": x == 1}", ErrEval},
		{"conflicting decisions", "decision := {}\ndecision := {\"allow\": true}", ErrEval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policyFrom(t, map[string]string{"tenant/p.rego": "package tenant\n\n" + tc.rule + "\n"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Evaluate(ctx, payment(t)); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEvaluateVerdictNormalized(t *testing.T) {
	p, err := policyFrom(t, map[string]string{"tenant/p.rego": `package tenant

decision := {"deny": ["b", "a", "b"], "escalate": {"z", "y"}, "min_approvals": 0}
`})
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Evaluate(context.Background(), payment(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(v.Deny, v.Escalate, v.MinApprovals); got != "[a b] [y z] 0" {
		t.Errorf("verdict = %s", got)
	}
}

// Rego has no unbounded loop, but nested ranges run far past any timeout;
// the deadline must stop them.
func TestEvaluateTimeout(t *testing.T) {
	p, err := policyFrom(t, map[string]string{"tenant/p.rego": `package tenant

decision := {"allow": true} if {
	some a in numbers.range(1, 100000)
	some b in numbers.range(1, 100000)
	some c in numbers.range(1, 100000)
	a + b + c < 0
}
`})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = p.Evaluate(ctx, payment(t))
	if !errors.Is(err, ErrEvalTimeout) {
		t.Fatalf("err = %v, want ErrEvalTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("evaluation stopped after %v", d)
	}
}
