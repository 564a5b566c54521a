// Command agentsigna is the AgentSigna service and its operator tools. This
// package only parses flags, wires packages together and exits; it is the
// one place that calls os.Exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/agentsigna/agentsigna/bundles"
)

func main() {
	if bundles.IsWorker() {
		// Started by the service to serve one organization policy
		// (bundles.Workers); no flags, no commands.
		if err := bundles.ServeWorker(); err != nil {
			fmt.Fprintln(os.Stderr, "agentsigna policy worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// Every command may hold the master key or a signing key: none dumps
	// core (where fs.suid_dumpable is 2, even a non-dumpable process would).
	disableCoreDumps()
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv))
}

// env looks up an environment variable (os.LookupEnv in production).
type env func(string) (string, bool)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error
}

func commands() []command {
	return []command{
		{"serve", "run the tenant and platform planes", runServe},
		{"migrate", "create or upgrade the store's schema (and PostgreSQL roles)", runMigrate},
		{"ledger", "verify: re-read the store and check every log against its signed checkpoints; adopt: log rows stored before they were logged", runLedger},
		{"org", "create or list organizations (local use)", runOrg},
		{"agent", "register, list, suspend or rotate-key: an organization's agents (local use)", runAgent},
		{"counterparty", "add or list an organization's counterparties (local use)", runCounterparty},
		{"policy", "check, simulate, push or activate an organization's policy bundle", runPolicy},
		{"audit", "verify: check a ledger export offline (entries, chain, root, receipts)", runAudit},
		{"verify", "inclusion|consistency|receipt: check a proof or a receipt offline", runVerify},
		{"keys", "rotate: give an organization a new receipt key (the old one stays published)", runKeys},
	}
}

// isHelp reports whether a command's first argument asks for its help.
func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "help" }

// errUsage marks a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

// run returns the exit status: 0 on success (help included), 2 for a
// usage error, 1 for anything else, with one line on stderr saying what
// went wrong (DESIGN §5); only help prints more.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env env) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "agentsigna: a command is required (run 'agentsigna help')")
		return 2
	}
	if isHelp(args[0]) {
		usage(stderr)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr, env)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "agentsigna %s: %v\n", c.name, oneLine(err))
			return 2
		default:
			fmt.Fprintf(stderr, "agentsigna %s: %v\n", c.name, oneLine(err))
			return 1
		}
	}
	fmt.Fprintf(stderr, "agentsigna: unknown command %q (run 'agentsigna help')\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: agentsigna <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery flag can also be set as AGENTSIGNA_<FLAG> (e.g. --data-dir → AGENTSIGNA_DATA_DIR); a flag on the command line wins.\nNot for verify and audit verify: what they trust comes from their command line only.")
}

// oneLine keeps the promise of one line on stderr even when a wrapped
// error carries newlines. A control character or a bidirectional
// formatting one is shown as its \u escape: an error may quote a policy
// bundle's source, whose terminal escapes would otherwise repaint the
// operator's terminal, or hide the error behind a fake "ok:" line (found
// by review).
func oneLine(err error) string {
	var b strings.Builder
	for _, r := range strings.Join(strings.Fields(err.Error()), " ") {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
