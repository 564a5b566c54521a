package bundles

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// fuzzLimits keep each fuzz input cheap to read and compile.
func fuzzLimits() Limits {
	return Limits{MaxCompressedBytes: 64 << 10, MaxDecompressedBytes: 256 << 10, MaxEntries: 64, MaxPathLength: 128}
}

// decisionCaseBundles packs the organization bundles of the decision cases
// (internal/decision/testdata/cases), the data-driven corpus of accepted
// and refused policies, as fuzz seeds.
func decisionCaseBundles(t testing.TB) [][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "internal", "decision", "testdata", "cases", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no decision cases: %v", err)
	}
	var out [][]byte
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Tenant *struct {
				Files map[string]json.RawMessage `json:"files"`
			} `json:"tenant"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if c.Tenant == nil {
			continue
		}
		fsys := fstest.MapFS{".manifest": {Data: []byte(`{"revision":"case","roots":["tenant"]}`)}}
		for name, v := range c.Tenant.Files {
			var s string
			var lines []string
			switch {
			case json.Unmarshal(v, &s) == nil:
			case json.Unmarshal(v, &lines) == nil && !strings.HasSuffix(name, ".json") && name != ".manifest":
				s = strings.Join(lines, "\n") + "\n"
			default:
				s = string(v)
			}
			fsys[name] = &fstest.MapFile{Data: []byte(s)}
		}
		b, err := PackFS(fsys, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, b)
	}
	return out
}

func FuzzRead(f *testing.F) {
	for _, raw := range decisionCaseBundles(f) {
		f.Add(raw)
	}
	manifest := file("/.manifest", okManifest)
	for _, raw := range [][]byte{
		okBundle(f),
		okBundle(f, file("tenant/data.json", `{"limits":{"EUR":1000}}`)),
		tarGz(f, manifest, file("../../x.rego", allowAll)),
		tarGz(f, manifest, entry{hdr: tar.Header{Name: "tenant/l", Linkname: "/etc/passwd", Typeflag: tar.TypeSymlink}}),
		tarGz(f, manifest, file("tenant/p.rego", allowAll), file("tenant/p.rego", allowAll)),
		tarGz(f, manifest, file("tenant/p.rego", "package tenant\n\ndecision := http.send({})\n")),
		tarGz(f, file(".manifest", `{"revision":"r","roots":[""]}`), file("p.rego", "package x\n")),
	} {
		f.Add(raw)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := Read(raw, ReadOptions{Limits: fuzzLimits()})
		if err != nil {
			if !errors.Is(err, ErrInvalidBundle) {
				t.Fatalf("Read error does not wrap ErrInvalidBundle: %v", err)
			}
			return
		}
		sum := sha256.Sum256(raw)
		if b.Digest != hex.EncodeToString(sum[:]) || b.Revision == "" || len(b.Roots) == 0 {
			t.Fatalf("accepted bundle: digest %q revision %q roots %q", b.Digest, b.Revision, b.Roots)
		}
		for _, r := range b.Roots {
			if r != TenantRoot && !strings.HasPrefix(r, TenantRoot+"/") {
				t.Fatalf("accepted root %q", r)
			}
		}
		for _, fl := range b.Files {
			if fl.Path == "" || strings.HasPrefix(fl.Path, "/") || strings.Contains(fl.Path, "\\") ||
				strings.Contains("/"+fl.Path+"/", "/../") || strings.Contains("/"+fl.Path+"/", "/./") || strings.Contains(fl.Path, "//") {
				t.Fatalf("accepted path %q", fl.Path)
			}
		}
		p, err := Compile(ctx, b)
		if err != nil {
			if !errors.Is(err, ErrInvalidBundle) {
				t.Fatalf("Compile error does not wrap ErrInvalidBundle: %v", err)
			}
			return
		}
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := p.Evaluate(ctx, payment(t)); err != nil &&
			!errors.Is(err, ErrUndefined) && !errors.Is(err, ErrEval) && !errors.Is(err, ErrEvalTimeout) {
			t.Fatalf("Evaluate error of no known kind: %v", err)
		}
	})
}
