package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/agentsigna/agentsigna/internal/latency"
)

// servePprof serves Go's profiler (net/http/pprof under /debug/pprof/) on
// its own listener, apart from both planes, for operators measuring the
// service (as OPA's --pprof), and the stage histograms (/metrics, the
// Prometheus text format): where a decision's time goes, which a CPU
// profile does not show. Off unless --pprof-addr is given, and only on
// loopback: profiles show the code's internals to whoever can fetch them.
// It stops when ctx ends. It returns the address it listens on.
func servePprof(ctx context.Context, addr string, log *slog.Logger, stages ...*latency.Family) (net.Addr, error) {
	loop, err := isLoopback(addr)
	if err != nil {
		return nil, err
	}
	if !loop {
		return nil, fmt.Errorf("%w: --pprof-addr must be a loopback address, not %q", errUsage, addr)
	}
	// No /debug/pprof/cmdline: the command line may hold a database URL
	// with its password.
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/debug/pprof/cmdline" {
			http.NotFound(w, r)
			return
		}
		pprof.Index(w, r)
	})
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := latency.WriteText(w, stages...); err != nil {
			log.Debug("metrics: write", slog.Any("error", err))
		}
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof: %w", err)
	}
	if err := boundToLoopback(ln); err != nil {
		return nil, fmt.Errorf("pprof: %w", err)
	}
	srv := &http.Server{Handler: loopbackHostOnly(mux), ReadHeaderTimeout: 5 * time.Second}
	log.Info("pprof listening", slog.String("addr", ln.Addr().String()))
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof stopped", slog.Any("error", err))
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return ln.Addr(), nil
}

// loopbackHostOnly refuses a request whose Host is not a loopback address
// or localhost: a web page the operator visits could otherwise point a
// name of its own at 127.0.0.1 (DNS rebinding) and read the profiles.
func loopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !isLoopbackHost(host) {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
