package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store/postgres/pgtest"
)

// Short by default, so that `make test` keeps the harness working without
// spending time on it; `make bench-load` passes the real figures:
//
//	go test -run '^TestLoadPostgres$' ./tests/load -args -load.duration=20s -load.warmup=3s
var (
	loadDuration    = flag.Duration("load.duration", time.Second, "measured length of each phase")
	loadWarmup      = flag.Duration("load.warmup", 200*time.Millisecond, "warm-up before each phase")
	loadConcurrency = flag.Int("load.concurrency", 32, "requests in flight")
	loadRounds      = flag.Int("load.rounds", 2, "alternating rounds of the closed loops")
	loadAgentSigna  = flag.String("load.agentsigna", "", "agentsigna binary to measure, relative to the module root (default: build one as make build does)")
	loadCPUProfile  = flag.String("load.cpuprofile", "", "TestLoadPostgres: write the server's CPU profile of the measured closed loop to this file (with -load.rounds=1)")
)

// The binaries are built once for the package, into a directory TestMain
// owns. TestMain returns m.Run's result rather than exiting (only
// cmd/agentsigna exits).
var (
	binDir    string
	buildOnce sync.Once
	built     struct{ agentsigna, opa string }
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agentsigna-load-test")
	if err == nil {
		binDir = dir
		defer os.RemoveAll(dir)
	}
	m.Run()
}

// binaries builds agentsigna as `make build` does (no race detector: the
// harness measures it), unless -load.agentsigna names one, and opa at the
// go.mod tool version.
func binaries(t *testing.T) (agentsigna, opa string) {
	t.Helper()
	buildOnce.Do(func() {
		if binDir == "" {
			buildErr = fmt.Errorf("no temporary directory")
			return
		}
		if built.agentsigna = *loadAgentSigna; built.agentsigna != "" && !filepath.IsAbs(built.agentsigna) {
			built.agentsigna = filepath.Join("..", "..", built.agentsigna)
		}
		if built.agentsigna == "" {
			built.agentsigna = filepath.Join(binDir, "agentsigna")
			out, err := exec.Command("go", "build", "-trimpath", "-o", built.agentsigna, "../../cmd/agentsigna").CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build agentsigna: %v\n%s", err, out)
				return
			}
		}
		built.opa, buildErr = buildOPA(context.Background(), binDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built.agentsigna, built.opa
}

func testOptions(t *testing.T) Options {
	o := DefaultOptions()
	o.AgentSigna, o.OPA = binaries(t)
	o.Policies = filepath.Join("..", "..", "policies")
	o.Concurrency, o.Warmup, o.Duration, o.Rounds = *loadConcurrency, *loadWarmup, *loadDuration, *loadRounds
	return o
}

// checkReport asks only that every phase measured something and nothing
// failed: figures depend on the machine, and are never asserted.
func checkReport(t *testing.T, rep Report) {
	t.Helper()
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	results := rep.Results()
	if len(results) != 6 || rep.Floor == nil || rep.DiskFloor == nil || rep.OPAOpen == nil {
		t.Fatalf("%d phases ran, want 6 (opa and agentsigna closed and open loop, the healthz and disk floors)", len(results))
	}
	if want := rep.Options.OpenRate; want == 0 && rep.Open.OfferedRate != rep.AgentSigna.Rate/2 || want > 0 && rep.Open.OfferedRate != want {
		t.Errorf("the open loop ran at %v/s; --open-rate %v, closed loop %v/s", rep.Open.OfferedRate, want, rep.AgentSigna.Rate)
	}
	if rep.Floor.OfferedRate != rep.Open.OfferedRate || rep.DiskFloor.OfferedRate != rep.Open.OfferedRate {
		t.Errorf("the floors ran at %v/s and %v/s, the open loop at %v/s", rep.Floor.OfferedRate, rep.DiskFloor.OfferedRate, rep.Open.OfferedRate)
	}
	for _, res := range []Result{rep.OPA, rep.AgentSigna} {
		if pooled := strings.Contains(res.Load, " rounds"); pooled != (rep.Options.Rounds > 1) || res.Window != rep.Options.Duration/time.Duration(rep.Options.Rounds)*time.Duration(rep.Options.Rounds) {
			t.Errorf("%s: %q over %v, with %d rounds of %v", res.Target, res.Load, res.Window, rep.Options.Rounds, rep.Options.Duration)
		}
	}
	if want := rep.OPA.Rate / 2; rep.OPAOpen.OfferedRate != want || !strings.HasPrefix(rep.OPAOpen.Target, "opa ") {
		t.Errorf("opa's open loop: %s at %v/s, want opa at half its closed-loop rate, %v/s", rep.OPAOpen.Target, rep.OPAOpen.OfferedRate, want)
	}
	for _, res := range results {
		if res.Requests == 0 || res.Rate <= 0 || res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
			t.Errorf("%s (%s): implausible figures %+v", res.Target, res.Load, res)
		}
	}
	if rep.Ratio() <= 0 {
		t.Errorf("ratio %v", rep.Ratio())
	}
	checkStages(t, rep)
	if !haveProc() {
		return // no processor times to check on this system
	}
	// Both servers' processor time over their closed-loop windows: some,
	// and no more than every CPU for the whole window.
	for _, res := range []Result{rep.OPA, rep.AgentSigna} {
		if most := res.Window * time.Duration(rep.CPUs); res.CPU <= 0 || res.CPU > most+time.Second {
			t.Errorf("%s: %v of CPU time in %v on %d CPUs", res.Target, res.CPU, res.Window, rep.CPUs)
		}
	}
	if (rep.AgentSigna.DatabaseCPU > 0) != (rep.Options.DatabaseProcess != "") {
		t.Errorf("database CPU %v with --database-process %q", rep.AgentSigna.DatabaseCPU, rep.Options.DatabaseProcess)
	}
	var out strings.Builder
	rep.Print(&out)
	if !strings.Contains(out.String(), "processor time per request answered, closed loops: agentsigna ") {
		t.Errorf("the table has no CPU time per request:\n%s", out.String())
	}
}

// checkStages asks that the service's stage histograms were read over the
// open loop, and hold what the load implies: every decision an allow, so
// each decision stage (sign included) timed once per decision, and at
// least one ledger append per decision, fewer batches than appends.
func checkStages(t *testing.T, rep Report) {
	t.Helper()
	if rep.StagesErr != nil {
		t.Fatal(rep.StagesErr)
	}
	got := map[string]Stage{}
	for _, s := range rep.Stages {
		got[s.Family+" "+s.Name] = s
	}
	total := got["decision total"].Count()
	// At most every request the open loop sent, warm-up included (those
	// due in the warm-up may be sent after it when the loop fell behind).
	sent := uint64(rep.Open.OfferedRate*(rep.Options.Warmup+rep.Options.Duration).Seconds()) + 1
	if total == 0 || total > sent {
		t.Fatalf("%d decisions timed over an open loop that sent %d; stages %+v", total, sent, rep.Stages)
	}
	// A decision in flight as a scrape is read may have some stages
	// before it and the rest after: counts agree up to the requests in
	// flight at the window's two edges.
	edges := uint64(2 * rep.Options.Concurrency)
	near := func(n, want uint64) bool { return n+edges >= want && n <= want+edges }
	for _, name := range []string{"read", "turn", "policy", "sign", "ledger"} {
		s, ok := got["decision "+name]
		if !ok || !near(s.Count(), total) {
			t.Errorf("decision %s: %d timed, want %d (± %d)", name, s.Count(), total, edges)
		}
	}
	if q, c := got["ledger append queued"].Count(), got["ledger append commit"].Count(); q+edges < total || c == 0 || c > q+edges {
		t.Errorf("ledger appends: %d queued, %d batches, for %d decisions", q, c, total)
	}
	if p := got["decision total"].Quantile(0.99); p <= 0 || p < got["decision ledger"].Quantile(0.5) {
		t.Errorf("decision total p99 %v, ledger p50 %v", p, got["decision ledger"].Quantile(0.5))
	}
	var out strings.Builder
	rep.Print(&out)
	if !strings.Contains(out.String(), "where the time went at ") || !strings.Contains(out.String(), "  decision ledger ") {
		t.Errorf("the report has no stage table:\n%s", out.String())
	}
}

// TestHarnessEmbedded runs the harness as `go run ./tests/load` does:
// serve --demo on the embedded store, then OPA, both driven briefly.
// It also takes the server's CPU profile of the closed loop.
func TestHarnessEmbedded(t *testing.T) {
	o := testOptions(t)
	o.CPUProfile = filepath.Join(t.TempDir(), "cpu.pprof")
	o.Rounds = 1 // one window to profile; TestLoadPostgres takes rounds
	// A given open-loop rate (TestLoadPostgres takes the default, half the
	// measured rate): AgentSigna and the floor run at it, OPA still at
	// half its own.
	o.OpenRate = 200
	rep, err := Benchmark(t.Context(), o, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	rep.Print(t.Output())
	checkReport(t, rep)
	prof, err := os.ReadFile(o.CPUProfile)
	if err != nil {
		t.Fatal(err)
	}
	// A pprof profile is gzip-compressed protobuf.
	if len(prof) < 100 || prof[0] != 0x1f || prof[1] != 0x8b {
		t.Fatalf("the CPU profile is not one: %d bytes, % x…", len(prof), prof[:min(len(prof), 8)])
	}
}

func TestProfileOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		ok     bool
	}{
		{"profile of the demo", func(o *Options) { o.CPUProfile = "cpu.pprof" }, true},
		{"profile of a running service", func(o *Options) {
			o.TargetURL, o.Credentials, o.CPUProfile, o.PprofURL = "http://127.0.0.1:8080", "c.json", "cpu.pprof", "http://127.0.0.1:6060"
		}, true},
		{"running service without its pprof URL", func(o *Options) {
			o.TargetURL, o.Credentials, o.CPUProfile = "http://127.0.0.1:8080", "c.json", "cpu.pprof"
		}, false},
		{"pprof URL without a profile (stage histograms only)", func(o *Options) {
			o.TargetURL, o.Credentials, o.PprofURL = "http://127.0.0.1:8080", "c.json", "http://127.0.0.1:6060"
		}, true},
		{"pprof URL without a running service", func(o *Options) { o.PprofURL = "http://127.0.0.1:6060" }, false},
		{"pprof URL off loopback", func(o *Options) {
			o.TargetURL, o.Credentials, o.CPUProfile, o.PprofURL = "http://127.0.0.1:8080", "c.json", "cpu.pprof", "http://10.0.0.1:6060"
		}, false},
		{"rounds", func(o *Options) { o.Rounds = 4 }, true},
		{"no rounds", func(o *Options) { o.Rounds = 0 }, false},
		{"rounds shorter than 100ms", func(o *Options) { o.Duration, o.Rounds = time.Second, 20 }, false},
		{"a profile of rounds", func(o *Options) { o.Rounds, o.CPUProfile = 4, "cpu.pprof" }, false},
		{"the running service's process", func(o *Options) {
			o.TargetURL, o.Credentials, o.ServerPID, o.DatabaseProcess = "http://127.0.0.1:8080", "c.json", 4242, "postgres"
		}, true},
		{"a process id without a running service", func(o *Options) { o.ServerPID = 4242 }, false},
		{"database processes of the demo", func(o *Options) { o.DatabaseProcess = "postgres" }, false},
		{"a negative process id", func(o *Options) { o.TargetURL, o.Credentials, o.ServerPID = "http://127.0.0.1:8080", "c.json", -1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			tc.mutate(&o)
			if err := o.validate(); (err == nil) != tc.ok {
				t.Errorf("validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestLoadPostgres is the comparison on PostgreSQL: a fresh database and
// roles (pgtest; skipped when PostgreSQL is unreachable), the demo
// organization set up with the local CLI as tests/agent_e2e_test.go does,
// the service started on it, and the harness driving it against --target-url.
func TestLoadPostgres(t *testing.T) {
	db := pgtest.NewWithMasterKey(t, "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=")
	o := testOptions(t)
	prefix := strings.TrimSuffix(db.Roles.Owner, "_owner")
	env := []string{
		"AGENTSIGNA_MASTER_KEY=MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=",
		"AGENTSIGNA_DATABASE_URL=" + db.TenantURL, "AGENTSIGNA_PLATFORM_DATABASE_URL=" + db.PlatformURL,
		"AGENTSIGNA_ROLE_PREFIX=" + prefix,
	}
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(o.AgentSigna, args...)
		cmd.Env = append(os.Environ(), env...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("agentsigna %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	dir := t.TempDir()
	cli("org", "create", "--slug", "acme", "--name", "Acme")
	cli("policy", "push", "--tenant", "acme", "--by", "usr_author", filepath.Join(o.Policies, "examples", "acme"))
	cli("policy", "activate", "--tenant", "acme", "--revision", "acme-example-1", "--by", "usr_author", "--approved-by", "usr_admin")
	keyFile := filepath.Join(dir, "agent.jwk")
	agentID := strings.Fields(cli("agent", "register", "--tenant", "acme", "--name", "invoice-payer",
		"--sponsor", "usr_sponsor", "--risk-tier", "low", "--generate-key", keyFile))[0]
	counterparty := strings.Fields(cli("counterparty", "add", "--tenant", "acme", "--name", "Northwind Supplies", "--status", "verified"))[0]
	privateJWK, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := json.Marshal(map[string]any{"tenant": "acme",
		"agent":          map[string]any{"id": agentID, "private_jwk": json.RawMessage(privateJWK)},
		"counterparties": []map[string]string{{"id": counterparty, "status": "verified"}}})
	credsFile := filepath.Join(dir, "credentials.json")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}

	ta, err := freeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	pa, err := freeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	pprofAddr, err := freeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"serve", "--tenant-addr", ta, "--platform-addr", pa, "--public-url", "http://" + ta, "--log-level", o.ServerLogLevel,
		"--agent-decisions-per-second", unboundedAgent, "--pprof-addr", pprofAddr}
	o.CPUProfile, o.PprofURL = *loadCPUProfile, "http://"+pprofAddr
	p, err := startProcess("agentsigna serve", o.AgentSigna, args, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
	})
	if err := p.waitHealthy(t.Context(), http.DefaultClient, "http://"+ta+"/healthz", time.Minute); err != nil {
		t.Fatal(err)
	}

	o.TargetURL, o.Credentials, o.Counterparty = "http://"+ta, credsFile, counterparty
	o.ServerPID = p.cmd.Process.Pid
	if u, err := url.Parse(db.AdminURL); err == nil && isLoopbackHost(u.Hostname()) {
		// Every postgres process on this machine: the test's database is
		// the one at work while it runs (other packages' tests may share
		// the server, which then counts their time too).
		o.DatabaseProcess = "postgres"
	}
	o.Store = "PostgreSQL"
	if u, err := url.Parse(db.AdminURL); err == nil {
		o.Store += " at " + u.Host
	}
	rep, err := Benchmark(t.Context(), o, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	rep.Print(t.Output())
	checkReport(t, rep)
}

func TestCheckLoopbackURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080", true},
		{"http://localhost:8080/", true},
		{"http://[::1]:8080", true},
		{"http://127.1.2.3:80", true},
		{"http://10.0.0.1:8080", false},
		{"http://example.com:8080", false},
		{"https://127.0.0.1:8080", false},
		{"http://127.0.0.1:8080/v1", false},
		{"127.0.0.1:8080", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			if err := checkLoopbackURL(tc.url); (err == nil) != tc.ok {
				t.Errorf("checkLoopbackURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
			}
		})
	}
}

// The client refuses to connect anywhere but loopback, whatever the URL.
func TestClientRefusesNonLoopback(t *testing.T) {
	client := newClient(1, 5*time.Second)
	resp, err := client.Get("http://192.0.2.1:9/") // TEST-NET-1: never routed
	if err == nil {
		resp.Body.Close()
		t.Fatal("connected to a non-loopback address")
	}
	if !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("refused for another reason: %v", err)
	}
}

// The floor counts only a 200 from /healthz: a refusal is an error, not a
// fast answer.
func TestHealthzTarget(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	target := newHealthzTarget(newClient(1, 5*time.Second), srv.URL)
	if err := target.Do(t.Context()); err != nil {
		t.Fatalf("a 200: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := target.Do(t.Context()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("a 503: %v, want an error naming it", err)
	}
}

// ms turns milliseconds into latencies.
func ms(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 0.99, 0},
		{"one", ms(7), 0.5, 7 * time.Millisecond},
		{"median of four", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p99 of 4", ms(1, 2, 3, 4), 0.99, 4 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

// Pooled rounds add up windows, answers and latencies, and their
// percentiles are the pooled latencies'.
func TestPool(t *testing.T) {
	a := Result{Target: "x", Load: "closed, 2 in flight", Window: time.Second, answered: 3, latencies: ms(1, 2, 3), Quarters: [4]int{1, 1, 1, 0},
		CPU: 300 * time.Millisecond, DatabaseCPU: 30 * time.Millisecond}
	b := Result{Target: "x", Load: "closed, 2 in flight", Window: time.Second, answered: 1, latencies: ms(10), Quarters: [4]int{0, 0, 0, 1},
		Errors: 1, FirstErr: errors.New("boom"), CPU: 500 * time.Millisecond, DatabaseCPU: 10 * time.Millisecond}
	a.fill()
	b.fill()
	if got := pool([]Result{a}); got.Load != a.Load || got.Rate != 3 {
		t.Fatalf("one round pooled: %+v", got)
	}
	got := pool([]Result{a, b})
	if got.Load != "closed, 2 in flight, 2 rounds" || got.Window != 2*time.Second || got.Requests != 4 || got.Rate != 2 ||
		got.P50 != 2*time.Millisecond || got.P99 != 10*time.Millisecond || got.Max != 10*time.Millisecond ||
		got.Quarters != [4]int{1, 1, 1, 1} || got.Errors != 1 || got.FirstErr == nil ||
		got.CPUPerRequest() != 200*time.Millisecond || got.DatabaseCPUPerRequest() != 10*time.Millisecond {
		t.Fatalf("pooled: %+v", got)
	}
	// A round without a database time leaves the pool without one.
	b.DatabaseCPU = 0
	if got := pool([]Result{a, b}); got.CPUPerRequest() != 200*time.Millisecond || got.DatabaseCPU != 0 {
		t.Fatalf("pooled with an unmeasured round: cpu %v, database %v", got.CPU, got.DatabaseCPU)
	}
}

func TestParseStat(t *testing.T) {
	// proc(5): the name may hold spaces and parentheses; utime and stime
	// are fields 14 and 15.
	line := []byte("4242 (post (gres) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 1 0 100 200000 300 18446744073709551615\n")
	st, err := parseStat(line)
	if err != nil || st.comm != "post (gres) x" || st.ppid != 1 || st.cpu != 3250*time.Millisecond {
		t.Fatalf("parseStat: %+v, %v", st, err)
	}
	for _, bad := range []string{"", "4242 postgres S 1", "4242 (postgres) S 1 2 3", "4242 (postgres) S 1 4242 4242 0 -1 4194560 1234 0 0 0 x 75 0",
		"4242 (postgres) S x 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

// The clocks read this very process: its time grows with work done, and
// a process that is not there is an error, not zero.
func TestCPUClocks(t *testing.T) {
	if !haveProc() {
		t.Skip("no /proc on this system")
	}
	self := processCPU(os.Getpid())
	before, err := self()
	if err != nil {
		t.Fatal(err)
	}
	var used time.Duration
	for deadline := time.Now().Add(5 * time.Second); used == 0 && time.Now().Before(deadline); {
		spin(20 * time.Millisecond)
		now, err := self()
		if err != nil {
			t.Fatal(err)
		}
		used = now.since(before)
	}
	if used <= 0 {
		t.Fatal("this process's CPU time did not grow")
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	named, err := processesNamed(strings.TrimSpace(string(comm)))()
	if err != nil || named.byPID[os.Getpid()] <= 0 {
		t.Errorf("processes named like this one: %v, %v", named, err)
	}
	if _, err := processesNamed("no-such-process")(); err == nil {
		t.Error("a name no process has read as a time")
	}
	// A process's clock counts its children: the service's policy workers.
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	if r, err := self(); err != nil || len(r.byPID) < 2 {
		t.Errorf("this process and its children: %v, %v", r, err)
	} else if _, ok := r.byPID[child.Process.Pid]; !ok {
		t.Errorf("the child %d is not counted: %v", child.Process.Pid, r)
	}
	if _, err := processCPU(1 << 30)(); err == nil {
		t.Error("a process id nothing has read as a time")
	}
	if err := (serverClocks{server: processCPU(1 << 30)}).check(); err == nil {
		t.Error("check passed a clock that reads nothing")
	}
}

// A reading's time since another counts the processes of the later one: an
// ended process for none of its time, a new one for all of it.
func TestCPUReadingSince(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	earlier := cpuReading{byPID: map[int]time.Duration{1: ms(100), 2: ms(500), 3: ms(70)}}
	later := cpuReading{byPID: map[int]time.Duration{1: ms(130), 2: ms(520), 4: ms(40)}}
	if got := later.since(earlier); got != ms(30+20+40) {
		t.Errorf("since = %v, want 90ms (pid 3 ended, pid 4 is new)", got)
	}
	// A pid reused by a younger process reads less than before: all of it
	// is new.
	reused := cpuReading{byPID: map[int]time.Duration{2: ms(10)}}
	if got := reused.since(earlier); got != ms(10) {
		t.Errorf("since a reused pid = %v, want 10ms", got)
	}
}

// spin burns processor time for d.
func spin(d time.Duration) {
	x := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		x++
	}
	_ = x
}

// A CPU window is the difference of the readings at its two ends; a clock
// failing at either end, or a run cancelled before the end, gives none.
func TestCPUWindow(t *testing.T) {
	var reads atomic.Int64
	counting := func() (cpuReading, error) {
		return cpuReading{byPID: map[int]time.Duration{1: time.Duration(reads.Add(1)) * time.Second}}, nil
	}
	var dbReads atomic.Int64
	failingAtEnd := func() (cpuReading, error) {
		if dbReads.Add(1) > 1 {
			return cpuReading{}, errors.New("gone")
		}
		return cpuReading{byPID: map[int]time.Duration{2: time.Second}}, nil
	}
	now := time.Now()
	w := startCPUWindow(context.Background(), serverClocks{server: counting, database: failingAtEnd}, now.Add(10*time.Millisecond), now.Add(30*time.Millisecond)).wait()
	if w.server != time.Second || w.database != 0 {
		t.Errorf("window: server %v, database %v; want 1s of two readings, and no database time", w.server, w.database)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w = startCPUWindow(ctx, serverClocks{server: counting}, now, now.Add(time.Hour))
	cancel()
	done := make(chan struct{})
	go func() {
		if w := w.wait(); w.server != 0 {
			t.Errorf("a cancelled window measured %v", w.server)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled window is still waiting for its end")
	}
}

// OPA gets the service's collector target unless GOGC is set for both or
// --opa-gc go asks for OPA as it ships; the header says which.
func TestOPAGC(t *testing.T) {
	t.Setenv("GOGC", "") // restored after the test
	os.Unsetenv("GOGC")
	if got := gcEnv("service"); len(got) != 1 || got[0] != "GOGC="+serviceGOGC {
		t.Errorf("GOGC unset, service: %q", got)
	}
	if got := gcEnv("go"); got != nil {
		t.Errorf("GOGC unset, go: %q", got)
	}
	o := DefaultOptions()
	o.OPAGC = "go"
	if s := gcSetting(o); s != "opa Go's default, 100, as it ships; agentsigna 400, its default" {
		t.Errorf("setting %q", s)
	}
	o.TargetURL = "http://127.0.0.1:8080"
	if s := gcSetting(o); !strings.HasSuffix(s, "agentsigna as the running service was started") {
		t.Errorf("setting with a running service %q", s)
	}
	t.Setenv("GOGC", "200")
	if got := gcEnv("service"); got != nil {
		t.Errorf("GOGC set: %q, want OPA to inherit it", got)
	}
	if s := gcSetting(DefaultOptions()); s != "opa 200 (from the environment); agentsigna 200 (from the environment)" {
		t.Errorf("setting %q", s)
	}
	o = DefaultOptions()
	o.OPAGC = "fast"
	if err := o.validate(); err == nil || !strings.Contains(err.Error(), "--opa-gc") {
		t.Errorf("validate: %v", err)
	}
}
