package bundles

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestReadAcceptsMinimalBundle(t *testing.T) {
	raw := okBundle(t, file("/tenant/data.json", `{"limits":{"eur":1000}}`))
	b := mustRead(t, raw, ReadOptions{})
	sum := sha256.Sum256(raw)
	if b.Revision != "r1" || b.Digest != hex.EncodeToString(sum[:]) || b.DigestBase64 != base64.StdEncoding.EncodeToString(sum[:]) ||
		b.Size != int64(len(raw)) || b.SignedBy != "" {
		t.Errorf("bundle = %q %q %q %d %q", b.Revision, b.Digest, b.DigestBase64, b.Size, b.SignedBy)
	}
	if got := strings.Join(b.Roots, ","); got != "tenant" {
		t.Errorf("roots = %q", got)
	}
	var paths []string
	for _, f := range b.Files {
		paths = append(paths, f.Path)
	}
	if got := strings.Join(paths, " "); got != ".manifest tenant/policy.rego tenant/data.json" {
		t.Errorf("files = %q", got)
	}
	if string(b.Manifest) != okManifest {
		t.Errorf("manifest = %s", b.Manifest)
	}
}

func TestReadAcceptsArchiveConventions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
	}{
		{"opa build style leading slash", []entry{file("/.manifest", okManifest), file("/tenant/p.rego", allowAll)}},
		{"no leading slash", []entry{file(".manifest", okManifest), file("tenant/p.rego", allowAll)}},
		{"tar -C dir . style", []entry{
			{hdr: tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}},
			file("./.manifest", okManifest),
			{hdr: tar.Header{Name: "./tenant/", Typeflag: tar.TypeDir, Mode: 0o755}},
			file("./tenant/p.rego", allowAll),
		}},
		{"git archive global header", []entry{
			{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "0123abcd"}}},
			file(".manifest", okManifest), file("tenant/p.rego", allowAll),
		}},
		{"roots with slashes", []entry{file(".manifest", `{"revision":"r1","roots":["/tenant/"]}`), file("tenant/p.rego", allowAll)}},
		{"data at root leading to tenant", []entry{file(".manifest", okManifest), file("tenant/p.rego", allowAll), file("data.json", `{"tenant":{"limits":{"eur":1}}}`)}},
		{"two data files fill one object", []entry{file(".manifest", okManifest), file("tenant/p.rego", allowAll),
			file("data.json", `{"tenant":{"a":1}}`), file("tenant/data.json", `{"b":2}`)}},
		{"manifest with metadata and rego_version 1", []entry{file(".manifest", `{"revision":"r1","roots":["tenant"],"rego_version":1,"metadata":{"team":"sec"}}`), file("tenant/p.rego", allowAll)}},
		{"narrow root", []entry{file(".manifest", `{"revision":"r1","roots":["tenant/acme"]}`), file("tenant/acme/p.rego", "package tenant.acme\nx := 1\n")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Read(tarGz(t, tc.entries...), ReadOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReadRejects(t *testing.T) {
	manifest := file("/.manifest", okManifest)
	policy := file("/tenant/p.rego", allowAll)
	link := func(typ byte, name, target string) entry {
		return entry{hdr: tar.Header{Name: name, Linkname: target, Typeflag: typ, Mode: 0o777}}
	}
	for _, tc := range []struct {
		name    string
		raw     []byte
		want    error
		message string // a substring of the error
	}{
		// Tar-slip / zip-slip.
		{"dot-dot path", tarGz(t, manifest, file("../../etc/cron.d/x.rego", allowAll)), ErrPathTraversal, "../../etc"},
		{"dot-dot inside path", tarGz(t, manifest, file("/tenant/../../x.rego", allowAll)), ErrPathTraversal, ""},
		{"dot-dot after slash", tarGz(t, manifest, file("/../x.rego", allowAll)), ErrPathTraversal, ""},
		{"double-slash absolute", tarGz(t, manifest, file("//etc/passwd", "x")), ErrAbsolutePath, "//etc/passwd"},
		{"windows drive", tarGz(t, manifest, file(`C:\Windows\x.rego`, allowAll)), ErrAbsolutePath, ""},
		{"windows root", tarGz(t, manifest, file(`\x.rego`, allowAll)), ErrAbsolutePath, ""},
		{"backslash", tarGz(t, manifest, file(`tenant\p.rego`, allowAll)), ErrInvalidPath, "backslash"},
		{"empty segment", tarGz(t, manifest, file("tenant//p.rego", allowAll)), ErrInvalidPath, ""},
		{"dot segment", tarGz(t, manifest, file("tenant/./p.rego", allowAll)), ErrInvalidPath, ""},
		{"control character", tarGz(t, manifest, file("tenant/p\x01.rego", allowAll)), ErrInvalidPath, "control"},
		{"dot-dot directory", tarGz(t, manifest, entry{hdr: tar.Header{Name: "../", Typeflag: tar.TypeDir}}), ErrPathTraversal, ""},
		{"path too long", tarGz(t, manifest, file("tenant/"+strings.Repeat("a", 300)+".rego", allowAll)), ErrPathTooLong, ""},
		// Entry types.
		{"symlink", tarGz(t, manifest, policy, link(tar.TypeSymlink, "tenant/data.json", "/etc/passwd")), ErrLinkEntry, "/etc/passwd"},
		{"hard link", tarGz(t, manifest, policy, link(tar.TypeLink, "tenant/q.rego", "tenant/p.rego")), ErrLinkEntry, ""},
		{"character device", tarGz(t, manifest, entry{hdr: tar.Header{Name: "tenant/tty", Typeflag: tar.TypeChar, Devmajor: 5}}), ErrNonRegularEntry, ""},
		{"fifo", tarGz(t, manifest, entry{hdr: tar.Header{Name: "tenant/fifo", Typeflag: tar.TypeFifo}}), ErrNonRegularEntry, ""},
		{"duplicate path", tarGz(t, manifest, policy, file("tenant/p.rego", allowAll)), ErrDuplicatePath, "tenant/p.rego"},
		{"duplicate manifest", tarGz(t, manifest, policy, file(".manifest", `{"revision":"r2","roots":["tenant"]}`)), ErrDuplicatePath, ".manifest"},
		// Archive.
		{"not gzip", []byte("just text"), ErrMalformedArchive, "not gzip"},
		{"gzip but not tar", gzipped(t, []byte(strings.Repeat("x", 2000))), ErrMalformedArchive, ""},
		{"truncated", okBundle(t)[:40], ErrMalformedArchive, ""},
		{"trailing bytes", append(okBundle(t), 0), ErrMalformedArchive, "after the gzip stream"},
		{"second gzip member", append(okBundle(t), okBundle(t)...), ErrMalformedArchive, "after the gzip stream"},
		// Files.
		{"wasm", tarGz(t, manifest, policy, file("policy.wasm", "\x00asm")), ErrUnsupportedFile, "Wasm"},
		{"delta bundle", tarGz(t, manifest, file("patch.json", `{"data":[]}`)), ErrUnsupportedFile, "delta"},
		{"yaml data", tarGz(t, manifest, policy, file("tenant/data.yaml", "a: 1")), ErrUnsupportedFile, "YAML"},
		{"readme", tarGz(t, manifest, policy, file("README.md", "hi")), ErrUnsupportedFile, "README.md"},
		{"nested manifest", tarGz(t, manifest, policy, file("tenant/.manifest", okManifest)), ErrUnsupportedFile, "root"},
		// Manifest.
		{"no manifest", tarGz(t, policy), ErrManifest, "no .manifest"},
		{"manifest not JSON", tarGz(t, file(".manifest", "revision: r1"), policy), ErrManifest, ""},
		{"no revision", tarGz(t, file(".manifest", `{"roots":["tenant"]}`), policy), ErrManifest, "no revision"},
		// Metadata the service would decode whole: a few KiB gzipped.
		{"manifest past its bound", tarGz(t, file(".manifest", `{"revision":"r1","roots":["tenant"],"metadata":{"x":[`+strings.Repeat("0,", MaxManifestBytes/2)+`0]}}`), policy),
			ErrManifest, "limit 65536"},
		{"revision with spaces", tarGz(t, file(".manifest", `{"revision":"r 1","roots":["tenant"]}`), policy), ErrManifest, ""},
		{"unknown manifest field", tarGz(t, file(".manifest", `{"revision":"r1","roots":["tenant"],"entrypoint":"x"}`), policy), ErrManifest, ""},
		{"rego v0", tarGz(t, file(".manifest", `{"revision":"r1","roots":["tenant"],"rego_version":0}`), policy), ErrManifest, "Rego v1"},
		{"wasm resolvers", tarGz(t, file(".manifest", `{"revision":"r1","roots":["tenant"],"wasm":[{"entrypoint":"tenant/decision","module":"/policy.wasm"}]}`), policy), ErrManifest, "Wasm"},
		// Roots.
		{"no roots", tarGz(t, file(".manifest", `{"revision":"r1"}`), policy), ErrForbiddenRoot, "no roots"},
		{"empty root (all of data)", tarGz(t, file(".manifest", `{"revision":"r1","roots":[""]}`), policy), ErrForbiddenRoot, ""},
		{"root of the base policy", tarGz(t, file(".manifest", `{"revision":"r1","roots":["tenant","agentsigna"]}`), policy), ErrForbiddenRoot, `"agentsigna"`},
		{"root that only looks like tenant", tarGz(t, file(".manifest", `{"revision":"r1","roots":["tenants"]}`), policy), ErrForbiddenRoot, ""},
		{"overlapping roots", tarGz(t, file(".manifest", `{"revision":"r1","roots":["tenant","tenant/a"]}`), policy), ErrForbiddenRoot, "overlap"},
		// Packages and data.
		{"base package", tarGz(t, manifest, file("p.rego", "package agentsigna.base\ndeny := set()\n")), ErrForbiddenPackage, "agentsigna.base"},
		{"package next to tenant", tarGz(t, manifest, file("p.rego", "package tenant_x\nx := 1\n")), ErrForbiddenPackage, ""},
		{"package outside a narrow root", tarGz(t, file(".manifest", `{"revision":"r1","roots":["tenant/acme"]}`), policy), ErrForbiddenPackage, ""},
		{"data outside tenant", tarGz(t, manifest, policy, file("data.json", `{"agentsigna":{"base":{"deny":[]}}}`)), ErrForbiddenData, "/agentsigna"},
		{"data file in another root", tarGz(t, manifest, policy, file("system/data.json", `{"x":1}`)), ErrForbiddenData, "/system"},
		{"root data overrides the decision", tarGz(t, manifest, policy, file("data.json", `{"tenant":{"decision":{"allow":true}}}`)), ErrForbiddenData, "tenant/decision"},
		{"data file at the decision", tarGz(t, manifest, policy, file("tenant/decision/data.json", `{"allow":true}`)), ErrForbiddenData, "tenant/decision"},
		{"root data not an object", tarGz(t, manifest, policy, file("data.json", `[1]`)), ErrForbiddenData, ""},
		{"data set twice", tarGz(t, manifest, policy, file("data.json", `{"tenant":{"a":1}}`), file("tenant/data.json", `{"a":2}`)), ErrForbiddenData, "two data files"},
		{"data not JSON", tarGz(t, manifest, policy, file("tenant/data.json", `{"a":`)), ErrParse, "tenant/data.json"},
		{"two JSON values", tarGz(t, manifest, policy, file("tenant/data.json", `{} {}`)), ErrParse, ""},
		{"rego syntax", tarGz(t, manifest, file("tenant/p.rego", "package tenant\ndecision := {\n")), ErrParse, "tenant/p.rego"},
		{"rego v0 syntax", tarGz(t, manifest, file("tenant/p.rego", "package tenant\ndeny[msg] { msg := \"x\" }\n")), ErrParse, ""},
		{"empty module", tarGz(t, manifest, file("tenant/p.rego", "")), ErrParse, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(tc.raw, ReadOptions{})
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidBundle) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("err = %q, want it to mention %q", err, tc.message)
			}
		})
	}
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	if _, err := gz.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadBounds(t *testing.T) {
	small := Limits{MaxCompressedBytes: 4096, MaxDecompressedBytes: 64 << 10, MaxEntries: 4, MaxPathLength: 64}
	bomb := func() []byte { // 64 MiB of zeros: about 64 KiB compressed
		var buf bytes.Buffer
		gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		tw := tar.NewWriter(gz)
		const size = 64 << 20
		if err := tw.WriteHeader(&tar.Header{Name: "tenant/data.json", Typeflag: tar.TypeReg, Size: size, Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		zeros := make([]byte, 1<<20)
		for range size >> 20 {
			if _, err := tw.Write(zeros); err != nil {
				t.Fatal(err)
			}
		}
		_ = tw.Close()
		_ = gz.Close()
		return buf.Bytes()
	}()
	// A header that claims far more than the stream holds.
	liar := tarGz(t, file("/.manifest", okManifest))
	liarEntries := untar(t, liar)
	liarEntries[0].hdr.Size = 1 << 40
	liarEntries[0].hdr.Format = tar.FormatPAX
	for _, tc := range []struct {
		name   string
		raw    []byte
		limits Limits
		want   error
	}{
		{"compressed size", okBundle(t, file("tenant/data.json", `{"x":"`+randomText(8000)+`"}`)), small, ErrTooLarge},
		{"decompression bomb", bomb, Limits{}, ErrDecompressionLimit},
		{"bomb under a small limit", okBundle(t, file("tenant/data.json", `{"x":"`+strings.Repeat("a", 100<<10)+`"}`)), small, ErrDecompressionLimit},
		{"too many entries", okBundle(t, file("tenant/a.rego", "package tenant\na := 1\n"), file("tenant/b.rego", "package tenant\nb := 1\n"), file("tenant/c.rego", "package tenant\nc := 1\n")), small, ErrTooManyFiles},
		{"path length", okBundle(t, file("tenant/"+strings.Repeat("b", 60)+".rego", "package tenant\n")), small, ErrPathTooLong},
		{"size claimed in a header", headerOnly(t, liarEntries[0].hdr), Limits{}, ErrDecompressionLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.limits == small && tc.want == ErrTooLarge && len(tc.raw) <= 4096 {
				t.Fatalf("test bundle is only %d bytes", len(tc.raw))
			}
			_, err := Read(tc.raw, ReadOptions{Limits: tc.limits})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// headerOnly writes a tar header followed by no data (a truncated archive
// whose header lies about the size).
func headerOnly(t testing.TB, h tar.Header) []byte {
	t.Helper()
	var tbuf bytes.Buffer
	tw := tar.NewWriter(&tbuf)
	if err := tw.WriteHeader(&h); err != nil {
		t.Fatal(err)
	}
	return gzipped(t, tbuf.Bytes())
}

// randomText is incompressible-enough text of n bytes.
func randomText(n int) string {
	var b strings.Builder
	x := uint32(2463534242)
	for b.Len() < n {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[x%36])
	}
	return b.String()
}

func TestReadExactBudget(t *testing.T) {
	raw := okBundle(t)
	// Find the decompressed size, then read with exactly that budget.
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var plain bytes.Buffer
	if _, err := plain.ReadFrom(gz); err != nil {
		t.Fatal(err)
	}
	limits := DefaultLimits()
	limits.MaxDecompressedBytes = int64(plain.Len())
	if _, err := Read(raw, ReadOptions{Limits: limits}); err != nil {
		t.Fatalf("exact budget: %v", err)
	}
	limits.MaxDecompressedBytes--
	if _, err := Read(raw, ReadOptions{Limits: limits}); !errors.Is(err, ErrDecompressionLimit) {
		t.Fatalf("one byte short: %v", err)
	}
}

// The issue asks for distinct messages for these rejections: a person
// reading one must know which problem it is.
func TestRejectionMessagesAreDistinct(t *testing.T) {
	manifest := file("/.manifest", okManifest)
	msgs := map[string]string{}
	add := func(name string, err error) {
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		msgs[name] = err.Error()
	}
	_, err := Read(tarGz(t, manifest, file("../../evil.rego", allowAll)), ReadOptions{})
	add("tar-slip", err)
	_, err = Read(tarGz(t, manifest, file("//etc/passwd", "x")), ReadOptions{})
	add("absolute", err)
	var bomb bytes.Buffer
	gz := gzip.NewWriter(&bomb)
	tw := tar.NewWriter(gz)
	_ = tw.WriteHeader(&tar.Header{Name: "tenant/data.json", Typeflag: tar.TypeReg, Size: 1 << 30, Mode: 0o644})
	_ = gz.Close()
	_, err = Read(bomb.Bytes(), ReadOptions{})
	add("bomb", err)
	_, err = Read(tarGz(t, manifest, entry{hdr: tar.Header{Name: "tenant/x.rego", Linkname: "/etc/shadow", Typeflag: tar.TypeSymlink}}), ReadOptions{})
	add("symlink", err)
	_, err = policyFrom(t, map[string]string{"tenant/p.rego": "package tenant\ndecision := http.send({\"method\": \"GET\", \"url\": \"https://example.com\"}).body\n"})
	add("http.send", err)
	_, err = Read(tarGz(t, file("/.manifest", `{"revision":"r1","roots":["agentsigna"]}`)), ReadOptions{})
	add("forbidden root", err)
	seen := map[string]string{}
	for name, msg := range msgs {
		t.Logf("%-15s %s", name, msg)
		// Compare the part before the first detail.
		head, _, _ := strings.Cut(msg, ":")
		if other, dup := seen[head]; dup {
			t.Errorf("%s and %s share the message %q", name, other, head)
		}
		seen[head] = name
	}
}
