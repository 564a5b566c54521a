package verify

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// An auditor imports this package: it may depend only on the standard
// library and the public verification libraries, never on server code.
func TestImportsOnlyPublicVerificationCode(t *testing.T) {
	allowed := []string{
		"golang.org/x/mod/sumdb/note",
		"github.com/transparency-dev/merkle",
		"github.com/transparency-dev/formats/log",
		"filippo.io/edwards25519", // refusing small-order keys (key.go)
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
	imports:
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !strings.Contains(strings.SplitN(path, "/", 2)[0], ".") {
				continue // standard library
			}
			for _, a := range allowed {
				if path == a || strings.HasPrefix(path, a+"/") {
					continue imports
				}
			}
			t.Errorf("%s imports %s", name, path)
		}
	}
}
