package main

import (
	"context"
	"fmt"
	"io"

	"github.com/agentsigna/agentsigna/internal/decision"
)

const ledgerAdoptUsage = "agentsigna ledger adopt --tenant SLUG [--confirm DIGEST]"

// runLedgerAdopt: `agentsigna ledger adopt --tenant SLUG [--confirm DIGEST]`.
//
// Agents, agent keys and counterparties whose rows name no ledger entry —
// stored before rows named the entry that records them, or planted since
// by whoever can write the store, which nothing tells apart — are trusted
// with nothing. This reads the organization's log, as ledger verify does,
// and lists what it would do with each: bind it to the entries the log
// holds of it already, log it as found in a new agent.adopted or
// counterparty.adopted entry (a row the log does not record), or refuse it
// (a row that says otherwise than its entries). The listing ends with its
// digest; with --confirm DIGEST, the operator having checked the rows, it
// does exactly that listing, and refuses if the rows changed since.
func runLedgerAdopt(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("ledger adopt", stderr)
	var tf tenantFlags
	var lf ledgerFlags
	tf.register(fs)
	lf.register(fs)
	confirm := fs.String("confirm", "", "the digest a listing ended with: adopt exactly the rows listed (default: list them only)")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	log := cliLogger(stderr)
	backend, ref, err := tf.open(ctx, env, log)
	if err != nil {
		return err
	}
	defer backend.Close()
	l, err := openLedger(ctx, &tf.sf, &lf, backend, env, log)
	if err != nil {
		return err
	}
	defer l.Close()
	adopter, err := decision.NewAdopter(l, backend)
	if err != nil {
		return err
	}
	org := decision.Organization{ID: ref.ID, Slug: ref.Slug}
	if *confirm == "" {
		plan, err := adopter.Plan(ctx, org)
		if err != nil {
			return fmt.Errorf("ledger adopt: %w", err)
		}
		if plan.Empty() {
			fmt.Fprintf(stdout, "%s: every agent, agent key and counterparty names its entry; nothing to adopt\n", ref.Slug)
			return nil
		}
		for _, ad := range plan.Agents {
			fmt.Fprintf(stdout, "%s: would bind %s\n", ref.Slug, decision.DescribeAgentAdoption(ad))
		}
		for _, ca := range plan.Counterparties {
			fmt.Fprintf(stdout, "%s: would bind %s\n", ref.Slug, decision.DescribeCounterpartyAdoption(ca))
		}
		printRefused(stdout, ref.Slug, plan.Refused)
		if len(plan.Agents)+len(plan.Counterparties) == 0 {
			fmt.Fprintf(stdout, "%s: nothing to adopt; the rows refused stay untrusted, and ledger verify fails on them\n", ref.Slug)
			return nil
		}
		fmt.Fprintf(stdout, "%s: nothing adopted; the service trusts none of these rows. Check that each is the organization's own, then run again with --confirm %s\n", ref.Slug, plan.Digest())
		return nil
	}
	plan, err := adopter.Adopt(ctx, org, *confirm, func(what string, index uint64, err error) {
		if err != nil {
			fmt.Fprintf(stdout, "%s: not bound (%v): %s\n", ref.Slug, err, what)
			return
		}
		fmt.Fprintf(stdout, "%s: bound %s\n", ref.Slug, what)
	})
	printRefused(stdout, ref.Slug, plan.Refused)
	if err != nil {
		return fmt.Errorf("ledger adopt: %w", err)
	}
	if len(plan.Refused) > 0 {
		return fmt.Errorf("ledger adopt: %d rows refused: they stay untrusted, and ledger verify fails on them", len(plan.Refused))
	}
	return nil
}

func printRefused(stdout io.Writer, slug string, refused []string) {
	for _, why := range refused {
		fmt.Fprintf(stdout, "%s: refused: %s\n", slug, why)
	}
}
