package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/osfile"
	"github.com/agentsigna/agentsigna/internal/store"
)

// policyService opens the store, ledger and policy service for one
// organization (local use; the HTTP upload arrives with the identity plane).
type policyService struct {
	backend  store.Backend
	policies *decision.Policies
	org      decision.Organization
	close    func()
}

func openPolicyService(ctx context.Context, sf *storeFlags, lf *ledgerFlags, slug string, env env, stderr io.Writer) (*policyService, error) {
	if slug == "" {
		return nil, fmt.Errorf("%w: --tenant is required", errUsage)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	backend, err := openExistingStore(ctx, sf, env, log)
	if err != nil {
		return nil, err
	}
	ref, err := backend.ResolveTenant(ctx, slug)
	if err != nil {
		backend.Close()
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return nil, fmt.Errorf("no organization %q", slug)
		}
		return nil, err
	}
	l, err := openLedger(ctx, sf, lf, backend, env, log)
	if err != nil {
		backend.Close()
		return nil, err
	}
	ws, err := policyWorkers(0)
	if err != nil {
		l.Close()
		backend.Close()
		return nil, err
	}
	return &policyService{
		backend:  backend,
		policies: decision.NewPolicies(backend, l, bundles.NewEngine(), decision.PoliciesOptions{Workers: ws}),
		org:      decision.Organization{ID: ref.ID, Slug: ref.Slug},
		close:    func() { ws.Close(); l.Close(); backend.Close() },
	}, nil
}

// runPolicyPush: `agentsigna policy push --tenant SLUG --by USER BUNDLE|DIR`.
func runPolicyPush(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("policy push", stderr)
	var sf storeFlags
	var lf ledgerFlags
	sf.register(fs)
	lf.register(fs)
	tenant := fs.String("tenant", "", "organization slug")
	by := fs.String("by", "", "who uploads (recorded in the ledger)")
	operands, err := parseInterspersed(fs, args, env)
	if err != nil {
		return err
	}
	if len(operands) != 1 || *by == "" {
		return fmt.Errorf("%w: agentsigna policy push --tenant SLUG --by USER BUNDLE|DIR", errUsage)
	}
	raw, _, err := readBundle(operands[0])
	if err != nil {
		return err
	}
	svc, err := openPolicyService(ctx, &sf, &lf, *tenant, env, stderr)
	if err != nil {
		return err
	}
	defer svc.close()
	b, err := svc.policies.Upload(ctx, svc.org, raw, *by)
	if err != nil {
		return err
	}
	verb := "uploaded"
	if !b.Stored {
		verb = "already had" // the same bundle: nothing stored or logged
	}
	fmt.Fprintf(stdout, "%s: %s revision %s (sha256 %s); activate it with: agentsigna policy activate --tenant %s --revision %s --by USER --approved-by OTHER\n",
		svc.org.Slug, verb, b.Revision, b.Digest, svc.org.Slug, b.Revision)
	return nil
}

// runPolicyActivate: `agentsigna policy activate --tenant SLUG --revision R
// --by USER --approved-by OTHER [--rollback]`.
func runPolicyActivate(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("policy activate", stderr)
	var sf storeFlags
	var lf ledgerFlags
	sf.register(fs)
	lf.register(fs)
	tenant := fs.String("tenant", "", "organization slug")
	revision := fs.String("revision", "", "revision to activate")
	by := fs.String("by", "", "who activates")
	approvedBy := fs.String("approved-by", "", "the second person who approves (four eyes)")
	rollback := fs.Bool("rollback", false, "go back to a revision uploaded before the active one")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if *revision == "" {
		return fmt.Errorf("%w: --revision is required", errUsage)
	}
	svc, err := openPolicyService(ctx, &sf, &lf, *tenant, env, stderr)
	if err != nil {
		return err
	}
	defer svc.close()
	act, err := svc.policies.Activate(ctx, svc.org, *revision, *by, *approvedBy, *rollback)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s has no revision %q (policy push stores one)", svc.org.Slug, *revision)
	}
	if err != nil {
		return err
	}
	verb := "activated"
	if act.Rollback {
		verb = "rolled back to"
	}
	fmt.Fprintf(stdout, "%s: %s revision %s (activation %d, approved by %s)\n", svc.org.Slug, verb, act.Revision, act.Seq, act.ApprovedBy)
	return nil
}

// runPolicyKey: `agentsigna policy add-key --tenant SLUG [--id ID] --by USER PEM`.
func runPolicyKey(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("policy add-key", stderr)
	var sf storeFlags
	var lf ledgerFlags
	sf.register(fs)
	lf.register(fs)
	tenant := fs.String("tenant", "", "organization slug")
	id := fs.String("id", bundles.DefaultKeyID, "key id the bundle signatures name")
	alg := fs.String("signing-alg", "", "signature algorithm of the key: RS256…RS512, PS256…PS512, ES256…ES512 (default RS256 for RSA keys, ES* by curve)")
	by := fs.String("by", "", "who registers the key")
	operands, err := parseInterspersed(fs, args, env)
	if err != nil {
		return err
	}
	if len(operands) != 1 || *by == "" {
		return fmt.Errorf("%w: agentsigna policy add-key --tenant SLUG [--id ID] [--signing-alg ALG] --by USER PUBLIC_KEY.pem", errUsage)
	}
	pem, err := osfile.ReadAtMost(operands[0], maxKeyFileBytes)
	if err != nil {
		return err
	}
	svc, err := openPolicyService(ctx, &sf, &lf, *tenant, env, stderr)
	if err != nil {
		return err
	}
	defer svc.close()
	if err := svc.policies.AddVerificationKey(ctx, svc.org, *id, *alg, pem, *by); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s now accepts only bundles signed by a registered key (added %q)\n", svc.org.Slug, *id)
	return nil
}
