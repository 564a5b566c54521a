package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/latency"
	"github.com/agentsigna/agentsigna/internal/osfile"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// ledgerFlags name the deployment's log origin.
type ledgerFlags struct {
	publicURL string
	logOrigin string
	// stages times appends (ledger.Config.Stages): serve's, served on its
	// debug listener; nil for the other commands.
	stages *latency.Family
}

func (f *ledgerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.publicURL, "public-url", "http://127.0.0.1:8080", "URL at which clients reach the tenant plane (receipt issuer prefix); serve's default is the URL of --tenant-addr when that is loopback with a port")
	fs.StringVar(&f.logOrigin, "log-origin", "", "prefix of every log origin, <log-origin>/t/<slug> (default: host of --public-url); fixed per log once its key exists")
}

// origin returns --log-origin, or the host[:port] of --public-url.
func (f *ledgerFlags) origin() (string, error) {
	if f.logOrigin != "" {
		if strings.ContainsAny(f.logOrigin, " +\n\t") {
			return "", fmt.Errorf("%w: --log-origin may not contain spaces or '+'", errUsage)
		}
		return strings.TrimSuffix(f.logOrigin, "/"), nil
	}
	u, err := url.Parse(f.publicURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("%w: --public-url must be an http(s) URL", errUsage)
	}
	return u.Host + strings.TrimSuffix(u.Path, "/"), nil
}

// openLedger opens the key ring and ledger over an open store.
func openLedger(ctx context.Context, sf *storeFlags, lf *ledgerFlags, backend store.Backend, env env, log *slog.Logger) (*ledger.Ledger, error) {
	l, _, err := openLedgerAndKeys(ctx, sf, lf, backend, env, log)
	return l, err
}

func openLedgerAndKeys(ctx context.Context, sf *storeFlags, lf *ledgerFlags, backend store.Backend, env env, log *slog.Logger) (*ledger.Ledger, *signing.Keyring, error) {
	l, keys, _, err := openLedgerAndMaster(ctx, sf, lf, backend, env, log)
	return l, keys, err
}

// openLedgerAndMaster is openLedgerAndKeys, with the master key for a
// command that seals something of its own.
func openLedgerAndMaster(ctx context.Context, sf *storeFlags, lf *ledgerFlags, backend store.Backend, env env, log *slog.Logger) (*ledger.Ledger, *signing.Keyring, *secrets.MasterKey, error) {
	origin, err := lf.origin()
	if err != nil {
		return nil, nil, nil, err
	}
	master, err := loadMasterKey(ctx, sf, backend, env, log)
	if err != nil {
		return nil, nil, nil, err
	}
	keys, err := signing.NewKeyring(master)
	if err != nil {
		return nil, nil, nil, err
	}
	l, err := ledger.New(ledger.Config{Tenants: backend, Platform: backend, Keys: keys, Origin: origin, Logger: log, Stages: lf.stages})
	return l, keys, master, err
}

// checkPlatformLogKey opens the platform log's key, when it has one: a
// server started with a master key that is not the store's stops here,
// before it creates any organization's first receipt or token key (which
// signing refuses too, for an organization that has a key to check) or
// answers a request it cannot record.
func checkPlatformLogKey(ctx context.Context, backend store.Backend, keys *signing.Keyring) error {
	err := backend.InPlatformReadTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
		_, err := keys.LogVerifier(ctx, tx.Keys(), signing.LogScope{})
		return err
	})
	switch {
	case errors.Is(err, signing.ErrNoLogKey):
		return nil
	case errors.Is(err, secrets.ErrDecrypt):
		return fmt.Errorf("master key: it does not open the platform log's key, so it is not the one this store was sealed with: %w", err)
	}
	return err
}

// runLedger: `agentsigna ledger verify [--tenant SLUG | --platform]
// [--log-key KEY] [--checkpoint FILE]`.
//
// A log re-read on its own shows any entry or checkpoint altered or
// deleted but the newest: a log cut back to an earlier batch checks like
// a log that never grew. --checkpoint gives a checkpoint kept from before
// (GET /v1/ledger/checkpoint), which the stored log must still extend.
func runLedger(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	if len(args) > 0 && args[0] == "adopt" {
		return runLedgerAdopt(ctx, args[1:], stdout, stderr, env)
	}
	if len(args) == 0 || args[0] != "verify" {
		return fmt.Errorf("%w: agentsigna ledger verify [--tenant SLUG | --platform] [--log-key KEY] [--checkpoint FILE] | "+ledgerAdoptUsage, errUsage)
	}
	fs := newFlagSet("ledger verify", stderr)
	var sf storeFlags
	var lf ledgerFlags
	sf.register(fs)
	lf.register(fs)
	tenant := fs.String("tenant", "", "verify only this organization's log (default: every log)")
	platform := fs.Bool("platform", false, "verify only the platform log")
	logKey := fs.String("log-key", "", "pin the log's verifier key (a key or a file holding one); default: the key stored with the log")
	keptFile := fs.String("checkpoint", "", "a checkpoint of the log kept from earlier, a file: the stored log must extend it (a log cut back is otherwise undetectable)")
	if err := parse(fs, args[1:], env); err != nil {
		return err
	}
	if *tenant != "" && *platform {
		return fmt.Errorf("%w: --tenant and --platform each name one log: give one of them", errUsage)
	}
	if *logKey != "" && *tenant == "" && !*platform {
		return fmt.Errorf("%w: --log-key pins one log: give --tenant or --platform", errUsage)
	}
	if *keptFile != "" && *tenant == "" && !*platform {
		return fmt.Errorf("%w: --checkpoint is one log's: give --tenant or --platform", errUsage)
	}
	var kept []byte
	if *keptFile != "" {
		var err error
		if kept, err = osfile.ReadAtMost(*keptFile, verify.MaxCheckpointSize); err != nil {
			return err
		}
	}
	var pinned string
	if *logKey != "" {
		var err error
		if pinned, err = readLogKey(*logKey); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	backend, err := openExistingStore(ctx, &sf, env, log)
	if err != nil {
		return err
	}
	defer backend.Close()
	l, err := openLedger(ctx, &sf, &lf, backend, env, log)
	if err != nil {
		return err
	}
	defer l.Close()

	type target struct {
		name   string
		log    ledger.Log
		tenant bool
	}
	var targets []target
	if !*platform {
		var tenants []store.Tenant
		err := backend.InPlatformTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
			var err error
			tenants, err = tx.ListTenants(ctx)
			return err
		})
		if err != nil {
			return err
		}
		for _, t := range tenants {
			if *tenant == "" || t.Slug == *tenant {
				targets = append(targets, target{t.Slug, l.TenantLog(t.ID, t.Slug), true})
			}
		}
		if *tenant != "" && len(targets) == 0 {
			return fmt.Errorf("no organization %q", *tenant)
		}
	}
	if *tenant == "" {
		targets = append(targets, target{"platform", l.PlatformLog(), false})
	}
	if len(targets) == 0 {
		// Not reached: the platform log is checked unless one
		// organization is asked for, which is then found. A check of
		// nothing must not pass as a check.
		return errors.New("ledger verify: no log to check")
	}
	failed := 0
	for _, tg := range targets {
		var opts ledger.CheckOptions
		var rows *decision.RowLog
		if tg.tenant {
			// Every receipt key the organization holds came with its
			// entry (decision.ReceiptKeys), and so did its agents, their
			// keys and its counterparties.
			keys, rowLog := decision.NewReceiptKeyLog(), decision.NewRowLog()
			rows = rowLog
			opts.CheckKeys, opts.CheckRows = keys.Keys, rows.Rows
			opts.CheckRecord = func(e verify.Entry, record []byte) error {
				if err := keys.Entry(e, record); err != nil {
					return err
				}
				return rowLog.Entry(e, record)
			}
		}
		rep, err := l.CheckWith(ctx, tg.log, pinned, opts)
		if err == nil && rep.Problem == nil && kept != nil {
			rep.Problem, err = extendsKept(ctx, l, tg.log, pinned, kept, rep.Size)
		}
		switch {
		case errors.Is(err, signing.ErrNoLogKey) && kept != nil:
			// Checkpoints are of sizes > 0: the kept one had entries.
			failed++
			fmt.Fprintf(stdout, "%s: FAILED: the log has no key and no entries, but a checkpoint of it was kept: they were deleted\n", tg.name)
		case errors.Is(err, signing.ErrNoLogKey):
			fmt.Fprintf(stdout, "%s: empty (no key, no entries)\n", tg.name)
		case err != nil:
			failed++
			fmt.Fprintf(stdout, "%s: could not check: %v\n", tg.name, err)
		case rep.Problem != nil:
			failed++
			fmt.Fprintf(stdout, "%s: FAILED at entry %d: %s\n", tg.name, rep.Problem.Index, rep.Problem.Reason)
		case rep.KeysProblem != "":
			failed++
			fmt.Fprintf(stdout, "%s: FAILED: %s\n", tg.name, rep.KeysProblem)
		case rep.RowsProblem != "":
			failed++
			fmt.Fprintf(stdout, "%s: FAILED: %s\n", tg.name, rep.RowsProblem)
		default:
			var unlogged string
			if rows != nil && rows.UnstoredDecisions > 0 {
				unlogged += fmt.Sprintf("; %d decisions in the log that the store does not hold (their write failed after their entries, or they were deleted whole)", rows.UnstoredDecisions)
			}
			fmt.Fprintf(stdout, "%s: OK: %d entries, %d signed checkpoints, origin %s%s\n", tg.name, rep.Size, rep.Checkpoints, rep.Origin, unlogged)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d logs failed verification", failed, len(targets))
	}
	return nil
}

// extendsKept reports a Problem unless the stored log, of size (its newest
// checkpoint's), extends the kept checkpoint: same log, signed by the
// log's key (pinned, else stored), of a size the store still has a signed
// checkpoint of, consistent with the newest.
func extendsKept(ctx context.Context, l *ledger.Ledger, lg ledger.Log, pinned string, kept []byte, size uint64) (*ledger.Problem, error) {
	key := pinned
	if key == "" {
		var err error
		if key, err = l.VerifierKey(ctx, lg); err != nil {
			return nil, err
		}
	}
	older, err := verify.VerifyCheckpoint(kept, key)
	if err != nil {
		return nil, fmt.Errorf("the kept checkpoint: %w", err)
	}
	switch {
	case older.Size() == 0:
		return nil, nil // every log extends the empty tree
	case older.Size() > size:
		return &ledger.Problem{Index: size, Reason: fmt.Sprintf("the log holds %d entries, fewer than the kept checkpoint's %d: its newest were deleted", size, older.Size())}, nil
	}
	p, err := l.ConsistencyProof(ctx, lg, older.Size(), size)
	if errors.Is(err, ledger.ErrNoCheckpoint) {
		return &ledger.Problem{Index: older.Size() - 1, Reason: fmt.Sprintf("no signed checkpoint of the kept size %d is stored", older.Size())}, nil
	}
	if err != nil {
		return nil, err
	}
	// As an auditor checks a consistency proof: the newest checkpoint under
	// the key, then the proof from the kept one to it.
	proof := verify.ConsistencyProofJSON{First: p.First, Second: p.Second, Hashes: p.Hashes, Checkpoint: string(p.Checkpoint.Note)}
	if _, err := proof.Verify(key, older); err != nil {
		return &ledger.Problem{Index: older.Size() - 1, Reason: fmt.Sprintf("the log does not extend the kept checkpoint: %v", err)}, nil
	}
	return nil, nil
}
