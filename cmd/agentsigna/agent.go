package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/osfile"
	"github.com/agentsigna/agentsigna/internal/store"
)

const agentUsage = `usage:
  agentsigna agent register --tenant SLUG --name NAME --sponsor SPONSOR --risk-tier low|medium|high|critical
                            (--public-jwk FILE | --generate-key OUT_FILE)
  agentsigna agent suspend --tenant SLUG AGENT_ID
  agentsigna agent rotate-key --tenant SLUG AGENT_ID (--public-jwk FILE | --generate-key OUT_FILE)
  agentsigna agent list --tenant SLUG
  agentsigna agent assertion [--credentials FILE | --key JWK_FILE --agent AGENT_ID] [--audience URL]
                            (print a client assertion, to try the API)

--public-jwk registers a public Ed25519 (OKP) or P-256 (EC) JWK; a key with private members
is refused. Without a kid, its kid is the RFC 7638 thumbprint.
--generate-key generates an Ed25519 key, writes the PRIVATE JWK to OUT_FILE (mode 0600, never
overwriting a file) and registers its public half; the private key is printed nowhere else.
rotate-key adds the new key and retires every other active key of the agent; the access
tokens issued under a retired key are refused within a second, by every running server. For
a key that leaked, rotate it; suspend the agent (its decisions are denied and its reads refused
from then on, tokens already issued included) if it may have acted.`

// runAgent manages an organization's agents locally, on the store the
// flags select (DESIGN §5; the HTTP management API comes with identity).
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: agent needs a subcommand: register, suspend, rotate-key, list or assertion", errUsage)
	}
	switch args[0] {
	case "register":
		return runAgentRegister(ctx, args[1:], stdout, stderr, env)
	case "suspend":
		return runAgentSuspend(ctx, args[1:], stdout, stderr, env)
	case "rotate-key":
		return runAgentRotateKey(ctx, args[1:], stdout, stderr, env)
	case "list":
		return runAgentList(ctx, args[1:], stdout, stderr, env)
	case "assertion":
		return runAgentAssertion(args[1:], stdout, stderr, env)
	case "-h", "--help", "help":
		fmt.Fprintln(stderr, agentUsage)
		return flag.ErrHelp
	}
	return fmt.Errorf("%w: unknown agent subcommand %q (register, suspend, rotate-key, list or assertion)", errUsage, args[0])
}

func runAgentRegister(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("agent register", stderr)
	var tf tenantFlags
	var lf ledgerFlags
	var kf agentKeyFlags
	tf.register(fs)
	lf.register(fs)
	kf.register(fs)
	name := fs.String("name", "", "the agent's name (1-200 bytes)")
	sponsor := fs.String("sponsor", "", "the tenant user accountable for the agent")
	tier := fs.String("risk-tier", "", "low, medium, high or critical")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	ag := store.Agent{ID: store.NewID(store.PrefixAgent), Name: *name, Sponsor: *sponsor, RiskTier: store.RiskTier(*tier), Status: store.AgentActive}
	if err := store.CheckAgent(ag); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := kf.check(); err != nil {
		return err
	}
	log := cliLogger(stderr)
	agents, ref, closeAll, err := tf.openAgents(ctx, &lf, env, log)
	if err != nil {
		return err
	}
	defer closeAll()
	key, err := kf.prepare()
	if err != nil {
		return err
	}
	if _, err := agents.Register(ctx, ref, ag, store.AgentKey{KID: key.kid, PublicJWK: key.public}); err != nil {
		key.discard()
		return fmt.Errorf("register agent: %w", err)
	}
	fmt.Fprintf(stdout, "%s\tregistered\tkid=%s%s\n", ag.ID, key.kid, key.note())
	return nil
}

func runAgentSuspend(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("agent suspend", stderr)
	var tf tenantFlags
	var lf ledgerFlags
	tf.register(fs)
	lf.register(fs)
	id, err := parseAgentID(fs, args, env)
	if err != nil {
		return err
	}
	log := cliLogger(stderr)
	agents, ref, closeAll, err := tf.openAgents(ctx, &lf, env, log)
	if err != nil {
		return err
	}
	defer closeAll()
	err = agents.Suspend(ctx, ref, id)
	if errors.Is(err, identity.ErrAgentAlreadySuspended) {
		fmt.Fprintf(stdout, "%s\talready suspended\n", id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("suspend %s: %w", id, err)
	}
	fmt.Fprintf(stdout, "%s\tsuspended\n", id)
	return nil
}

func runAgentRotateKey(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("agent rotate-key", stderr)
	var tf tenantFlags
	var lf ledgerFlags
	var kf agentKeyFlags
	tf.register(fs)
	lf.register(fs)
	kf.register(fs)
	id, err := parseAgentID(fs, args, env)
	if err != nil {
		return err
	}
	if err := kf.check(); err != nil {
		return err
	}
	log := cliLogger(stderr)
	agents, ref, closeAll, err := tf.openAgents(ctx, &lf, env, log)
	if err != nil {
		return err
	}
	defer closeAll()
	key, err := kf.prepare()
	if err != nil {
		return err
	}
	retired, err := agents.RotateKey(ctx, ref, store.AgentKey{AgentID: id, KID: key.kid, PublicJWK: key.public})
	if err != nil {
		key.discard()
		return fmt.Errorf("rotate key of %s: %w", id, err)
	}
	fmt.Fprintf(stdout, "%s\tkey rotated\tkid=%s\tretired=%d%s\n", id, key.kid, len(retired), key.note())
	return nil
}

func runAgentList(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("agent list", stderr)
	var tf tenantFlags
	tf.register(fs)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	backend, ref, err := tf.open(ctx, env, cliLogger(stderr))
	if err != nil {
		return err
	}
	defer backend.Close()
	type row struct {
		agent store.Agent
		kids  []string
	}
	var rows []row
	err = backend.InTenantTx(ctx, ref.ID, func(ctx context.Context, tx store.TenantTx) error {
		agents, err := tx.Agents().List(ctx)
		if err != nil {
			return err
		}
		for _, ag := range agents {
			keys, err := tx.Agents().Keys(ctx, ag.ID)
			if err != nil {
				return err
			}
			r := row{agent: ag}
			for _, k := range keys {
				if k.Status == store.KeyActive {
					r.kids = append(r.kids, k.KID)
				}
			}
			rows = append(rows, r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list agents: %w", err)
	}
	for _, r := range rows {
		fmt.Fprintf(stdout, "%s\t%s\t%s\tkeys=%s\tsponsor=%q\tname=%q\n", r.agent.ID, r.agent.Status, r.agent.RiskTier,
			strings.Join(r.kids, ","), r.agent.Sponsor, r.agent.Name)
	}
	return nil
}

// tenantFlags are the store flags and the organization a local command
// acts on.
type tenantFlags struct {
	sf     storeFlags
	tenant string
}

func (f *tenantFlags) register(fs *flag.FlagSet) {
	f.sf.register(fs)
	fs.StringVar(&f.tenant, "tenant", "", "the organization's slug (required)")
}

// open opens the store and resolves the organization by slug.
func (f *tenantFlags) open(ctx context.Context, env env, log *slog.Logger) (store.Backend, store.TenantRef, error) {
	if f.tenant == "" {
		return nil, store.TenantRef{}, fmt.Errorf("%w: --tenant is required", errUsage)
	}
	if err := store.CheckSlug(f.tenant); err != nil {
		return nil, store.TenantRef{}, fmt.Errorf("%w: --tenant: %v", errUsage, err)
	}
	backend, err := openExistingStore(ctx, &f.sf, env, log)
	if err != nil {
		return nil, store.TenantRef{}, err
	}
	ref, err := backend.ResolveTenant(ctx, f.tenant)
	if err != nil {
		backend.Close()
		if errors.Is(err, store.ErrNotFound) {
			return nil, store.TenantRef{}, fmt.Errorf("no organization %q", f.tenant)
		}
		return nil, store.TenantRef{}, err
	}
	return backend, ref, nil
}

// openAgents is open, with the organization's agent changes over the
// store and its ledger: what a change that is logged needs. closeAll
// closes both.
func (f *tenantFlags) openAgents(ctx context.Context, lf *ledgerFlags, env env, log *slog.Logger) (_ *identity.Agents, _ store.TenantRef, closeAll func(), _ error) {
	backend, ref, err := f.open(ctx, env, log)
	if err != nil {
		return nil, store.TenantRef{}, nil, err
	}
	l, err := openLedger(ctx, &f.sf, lf, backend, env, log)
	if err != nil {
		backend.Close()
		return nil, store.TenantRef{}, nil, err
	}
	closeAll = func() { l.Close(); backend.Close() }
	agents, err := identity.NewAgents(l, backend)
	if err != nil {
		closeAll()
		return nil, store.TenantRef{}, nil, err
	}
	return agents, ref, closeAll, nil
}

func cliLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// parseAgentID parses flags placed before or after the one AGENT_ID operand.
func parseAgentID(fs *flag.FlagSet, args []string, env env) (string, error) {
	id, err := parseOne(fs, args, env, "AGENT_ID")
	if err != nil {
		return "", err
	}
	if err := store.CheckID(store.PrefixAgent, id); err != nil {
		return "", fmt.Errorf("%w: %v", errUsage, err)
	}
	return id, nil
}

// agentKeyFlags choose where an agent's new key comes from.
type agentKeyFlags struct {
	publicJWK   string // a file holding a public JWK
	generateKey string // where to write a generated private JWK
}

func (k *agentKeyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.publicJWK, "public-jwk", "", "file holding the agent's public JWK (Ed25519 or P-256)")
	fs.StringVar(&k.generateKey, "generate-key", "", "generate an Ed25519 key and write its private JWK to this new file (mode 0600)")
}

func (k *agentKeyFlags) check() error {
	if (k.publicJWK == "") == (k.generateKey == "") {
		return fmt.Errorf("%w: give exactly one of --public-jwk and --generate-key", errUsage)
	}
	return nil
}

// preparedKey is a public key ready to register and, for a generated one,
// the file holding its private half.
type preparedKey struct {
	kid, public string
	file        string // the private JWK written by --generate-key; "" otherwise
}

// prepare reads and validates --public-jwk, or generates a key and writes
// its private half to --generate-key.
func (k *agentKeyFlags) prepare() (preparedKey, error) {
	if k.publicJWK != "" {
		raw, err := osfile.ReadAtMost(k.publicJWK, 16<<10)
		if err != nil {
			return preparedKey{}, err
		}
		kid, public, err := identity.RegistrableJWK(raw)
		if err != nil {
			return preparedKey{}, fmt.Errorf("%s: %w", k.publicJWK, err)
		}
		return preparedKey{kid: kid, public: public}, nil
	}
	kid, public, private, err := identity.GenerateAgentKey()
	if err != nil {
		return preparedKey{}, err
	}
	if err := writeSecretFile(k.generateKey, append(private, '\n')); err != nil {
		return preparedKey{}, err
	}
	return preparedKey{kid: kid, public: public, file: k.generateKey}, nil
}

// discard removes a private key written for a registration that failed.
func (p preparedKey) discard() {
	if p.file != "" {
		_ = os.Remove(p.file)
	}
}

// note tells where the private key went, without its content.
func (p preparedKey) note() string {
	if p.file == "" {
		return ""
	}
	return "\tprivate_jwk_file=" + p.file
}

// writeSecretFile creates path with mode 0600 and writes b. It never
// overwrites or follows an existing file: a secret goes only where nothing
// was.
func writeSecretFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists; choose a new file for the private key", path)
		}
		return err
	}
	// The umask may only have narrowed the mode; make it exactly 0600.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Bounds of the files the commands read (osfile.ReadAtMost): keys and
// entries are a few KB (an entry at most verify.MaxEntrySize); a JWKS, a
// receipt, or a TLS PEM file at most some hundreds. Checkpoints and proofs
// are read to the verifier's own bounds (verify.MaxCheckpointSize,
// MaxProofSize), which leave room for witnesses' cosignatures.
const (
	maxSmallFile = 64 << 10
	maxLargeFile = 1 << 20
)
