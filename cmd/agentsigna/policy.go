package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/osfile"
)

// maxPolicyInputBytes bounds a simulate input file, as the API bounds a
// request body (DESIGN §3).
const maxPolicyInputBytes = 64 << 10

// maxKeyFileBytes bounds a verification key file: a PEM public key is a few
// hundred bytes.
const maxKeyFileBytes = 64 << 10

const policyUsage = `usage:
  agentsigna policy check BUNDLE|DIR [--verification-key PEM] [--verification-key-id ID] [--signing-alg ALG] [--compile-timeout D]
  agentsigna policy simulate [--bundle BUNDLE|DIR] --input INPUT.json [--verification-key PEM ...] [--compile-timeout D]
  agentsigna policy push --tenant SLUG --by USER BUNDLE|DIR
  agentsigna policy activate --tenant SLUG --revision REV --by USER --approved-by OTHER [--rollback]
  agentsigna policy add-key --tenant SLUG [--id ID] [--signing-alg ALG] --by USER PUBLIC_KEY.pem

check runs an organization's bundle through the same intake and compilation
as an upload to the server: limits, paths, manifest (revision, roots under
"tenant"), signature, packages, data and the builtins policies may call,
compiled in a policy worker within the server's 10 s (--compile-timeout
shortens or lengthens it). It exits 0 when the bundle would be accepted,
1 with the reason when not.

simulate evaluates one policy input (the document Rego sees as input: action,
reason, agent, counterparty, tenant, time) against the base policy and the
bundle, and prints the combined decision as JSON. Without --bundle only the
base policy answers. A missing "time" is now.

push, activate and add-key work on the local store (the flags of serve:
--data-dir, --database-url…): push stores a revision after the same checks,
activate makes one active (two people: --by and --approved-by must differ;
going back to an older revision needs --rollback), add-key registers a
bundle-signing public key, after which only signed bundles are accepted.
Each is recorded in the organization's ledger.

BUNDLE is a tar.gz as built by opa build. DIR is read the way OPA reads a
directory bundle (opa run --bundle DIR): .manifest and .signatures.json at
its root, *.rego and data.json files; other files are left out.

With --verification-key (a PEM public key; RS*, PS* or ES*, never HMAC) the
bundle must carry a valid signature by that key (opa build --signing-key), as
on the server once an organization registers a key. Without it, a signed
bundle is refused: its signature could not be checked.
`

// runPolicy is `agentsigna policy check|simulate`.
func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: policy needs a subcommand: check, simulate, push, activate or add-key (policy --help)", errUsage)
	}
	switch args[0] {
	case "check":
		return runPolicyCheck(ctx, args[1:], stdout, stderr, env)
	case "simulate":
		return runPolicySimulate(ctx, args[1:], stdout, stderr, env)
	case "push":
		return runPolicyPush(ctx, args[1:], stdout, stderr, env)
	case "activate":
		return runPolicyActivate(ctx, args[1:], stdout, stderr, env)
	case "add-key":
		return runPolicyKey(ctx, args[1:], stdout, stderr, env)
	case "-h", "--help", "help":
		fmt.Fprint(stderr, policyUsage)
		return flag.ErrHelp
	}
	return fmt.Errorf("%w: unknown policy subcommand %q (check, simulate, push, activate or add-key)", errUsage, args[0])
}

// keyFlags are the verification key flags, named as in opa run and opa build.
type keyFlags struct {
	file, id, alg string
}

func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.file, "verification-key", "", "PEM public key file: accept only bundles signed with it")
	fs.StringVar(&k.id, "verification-key-id", bundles.DefaultKeyID, "key id the signature names (opa build writes \"default\")")
	fs.StringVar(&k.alg, "signing-alg", "", "signature algorithm of the key: RS256…RS512, PS256…PS512, ES256…ES512 (default RS256 for RSA keys, ES* by curve)")
}

// load returns the read options for the key, if one was given.
func (k *keyFlags) load() (bundles.ReadOptions, error) {
	if k.file == "" {
		return bundles.ReadOptions{}, nil
	}
	pemBytes, err := osfile.ReadAtMost(k.file, maxKeyFileBytes)
	if err != nil {
		return bundles.ReadOptions{}, fmt.Errorf("--verification-key: %w", err)
	}
	key, err := bundles.ParseVerificationKey(k.id, k.alg, pemBytes)
	if err != nil {
		return bundles.ReadOptions{}, fmt.Errorf("--verification-key %s: %w", k.file, err)
	}
	return bundles.ReadOptions{Keys: []bundles.VerificationKey{key}}, nil
}

func runPolicyCheck(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("policy check", stderr)
	var kf keyFlags
	kf.register(fs)
	var ct compileTimeoutFlag
	ct.register(fs)
	positional, err := parseInterspersed(fs, args, env)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return fmt.Errorf("%w: policy check takes one BUNDLE or DIR (got %d)", errUsage, len(positional))
	}
	opts, err := kf.load()
	if err != nil {
		return err
	}
	target := positional[0]
	ws, err := ct.workers()
	if err != nil {
		return err
	}
	defer ws.Close() // stops the worker that compiled it
	_, b, kind, err := loadPolicy(ctx, ws, target, opts)
	if err != nil {
		return err
	}
	signed := "unsigned"
	if b.SignedBy != "" {
		signed = fmt.Sprintf("signature verified with key %q", b.SignedBy)
	}
	fmt.Fprintf(stdout, "ok: %s: revision %s, %d files, %s; sha256 %s (%s)\n", target, b.Revision, len(b.Files), signed, b.Digest, kind)
	return nil
}

func runPolicySimulate(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("policy simulate", stderr)
	var kf keyFlags
	kf.register(fs)
	var bundlePath, inputPath string
	fs.StringVar(&bundlePath, "bundle", "", "organization bundle (tar.gz) or policy directory; without it only the base policy answers")
	fs.StringVar(&inputPath, "input", "", "policy input JSON file (- for standard input)")
	var ct compileTimeoutFlag
	ct.register(fs)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if inputPath == "" {
		return fmt.Errorf("%w: policy simulate needs --input", errUsage)
	}
	in, err := readPolicyInput(inputPath)
	if err != nil {
		return err
	}
	var tenant *bundles.Policy
	if bundlePath != "" {
		opts, err := kf.load()
		if err != nil {
			return err
		}
		ws, err := ct.workers()
		if err != nil {
			return err
		}
		defer ws.Close() // stops the worker that evaluated
		if tenant, _, _, err = loadPolicy(ctx, ws, bundlePath, opts); err != nil {
			return err
		}
	} else if kf.file != "" {
		return fmt.Errorf("%w: --verification-key needs --bundle", errUsage)
	}
	ev, err := decision.NewEvaluator(ctx, bundles.NewEngine(), decision.Options{})
	if err != nil {
		return err
	}
	result := ev.EvaluateWith(ctx, tenant, in)
	out, err := json.MarshalIndent(struct {
		decision.Evaluation
		// Shown here, unlike in responses to agents: this is the policy
		// author's own input and policy.
		Errors []string `json:"errors,omitempty"`
	}{result, result.Errors}, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out)
	return err
}

// policyWorkers compiles and evaluates organization policies as the
// service does: each in a worker process, its compilation bounded in time
// (compileTimeout; 0 is the server's bound) and, on Linux, in memory and
// sandboxed. So check says what an upload to the server would, a bundle
// that takes the server too long to compile included, and on Linux a
// hostile bundle cannot hang or exhaust the machine it is checked on. The
// workers log nothing: what the sandbox lacks is serve's to report, a
// command prints one line, and a worker that fails fails the command.
func policyWorkers(compileTimeout time.Duration) (*bundles.Workers, error) {
	return bundles.NewWorkers(bundles.WorkerOptions{CompileTimeout: compileTimeout, Logger: slog.New(slog.DiscardHandler)})
}

// compileTimeoutFlag is check's and simulate's --compile-timeout.
type compileTimeoutFlag struct{ d time.Duration }

func (f *compileTimeoutFlag) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.d, "compile-timeout", bundles.DefaultCompileTimeout,
		"how long the bundle may take to compile (the server allows "+bundles.DefaultCompileTimeout.String()+")")
}

// workers are policyWorkers under the flag's bound, which must be one.
func (f *compileTimeoutFlag) workers() (*bundles.Workers, error) {
	if f.d <= 0 {
		return nil, fmt.Errorf("%w: --compile-timeout must be a positive duration", errUsage)
	}
	return policyWorkers(f.d)
}

// loadPolicy reads a bundle file or a policy directory and compiles it in
// a worker of ws, and says which it was.
func loadPolicy(ctx context.Context, ws *bundles.Workers, target string, opts bundles.ReadOptions) (*bundles.Policy, *bundles.Bundle, string, error) {
	raw, kind, err := readBundle(target)
	if err != nil {
		return nil, nil, "", err
	}
	p, b, err := ws.Load(ctx, raw, opts)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", target, err)
	}
	return p, b, kind, nil
}

// readBundle returns a bundle file's bytes, or a directory packed as a
// bundle, and says which it was.
func readBundle(target string) ([]byte, string, error) {
	info, err := os.Stat(target)
	if err != nil {
		return nil, "", err
	}
	limits := bundles.DefaultLimits()
	if info.IsDir() {
		raw, err := bundles.PackFS(os.DirFS(target), limits)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", target, err)
		}
		return raw, "directory, packed as a bundle", nil
	}
	// One byte over the limit is enough for Read to say it is too large.
	raw, err := osfile.ReadAtMost(target, limits.MaxCompressedBytes+1)
	return raw, "bundle file", err
}

// readPolicyInput reads a policy input strictly: an unknown field is a
// mistake (a misspelt "counterparty" would silently mean none).
func readPolicyInput(name string) (decision.Input, error) {
	var raw []byte
	var err error
	if name == "-" {
		raw, err = io.ReadAll(io.LimitReader(os.Stdin, maxPolicyInputBytes+1))
		if err == nil && len(raw) > maxPolicyInputBytes {
			err = fmt.Errorf("standard input is larger than %d bytes", maxPolicyInputBytes)
		}
	} else {
		raw, err = osfile.ReadAtMost(name, maxPolicyInputBytes)
	}
	if err != nil {
		return decision.Input{}, fmt.Errorf("--input: %w", err)
	}
	var in decision.Input
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		return decision.Input{}, fmt.Errorf("--input %s: not a policy input: %w", name, err)
	}
	if dec.More() {
		return decision.Input{}, fmt.Errorf("--input %s: more than one JSON value", name)
	}
	if in.Time.IsZero() {
		in.Time = time.Now().UTC()
	}
	return in, nil
}
