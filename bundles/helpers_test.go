package bundles

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// entry is one tar entry of a hand-built archive: a header (Name,
// Typeflag, Linkname…) and, for files, its content.
type entry struct {
	hdr     tar.Header
	content string
}

func file(name, content string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}, content: content}
}

// tarGz builds a tar.gz of entries exactly as given (no cleaning: the tests
// feed hostile names).
func tarGz(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeXGlobalHeader {
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.content))
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(0, 0)
		}
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("header %q: %v", h.Name, err)
		}
		if e.content != "" {
			if _, err := io.WriteString(tw, e.content); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// untar returns the entries of a tar.gz (for tampering with real bundles).
func untar(t testing.TB, raw []byte) []entry {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out []entry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{hdr: *h, content: string(b)})
	}
}

const okManifest = `{"revision":"r1","roots":["tenant"]}`

const allowAll = "package tenant\n\ndecision := {\"allow\": true}\n"

// okFiles is the smallest acceptable bundle, plus extra entries.
func okBundle(t testing.TB, extra ...entry) []byte {
	t.Helper()
	return tarGz(t, append([]entry{file("/.manifest", okManifest), file("/tenant/policy.rego", allowAll)}, extra...)...)
}

// mustRead reads raw with opts and fails the test on error.
func mustRead(t testing.TB, raw []byte, opts ReadOptions) *Bundle {
	t.Helper()
	b, err := Read(raw, opts)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return b
}

func mustCompile(t testing.TB, b *Bundle) *Policy {
	t.Helper()
	p, err := Compile(context.Background(), b)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

// policyFrom builds, reads and compiles a bundle of the given Rego modules
// (path → source) and files, under okManifest unless one is given.
func policyFrom(t testing.TB, files map[string]string) (*Policy, error) {
	t.Helper()
	entries := []entry{}
	if _, ok := files[".manifest"]; !ok {
		entries = append(entries, file("/.manifest", okManifest))
	}
	for name, content := range files {
		entries = append(entries, file("/"+strings.TrimPrefix(name, "/"), content))
	}
	b, err := Read(tarGz(t, entries...), ReadOptions{})
	if err != nil {
		return nil, err
	}
	return Compile(context.Background(), b)
}

// payment is a policy input for evaluation tests.
func payment(t testing.TB) Input {
	t.Helper()
	in, err := inputOf(map[string]any{
		"action": map[string]any{
			"type":   "payment.send",
			"amount": map[string]any{"value": "120.00", "currency": "EUR"},
		},
		"agent":        map[string]any{"id": "agt_1", "risk_tier": "low", "status": "active", "stats": map[string]any{"denials_1h": 0}},
		"counterparty": map[string]any{"id": "cp_1", "status": "verified"},
		"tenant":       map[string]any{"id": "t_1", "slug": "acme"},
		"time":         "2025-03-01T10:00:00Z",
	})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// inputOf converts a policy input given as Go values.
func inputOf(doc map[string]any) (Input, error) {
	v, err := ast.InterfaceToValue(doc)
	return NewInput(v), err
}
