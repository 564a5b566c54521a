package bundles

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// OPA hashes a signed bundle's data.json over its parsed JSON, and parses
// it before it compares the hash, retrying as YAML what is not JSON: a few
// MB of data, a few KB of gzip, took the service seconds and gigabytes
// outside any worker, with a signature copied from any bundle the
// organization signed once (found by review). The service now checks the
// data files' hashes in the worker, and refuses a structured file that is
// not JSON before OPA reads it.
func TestSignedDataIsCheckedInTheWorker(t *testing.T) {
	raw, vk := signedBundle(t, "RS256", rsaKey(t))
	opts := ReadOptions{Keys: []VerificationKey{vk}}
	// The worker parses the data twice (its hash, then the policy's
	// data), slowly under the race detector.
	ws := newWorkers(t, WorkerOptions{CompileTimeout: time.Minute})
	ctx := context.Background()

	// The control: the signed bundle loads and decides.
	p, b, err := ws.Load(ctx, raw, opts)
	if err != nil {
		t.Fatal(err)
	}
	if b.SignedBy != DefaultKeyID {
		t.Fatalf("signed by %q", b.SignedBy)
	}
	in, err := inputOf(map[string]any{"action": map[string]any{"type": "payment.send", "amount": map[string]any{"value": "900"}}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := evaluateWithin(p, 10*time.Second, in)
	p.Close()
	if err != nil || !v.Allow {
		t.Fatalf("signed bundle: %+v, %v", v, err)
	}

	entries := untar(t, raw)
	withData := func(content string) []byte {
		es := append([]entry(nil), entries...)
		for i := range es {
			if es[i].hdr.Name == "/data.json" {
				es[i].content = content
				return tarGz(t, es...)
			}
		}
		t.Fatal("no /data.json in the signed bundle")
		return nil
	}
	ones := strings.Repeat("1,", 256<<10) // 512 KiB, under a KiB of gzip
	for _, tc := range []struct {
		name string
		data string
		// inProcess: Read (which parses in process anyway) is also
		// tried; not for the large valid JSON, whose parse is slow
		// under the race detector.
		inProcess bool
	}{
		// Checked by the worker: the hash of the parsed data differs.
		{"one value changed", strings.Replace(untarred(t, entries, "/data.json"), "1000", "9000", 1), true},
		{"valid JSON of 512 KiB", "[" + ones + "1]", false},
		// Refused by the service before OPA reads it (OPA would parse it
		// as YAML: 20 s and 2 GiB for 16 MiB, measured by the review).
		{"not JSON, 512 KiB", "[" + ones + "1,]", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundle := withData(tc.data)
			// refused runs the refusal of the bundle: ErrSignature, with
			// what reading the archive costs, about its decompressed size
			// (under 1 MiB here); the parse that was here cost some
			// seventy times it (36 MiB), the YAML one 128 MiB.
			refused := func(what string, load func() error) {
				t.Helper()
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				err := load()
				runtime.ReadMemStats(&after)
				if !errors.Is(err, ErrSignature) {
					t.Fatalf("%s = %v, want ErrSignature", what, err)
				}
				alloc := after.TotalAlloc - before.TotalAlloc
				t.Logf("%s allocated %d KiB", what, alloc>>10)
				if alloc > 8<<20 {
					t.Fatalf("%s allocated %d MiB to refuse the bundle", what, alloc>>20)
				}
			}
			refused("Workers.Load", func() error { _, _, err := ws.Load(ctx, bundle, opts); return err })
			// In process, Read checks the same and refuses the same,
			// what is not JSON before anything parses it.
			if tc.inProcess {
				refused("Read", func() error { _, err := Read(bundle, opts); return err })
			}
		})
	}
}

// untarred is the content of the entry named name.
func untarred(t *testing.T, es []entry, name string) string {
	t.Helper()
	for _, e := range es {
		if e.hdr.Name == name {
			return e.content
		}
	}
	t.Fatalf("%s not in the bundle", name)
	return ""
}
