package latency

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func read(t *testing.T, f *Family) map[string]Snapshot {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteText(&buf, f); err != nil {
		t.Fatal(err)
	}
	got, err := ReadText(&buf, f.name, f.label)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// The quantiles read back from the text format are within a bucket's
// width (19%) of the exact ones of what was observed.
func TestQuantilesWithinABucket(t *testing.T) {
	f := NewFamily("test_seconds", "Test.", "stage", "a", "b")
	rng := rand.New(rand.NewPCG(1, 2))
	var exact []time.Duration
	for range 20000 {
		// Log-uniform from 10 µs to 100 ms, with a heavy tail.
		d := time.Duration(10e3 * math.Pow(10, 4*rng.Float64()))
		exact = append(exact, d)
		f.Stage("a").Observe(d)
	}
	slices.Sort(exact)
	got := read(t, f)["a"]
	if got.Count() != uint64(len(exact)) {
		t.Fatalf("count %d, want %d", got.Count(), len(exact))
	}
	var sum time.Duration
	for _, d := range exact {
		sum += d
	}
	if m := got.Mean(); m < sum/time.Duration(len(exact))-time.Microsecond || m > sum/time.Duration(len(exact))+time.Microsecond {
		t.Errorf("mean %v, want %v", m, sum/time.Duration(len(exact)))
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := exact[int(q*float64(len(exact)))-1]
		est := got.Quantile(q)
		if ratio := float64(est) / float64(want); ratio < 1/1.19 || ratio > 1.19 {
			t.Errorf("p%v: %v, exact %v (ratio %.3f)", q*100, est, want, ratio)
		}
	}
	if b := read(t, f)["b"]; b.Count() != 0 || b.Quantile(0.99) != 0 || b.Mean() != 0 {
		t.Errorf("an unused stage reads %+v", b)
	}
}

// A bucket's bound is inclusive (Prometheus's le), the first bucket starts
// at 0, and what lies past the last bound reads as the last bound.
func TestBucketEdges(t *testing.T) {
	f := NewFamily("edge_seconds", "Edges.", "stage", "s")
	h := f.Stage("s")
	h.Observe(time.Duration(bounds[0])) // exactly the first bound: bucket 0
	h.Observe(-time.Second)             // counted as 0
	got := read(t, f)["s"]
	if got.Counts[0] != 2 {
		t.Fatalf("first bucket %d, want 2 (le inclusive, negative as 0)", got.Counts[0])
	}
	if q := got.Quantile(1); q != time.Duration(bounds[0]) {
		t.Errorf("p100 %v, want the first bound %v", q, time.Duration(bounds[0]))
	}
	h.Observe(time.Hour)
	got = read(t, f)["s"]
	if q := got.Quantile(1); q != time.Duration(bounds[len(bounds)-1]) {
		t.Errorf("p100 past the last bound: %v, want %v", q, time.Duration(bounds[len(bounds)-1]))
	}
	if len(got.Bounds) != len(bounds)+1 {
		t.Errorf("%d buckets read, want %d and +Inf", len(got.Bounds), len(bounds))
	}
}

// Sub leaves what was counted between two snapshots: the window the
// harness measures, not the warm-up before it.
func TestSubIsTheWindow(t *testing.T) {
	f := NewFamily("w_seconds", "Window.", "stage", "s")
	for range 1000 {
		f.Stage("s").Observe(50 * time.Millisecond) // before the window
	}
	before := read(t, f)["s"]
	for range 1000 {
		f.Stage("s").Observe(100 * time.Microsecond)
	}
	window, err := read(t, f)["s"].Sub(before)
	if err != nil {
		t.Fatal(err)
	}
	if window.Count() != 1000 {
		t.Fatalf("window count %d, want 1000", window.Count())
	}
	if p99 := window.Quantile(0.99); p99 < 84*time.Microsecond || p99 > 119*time.Microsecond {
		t.Errorf("window p99 %v, want about 100µs: the warm-up leaked in", p99)
	}
	if m := window.Mean(); m != 100*time.Microsecond {
		t.Errorf("window mean %v, want 100µs", m)
	}
	if _, err := before.Sub(read(t, f)["s"]); err == nil {
		t.Error("counts going down (a restart) were subtracted")
	}
	other := Snapshot{Bounds: []float64{1}, Counts: []uint64{1}}
	if _, err := read(t, f)["s"].Sub(other); err == nil {
		t.Error("snapshots with different buckets were subtracted")
	}
	shifted := before
	shifted.Bounds = append([]float64{}, before.Bounds...)
	shifted.Bounds[3] *= 1.01
	if _, err := read(t, f)["s"].Sub(shifted); err == nil {
		t.Error("snapshots with as many but other buckets were subtracted")
	}
}

// Quantile answers 0, never a wrapped duration, where there is nothing to
// estimate from.
func TestQuantileOutOfRange(t *testing.T) {
	f := NewFamily("q_seconds", "Q.", "stage", "s")
	f.Stage("s").Observe(time.Millisecond)
	s := read(t, f)["s"]
	for _, q := range []float64{0, -1, 1.01, math.NaN(), math.Inf(1)} {
		if got := s.Quantile(q); got != 0 {
			t.Errorf("Quantile(%v) = %v, want 0", q, got)
		}
	}
	onlyInf := Snapshot{Bounds: []float64{math.Inf(1)}, Counts: []uint64{5}}
	if got := onlyInf.Quantile(0.5); got != 0 {
		t.Errorf("a histogram of only +Inf: p50 %v, want 0", got)
	}
}

// Observations from many goroutines are all counted (run with -race).
func TestConcurrentObserve(t *testing.T) {
	f := NewFamily("c_seconds", "Concurrent.", "stage", "s")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				f.Stage("s").Observe(time.Duration(g*1000+i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	if n := read(t, f)["s"].Count(); n != 8000 {
		t.Fatalf("count %d, want 8000", n)
	}
}

// A nil family or histogram is a no-op: components built without metrics.
func TestNilIsANoOp(t *testing.T) {
	var f *Family
	h := f.Stage("anything")
	h.Observe(time.Second)
	h.Since(time.Now())
	if h != nil {
		t.Fatal("a nil family gave a histogram")
	}
}

func TestProgrammingErrorsPanic(t *testing.T) {
	for name, fn := range map[string]func(){
		"unknown stage":    func() { NewFamily("p_seconds", "P.", "stage", "a").Stage("b") },
		"quote in value":   func() { NewFamily("p_seconds", "P.", "stage", `a"b`) },
		"newline in value": func() { NewFamily("p_seconds", "P.", "stage", "a\nb") },
		"empty value":      func() { NewFamily("p_seconds", "P.", "stage", "") },
		"metric name":      func() { NewFamily("p-seconds", "P.", "stage", "a") },
		"label name":       func() { NewFamily("p_seconds", "P.", "the stage", "a") },
		"label le":         func() { NewFamily("p_seconds", "P.", "le", "a") },
		"help backslash":   func() { NewFamily("p_seconds", `P\.`, "stage", "a") },
		"help line break":  func() { NewFamily("p_seconds", "P.\nQ", "stage", "a") },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			fn()
		})
	}
}

// The exposition is what a Prometheus server parses: HELP and TYPE, then
// cumulative buckets ending at +Inf, _sum and _count.
func TestTextFormat(t *testing.T) {
	f := NewFamily("agentsigna_test_seconds", "Help text.", "stage", "read")
	f.Stage("read").Observe(3 * time.Millisecond)
	var buf bytes.Buffer
	if err := WriteText(&buf, f); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"# HELP agentsigna_test_seconds Help text.\n# TYPE agentsigna_test_seconds histogram\n",
		`agentsigna_test_seconds_bucket{stage="read",le="4e-06"} 0` + "\n",
		`agentsigna_test_seconds_bucket{stage="read",le="0.002048"} 0` + "\n",
		`agentsigna_test_seconds_bucket{stage="read",le="0.003444312"} 1` + "\n",
		`agentsigna_test_seconds_bucket{stage="read",le="+Inf"} 1` + "\n",
		`agentsigna_test_seconds_sum{stage="read"} 0.003` + "\n",
		`agentsigna_test_seconds_count{stage="read"} 1` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

func TestReadTextRejects(t *testing.T) {
	const ok = `m_bucket{stage="a",le="0.001"} 1` + "\n"
	for name, text := range map[string]string{
		"no +Inf":            ok,
		"not cumulative":     ok + `m_bucket{stage="a",le="0.002"} 0` + "\n" + `m_bucket{stage="a",le="+Inf"} 0` + "\n",
		"not ascending":      ok + `m_bucket{stage="a",le="0.0005"} 2` + "\n" + `m_bucket{stage="a",le="+Inf"} 2` + "\n",
		"bad le":             `m_bucket{stage="a",le="soon"} 1` + "\n",
		"bad count":          `m_bucket{stage="a",le="+Inf"} many` + "\n",
		"no stage label":     `m_bucket{le="+Inf"} 1` + "\n",
		"unquoted label":     `m_bucket{stage=a,le="+Inf"} 1` + "\n",
		"junk after a label": `m_bucket{stage="a"x,le="+Inf"} 1` + "\n",
		"no value":           `m_bucket{stage="a",le="+Inf"}` + "\n",
		"a label without =":  `m_bucket{stage} 1` + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := ReadText(strings.NewReader(text), "m", "stage"); err == nil {
				t.Errorf("read %+v", got)
			}
		})
	}
	// Other metrics, a sibling without the label among them, and
	// comments are skipped.
	got, err := ReadText(strings.NewReader("# HELP x y\nother_bucket{le=\"1\"} 5\nm_info{build=\"x\"} 1\nmm_bucket{le=\"1\"} 2\n"+
		ok+`m_bucket{stage="a",le="+Inf"} 1`+"\n"+`m_sum{stage="a"} 0.5`+"\n"), "m", "stage")
	if err != nil || got["a"].Count() != 1 || got["a"].Sum != 500*time.Millisecond || len(got) != 1 {
		t.Errorf("got %+v, %v", got, err)
	}
	if _, err := ReadText(strings.NewReader(`m_sum{stage="a"} half`+"\n"), "m", "stage"); err == nil {
		t.Error("a malformed _sum was read")
	}
}

// Snapshots, in process, reads what the text format carries.
func TestSnapshotsAsText(t *testing.T) {
	f := NewFamily("s_seconds", "S.", "stage", "a", "b")
	for i := range 500 {
		f.Stage("a").Observe(time.Duration(i) * 37 * time.Microsecond)
	}
	f.Stage("b").Observe(time.Hour)
	text, direct := read(t, f), f.Snapshots()
	for _, stage := range []string{"a", "b"} {
		x, y := text[stage], direct[stage]
		if !slices.Equal(x.Bounds, y.Bounds) || !slices.Equal(x.Counts, y.Counts) || x.Sum != y.Sum {
			t.Errorf("%s: text %+v, in process %+v", stage, x, y)
		}
	}
}
