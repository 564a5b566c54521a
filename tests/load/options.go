package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Options configures one benchmark run. DefaultOptions holds every default;
// validate checks a configuration once, before anything starts.
type Options struct {
	// AgentSigna is the agentsigna binary: it serves the demo organization
	// (without TargetURL) and signs the agent's client assertions.
	AgentSigna string
	// TargetURL is the tenant plane of a running service ("" starts
	// `agentsigna serve --demo` on a fresh embedded store). With it,
	// Credentials names the agent's credentials file and Counterparty a
	// verified counterparty ("" takes the first verified one in the file).
	// The harness's one agent asks far faster than serve's default
	// per-agent bound: serve it with --agent-decisions-per-second 0 (no
	// bound), or a rate it never reaches, as the harness does.
	TargetURL    string
	Credentials  string
	Counterparty string
	// Store labels the run in the table ("embedded (SQLite)" when the
	// harness starts the service).
	Store string
	// OPA is the opa binary ("" builds github.com/open-policy-agent/opa,
	// the version go.mod pins as a tool, into the work directory).
	OPA string
	// Policies holds base/ and examples/acme/ (the repository's policies/).
	Policies string

	Concurrency int
	Warmup      time.Duration
	Duration    time.Duration
	// Rounds splits the two closed loops into that many rounds of a slice
	// each, whose order alternates (OPA, AgentSigna, AgentSigna, OPA, …),
	// of Duration/Rounds each, pooled
	// per server: a machine whose speed drifts during the run then drifts
	// under both alike, and the ratio compares like with like. The first
	// slice of each warms up for Warmup, the others for a tenth of it.
	Rounds int
	// OpenRate is the arrival rate of the open-loop phase in requests/s;
	// 0 means half of AgentSigna's measured maximum, and a negative value
	// skips the phase.
	OpenRate float64
	// RequestTimeout bounds one request.
	RequestTimeout time.Duration
	// ServerLogLevel is given to both servers: info (both log every
	// request by default) or error.
	ServerLogLevel string
	// OPAGC is OPA's garbage-collector target when GOGC is not set for
	// both: "service" (the default) gives it the one `agentsigna serve`
	// sets itself (400), so that neither server has a cheaper collector;
	// "go" leaves it at Go's default (100), OPA as it ships.
	OPAGC string
	// CPUProfile, when set, is where the AgentSigna server's CPU profile
	// of the measured closed-loop window is written (from its
	// --pprof-addr listener; PprofURL names it with TargetURL).
	CPUProfile string
	// PprofURL is the --pprof-addr listener of the service at TargetURL:
	// its CPU profile (CPUProfile) and its stage histograms (/metrics),
	// which the report shows for the open loop. The demo the harness
	// starts always has one.
	PprofURL string
	// ServerPID is the process id of the service at TargetURL, on this
	// machine, whose processor time per request the table then shows (the
	// harness knows the processes it starts). DatabaseProcess is the
	// command name of its database's processes ("postgres"): the time of
	// every process of that name on this machine is shown beside it, so
	// nothing else should be using that database server during a run; ""
	// for none.
	ServerPID       int
	DatabaseProcess string
}

// DefaultOptions are the figures the issue asks for: 32 requests in
// flight for 20 s after a 3 s warm-up, from the module root.
func DefaultOptions() Options {
	return Options{
		AgentSigna:     "bin/agentsigna",
		Policies:       "policies",
		Concurrency:    32,
		Rounds:         1,
		Warmup:         3 * time.Second,
		Duration:       20 * time.Second,
		RequestTimeout: 10 * time.Second,
		ServerLogLevel: "info",
		OPAGC:          "service",
	}
}

func (o *Options) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.AgentSigna, "agentsigna", o.AgentSigna, "agentsigna binary (serves the demo, signs client assertions)")
	fs.StringVar(&o.TargetURL, "target-url", o.TargetURL, "tenant plane of a running service on loopback, started with --agent-decisions-per-second 0 (default: start serve --demo on a fresh embedded store)")
	fs.StringVar(&o.Credentials, "credentials", o.Credentials, "the agent's credentials file (with --target-url)")
	fs.StringVar(&o.Counterparty, "counterparty", o.Counterparty, "a verified counterparty id (default: the first verified one in the credentials)")
	fs.StringVar(&o.Store, "store", o.Store, "store label for the table (with --target-url)")
	fs.StringVar(&o.OPA, "opa", o.OPA, "opa binary (default: go build github.com/open-policy-agent/opa, the go.mod tool version)")
	fs.StringVar(&o.Policies, "policies", o.Policies, "directory holding base/ and examples/acme/")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "requests in flight (closed loop) and open-loop workers")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "warm-up before each measured phase (not recorded)")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "measured length of each phase")
	fs.IntVar(&o.Rounds, "rounds", o.Rounds, "alternating slices the two closed loops are split into (1: one after the other)")
	fs.Float64Var(&o.OpenRate, "open-rate", o.OpenRate, "open-loop arrival rate, requests/s (0: half the measured max; <0: skip)")
	fs.DurationVar(&o.RequestTimeout, "request-timeout", o.RequestTimeout, "timeout of one request")
	fs.StringVar(&o.ServerLogLevel, "server-log-level", o.ServerLogLevel, "log level of both servers: info or error")
	fs.StringVar(&o.OPAGC, "opa-gc", o.OPAGC, "OPA's GOGC when GOGC is not set: service (the service's own, 400) or go (Go's default, as OPA ships)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", o.CPUProfile, "write the agentsigna server's CPU profile of the measured closed loop to this file")
	fs.StringVar(&o.PprofURL, "pprof-url", o.PprofURL, "the running service's --pprof-addr listener, http://HOST:PORT (with --target-url): its CPU profile (--cpuprofile) and stage histograms")
	fs.IntVar(&o.ServerPID, "server-pid", o.ServerPID, "process id of the running service (with --target-url), to show its CPU time per request")
	fs.StringVar(&o.DatabaseProcess, "database-process", o.DatabaseProcess, "command name of the service's database processes on this machine (postgres), to show their CPU time per request")
}

func (o Options) validate() error {
	var errs []error
	if o.AgentSigna == "" {
		errs = append(errs, errors.New("--agentsigna is required"))
	}
	if o.TargetURL != "" {
		if err := checkLoopbackURL(o.TargetURL); err != nil {
			errs = append(errs, fmt.Errorf("--target-url: %w", err))
		}
		if o.Credentials == "" {
			errs = append(errs, errors.New("--target-url needs --credentials"))
		}
	} else if o.Credentials != "" || o.Counterparty != "" {
		errs = append(errs, errors.New("--credentials and --counterparty go with --target-url"))
	}
	if o.PprofURL != "" {
		if err := checkLoopbackURL(o.PprofURL); err != nil {
			errs = append(errs, fmt.Errorf("--pprof-url: %w", err))
		}
		if o.TargetURL == "" {
			errs = append(errs, errors.New("--pprof-url goes with --target-url (the harness knows the demo's)"))
		}
	} else if o.TargetURL != "" && o.CPUProfile != "" {
		errs = append(errs, errors.New("--cpuprofile with --target-url needs --pprof-url"))
	}
	if o.ServerPID < 0 || (o.ServerPID > 0 && o.TargetURL == "") {
		errs = append(errs, errors.New("--server-pid goes with --target-url (the harness knows the processes it starts)"))
	}
	if o.DatabaseProcess != "" && o.TargetURL == "" {
		errs = append(errs, errors.New("--database-process goes with --target-url (the demo keeps its data in files)"))
	}
	if o.Policies == "" {
		errs = append(errs, errors.New("--policies is required"))
	}
	if o.Concurrency < 1 || o.Concurrency > 4096 {
		errs = append(errs, errors.New("--concurrency must be between 1 and 4096"))
	}
	if o.Warmup < 0 || o.Duration <= 0 || o.Warmup+o.Duration > time.Hour {
		errs = append(errs, errors.New("--duration must be positive, --warmup not negative, and both together at most an hour"))
	}
	if o.Rounds < 1 || o.Rounds > 100 || (o.Rounds > 1 && o.Duration/time.Duration(o.Rounds) < 100*time.Millisecond) {
		errs = append(errs, errors.New("--rounds must be between 1 and 100, each at least 100ms of --duration"))
	}
	if o.Rounds > 1 && o.CPUProfile != "" {
		errs = append(errs, errors.New("--cpuprofile takes one window: use it with --rounds 1"))
	}
	if o.RequestTimeout <= 0 {
		errs = append(errs, errors.New("--request-timeout must be positive"))
	}
	if o.OpenRate > 1e6 {
		errs = append(errs, errors.New("--open-rate is at most 1000000 requests/s"))
	}
	if o.ServerLogLevel != "info" && o.ServerLogLevel != "error" {
		errs = append(errs, errors.New("--server-log-level is info or error"))
	}
	if o.OPAGC != "service" && o.OPAGC != "go" {
		errs = append(errs, errors.New("--opa-gc is service or go"))
	}
	return errors.Join(errs...)
}

// checkLoopbackURL accepts an http URL whose host is a loopback IP or
// localhost: the harness never sends load anywhere else.
func checkLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return errors.New("want http://HOST:PORT")
	}
	if host := u.Hostname(); !isLoopbackHost(host) {
		return fmt.Errorf("%s is not a loopback address", host)
	}
	return nil
}

// isLoopbackHost says whether host names this machine.
func isLoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return strings.EqualFold(host, "localhost") || ip != nil && ip.IsLoopback()
}
