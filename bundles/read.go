package bundles

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/bundle"

	"github.com/agentsigna/agentsigna/internal/jose"
)

// TenantRoot is the only top-level name an organization's bundle may own
// (DESIGN §3): every manifest root, package and data path lies under it.
const TenantRoot = "tenant"

// DecisionQuery is the entry point of an organization's policy.
const DecisionQuery = "data.tenant.decision"

// decisionPath returns DecisionQuery as data path segments.
func decisionPath() []string { return []string{TenantRoot, "decision"} }

// Well-known bundle file names (OPA's bundle format).
const (
	manifestFile   = ".manifest"
	signaturesFile = ".signatures.json"
	dataFile       = "data.json"
)

// maxRevisionLength bounds a manifest revision: it travels in receipts and
// ledger entries. A git SHA-256 commit id is 64 characters.
const maxRevisionLength = 128

// File is one file of a bundle: its path relative to the bundle root
// (slash-separated, no leading slash) and its bytes.
type File struct {
	Path    string
	Content []byte
}

// Bundle is a bundle that passed intake: bounded, well-formed, verified when
// keys were given, with a valid manifest, parseable modules and data under
// its roots. It has not been compiled yet (Compile).
type Bundle struct {
	// Revision is the manifest's revision.
	Revision string
	// Roots are the manifest's roots, normalized (no leading or trailing "/").
	Roots []string
	// Manifest is the .manifest file as uploaded.
	Manifest []byte
	// Digest is the hex SHA-256 of the raw tar.gz: what storage keys on.
	Digest string
	// DigestBase64 is the same SHA-256 in standard base64, as receipts
	// cite it (DESIGN §3: policy.tenant_bundle_sha256).
	DigestBase64 string
	// Size is the length of the raw tar.gz.
	Size int64
	// Files are the bundle's regular files in archive order, the
	// signatures file included.
	Files []File
	// SignedBy is the id of the key whose signature verified, or "" for an
	// unsigned bundle.
	SignedBy string

	modulePaths []string               // sorted
	modules     map[string]*ast.Module // by path
	data        map[string]any         // the merged data.json files
}

// Read checks raw, an OPA bundle (tar.gz), and returns it parsed. Each
// failure wraps ErrInvalidBundle and one specific sentinel of errors.go, and
// names the file at fault when there is one.
//
// Paths. An entry's path must be a clean relative path: no "..", "." or
// empty segment, no backslash, no control character, within
// Limits.MaxPathLength. One leading "/" is accepted and dropped, because
// that is how `opa build` writes every entry ("/.manifest", "/data.json"):
// in a bundle a path is relative to the bundle root whatever it starts with,
// and nothing here ever writes a path to disk. "//x", "\x" and "C:x" are
// refused as absolute. A leading "./" (tar -C dir .) is dropped too.
//
// Entries. Regular files and directories only; directories and PAX global
// headers carry nothing and are skipped. Symbolic and hard links are refused
// (ErrLinkEntry), as are devices, FIFOs and every other type
// (ErrNonRegularEntry). A path may appear once.
//
// Files. .manifest and .signatures.json at the root, *.rego modules (Rego
// v1) and data.json files; anything else is refused (ErrUnsupportedFile):
// Wasm and plan bundles are not evaluated here, delta bundles (patch.json)
// are not supported, and YAML data is refused to keep one data parser
// (`opa build` already writes YAML data out as data.json).
func Read(raw []byte, opts ReadOptions) (*Bundle, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return read(raw, opts.Limits, func(b *Bundle) error { return b.verify(opts.Keys) })
}

// read is Read with its signature check given as verify. A policy worker
// reads a bundle whose signature the service checked before sending it,
// but for the data files' hashes (loadVerified), and has no keys to check
// it with.
func read(raw []byte, limits Limits, verify func(*Bundle) error) (*Bundle, error) {
	b, err := readUnparsed(raw, limits, verify)
	if err != nil {
		return nil, err
	}
	if err := b.parse(); err != nil {
		return nil, err
	}
	return b, nil
}

// readUnparsed is read without parsing the modules and data: the archive,
// its paths, the signature and the manifest only, whose cost is bounded by
// the limits. Parsing is not: a few kilobytes of gzip (a list of a million
// ones, say) take the parser gigabytes and seconds. Workers.Load leaves it
// to the worker, under the worker's limits.
func readUnparsed(raw []byte, limits Limits, verify func(*Bundle) error) (*Bundle, error) {
	if int64(len(raw)) > limits.MaxCompressedBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(raw), limits.MaxCompressedBytes)
	}
	files, err := readArchive(raw, limits)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	b := &Bundle{
		Digest:       hex.EncodeToString(sum[:]),
		DigestBase64: base64.StdEncoding.EncodeToString(sum[:]),
		Size:         int64(len(raw)),
		Files:        files,
	}
	if err := b.classify(); err != nil {
		return nil, err
	}
	// Before anything decodes it (OPA's signature check does too): the
	// service reads a .manifest whole, and its metadata may hold any JSON.
	if f := b.file(manifestFile); f != nil && len(f.Content) > MaxManifestBytes {
		return nil, fmt.Errorf("%w: .manifest is %d bytes, limit %d", ErrManifest, len(f.Content), MaxManifestBytes)
	}
	if err := verify(b); err != nil {
		return nil, err
	}
	if err := b.readManifest(); err != nil {
		return nil, err
	}
	return b, nil
}

// readArchive gunzips and untars raw under limits, checking every entry's
// path and type, and returns the regular files in archive order.
func readArchive(raw []byte, limits Limits) ([]File, error) {
	src := bytes.NewReader(raw)
	gz, err := gzip.NewReader(src)
	if err != nil {
		return nil, fmt.Errorf("%w: not gzip: %v", ErrMalformedArchive, err)
	}
	// One gzip member only: anything after it is refused below, so that the
	// bytes we hash are exactly the bytes we read.
	gz.Multistream(false)
	counted := &budgetReader{r: gz, left: limits.MaxDecompressedBytes}
	tr := tar.NewReader(counted)

	malformed := func(err error) error {
		if counted.exceeded {
			return fmt.Errorf("%w: more than %d bytes", ErrDecompressionLimit, limits.MaxDecompressedBytes)
		}
		return fmt.Errorf("%w: %v", ErrMalformedArchive, err)
	}

	var files []File
	seen := map[string]bool{}
	entries := 0
	// The sizes entries claim, summed: what reading them would hold. The
	// stream budget (counted) alone does not bound it, for archive/tar
	// fills a sparse entry's holes with zeros it never reads.
	var claimed int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, malformed(err)
		}
		entries++
		if entries > limits.MaxEntries {
			return nil, fmt.Errorf("%w: more than %d", ErrTooManyFiles, limits.MaxEntries)
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // TypeRegA is how old tars mark files
		case tar.TypeDir:
			if _, err := cleanPath(strings.TrimSuffix(hdr.Name, "/"), limits.MaxPathLength, true); err != nil {
				return nil, err
			}
			continue
		case tar.TypeXGlobalHeader:
			continue // PAX global header (git archive writes one): metadata only
		case tar.TypeSymlink, tar.TypeLink:
			return nil, fmt.Errorf("%w: %q -> %q", ErrLinkEntry, printable(hdr.Name), printable(hdr.Linkname))
		default:
			return nil, fmt.Errorf("%w: %q has tar type %q", ErrNonRegularEntry, printable(hdr.Name), hdr.Typeflag)
		}
		name, err := cleanPath(hdr.Name, limits.MaxPathLength, false)
		if err != nil {
			return nil, err
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: %s", ErrDuplicatePath, name)
		}
		seen[name] = true
		// A sparse file (GNU's PAX encoding, which archive/tar reads as a
		// regular file) is made of holes no bundle needs: its bytes are
		// not in the stream.
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return nil, fmt.Errorf("%w: %q is a sparse file", ErrNonRegularEntry, name)
			}
		}
		// Refuse before reading: a header may claim any size.
		if hdr.Size < 0 || hdr.Size > counted.left || hdr.Size > limits.MaxDecompressedBytes-claimed {
			return nil, fmt.Errorf("%w: %s claims %d bytes, limit %d in all", ErrDecompressionLimit, name, hdr.Size, limits.MaxDecompressedBytes)
		}
		claimed += hdr.Size
		content := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, content); err != nil {
			return nil, malformed(err)
		}
		files = append(files, File{Path: name, Content: content})
	}
	// Read to the end of the gzip member, through the tar padding, so that
	// its CRC and length are checked, then refuse trailing bytes.
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return nil, malformed(err)
	}
	if src.Len() != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the gzip stream", ErrMalformedArchive, src.Len())
	}
	return files, nil
}

// budgetReader reads from r until left bytes have been read, then fails.
type budgetReader struct {
	r        io.Reader
	left     int64
	exceeded bool
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte would exceed the budget: probe for it so that a
		// stream of exactly the budget still ends cleanly.
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			b.exceeded = true
			return 0, ErrDecompressionLimit
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// cleanPath checks a tar entry name and returns it relative to the bundle
// root. See Read for the rules.
func cleanPath(name string, maxLen int, dir bool) (string, error) {
	if len(name) > maxLen {
		return "", fmt.Errorf("%w: %d bytes, limit %d: %q…", ErrPathTooLong, len(name), maxLen, printable(name[:min(len(name), 64)]))
	}
	if !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("%w: %q has control characters or invalid UTF-8", ErrInvalidPath, printable(name))
	}
	switch {
	case strings.HasPrefix(name, "//"), strings.HasPrefix(name, `\`),
		len(name) >= 2 && name[1] == ':' && (name[0]|0x20 >= 'a' && name[0]|0x20 <= 'z'):
		return "", fmt.Errorf("%w: %q", ErrAbsolutePath, name)
	}
	rel := strings.TrimPrefix(name, "/")
	rel = strings.TrimPrefix(rel, "./")
	segments := strings.Split(rel, "/")
	if slices.Contains(segments, "..") {
		return "", fmt.Errorf("%w: %q", ErrPathTraversal, name)
	}
	if strings.Contains(rel, `\`) {
		return "", fmt.Errorf("%w: %q contains a backslash", ErrInvalidPath, name)
	}
	if dir && (rel == "" || rel == ".") {
		return "", nil // the archive's root directory
	}
	if slices.Contains(segments, "") || slices.Contains(segments, ".") {
		return "", fmt.Errorf("%w: %q", ErrInvalidPath, name)
	}
	return rel, nil
}

// printable quotes attacker-chosen names safely for an error message.
func printable(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// classify checks that every file is of a kind a bundle may hold, where it
// may hold it.
func (b *Bundle) classify() error {
	for _, f := range b.Files {
		base := path.Base(f.Path)
		atRoot := f.Path == base
		switch {
		case base == manifestFile || base == signaturesFile:
			if !atRoot {
				return fmt.Errorf("%w: %s: %s belongs at the bundle root", ErrUnsupportedFile, f.Path, base)
			}
		case strings.HasSuffix(base, ".rego"), base == dataFile:
		case base == "data.yaml" || base == "data.yml":
			return fmt.Errorf("%w: %s: YAML data is not accepted; write it as data.json (opa build does)", ErrUnsupportedFile, f.Path)
		case base == "policy.wasm" || base == "plan.json" || base == "plan.pb" || strings.HasSuffix(base, ".manifest.pb"):
			return fmt.Errorf("%w: %s: only Rego bundles are accepted (no Wasm, plan or protobuf-manifest bundles)", ErrUnsupportedFile, f.Path)
		case base == "patch.json":
			return fmt.Errorf("%w: %s: delta bundles are not supported; upload a complete (snapshot) bundle", ErrUnsupportedFile, f.Path)
		default:
			return fmt.Errorf("%w: %s: a bundle holds .manifest, .signatures.json, *.rego and data.json files only", ErrUnsupportedFile, f.Path)
		}
	}
	return nil
}

func (b *Bundle) file(name string) *File {
	for i := range b.Files {
		if b.Files[i].Path == name {
			return &b.Files[i]
		}
	}
	return nil
}

// verify checks the bundle's signature the OPA way (one JWT in
// .signatures.json naming, for every other file, its path and hash; the
// JWT verified with the key its kid names and that key's registered
// algorithm), with OPA's own functions. See ReadOptions.Keys for when a
// signature is required.
func (b *Bundle) verify(keys []VerificationKey) error {
	data, err := b.verifyAllButData(keys)
	if err != nil {
		return err
	}
	return b.verifyData(data)
}

// signedFile is what a bundle's signature says of one file.
type signedFile struct {
	Hash      string `json:"hash"`
	Algorithm string `json:"algorithm"`
}

// verifyAllButData is verify but for the data.json files, and returns what
// the verified signature says of each of them (nil for an unsigned
// bundle), for verifyData. OPA hashes a data file's parsed JSON, not its
// bytes: the parse of a file of a few MB, which gzip carries in kilobytes,
// takes seconds and gigabytes, and OPA parses the file before it compares
// the hash, so a signature copied from any bundle the organization signed
// once would do (found by review). Workers.Load runs verifyData in the
// worker, under its limits; here, every structured file is first checked
// to be JSON (json.Valid: linear, and nothing allocated per value), or
// OPA would try it again as YAML, slower still.
func (b *Bundle) verifyAllButData(keys []VerificationKey) (map[string]signedFile, error) {
	sig := b.file(signaturesFile)
	switch {
	case sig == nil && len(keys) == 0:
		return nil, nil
	case sig == nil:
		return nil, ErrUnsigned
	case len(keys) == 0:
		return nil, ErrSignedWithoutKey
	}
	var sc opabundle.SignaturesConfig
	dec := json.NewDecoder(bytes.NewReader(sig.Content))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSignature, signaturesFile, err)
	}
	if sc.Plugin != "" && sc.Plugin != "_default" {
		return nil, fmt.Errorf("%w: %s: signature plugin %q is not supported", ErrSignature, signaturesFile, sc.Plugin)
	}
	for _, token := range sc.Signatures {
		if err := checkSignatureNames(token); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrSignature, signaturesFile, err)
		}
	}
	listed, err := opabundle.VerifyBundleSignature(sc, verificationConfig(keys))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	data := map[string]signedFile{}
	for _, f := range b.Files {
		if f.Path == signaturesFile {
			continue
		}
		if opabundle.IsStructuredDoc(f.Path) && !json.Valid(f.Content) {
			return nil, fmt.Errorf("%w: %s is not JSON", ErrSignature, f.Path)
		}
		if path.Base(f.Path) == dataFile {
			fi, ok := listed[f.Path]
			if !ok {
				return nil, fmt.Errorf("%w: file %s not included in bundle signature", ErrSignature, f.Path)
			}
			data[f.Path] = signedFile{Hash: fi.Hash, Algorithm: fi.Algorithm}
			delete(listed, f.Path)
			continue
		}
		// VerifyBundleFile deletes each verified file from listed, and fails
		// for a file the signature does not name: an added file.
		if err := opabundle.VerifyBundleFile(f.Path, *bytes.NewBuffer(f.Content), listed); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSignature, err)
		}
	}
	if len(listed) > 0 {
		missing := make([]string, 0, len(listed))
		for name := range listed {
			missing = append(missing, name)
		}
		slices.Sort(missing)
		return nil, fmt.Errorf("%w: signed file(s) missing from the bundle: %s", ErrSignature, strings.Join(missing, ", "))
	}
	b.SignedBy = signingKeyID(sc.Signatures[0])
	return data, nil
}

// verifyData checks each data.json file against signed, verifyAllButData's
// answer: every one must be there and match it, unless signed is nil (an
// unsigned bundle, which the organization accepts).
func (b *Bundle) verifyData(signed map[string]signedFile) error {
	if signed == nil {
		return nil
	}
	for _, f := range b.Files {
		if path.Base(f.Path) != dataFile {
			continue
		}
		sf, ok := signed[f.Path]
		if !ok {
			return fmt.Errorf("%w: file %s not included in bundle signature", ErrSignature, f.Path)
		}
		one := map[string]opabundle.FileInfo{f.Path: {Name: f.Path, Hash: sf.Hash, Algorithm: sf.Algorithm}}
		if err := opabundle.VerifyBundleFile(f.Path, *bytes.NewBuffer(f.Content), one); err != nil {
			return fmt.Errorf("%w: %v", ErrSignature, err)
		}
	}
	return nil
}

// signatureClaims are the members of a bundle signature's claims OPA
// reads (bundle.DecodedSignature).
var signatureClaims = jose.Members{
	"files": jose.Flat("name", "hash", "algorithm"),
	"keyid": nil, "scope": nil, "iat": nil, "iss": nil,
}

// checkSignatureNames refuses a signature JWT whose header or claims
// readers could read two ways: a duplicate member, or a case variant of
// one read (jose.CheckCaseFolded: OPA reads claims with encoding/json v1,
// to which "key-id" is another member than "keyid"). OPA picks the
// verifying key by the first of two kids, encoding/json reads the last: a
// bundle signed by one key would be recorded as signed by another (found
// by review).
func checkSignatureNames(token string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return errors.New("the signature is not a compact JWS")
	}
	for i, known := range []jose.Members{jose.HeaderMembers, signatureClaims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return errors.New("the signature is not a compact JWS")
		}
		if err := jose.CheckCaseFolded(raw, known); err != nil {
			return fmt.Errorf("the signature's %s: %v", [...]string{"header", "claims"}[i], err)
		}
	}
	return nil
}

// signingKeyID reads the key id of a verified JWT: its kid header, or the
// deprecated keyid claim, as OPA looks them up (checkSignatureNames made
// sure there is one way to read them).
func signingKeyID(token string) string {
	parts := strings.Split(token, ".")
	var hdr struct {
		KID string `json:"kid"`
	}
	if raw, err := base64.RawURLEncoding.DecodeString(parts[0]); err == nil && json.Unmarshal(raw, &hdr) == nil && hdr.KID != "" {
		return hdr.KID
	}
	var claims struct {
		KeyID string `json:"keyid"`
	}
	if len(parts) > 1 {
		if raw, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil && json.Unmarshal(raw, &claims) == nil {
			return claims.KeyID
		}
	}
	return ""
}

// MaxManifestBytes bounds a bundle's .manifest: a revision, roots and
// some metadata. It is decoded in the service, not in a worker, so its
// size is what one organization's upload or load costs the service.
const MaxManifestBytes = 64 << 10

// manifest is OPA's .manifest (v1.22.3), decoded strictly: a field we do not
// know might carry meaning we would not enforce.
type manifest struct {
	Revision         *string         `json:"revision"`
	Roots            *[]string       `json:"roots"`
	Wasm             json.RawMessage `json:"wasm"`
	RegoVersion      *int            `json:"rego_version"`
	FileRegoVersions map[string]int  `json:"file_rego_versions"`
	Metadata         map[string]any  `json:"metadata"`
}

func (b *Bundle) readManifest() error {
	f := b.file(manifestFile)
	if f == nil {
		return fmt.Errorf("%w: no .manifest at the bundle root (it must give a revision and roots [%q])", ErrManifest, TenantRoot)
	}
	b.Manifest = f.Content
	var m manifest
	dec := json.NewDecoder(bytes.NewReader(f.Content))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("%w: .manifest: %v", ErrManifest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: .manifest: more than one JSON value", ErrManifest)
	}
	switch {
	case m.Revision == nil || *m.Revision == "":
		return fmt.Errorf("%w: .manifest has no revision (set one with opa build --revision)", ErrManifest)
	case len(*m.Revision) > maxRevisionLength || strings.ContainsFunc(*m.Revision, func(r rune) bool { return r < 0x21 || r > 0x7e }):
		return fmt.Errorf("%w: .manifest revision must be 1 to %d printable ASCII characters without spaces", ErrManifest, maxRevisionLength)
	case m.RegoVersion != nil && *m.RegoVersion != 1:
		return fmt.Errorf("%w: .manifest rego_version %d: only Rego v1 is accepted", ErrManifest, *m.RegoVersion)
	case len(m.Wasm) > 0 && string(m.Wasm) != "null" && string(m.Wasm) != "[]":
		return fmt.Errorf("%w: .manifest declares Wasm modules; only Rego bundles are accepted", ErrManifest)
	}
	for pattern, v := range m.FileRegoVersions {
		if v != 1 {
			return fmt.Errorf("%w: .manifest file_rego_versions[%q] = %d: only Rego v1 is accepted", ErrManifest, printable(pattern), v)
		}
	}
	b.Revision = *m.Revision
	if m.Roots == nil || len(*m.Roots) == 0 {
		// OPA's default is the root "", all of data: never for an organization.
		return fmt.Errorf("%w: .manifest declares no roots; declare [%q]", ErrForbiddenRoot, TenantRoot)
	}
	for _, r := range *m.Roots {
		root := strings.Trim(r, "/")
		segs := strings.Split(root, "/")
		if segs[0] != TenantRoot || slices.Contains(segs, "") {
			return fmt.Errorf("%w: root %q; an organization's roots are %q or lie under it", ErrForbiddenRoot, printable(r), TenantRoot)
		}
		for _, other := range b.Roots {
			if opabundle.RootPathsOverlap(root, other) {
				return fmt.Errorf("%w: roots %q and %q overlap", ErrForbiddenRoot, other, root)
			}
		}
		b.Roots = append(b.Roots, root)
	}
	return nil
}

// parse parses the modules and merges the data files, keeping both under
// the bundle's roots.
func (b *Bundle) parse() error {
	popts := ast.ParserOptions{
		RegoVersion:       ast.RegoV1,
		Capabilities:      Capabilities(),
		ProcessAnnotation: true,
	}
	b.modules = map[string]*ast.Module{}
	b.data = map[string]any{}
	for _, f := range b.Files {
		switch {
		case strings.HasSuffix(f.Path, ".rego"):
			m, err := ast.ParseModuleWithOpts(f.Path, string(f.Content), popts)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrParse, err)
			}
			if !b.underRoots(refSegments(m.Package.Path[1:])) {
				return fmt.Errorf("%w: %s: %v is outside the bundle's roots %q", ErrForbiddenPackage, f.Path, m.Package, b.Roots)
			}
			b.modules[f.Path] = m
			b.modulePaths = append(b.modulePaths, f.Path)
		case path.Base(f.Path) == dataFile:
			if err := b.addData(f); err != nil {
				return err
			}
		}
	}
	slices.Sort(b.modulePaths)
	return b.checkData()
}

// refSegments returns the leading string terms of a package path (after
// data); a package path is all strings.
func refSegments(ref ast.Ref) []string {
	out := make([]string, 0, len(ref))
	for _, t := range ref {
		s, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		out = append(out, string(s))
	}
	return out
}

// underRoots reports whether the data path segs lies inside one of the
// bundle's roots.
func (b *Bundle) underRoots(segs []string) bool {
	for _, r := range b.Roots {
		rs := strings.Split(r, "/")
		if len(segs) >= len(rs) && slices.Equal(segs[:len(rs)], rs) {
			return true
		}
	}
	return false
}

// addData merges a data.json file at the data path of its directory, as
// OPA does.
func (b *Bundle) addData(f File) error {
	dec := json.NewDecoder(bytes.NewReader(f.Content))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrParse, f.Path, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s: more than one JSON value", ErrParse, f.Path)
	}
	var at []string
	if dir := path.Dir(f.Path); dir != "." {
		at = strings.Split(dir, "/")
	}
	if len(at) == 0 {
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%w: %s: data.json at the bundle root must hold an object", ErrForbiddenData, f.Path)
		}
		return mergeObject(b.data, obj, nil, f.Path)
	}
	node := b.data
	for i, seg := range at[:len(at)-1] {
		next, ok := node[seg].(map[string]any)
		if !ok {
			if _, exists := node[seg]; exists {
				return fmt.Errorf("%w: %s: data at /%s is not an object", ErrForbiddenData, f.Path, strings.Join(at[:i+1], "/"))
			}
			next = map[string]any{}
			node[seg] = next
		}
		node = next
	}
	return mergeObject(node, map[string]any{at[len(at)-1]: v}, at[:len(at)-1], f.Path)
}

// mergeObject merges src into dst; two files may fill the same object but
// not set the same leaf.
func mergeObject(dst, src map[string]any, at []string, file string) error {
	for k, v := range src {
		here := append(slices.Clip(at), k)
		old, exists := dst[k]
		if !exists {
			dst[k] = v
			continue
		}
		oldObj, ok1 := old.(map[string]any)
		newObj, ok2 := v.(map[string]any)
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: %s: data at /%s is set by two data files", ErrForbiddenData, file, strings.Join(here, "/"))
		}
		if err := mergeObject(oldObj, newObj, here, file); err != nil {
			return err
		}
	}
	return nil
}

// checkData keeps the data under the roots (the check OPA's reader makes)
// and away from data.tenant.decision, which must come from the policy:
// otherwise a data file could answer for it.
func (b *Bundle) checkData() error {
	decision := decisionPath()
	var walk func(node map[string]any, at []string) error
	walk = func(node map[string]any, at []string) error {
		for k, v := range node {
			here := append(slices.Clip(at), k)
			if slices.Equal(here, decision) {
				return fmt.Errorf("%w: data.json sets /%s; %s must come from the policy, not from data", ErrForbiddenData, strings.Join(here, "/"), DecisionQuery)
			}
			if b.underRoots(here) {
				if obj, ok := v.(map[string]any); ok && len(here) < len(decision) {
					if err := walk(obj, here); err != nil {
						return err
					}
				}
				continue
			}
			obj, ok := v.(map[string]any)
			if !ok || !b.aboveRoot(here) {
				return fmt.Errorf("%w: data.json places data at /%s, outside the bundle's roots %q", ErrForbiddenData, strings.Join(here, "/"), b.Roots)
			}
			if err := walk(obj, here); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(b.data, nil)
}

// aboveRoot reports whether segs is a strict prefix of a root: data there
// may only be an object leading down to the root.
func (b *Bundle) aboveRoot(segs []string) bool {
	for _, r := range b.Roots {
		rs := strings.Split(r, "/")
		if len(segs) < len(rs) && slices.Equal(rs[:len(segs)], segs) {
			return true
		}
	}
	return false
}
