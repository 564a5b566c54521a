// Package policies owns the Rego that ships inside the binary: the base
// policy (policies/base, package agentsigna.base) that every decision is
// evaluated against and no organization can replace (DESIGN §3), and the
// example organization policy repository (policies/examples/acme) that
// `serve --demo` seeds and security teams copy.
//
// It only hands out file contents and their digest. It must never compile or
// evaluate anything (package bundles does, with the capabilities it chooses),
// and the base files it returns must never be mixed into an organization's
// bundle: the base is evaluated in a compiler of its own.
package policies

import (
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// BaseQuery is the query whose value is the base verdict: an object with
// deny (set of reasons), escalate (set of reasons) and min_approvals (number).
const BaseQuery = "data.agentsigna.base.decision"

// baseFS and examplesFS are the embedded trees. go:embed needs package-level
// variables; they are read-only and never handed out directly.
//
//go:embed base/*.rego
var baseFS embed.FS

// "all:" keeps the .manifest, which go:embed would otherwise skip as a dot file.
//
//go:embed all:examples/acme
var examplesFS embed.FS

// File is one policy file: a slash-separated path relative to the policy
// root and its content.
type File struct {
	Path    string
	Content []byte
}

// Base returns the base policy modules, sorted by path, without their tests.
// These, and only these, are what the server evaluates.
func Base() []File {
	return baseFiles(func(name string) bool { return !isTest(name) })
}

// BaseTests returns the base policy's _test.rego files, sorted by path.
func BaseTests() []File {
	return baseFiles(isTest)
}

// BaseRevision identifies the base policy's Rego: the Digest of Base().
// Tests are left out because they do not change any decision. The
// revision receipts carry (policy.base_revision) covers the base's rule
// in Go too (decision.Evaluator.BaseRevision).
func BaseRevision() string {
	return Digest(Base())
}

// ExampleACME returns the example organization policy repository as a
// file system rooted at the repository (.manifest, tenant/…, README.md).
func ExampleACME() fs.FS {
	sub, err := fs.Sub(examplesFS, "examples/acme")
	if err != nil {
		// fs.Sub only fails on an invalid path, and this one is a constant.
		panic("policies: " + err.Error())
	}
	return sub
}

// Digest returns the hex SHA-256 of files: a domain-separation line, then for
// each file in path order the length-prefixed path and the length-prefixed
// content (8-byte big-endian lengths). Length prefixes make the encoding
// injective: no two different file sets share the byte string that is
// hashed, whatever bytes their paths and contents hold. Input order does not
// matter.
func Digest(files []File) string {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	h := sha256.New()
	h.Write([]byte("agentsigna policy files v1\n"))
	var n [8]byte
	for _, f := range sorted {
		binary.BigEndian.PutUint64(n[:], uint64(len(f.Path)))
		h.Write(n[:])
		h.Write([]byte(f.Path))
		binary.BigEndian.PutUint64(n[:], uint64(len(f.Content)))
		h.Write(n[:])
		h.Write(f.Content)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func isTest(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// baseFiles reads the embedded base files that keep says to keep.
func baseFiles(keep func(name string) bool) []File {
	entries, err := baseFS.ReadDir("base")
	if err != nil {
		// The directory is embedded at build time; it cannot be missing.
		panic("policies: " + err.Error())
	}
	var out []File
	for _, e := range entries { // ReadDir sorts by name
		if e.IsDir() || !keep(e.Name()) {
			continue
		}
		p := path.Join("base", e.Name())
		content, err := baseFS.ReadFile(p)
		if err != nil {
			panic("policies: " + err.Error())
		}
		out = append(out, File{Path: p, Content: content})
	}
	return out
}
