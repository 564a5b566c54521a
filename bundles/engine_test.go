package bundles

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"sync"
	"testing"
	"testing/fstest"
)

func TestEngineActivateSwaps(t *testing.T) {
	e := NewEngine()
	if e.Active("t1") != nil {
		t.Fatal("active policy before any activation")
	}
	p1, err := policyFrom(t, map[string]string{"tenant/p.rego": allowAll})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := policyFrom(t, map[string]string{".manifest": `{"revision":"r2","roots":["tenant"]}`, "tenant/p.rego": "package tenant\n\ndecision := {}\n"})
	if err != nil {
		t.Fatal(err)
	}
	if prev := e.Activate("t1", p1); prev != nil {
		t.Errorf("previous = %v", prev)
	}
	if prev := e.Activate("t1", p2); prev != p1 {
		t.Errorf("previous = %v, want p1", prev)
	}
	if rev, digest := e.ActiveRevision("t1"); rev != "r2" || digest != p2.Digest() {
		t.Errorf("active = %q %q", rev, digest)
	}
	if e.Active("t2") != nil {
		t.Error("t2 sees t1's policy")
	}
	e.Activate("t1", nil)
	if e.Active("t1") != nil {
		t.Error("deactivation kept the policy")
	}
}

// Decisions in flight keep the policy they started with while another
// revision is activated; run with -race.
func TestEngineConcurrentActivateAndEvaluate(t *testing.T) {
	e := NewEngine()
	policies := make([]*Policy, 3)
	for i := range policies {
		var err error
		policies[i], err = policyFrom(t, map[string]string{
			".manifest":     fmt.Sprintf(`{"revision":"r%d","roots":["tenant"]}`, i),
			"tenant/p.rego": fmt.Sprintf("package tenant\n\ndecision := {\"allow\": true, \"escalate\": {\"r%d\"}}\n", i),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	in := payment(t)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				tenant := fmt.Sprintf("t%d", (w+i)%3)
				if w%2 == 0 {
					e.Activate(tenant, policies[i%3])
					continue
				}
				p := e.Active(tenant)
				if p == nil {
					continue
				}
				v, err := p.Evaluate(ctx, in)
				if err != nil {
					t.Error(err)
					return
				}
				if len(v.Escalate) != 1 || v.Escalate[0] != p.Revision() {
					t.Errorf("policy %s answered %v", p.Revision(), v.Escalate)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestCheckActivation(t *testing.T) {
	history := []KnownRevision{{"a", "da"}, {"b", "db"}, {"c", "dc"}}
	for _, tc := range []struct {
		name      string
		active    string
		candidate KnownRevision
		rollback  bool
		want      error
	}{
		{"first activation", "", KnownRevision{"a", "da"}, false, nil},
		{"forward to an uploaded revision", "b", KnownRevision{"c", "dc"}, false, nil},
		{"forward to a new revision", "c", KnownRevision{"d", "dd"}, false, nil},
		{"back without saying so", "c", KnownRevision{"a", "da"}, false, ErrRollbackRequired},
		{"explicit rollback", "c", KnownRevision{"a", "da"}, true, nil},
		{"rollback to a newer one", "a", KnownRevision{"c", "dc"}, true, ErrNotRollback},
		{"rollback to a new revision", "c", KnownRevision{"d", "dd"}, true, ErrNotRollback},
		{"rollback with nothing active", "", KnownRevision{"a", "da"}, true, ErrNotRollback},
		{"already active", "b", KnownRevision{"b", "db"}, false, ErrAlreadyActive},
		{"revision reused", "c", KnownRevision{"a", "other"}, true, ErrRevisionConflict},
		{"active not in history", "zz", KnownRevision{"a", "da"}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckActivation(history, tc.active, tc.candidate, tc.rollback)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if err := CheckUpload(history, KnownRevision{"b", "db"}); err != nil {
		t.Errorf("re-upload of the same bundle: %v", err)
	}
	if err := CheckUpload(history, KnownRevision{"b", "dx"}); !errors.Is(err, ErrRevisionConflict) {
		t.Errorf("revision reused: %v", err)
	}
}

func TestPackFS(t *testing.T) {
	fsys := fstest.MapFS{
		".manifest":              {Data: []byte(okManifest)},
		"tenant/p.rego":          {Data: []byte(allowAll)},
		"tenant/p_test.rego":     {Data: []byte("package tenant.p_test\n\ntest_allow if data.tenant.decision.allow\n")},
		"tenant/data.json":       {Data: []byte(`{"x": 1}`)},
		"tenant/fixtures.json":   {Data: []byte(`{"not": "bundle data"}`)},
		"README.md":              {Data: []byte("# policies")},
		".git/config":            {Data: []byte("[core]")},
		".github/ci/x.rego":      {Data: []byte("not rego")},
		"tenant/sub/.manifest":   {Data: []byte("ignored: not at the root")},
		"tenant/sub/notes.txt":   {Data: []byte("x")},
		"tenant/sub/y/data.json": {Data: []byte(`{"y": 2}`)},
	}
	raw, err := PackFS(fsys, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := PackFS(fsys, Limits{})
	if string(raw) != string(again) {
		t.Error("PackFS is not deterministic")
	}
	var names []string
	for _, e := range untar(t, raw) {
		names = append(names, e.hdr.Name)
	}
	want := "[/.manifest /tenant/data.json /tenant/p.rego /tenant/p_test.rego /tenant/sub/y/data.json]"
	if fmt.Sprint(names) != want {
		t.Errorf("packed %v, want %s", names, want)
	}
	p := mustCompile(t, mustRead(t, raw, ReadOptions{}))
	if v, err := p.Evaluate(context.Background(), payment(t)); err != nil || !v.Allow {
		t.Errorf("verdict %+v %v", v, err)
	}

	fsys["tenant/link.rego"] = &fstest.MapFile{Mode: 0o777 | fs.ModeSymlink, Data: []byte("/etc/passwd")}
	if _, err := PackFS(fsys, Limits{}); !errors.Is(err, ErrLinkEntry) {
		t.Errorf("symlink: %v", err)
	}
	delete(fsys, "tenant/link.rego")
	if _, err := PackFS(fsys, Limits{MaxCompressedBytes: 1 << 20, MaxDecompressedBytes: 10, MaxEntries: 10, MaxPathLength: 100}); !errors.Is(err, ErrDecompressionLimit) {
		t.Errorf("size limit: %v", err)
	}
	// A file without end (a huge sparse one, say) is refused once the
	// budget is passed, not read whole first.
	var read int64
	endless := endlessFS{MapFS: fstest.MapFS{".manifest": {Data: []byte(okManifest)}, "tenant/big.rego": {Data: []byte("package tenant\n")}},
		name: "tenant/big.rego", read: &read}
	limits := DefaultLimits()
	if _, err := PackFS(endless, limits); !errors.Is(err, ErrDecompressionLimit) || read > limits.MaxDecompressedBytes+1 {
		t.Errorf("a file without end: %v after %d bytes read (limit %d)", err, read, limits.MaxDecompressedBytes)
	}
	// Without a bound on what is read (the budget at its largest), files
	// are packed whole, not empty.
	limits.MaxDecompressedBytes = math.MaxInt64
	raw, err = PackFS(fstest.MapFS{".manifest": {Data: []byte(okManifest)}, "tenant/p.rego": {Data: []byte(allowAll)}}, limits)
	if err != nil {
		t.Fatal(err)
	}
	if got := untar(t, raw); len(got) != 2 || got[1].content != allowAll {
		t.Errorf("packed with the largest budget: %d files", len(got))
	}
}

// endlessFS serves name as a file of zeros without end, counting what is
// read of it.
type endlessFS struct {
	fstest.MapFS
	name string
	read *int64
}

func (e endlessFS) Open(name string) (fs.File, error) {
	f, err := e.MapFS.Open(name)
	if err != nil || name != e.name {
		return f, err
	}
	return endlessFile{File: f, read: e.read}, nil
}

type endlessFile struct {
	fs.File
	read *int64
}

func (f endlessFile) Read(p []byte) (int, error) {
	clear(p)
	*f.read += int64(len(p))
	return len(p), nil
}
