package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("agentsigna "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags is fs.Parse with the flag package silent: a mistake is the
// one line run prints (DESIGN §5), and the flags are listed only when
// -h or --help asks for them.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(out, "usage of %s:\n", fs.Name())
		fs.PrintDefaults()
	}
	return err
}

// parse parses args, then fills every flag not given on the command line
// from AGENTSIGNA_<FLAG_NAME>. Command line beats environment beats default.
func parse(fs *flag.FlagSet, args []string, env env) error {
	if err := parseFlags(fs, args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		name := envName(f.Name)
		if v, ok := env(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				// The value may be a secret (a database URL): name the
				// variable, not its content.
				err = fmt.Errorf("%w: %s: invalid value", errUsage, name)
			}
		}
	})
	return err
}

func envName(flagName string) string {
	return "AGENTSIGNA_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// storeFlags are shared by every subcommand that opens the store.
type storeFlags struct {
	dataDir             string
	databaseURL         string
	platformDatabaseURL string
	ownerDatabaseURL    string
	rolePrefix          string
	masterKeyFile       string
}

func (s *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.dataDir, "data-dir", "./agentsigna-data", "embedded store directory (used when no --database-url is given)")
	fs.StringVar(&s.databaseURL, "database-url", "", "PostgreSQL URL of the tenant-plane role (selects the PostgreSQL store)")
	fs.StringVar(&s.platformDatabaseURL, "platform-database-url", "", "PostgreSQL URL of the platform-plane role")
	fs.StringVar(&s.ownerDatabaseURL, "owner-database-url", "", "PostgreSQL URL of a superuser or owner-role member, to create roles and apply migrations")
	fs.StringVar(&s.rolePrefix, "role-prefix", "agentsigna", "PostgreSQL role names: PREFIX_owner, PREFIX_tenant, PREFIX_platform")
	fs.StringVar(&s.masterKeyFile, "master-key-file", "", "file holding the base64 32-byte master key (or set AGENTSIGNA_MASTER_KEY)")
}

func (s *storeFlags) postgres() bool { return s.databaseURL != "" || s.platformDatabaseURL != "" }

// parseInterspersed parses flags that may come before or after positional
// arguments (`policy check bundle.tar.gz --verification-key k.pem`), then
// fills unset flags from the environment like parse. It returns the
// positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string, env env) ([]string, error) {
	var positional []string
	for {
		if err := parseFlags(fs, args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return positional, parse(fs, nil, env)
}

// parseOne is parseInterspersed for commands that take exactly one operand
// (what names it in the error).
func parseOne(fs *flag.FlagSet, args []string, env env, what string) (string, error) {
	operands, err := parseInterspersed(fs, args, env)
	if err != nil {
		return "", err
	}
	if len(operands) != 1 {
		return "", fmt.Errorf("%w: want exactly one %s, got %d arguments", errUsage, what, len(operands))
	}
	return operands[0], nil
}
