// Package latency measures how long the stages of serving a request take,
// in cumulative histograms read in the Prometheus text exposition format.
//
// A CPU profile shows where processor time goes; it does not show a
// decision waiting for its ledger commit or for its organization's policy
// worker, which is most of a decision's latency. These histograms do: the
// service keeps them (decision.Config.Stages, ledger.Config.Stages) and
// serves them on its debug listener (serve --pprof-addr, /metrics), and
// the load harness reads them before and after a measured window to print
// where the time went at that rate.
//
// The buckets are fixed, four per doubling (upper bounds 2^(k/4) µs, from
// 4 µs to about 16.8 s), the resolution of Prometheus's native histograms
// of schema 2: a quantile read from them is within 19% of the true value
// between those bounds (below 4 µs it reads as up to 4 µs; above 16.8 s,
// as 16.8 s).
package latency

import (
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The buckets' upper bounds are 2^(k/4) µs for k = firstK … lastK.
const (
	firstK, lastK = 8, 96
	nBounds       = lastK - firstK + 1
)

// bounds are the buckets' upper bounds ("le"), in nanoseconds. A value
// above the last counts only in +Inf.
var bounds = func() []int64 {
	var b []int64
	for k := firstK; k <= lastK; k++ {
		b = append(b, int64(math.Round(math.Exp2(float64(k)/4)*1e3)))
	}
	return b
}()

// Histogram counts durations into the buckets. The zero value is ready;
// a nil *Histogram ignores what it is given, so an unwired stage costs
// its caller only the clock reads. Safe for concurrent use.
type Histogram struct {
	counts [nBounds + 1]atomic.Uint64 // a bucket per bound, then +Inf
	sum    atomic.Int64               // nanoseconds
}

// Observe counts d (a negative d as 0).
func (h *Histogram) Observe(d time.Duration) {
	if h == nil {
		return
	}
	d = max(d, 0)
	i, _ := slices.BinarySearch(bounds, int64(d))
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Since observes the time since start.
func (h *Histogram) Since(start time.Time) {
	if h != nil {
		h.Observe(time.Since(start))
	}
}

// promName is a Prometheus metric or label name (without colons).
var promName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Family is a metric of one histogram per value of one label, fixed when
// it is made: the stages of one thing.
type Family struct {
	name, help, label string
	values            []string
	hists             []*Histogram
}

// NewFamily makes the metric name (its unit seconds, as Prometheus names
// end in _seconds), with a histogram for each of values of label. Names,
// help and values are written unescaped: a metric or label name that is
// not a Prometheus name, help with a backslash or line break, or a value
// that would need escaping, is a programming error, and panics.
func NewFamily(name, help, label string, values ...string) *Family {
	if !promName.MatchString(name) || !promName.MatchString(label) || label == "le" || strings.ContainsAny(help, "\\\n") {
		panic(fmt.Sprintf("latency: metric %q, label %q, help %q", name, label, help))
	}
	f := &Family{name: name, help: help, label: label, values: values}
	for _, v := range values {
		if v == "" || strconv.Quote(v) != `"`+v+`"` {
			panic(fmt.Sprintf("latency: %s: label value %q", name, v))
		}
		f.hists = append(f.hists, new(Histogram))
	}
	return f
}

// Stage is the histogram of value; nil (which ignores what it is given)
// when f is nil, so that a component built without metrics needs no
// branch. A value f was not made with is a programming error: it panics.
func (f *Family) Stage(value string) *Histogram {
	if f == nil {
		return nil
	}
	i := slices.Index(f.values, value)
	if i < 0 {
		panic(fmt.Sprintf("latency: %s has no %s %q", f.name, f.label, value))
	}
	return f.hists[i]
}

// snapshot reads h: its cumulative counts by bound (the last +Inf) and
// its sum. The counts are read before the sum, each atomically: a reader
// during observations sees buckets that are cumulative and never go down.
func (h *Histogram) snapshot() Snapshot {
	s := Snapshot{Bounds: make([]float64, 0, len(h.counts)), Counts: make([]uint64, 0, len(h.counts))}
	var cum uint64
	for j := range h.counts {
		cum += h.counts[j].Load()
		le := math.Inf(1)
		if j < len(bounds) {
			le = float64(bounds[j]) / 1e9
		}
		s.Bounds, s.Counts = append(s.Bounds, le), append(s.Counts, cum)
	}
	s.Sum = time.Duration(h.sum.Load())
	return s
}

// Snapshots reads f's histograms in process, by label value: what
// ReadText reads back from WriteText.
func (f *Family) Snapshots() map[string]Snapshot {
	out := make(map[string]Snapshot, len(f.values))
	for i, h := range f.hists {
		out[f.values[i]] = h.snapshot()
	}
	return out
}

// WriteText writes the families in the Prometheus text exposition format
// (version 0.0.4): per histogram, cumulative _bucket counts by le in
// seconds, then _sum and _count.
func WriteText(w io.Writer, fams ...*Family) error {
	var b []byte
	for _, f := range fams {
		b = fmt.Appendf(b, "# HELP %s %s\n# TYPE %s histogram\n", f.name, f.help, f.name)
		for i, h := range f.hists {
			series := fmt.Sprintf("%s=%q", f.label, f.values[i])
			s := h.snapshot()
			for j, n := range s.Counts {
				b = fmt.Appendf(b, "%s_bucket{%s,le=%q} %d\n", f.name, series, strconv.FormatFloat(s.Bounds[j], 'g', -1, 64), n)
			}
			b = fmt.Appendf(b, "%s_sum{%s} %s\n", f.name, series, strconv.FormatFloat(s.Sum.Seconds(), 'g', -1, 64))
			b = fmt.Appendf(b, "%s_count{%s} %d\n", f.name, series, s.Count())
		}
	}
	_, err := w.Write(b)
	return err
}
