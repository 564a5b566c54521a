package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/latency"
	"github.com/agentsigna/agentsigna/internal/osfile"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/server"
)

type serveFlags struct {
	store         storeFlags
	ledger        ledgerFlags
	tenantAddr    string
	platformAddr  string
	tlsCert       string
	tlsKey        string
	justification string
	logLevel      string
	logFormat     string
	shutdown      time.Duration
	demo          bool
	pprofAddr     string
	bounds        agentBoundFlags
	maxConns      int
	maxPerAddress int
}

// runServe starts both planes and blocks until SIGINT/SIGTERM, then lets
// in-flight requests finish and closes the store.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("serve", stderr)
	var f serveFlags
	f.store.register(fs)
	f.ledger.register(fs)
	fs.StringVar(&f.tenantAddr, "tenant-addr", "127.0.0.1:8080", "tenant plane listen address")
	fs.StringVar(&f.platformAddr, "platform-addr", "127.0.0.1:8081", "platform plane listen address")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate (PEM) for both planes")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key (PEM) for both planes")
	fs.StringVar(&f.justification, "insecure-http-justification", "", "why plain HTTP on a non-loopback address is acceptable (logged)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "json", "json or text")
	fs.DurationVar(&f.shutdown, "shutdown-timeout", 20*time.Second, "how long in-flight requests may take to finish on shutdown (the last ledger summaries then get up to 5s more)")
	fs.StringVar(&f.pprofAddr, "pprof-addr", "", "serve Go's profiler (/debug/pprof/) and the stage histograms of decisions and ledger appends (/metrics) on this loopback address; off when empty")
	f.bounds.register(fs)
	fs.IntVar(&f.maxConns, "max-connections", 0, fmt.Sprintf("connections each plane holds open at once (0: as many as the descriptor limit leaves room for, at most %d)", server.DefaultMaxConnections))
	fs.IntVar(&f.maxPerAddress, "max-connections-per-address", 0, "connections each plane holds from one address, an IPv6 one by its /64 (0: no bound; behind a proxy every connection is the proxy's)")
	fs.BoolVar(&f.demo, "demo", false, "seed organization acme (example policy, an agent, two counterparties) on an empty embedded store; credentials to DATA_DIR/demo/credentials.json")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	tlsConfig, err := f.tlsConfig()
	if err != nil {
		return err
	}
	bounds, err := f.bounds.parse()
	if err != nil {
		return err
	}
	if f.maxPerAddress < 0 {
		return fmt.Errorf("%w: --max-connections-per-address must not be negative (0: no bound)", errUsage)
	}
	if f.maxConns < 0 {
		return fmt.Errorf("%w: --max-connections must not be negative (0: sized to the descriptor limit)", errUsage)
	}
	if f.demo && f.store.postgres() {
		return fmt.Errorf("%w: --demo seeds the embedded store only", errUsage)
	}
	defaultPublicURL(fs, &f, tlsConfig != nil)
	exposed, err := checkExposure(f, tlsConfig != nil, log)
	if err != nil {
		return err
	}

	if tuneGC(env) {
		log.Debug("garbage collector target set", slog.Int("gogc", defaultGCPercent))
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var stages *latency.Family // a decision's, served on the debug listener
	if f.pprofAddr != "" {
		stages, f.ledger.stages = decision.NewStages(), ledger.NewStages()
		if _, err := servePprof(ctx, f.pprofAddr, log, stages, f.ledger.stages); err != nil {
			return err
		}
	}

	backend, err := openStore(ctx, &f.store, env, log)
	if err != nil {
		return err
	}
	defer backend.Close()
	l, keys, err := openLedgerAndKeys(ctx, &f.store, &f.ledger, backend, env, log)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := checkPlatformLogKey(ctx, backend, keys); err != nil {
		return err
	}
	if len(exposed) > 0 {
		// DESIGN §2: the justification is logged and written to the
		// platform ledger.
		record, _ := json.Marshal(map[string]any{"addrs": exposed, "justification": f.justification})
		if _, err := l.Append(ctx, l.PlatformLog(), ledger.Entry{Kind: "platform.insecure_http", Subject: "serve", Record: record}); err != nil {
			return fmt.Errorf("record the plain-HTTP justification in the platform ledger: %w", err)
		}
	}

	// Sized (and said in the log) once the store has opened: a usage
	// error in the store's flags is then the one line printed.
	maxConns := connectionCap(f.maxConns, descriptorLimit, log)
	planes, err := server.New(server.Config{
		Logger:                   log,
		TenantReady:              backend.Ping,
		PlatformReady:            backend.Ping,
		TLS:                      tlsConfig != nil,
		MaxConnections:           maxConns,
		MaxConnectionsPerAddress: f.maxPerAddress,
		AgentDecisionRate:        bounds.decisionRate,
		AgentDecisionBurst:       bounds.decisionBurst,
	})
	if err != nil {
		return err
	}
	// The log keys are public; the platform log's read side stays closed
	// until the identity plane decides who reads it.
	server.MountLogKeys(planes.Tenant, l, backend)
	server.MountJWKS(planes.Tenant, backend, keys)
	server.MountLedger(planes.Platform, l, server.DenyLogAccess)
	pol, auth, workers, err := mountAgentAPI(ctx, planes, backend, l, keys, f.ledger.publicURL, bounds, stages, log)
	if err != nil {
		return err
	}
	// Of an organization's log, an agent reads the head; the entries wait
	// for the identity plane's auditors and admins (AgentAuth.LogAccess).
	server.MountLedger(planes.Tenant, l, auth.LogAccess)
	// Before the ledger closes (defers run last first); after a clean stop
	// this second close writes nothing.
	defer closeAgentAuth(ctx, auth)
	defer workers.Close()
	if f.demo {
		if err := seedDemo(ctx, backend, l, pol, f.store.dataDir, f.ledger.publicURL, localURL(f.platformAddr, tlsConfig != nil), log); err != nil {
			return err
		}
	}

	go sweepJTIs(ctx, backend, log)

	lns := make([]net.Listener, 0, 2)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	serveErr := make(chan error, 2)
	for _, p := range []struct {
		plane *server.Plane
		addr  string
	}{{planes.Tenant, f.tenantAddr}, {planes.Platform, f.platformAddr}} {
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("%s plane: %w", p.plane.Name(), err)
		}
		if tlsConfig == nil && !slices.Contains(exposed, p.addr) {
			// Plain HTTP was allowed because the address is loopback:
			// hold the bound address to it.
			if err := boundToLoopback(ln); err != nil {
				return fmt.Errorf("%s plane: %w", p.plane.Name(), err)
			}
		}
		if tlsConfig != nil {
			ln = tls.NewListener(ln, tlsConfig)
		}
		lns = append(lns, ln)
		log.Info("listening", slog.String("plane", p.plane.Name()), slog.String("addr", ln.Addr().String()), slog.Bool("tls", tlsConfig != nil))
		go func() { serveErr <- p.plane.Serve(ln) }()
	}

	select {
	case <-ctx.Done():
		// A second signal stops the process at once, as the default
		// action does: an operator who does not want to wait for
		// in-flight requests need not. (Batches are durable or not
		// there: a log cut mid-batch verifies.)
		stop()
		log.Info("shutting down: finishing in-flight requests (a second signal stops at once)", slog.Duration("timeout", f.shutdown))
	case err := <-serveErr:
		log.Error("a plane stopped serving; shutting down", slog.Any("error", err))
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.shutdown)
	defer cancel()
	shutdownErr := planes.Shutdown(sctx)
	workers.Close()
	authErr := closeAgentAuth(ctx, auth)
	l.Close()
	closeErr := backend.Close()
	if err := errors.Join(shutdownErr, authErr, closeErr); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

func (f *serveFlags) tlsConfig() (*tls.Config, error) {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	if f.tlsCert == "" {
		return nil, nil
	}
	certPEM, err := osfile.ReadAtMost(f.tlsCert, maxLargeFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	keyPEM, err := osfile.ReadAtMost(f.tlsKey, maxLargeFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	clear(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// defaultPublicURL makes --public-url, when neither it nor its
// environment twin is given, the URL of --tenant-addr if that is a
// loopback address with a fixed port: a tenant plane moved to
// 127.0.0.1:18180 is not announced, in tokens, receipts and the demo's
// credentials, at 127.0.0.1:8080 where nothing listens. Any other address
// keeps the flag's default: the URL clients use is not the one bound.
func defaultPublicURL(fs *flag.FlagSet, f *serveFlags, tlsOn bool) {
	given := false
	fs.Visit(func(fl *flag.Flag) { given = given || fl.Name == "public-url" })
	_, port, err := net.SplitHostPort(f.tenantAddr)
	if given || err != nil || port == "0" {
		return
	}
	if loop, _ := isLoopback(f.tenantAddr); !loop {
		return
	}
	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	f.ledger.publicURL = scheme + "://" + f.tenantAddr
}

// localURL is the URL a local client reaches listen address addr at: the
// scheme follows TLS, and a host left empty or unspecified (every
// interface) is loopback's. Empty when the port is not known until the
// listener is made (0) or addr does not parse.
func localURL(addr string, tlsOn bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" || port == "" {
		return ""
	}
	switch ip := net.ParseIP(host); {
	case host == "" || ip != nil && ip.Equal(net.IPv4zero):
		host = "127.0.0.1"
	case ip != nil && ip.Equal(net.IPv6unspecified):
		host = "::1"
	}
	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// checkExposure refuses plain HTTP beyond loopback unless an operator wrote
// down why; the justification is logged.
func checkExposure(f serveFlags, tlsOn bool, log *slog.Logger) ([]string, error) {
	if tlsOn {
		return nil, nil
	}
	var exposed []string
	for _, addr := range []string{f.tenantAddr, f.platformAddr} {
		loop, err := isLoopback(addr)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if !loop {
			exposed = append(exposed, addr)
		}
	}
	if len(exposed) == 0 {
		return nil, nil
	}
	if strings.TrimSpace(f.justification) == "" {
		return nil, fmt.Errorf("refusing plain HTTP on non-loopback %s: give --tls-cert/--tls-key, or --insecure-http-justification \"why\"", strings.Join(exposed, ", "))
	}
	log.Warn("serving plain HTTP beyond loopback", slog.Any("addrs", exposed), slog.String("justification", f.justification))
	return exposed, nil
}

// isLoopback reports whether addr binds only loopback. A host name other
// than localhost, or an empty host (all interfaces), is not loopback.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("listen address %q: %v", addr, err)
	}
	return isLoopbackHost(host), nil
}

// boundToLoopback closes ln and fails unless it listens on a loopback IP.
// isLoopback takes "localhost" at its word, and the system resolves it
// (the hosts file, then DNS): a name that led to another interface would
// serve, in plain HTTP or a profiler, beyond the machine.
func boundToLoopback(ln net.Listener) error {
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		return nil
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return fmt.Errorf("listening on %s, which is not a loopback address: give a loopback IP (127.0.0.1, [::1]), or TLS", addr)
}

// isLoopbackHost: localhost or a loopback IP (IPv6 with or without brackets).
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return ip != nil && ip.IsLoopback()
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: want json or text", errUsage, format)
}

// mountAgentAPI wires the agent path: token endpoint, decisions, cases.
// The agent authenticator it returns must be closed before the ledger,
// and the policy workers once the planes have stopped.
func mountAgentAPI(ctx context.Context, planes *server.Planes, backend store.Backend, l *ledger.Ledger, keys *signing.Keyring, publicURL string, bounds agentBounds, stages *latency.Family, log *slog.Logger) (*decision.Policies, *server.AgentAuth, *bundles.Workers, error) {
	engine := bundles.NewEngine()
	evaluator, err := decision.NewEvaluator(ctx, engine, decision.Options{})
	if err != nil {
		return nil, nil, nil, err
	}
	// Organization policies compile and evaluate in worker processes
	// (this executable, see main): a policy can end its worker, never
	// the service.
	workers, err := bundles.NewWorkers(bundles.WorkerOptions{Logger: log})
	if err != nil {
		return nil, nil, nil, err
	}
	policies := decision.NewPolicies(backend, l, engine, decision.PoliciesOptions{Workers: workers})
	svc, err := decision.NewService(decision.Config{
		Tenants: backend, Ledger: l, Keyring: keys, Evaluator: evaluator, Policies: policies,
		PublicURL: strings.TrimSuffix(publicURL, "/"), Logger: log, Stages: stages,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	auth, err := server.NewAgentAuth(server.AgentAuthConfig{Tenants: backend, Ledger: l, Keys: keys, PublicURL: publicURL, Logger: log,
		TokenRate: bounds.tokenRate, TokenBurst: bounds.tokenBurst, ReadRate: bounds.readRate, ReadBurst: bounds.readBurst})
	if err != nil {
		return nil, nil, nil, err
	}
	auth.MountTokenEndpoint(planes.Tenant)
	server.MountDecisions(planes.Tenant, auth, svc, l)
	return policies, auth, workers, nil
}

// agentAuthCloseTimeout bounds the writing of the token refusals' last
// summaries at a stop. It comes after --shutdown-timeout, which the
// planes' shutdown may have used whole.
const agentAuthCloseTimeout = 5 * time.Second

// closeAgentAuth writes the token refusals' last summaries (see
// server.AgentAuth.Close).
func closeAgentAuth(ctx context.Context, auth *server.AgentAuth) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), agentAuthCloseTimeout)
	defer cancel()
	return auth.Close(ctx)
}

// defaultGCPercent is the collector's target when GOGC is not set. The
// service keeps a few MB live, so at Go's default of 100 a loaded server
// collected some twenty times a second, and the collections and their
// assists cost a fifth of the decision path's throughput (closed loop of
// 32 on the embedded store: 1,129–1,151 decisions/s at 100, 1,359–1,457
// at 400). A few MB more heap buys that back.
const defaultGCPercent = 400

// tuneGC sets the collector's target to defaultGCPercent unless the
// operator has set GOGC; GOMEMLIMIT, when set, still bounds the heap.
// It reports whether it changed the target.
func tuneGC(env env) bool {
	if _, set := env("GOGC"); set {
		return false
	}
	debug.SetGCPercent(defaultGCPercent)
	return true
}
