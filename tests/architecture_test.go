// Package tests holds the tests that look at the project from outside any one
// package: architecture rules over the source tree here, and end-to-end tests
// (real binary, real ports) beside them.
package tests

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Architecture rules (STYLE.md "Architecture tests", DESIGN §6):
//
//  1. Only internal/store/ talks to a database: no other Go file imports a
//     database driver, pool or database/sql. Everything else goes through the
//     store interfaces and InTenantTx, which is what makes tenant isolation
//     checkable in one place.
//  2. Only cmd/agentsigna ends the process: libraries return errors, main
//     decides the exit status and prints the one line (DESIGN §5).
//
// Both rules cover every .go file of the module, test files included, and
// skip only vendor/, testdata/ and directories the go tool ignores (.git,
// .anything, _anything).

// storeDir is the only directory (with its subdirectories) that may import a
// database package.
const storeDir = "internal/store"

// exitDir is the only package that may end the process.
const exitDir = "cmd/agentsigna"

// isDatabaseImport reports whether an import path reaches a database directly.
func isDatabaseImport(p string) bool {
	under := func(root string) bool { return p == root || strings.HasPrefix(p, root+"/") }
	switch {
	case under("database/sql"): // and database/sql/driver
		return true
	case strings.HasPrefix(p, "github.com/jackc/pgx"): // pgx, pgx/v4, pgx/v5/pgxpool, pgx-* adapters
		return true
	case under("github.com/jackc/pgconn"), under("github.com/jackc/pgtype"), under("github.com/jackc/pgproto3"):
		return true // the pgx v4 pieces, published as their own modules
	case under("modernc.org/sqlite"), under("github.com/lib/pq"), under("github.com/mattn/go-sqlite3"):
		return true
	}
	return false
}

// violation is one broken rule: where (a slash-separated path relative to the
// root walked, and a line) and what the code there does.
type violation struct {
	at, what string
}

func (v violation) String() string { return v.at + ": " + v.what }

// goFile is a Go source file found by walkGoFiles.
type goFile struct {
	rel  string // slash-separated, relative to the root
	path string // on disk
}

// walkGoFiles lists every .go file under root that the rules cover.
func walkGoFiles(root string) ([]goFile, error) {
	var files []goFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (name == "vendor" || name == "testdata" || name == "node_modules" ||
				strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(name, ".go") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		files = append(files, goFile{rel: filepath.ToSlash(rel), path: p})
		return nil
	})
	return files, err
}

// inDir reports whether the slash path rel lies in dir or below it.
func inDir(rel, dir string) bool { return strings.HasPrefix(rel, dir+"/") }

// checkDatabaseImports applies rule 1 to the tree at root.
func checkDatabaseImports(root string) ([]violation, error) {
	files, err := walkGoFiles(root)
	if err != nil {
		return nil, err
	}
	var out []violation
	fset := token.NewFileSet()
	for _, f := range files {
		if inDir(f.rel, storeDir) {
			continue
		}
		af, err := parser.ParseFile(fset, f.path, nil, parser.ImportsOnly|parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, imp := range af.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.rel, err)
			}
			if isDatabaseImport(p) {
				line := fset.Position(imp.Pos()).Line
				out = append(out, violation{fmt.Sprintf("%s:%d", f.rel, line), "imports " + p})
			}
		}
	}
	return out, nil
}

// exitFuncs are the calls that end the process, by import path.
var exitFuncs = map[string][]string{
	"os":                    {"Exit"},
	"syscall":               {"Exit"},
	"golang.org/x/sys/unix": {"Exit"},
	"log":                   {"Fatal", "Fatalf", "Fatalln"}, // os.Exit(1) after printing
}

// checkProcessExits applies rule 2 to the tree at root: it reports every
// reference to an exit function (a call, or a function value such as
// `exit := os.Exit`), whatever name the package is imported under, dot
// imports included.
func checkProcessExits(root string) ([]violation, error) {
	files, err := walkGoFiles(root)
	if err != nil {
		return nil, err
	}
	var out []violation
	fset := token.NewFileSet()
	for _, f := range files {
		if path.Dir(f.rel) == exitDir {
			continue
		}
		af, err := parser.ParseFile(fset, f.path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		// Local name of each imported package that has exit functions.
		named := map[string]string{} // local name → import path
		var dotted []string          // import paths imported with "."
		for _, imp := range af.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.rel, err)
			}
			if _, ok := exitFuncs[p]; !ok {
				continue
			}
			switch {
			case imp.Name == nil:
				named[path.Base(p)] = p
			case imp.Name.Name == ".":
				dotted = append(dotted, p)
			case imp.Name.Name != "_":
				named[imp.Name.Name] = p
			}
		}
		if len(named) == 0 && len(dotted) == 0 {
			continue
		}
		report := func(n ast.Node, p, fn string) {
			pos := fset.Position(n.Pos())
			out = append(out, violation{fmt.Sprintf("%s:%d", f.rel, pos.Line), p + "." + fn})
		}
		var visit func(n ast.Node) bool
		visit = func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok {
					if p, ok := named[id.Name]; ok && slices.Contains(exitFuncs[p], x.Sel.Name) {
						report(x, p, x.Sel.Name)
					}
				}
				// Walk X but not Sel: the Fatal of t.Fatal is no dot-imported log.Fatal.
				ast.Inspect(x.X, visit)
				return false
			case *ast.Ident:
				for _, p := range dotted {
					if slices.Contains(exitFuncs[p], x.Name) {
						report(x, p, x.Name)
					}
				}
			}
			return true
		}
		ast.Inspect(af, visit)
	}
	return out, nil
}

// moduleRoot walks up from the working directory (this package's directory
// under go test) to the directory holding go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// writeTree creates files (slash paths → content) under a new temporary directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func violationStrings(vs []violation) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.String()
	}
	slices.Sort(out)
	return out
}

// assertViolations checks that got lists exactly want.
func assertViolations(t *testing.T, got []violation, want []string) {
	t.Helper()
	slices.Sort(want)
	if g := violationStrings(got); !slices.Equal(g, want) {
		t.Errorf("violations:\n  got  %q\n  want %q", g, want)
	}
}

func TestModuleSourcesAreWalked(t *testing.T) {
	files, err := walkGoFiles(moduleRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	// Guards against a walk that silently covers nothing (wrong root).
	if !slices.ContainsFunc(files, func(f goFile) bool { return f.rel == "tests/architecture_test.go" }) {
		t.Fatalf("the walk of the module did not find tests/architecture_test.go (found %d files)", len(files))
	}
}

func TestOnlyInternalStoreImportsDatabasePackages(t *testing.T) {
	vs, err := checkDatabaseImports(moduleRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) > 0 {
		t.Errorf("database packages imported outside %s/ (go through the store interfaces and InTenantTx):\n\t%s",
			storeDir, strings.Join(violationStrings(vs), "\n\t"))
	}
}

func TestOnlyCmdAgentsignaExits(t *testing.T) {
	vs, err := checkProcessExits(moduleRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) > 0 {
		t.Errorf("process exits outside %s (return an error instead; since Go 1.15 a TestMain need not call os.Exit, it just returns):\n\t%s",
			exitDir, strings.Join(violationStrings(vs), "\n\t"))
	}
}

// The checkers must be able to fail, or the tests above prove nothing.
func TestDatabaseImportCheckerReportsViolations(t *testing.T) {
	root := writeTree(t, map[string]string{
		"go.mod": "module example.com/m\n",
		"server/handlers.go": `package server
import (
	"context"
	"database/sql"
	pg "github.com/jackc/pgx/v5/pgxpool"
)
var _ = context.Background
var _ *sql.DB
var _ *pg.Pool
`,
		"server/handlers_test.go":  "package server\nimport _ \"github.com/lib/pq\"\n",
		"ledger/driver.go":         "package ledger\nimport \"database/sql/driver\"\nvar _ driver.Value\n",
		"internal/storefront/x.go": "package storefront\nimport _ \"modernc.org/sqlite\"\n",
		"internal/old/v4.go":       "package old\nimport (\n\t\"github.com/jackc/pgx/v4\"\n\t\"github.com/jackc/pgconn\"\n)\n",
		"cmd/agentsigna/main.go":   "package main\nimport _ \"github.com/jackc/pgx\"\nfunc main() {}\n",
		// Allowed: the store itself, and what the go tool does not build.
		"internal/store/sqlite/sqlite.go":    "package sqlite\nimport (\n\t\"database/sql\"\n\t_ \"modernc.org/sqlite\"\n)\nvar _ *sql.DB\n",
		"internal/store/postgres/pg.go":      "package postgres\nimport \"github.com/jackc/pgx/v5/pgxpool\"\nvar _ *pgxpool.Pool\n",
		"internal/store/postgres/pg_test.go": "package postgres\nimport _ \"github.com/lib/pq\"\n",
		"vendor/github.com/x/y/y.go":         "package y\nimport \"database/sql\"\nvar _ *sql.DB\n",
		"server/testdata/fixture.go":         "package fixture\nimport \"database/sql\"\nvar _ *sql.DB\n",
		".git/hooks/x.go":                    "package hooks\nimport \"database/sql\"\n",
		"internal/decision/sqlish.go":        "package decision\nimport _ \"github.com/jmoiron/sqlx\"\nimport _ \"database/sqlfake\"\n",
	})
	vs, err := checkDatabaseImports(root)
	if err != nil {
		t.Fatal(err)
	}
	assertViolations(t, vs, []string{
		"server/handlers.go:4: imports database/sql",
		"server/handlers.go:5: imports github.com/jackc/pgx/v5/pgxpool",
		"server/handlers_test.go:2: imports github.com/lib/pq",
		"ledger/driver.go:2: imports database/sql/driver",
		"internal/storefront/x.go:2: imports modernc.org/sqlite",
		"internal/old/v4.go:3: imports github.com/jackc/pgx/v4",
		"internal/old/v4.go:4: imports github.com/jackc/pgconn",
		"cmd/agentsigna/main.go:2: imports github.com/jackc/pgx",
	})
}

func TestExitCheckerReportsViolations(t *testing.T) {
	root := writeTree(t, map[string]string{
		"server/serve.go": `package server
import "os"
func Fail() { os.Exit(1) }
`,
		"internal/x/renamed.go": `package x
import (
	stdos "os"
	"log"
)
func A() { stdos.Exit(2) }
func B() { log.Fatalf("no %d", 1) }
var exit = stdos.Exit
`,
		"internal/x/dot.go": `package x
import . "os"
func C() { Exit(3) }
`,
		"internal/x/x_test.go": `package x
import (
	"os"
	"testing"
)
func TestMain(m *testing.M) { os.Exit(m.Run()) }
func TestT(t *testing.T) { t.Fatal("t.Fatal is fine") }
`,
		"cmd/tool/main.go": "package main\nimport \"syscall\"\nfunc main() { syscall.Exit(0) }\n",
		// Allowed.
		"cmd/agentsigna/main.go": "package main\nimport (\n\t\"log\"\n\t\"os\"\n)\nfunc main() { log.Print(); os.Exit(run()) }\nfunc run() int { return 0 }\n",
		"internal/y/fake.go": `package y
type fakeOS struct{}
func (fakeOS) Exit(int) {}
var os fakeOS
func D() { os.Exit(1) } // not the os package: not imported here
`,
		"internal/y/other.go":      "package y\nimport \"os\"\nfunc E() string { return os.Args[0] }\n",
		"vendor/z/z.go":            "package z\nimport \"os\"\nfunc F() { os.Exit(1) }\n",
		"internal/y/testdata/t.go": "package t\nimport \"os\"\nfunc G() { os.Exit(1) }\n",
	})
	vs, err := checkProcessExits(root)
	if err != nil {
		t.Fatal(err)
	}
	assertViolations(t, vs, []string{
		"server/serve.go:3: os.Exit",
		"internal/x/renamed.go:6: os.Exit",
		"internal/x/renamed.go:7: log.Fatalf",
		"internal/x/renamed.go:8: os.Exit",
		"internal/x/dot.go:3: os.Exit",
		"internal/x/x_test.go:6: os.Exit",
		"cmd/tool/main.go:3: syscall.Exit",
	})
}
