// Command load is the load harness of `make bench` (issue 5 item 8): it
// drives the allow path of POST /v1/decisions at a fixed concurrency for a
// fixed time, then — in the same run, on the same machine, with the same
// client code — `opa run --server` evaluating the same base and example
// policy on the same policy input through POST /v1/data/…, and prints
// requests/s, p50 and p99 of each and their ratio. A last phase offers
// AgentSigna half of its measured maximum rate at a fixed arrival rate
// (open loop) and reports the p99 there: the goal is p99 ≤ 5 ms.
// GET /healthz at that same rate shows the floor that the harness, the
// HTTP stack and the machine put under any answer, and OPA at half its own
// rate the same goal applied to the reference. With --rounds N the two
// closed loops alternate in N slices, pooled per server. Beside each
// closed loop it shows the server's processor time per request answered
// (from /proc; for a running service with --server-pid, and with
// --database-process that of every process of that name on the machine),
// which moves far less than the rates when other work takes the cores.
//
// By default it starts `agentsigna serve --demo` itself on a fresh embedded
// store in a temporary directory; with --target-url, --credentials and
// --counterparty it drives a service that is already running (the
// PostgreSQL run does that from TestLoadPostgres, which sets one up).
//
//	go run ./tests/load --agentsigna bin/agentsigna              # from the module root
//	go run ./tests/load --target-url http://127.0.0.1:8080 --credentials agentsigna-data/demo/credentials.json
//
// It talks to loopback addresses only, every phase has a fixed length, and
// it stops by itself. It writes every decision it asks for into the target's
// ledger, so it must never be pointed at a store anyone cares about.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		// Only cmd/agentsigna may call os.Exit (tests/architecture_test.go);
		// an unrecovered panic is how this tool still ends with a non-zero
		// status, so that `make bench` fails when the harness does.
		panic("load: failed (see the line above)")
	}
}

// run parses args, runs the benchmark and prints its table on stdout;
// progress goes to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := DefaultOptions()
	o.bind(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	rep, err := Benchmark(ctx, o, stderr)
	if err != nil {
		return err
	}
	rep.Print(stdout)
	return rep.Err()
}
