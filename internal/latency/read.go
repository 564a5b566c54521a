package latency

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Snapshot is one histogram as read from the text format: cumulative
// counts by upper bound (seconds; the last +Inf), and the sum of what was
// observed.
type Snapshot struct {
	Bounds []float64
	Counts []uint64
	Sum    time.Duration
}

// Count is how many durations the histogram counted.
func (s Snapshot) Count() uint64 {
	if len(s.Counts) == 0 {
		return 0
	}
	return s.Counts[len(s.Counts)-1]
}

// Mean is the average duration; 0 for none.
func (s Snapshot) Mean() time.Duration {
	if n := s.Count(); n > 0 {
		return s.Sum / time.Duration(n)
	}
	return 0
}

// Sub is what was counted since earlier, a snapshot of the same histogram
// (same buckets) taken before s. Counts that went down (the service was
// restarted in between) are an error.
func (s Snapshot) Sub(earlier Snapshot) (Snapshot, error) {
	if len(earlier.Counts) == 0 {
		return s, nil
	}
	if len(earlier.Bounds) != len(s.Bounds) {
		return Snapshot{}, fmt.Errorf("latency: the buckets changed between snapshots")
	}
	out := Snapshot{Bounds: s.Bounds, Counts: make([]uint64, len(s.Counts)), Sum: s.Sum - earlier.Sum}
	for i := range s.Counts {
		if s.Bounds[i] != earlier.Bounds[i] {
			return Snapshot{}, fmt.Errorf("latency: the buckets changed between snapshots")
		}
		if s.Counts[i] < earlier.Counts[i] {
			return Snapshot{}, fmt.Errorf("latency: counts went down between snapshots (a restart?)")
		}
		out.Counts[i] = s.Counts[i] - earlier.Counts[i]
	}
	return out, nil
}

// Quantile estimates the q-quantile (0 < q ≤ 1) as Prometheus's
// histogram_quantile does: linearly within the bucket holding it, from the
// bucket below's bound (0 for the first: a value under the first bound,
// 4 µs, reads as up to 4 µs). One in the +Inf bucket is the largest finite
// bound. 0 when nothing was counted, for a q out of range, and for a
// histogram with no finite bucket.
func (s Snapshot) Quantile(q float64) time.Duration {
	n := s.Count()
	if n == 0 || !(q > 0 && q <= 1) || len(s.Bounds) < 2 {
		return 0
	}
	rank := q * float64(n)
	i := sort.Search(len(s.Counts), func(i int) bool { return float64(s.Counts[i]) >= rank })
	if i >= len(s.Bounds) || math.IsInf(s.Bounds[i], 1) {
		i = len(s.Bounds) - 1
		if math.IsInf(s.Bounds[i], 1) && i > 0 {
			i--
		}
		return seconds(s.Bounds[i])
	}
	lower, below := 0.0, uint64(0)
	if i > 0 {
		lower, below = s.Bounds[i-1], s.Counts[i-1]
	}
	in := float64(s.Counts[i] - below) // > 0: Counts[i] ≥ rank > below
	return seconds(lower + (s.Bounds[i]-lower)*(rank-float64(below))/in)
}

func seconds(f float64) time.Duration { return time.Duration(math.Round(f * 1e9)) }

// ReadText reads the histograms of metric name from the text exposition
// format, by the value of label: what WriteText writes (other metrics, and
// comments, are skipped). A histogram whose buckets are not cumulative and
// ascending, or that lacks its +Inf bucket, is an error.
func ReadText(r io.Reader, name, label string) (map[string]Snapshot, error) {
	out := map[string]Snapshot{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		metric, rest, ok := strings.Cut(line, "{")
		suffix, ours := strings.CutPrefix(metric, name)
		if !ok || !ours || (suffix != "_bucket" && suffix != "_sum" && suffix != "_count") {
			continue // another metric
		}
		labelText, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return nil, fmt.Errorf("latency: malformed line %q", line)
		}
		labels, err := parseLabels(labelText)
		if err != nil {
			return nil, fmt.Errorf("latency: %q: %w", line, err)
		}
		key, ok := labels[label]
		if !ok {
			return nil, fmt.Errorf("latency: %q has no %s label", line, label)
		}
		s := out[key]
		switch suffix {
		case "_bucket":
			le, err := strconv.ParseFloat(labels["le"], 64)
			if err != nil {
				return nil, fmt.Errorf("latency: %q: le: %w", line, err)
			}
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("latency: %q: %w", line, err)
			}
			if k := len(s.Bounds); k > 0 && (le <= s.Bounds[k-1] || n < s.Counts[k-1]) {
				return nil, fmt.Errorf("latency: %q: buckets must ascend and be cumulative", line)
			}
			s.Bounds, s.Counts = append(s.Bounds, le), append(s.Counts, n)
		case "_sum":
			f, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return nil, fmt.Errorf("latency: %q: %w", line, err)
			}
			s.Sum = seconds(f)
		case "_count":
		}
		out[key] = s
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for key, s := range out {
		if len(s.Bounds) == 0 || !math.IsInf(s.Bounds[len(s.Bounds)-1], 1) {
			return nil, fmt.Errorf("latency: %s{%s=%q} has no +Inf bucket", name, label, key)
		}
	}
	return out, nil
}

// parseLabels reads `a="x",b="y"`, values quoted as Go (and Prometheus)
// quote them.
func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	for s != "" {
		k, rest, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("malformed labels")
		}
		v, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return nil, fmt.Errorf("label %s: %w", k, err)
		}
		if labels[k], err = strconv.Unquote(v); err != nil {
			return nil, err
		}
		s = rest[len(v):]
		if s != "" {
			if s[0] != ',' {
				return nil, fmt.Errorf("malformed labels")
			}
			s = s[1:]
		}
	}
	return labels, nil
}
