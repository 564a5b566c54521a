package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Goals of issue 5 ("Performance").
const (
	goalRatio     = 1.0
	goalP99AtHalf = 5 * time.Millisecond
)

// Report is a whole run.
type Report struct {
	Options    Options
	Store      string
	CPUs       int
	OPA        Result
	AgentSigna Result
	// Open is the open-loop phase; nil when skipped.
	Open *Result
	// Floor is GET /healthz at the open loop's rate, through the same
	// harness and listener: the latency that is not the decision's. Nil
	// when the open loop was skipped.
	Floor *Result
	// DiskFloor is a write and fsync at the open loop's rate, in the
	// harness's temporary directory, each request waiting for one that
	// began after it arrived: the latency of the durable write alone (see
	// syncTarget). Nil when the open loop was skipped.
	DiskFloor *Result
	// OPAOpen is OPA in an open loop at half its own closed-loop rate: the
	// latency goal applied to the reference. Nil when the open loop was
	// skipped.
	OPAOpen *Result
	// Stages are the service's own stage histograms over the open loop's
	// measured window: where a decision's time went at that rate. None
	// without a pprof listener (Options.PprofURL, or the demo's), and
	// none when reading them failed (StagesErr; errNoStages from a build
	// without them).
	Stages    []Stage
	StagesErr error
}

// Results lists the phases that ran.
func (r Report) Results() []Result {
	out := []Result{r.OPA, r.AgentSigna}
	if r.Open != nil {
		out = append(out, *r.Open)
	}
	if r.Floor != nil {
		out = append(out, *r.Floor)
	}
	if r.DiskFloor != nil {
		out = append(out, *r.DiskFloor)
	}
	if r.OPAOpen != nil {
		out = append(out, *r.OPAOpen)
	}
	return out
}

// Ratio is AgentSigna's closed-loop requests/s over OPA's.
func (r Report) Ratio() float64 {
	if r.OPA.Rate == 0 {
		return 0
	}
	return r.AgentSigna.Rate / r.OPA.Rate
}

// Err reports a phase that had errors or answered nothing: its figures
// would not mean what the table says.
func (r Report) Err() error {
	var errs []error
	for _, res := range r.Results() {
		switch {
		case res.Errors > 0:
			errs = append(errs, fmt.Errorf("%s (%s): %d errors; the first: %v", res.Target, res.Load, res.Errors, res.FirstErr))
		case res.Requests == 0:
			errs = append(errs, fmt.Errorf("%s (%s): no request answered within the window", res.Target, res.Load))
		}
	}
	return errors.Join(errs...)
}

// Print writes the table and the verdicts on the goals.
func (r Report) Print(w io.Writer) {
	o := r.Options
	fmt.Fprintln(w, "AgentSigna allow path vs opa run --server: same base + acme example policy, same policy input")
	fmt.Fprintf(w, "store %s · %d CPUs shared by both servers and the harness · %s measured after %s warm-up · server log level %s · GOGC: %s\n\n",
		r.Store, r.CPUs, o.Duration, o.Warmup, o.ServerLogLevel, gcSetting(o))
	withDB := r.AgentSigna.DatabaseCPU > 0
	header := []string{"target", "load", "requests", "req/s", "p50", "p99", "max", "errors", "cpu/req"}
	if withDB {
		header = append(header, "db cpu/req")
	}
	rows := [][]string{header}
	for _, res := range r.Results() {
		row := []string{res.Target, res.Load, strconv.Itoa(res.Requests), strconv.FormatFloat(res.Rate, 'f', 0, 64),
			formatLatency(res.P50), formatLatency(res.P99), formatLatency(res.Max), strconv.Itoa(res.Errors), formatCPU(res.CPUPerRequest())}
		if withDB {
			row = append(row, formatCPU(res.DatabaseCPUPerRequest()))
		}
		rows = append(rows, row)
	}
	printTable(w, rows, 2)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "agentsigna/opa requests/s: %.3f× (goal ≥ %.1f×: %s)\n", r.Ratio(), goalRatio,
		met(r.Ratio() >= goalRatio && r.AgentSigna.Errors == 0 && r.OPA.Errors == 0))
	if as, opa := r.AgentSigna.CPUPerRequest()+r.AgentSigna.DatabaseCPUPerRequest(), r.OPA.CPUPerRequest(); as > 0 && opa > 0 {
		db := ""
		if withDB {
			db = fmt.Sprintf(", of which %s in the database's processes (every %s process on this machine)",
				formatCPU(r.AgentSigna.DatabaseCPUPerRequest()), r.Options.DatabaseProcess)
		}
		fmt.Fprintf(w, "processor time per request answered, closed loops: agentsigna %s%s, opa %s: %.2f× opa's\n",
			formatCPU(as), db, formatCPU(opa), float64(as)/float64(opa))
	}
	if r.Open != nil {
		fmt.Fprintf(w, "agentsigna p99 at %s (%s): %s (goal ≤ %s at half the max rate: %s)\n",
			formatRate(r.Open.OfferedRate), halfOrGiven(o), formatLatency(r.Open.P99), goalP99AtHalf,
			met(r.Open.Requests > 0 && r.Open.Errors == 0 && r.Open.P99 <= goalP99AtHalf))
	}
	if r.Floor != nil {
		fmt.Fprintf(w, "floor at %s, GET /healthz through the same harness and listener: p50 %s, p99 %s\n",
			formatRate(r.Floor.OfferedRate), formatLatency(r.Floor.P50), formatLatency(r.Floor.P99))
	}
	if r.DiskFloor != nil {
		fmt.Fprintf(w, "durable floor at %s, %s in the harness's temporary directory, requests sharing each as decisions share a commit: p50 %s, p99 %s, max %s\n",
			formatRate(r.DiskFloor.OfferedRate), r.DiskFloor.Target, formatLatency(r.DiskFloor.P50), formatLatency(r.DiskFloor.P99), formatLatency(r.DiskFloor.Max))
	}
	if r.OPAOpen != nil {
		fmt.Fprintf(w, "the same latency goal for opa, p99 at %s (half its closed-loop rate): %s (≤ %s: %s)\n",
			formatRate(r.OPAOpen.OfferedRate), formatLatency(r.OPAOpen.P99), goalP99AtHalf,
			met(r.OPAOpen.Requests > 0 && r.OPAOpen.Errors == 0 && r.OPAOpen.P99 <= goalP99AtHalf))
	}
	if len(r.Stages) > 0 && r.Open != nil {
		r.printStages(w)
	}
	if r.StagesErr != nil {
		fmt.Fprintf(w, "where the time went: not shown: %v\n", r.StagesErr)
	}
	if o.Rounds > 1 {
		fmt.Fprintf(w, "closed loops: %d rounds of %s each, pooled per server, OPA first in odd rounds and AgentSigna first in even ones\n", o.Rounds, o.Duration/time.Duration(o.Rounds))
	}
	fmt.Fprintln(w, "requests/s by quarter of each window (of every round's, pooled):")
	for _, res := range r.Results() {
		q := make([]string, len(res.Quarters))
		for i, n := range res.Quarters {
			q[i] = strconv.FormatFloat(float64(n)/(res.Window.Seconds()/4), 'f', 0, 64)
		}
		fmt.Fprintf(w, "  %s (%s): %s\n", res.Target, res.Load, strings.Join(q, " → "))
	}
}

// printStages writes where the open loop's decisions spent their time, as
// the service timed them.
func (r Report) printStages(w io.Writer) {
	fmt.Fprintf(w, "where the time went at %s, as the service timed it (/metrics, from the end of the open loop's warm-up to its last answer; quantiles within 19%%, under 4µs as 4µs):\n",
		formatRate(r.Open.OfferedRate))
	rows := [][]string{{"  stage", "count", "mean", "p50", "p90", "p99"}}
	var appends, batches uint64
	for _, s := range r.Stages {
		row := []string{"  " + s.Family + " " + s.Name, strconv.FormatUint(s.Count(), 10), "-", "-", "-", "-"}
		if s.Count() > 0 {
			row = append(row[:2], formatStage(s.Mean()), formatStage(s.Quantile(0.5)), formatStage(s.Quantile(0.9)), formatStage(s.Quantile(0.99)))
		}
		rows = append(rows, row)
		switch s.Family + " " + s.Name {
		case "ledger append queued":
			appends = s.Count()
		case "ledger append commit":
			batches = s.Count()
		}
	}
	printTable(w, rows, 1)
	if batches > 0 {
		fmt.Fprintf(w, "  ledger appends per batch: %.1f\n", float64(appends)/float64(batches))
	}
}

// formatStage is a stage's time: in µs under a millisecond (many stages
// take tens of µs), else as formatLatency.
func formatStage(d time.Duration) string {
	if d < time.Millisecond {
		return strconv.FormatInt(d.Round(time.Microsecond).Microseconds(), 10) + "µs"
	}
	return formatLatency(d)
}

// printTable aligns rows in columns: the first leftCols to the left (text),
// the others to the right (figures).
func printTable(w io.Writer, rows [][]string, leftCols int) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < leftCols {
				b.WriteString(cell + pad)
			} else {
				b.WriteString(pad + cell)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

func halfOrGiven(o Options) string {
	if o.OpenRate == 0 {
		return "half the closed-loop rate"
	}
	return "--open-rate"
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func formatLatency(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

// formatCPU is a processor time per request; "-" when not measured. Two
// decimals: /proc counts in 10 ms ticks.
func formatCPU(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return formatLatency(d)
}

func formatRate(r float64) string { return strconv.FormatFloat(r, 'f', 0, 64) + "/s" }
