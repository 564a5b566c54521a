package policies

import (
	"context"
	"io/fs"
	"path"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/util"
)

// runRegoTests runs the test_ rules of modules over data with OPA's tester,
// as `opa test` does, and fails t for each failing or erroring test. It
// returns the number of tests run. Builtin errors make an expression
// undefined rather than fail the test, as in opa test and in production.
func runRegoTests(t *testing.T, files []File, data map[string]any) int {
	n, _ := runRegoTestsWithCoverage(t, files, data)
	return n
}

// runRegoTestsWithCoverage also returns the coverage report.
func runRegoTestsWithCoverage(t *testing.T, files []File, data map[string]any) (int, cover.Report) {
	t.Helper()
	modules := map[string]*ast.Module{}
	for _, f := range files {
		m, err := ast.ParseModuleWithOpts(f.Path, string(f.Content), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			t.Fatal(err)
		}
		modules[f.Path] = m
	}
	store := inmem.NewFromObject(data)
	cov := cover.New()
	ch, err := tester.NewRunner().SetStore(store).SetDefaultRegoVersion(ast.RegoV1).SetCoverageQueryTracer(cov).Run(context.Background(), modules)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r := range ch {
		n++
		switch {
		case r.Error != nil:
			t.Errorf("%s.%s: error: %v", r.Package, r.Name, r.Error)
		case r.Fail:
			t.Errorf("%s.%s: FAIL", r.Package, r.Name)
		case r.Skip:
			t.Errorf("%s.%s: skipped (todo_)", r.Package, r.Name)
		}
	}
	return n, cov.Report(modules)
}

// TestBaseRego runs policies/base/*_test.rego (`opa test policies/base`),
// and requires every line of the base policy to be exercised by them.
func TestBaseRego(t *testing.T) {
	n, report := runRegoTestsWithCoverage(t, append(Base(), BaseTests()...), map[string]any{})
	if n < 30 {
		t.Errorf("only %d base tests ran", n)
	}
	for _, f := range Base() {
		fr := report.Files[f.Path]
		if fr == nil {
			t.Errorf("%s: no coverage at all", f.Path)
			continue
		}
		for _, r := range fr.NotCovered {
			t.Errorf("%s:%d: no test reaches this line", f.Path, r.Start.Row)
		}
	}
}

// TestExampleACMERego runs the example repository's tests with its data,
// as `opa test .` does in the repository.
func TestExampleACMERego(t *testing.T) {
	fsys := ExampleACME()
	var files []File
	data := map[string]any{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		content, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasSuffix(p, ".rego"):
			files = append(files, File{Path: p, Content: content})
		case path.Base(p) == "data.json":
			var v map[string]any
			if err := util.UnmarshalJSON(content, &v); err != nil {
				return err
			}
			// data.json in dir d is data at d, as opa loads it.
			node := data
			for _, seg := range strings.Split(path.Dir(p), "/") {
				next, ok := node[seg].(map[string]any)
				if !ok {
					next = map[string]any{}
					node[seg] = next
				}
				node = next
			}
			for k, val := range v {
				node[k] = val
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := runRegoTests(t, files, data); n < 10 {
		t.Errorf("only %d example tests ran", n)
	}
}

func TestBaseFiles(t *testing.T) {
	base, tests := Base(), BaseTests()
	if len(base) == 0 || len(tests) == 0 {
		t.Fatalf("%d base files, %d test files", len(base), len(tests))
	}
	for _, f := range base {
		if strings.HasSuffix(f.Path, "_test.rego") || !strings.HasPrefix(f.Path, "base/") {
			t.Errorf("base file %s", f.Path)
		}
		if !strings.Contains(string(f.Content), "package agentsigna.base\n") {
			t.Errorf("%s is not in package agentsigna.base", f.Path)
		}
	}
	// The copy handed out is the caller's.
	base[0].Content[0] = 'X'
	if Base()[0].Content[0] == 'X' {
		t.Error("Base returns shared memory")
	}
	if r := BaseRevision(); len(r) != 64 || r != BaseRevision() || r != Digest(Base()) {
		t.Errorf("revision %q", r)
	}
}

func TestDigest(t *testing.T) {
	f := func(p, c string) File { return File{Path: p, Content: []byte(c)} }
	a := Digest([]File{f("a", "1"), f("b", "2")})
	if a != Digest([]File{f("b", "2"), f("a", "1")}) {
		t.Error("digest depends on order")
	}
	// Moving bytes between a path and a content, or between files, changes it.
	for _, other := range [][]File{
		{f("a", "1"), f("b", "3")},
		{f("a1", ""), f("b", "2")},
		{f("a", "1b"), f("", "2")},
		{f("a", "1"), f("b", "2"), f("c", "")},
		{f("a", "12")},
		nil,
	} {
		if Digest(other) == a {
			t.Errorf("%v collides with the original", other)
		}
	}
	if Digest(nil) == "" || len(Digest(nil)) != 64 {
		t.Error("empty digest")
	}
}
