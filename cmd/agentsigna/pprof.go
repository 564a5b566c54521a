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
)

// servePprof serves Go's profiler (net/http/pprof under /debug/pprof/) on
// its own listener, apart from both planes, for operators measuring the
// service (as OPA's --pprof). Off unless --pprof-addr is given, and only on
// loopback: profiles show the code's internals to whoever can fetch them.
// It stops when ctx ends. It returns the address it listens on.
func servePprof(ctx context.Context, addr string, log *slog.Logger) (net.Addr, error) {
	loop, err := isLoopback(addr)
	if err != nil {
		return nil, err
	}
	if !loop {
		return nil, fmt.Errorf("%w: --pprof-addr must be a loopback address, not %q", errUsage, addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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
