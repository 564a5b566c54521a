package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/store"
)

const ledgerAdoptUsage = "agentsigna ledger adopt --tenant SLUG [--yes]"

// runLedgerAdopt: `agentsigna ledger adopt --tenant SLUG [--yes]`.
//
// Agents, agent keys and counterparties stored before rows named the
// ledger entry that records them are trusted with nothing: nothing tells
// one of them from a row planted since by whoever can write the store.
// This lists them; with --yes, the operator having checked them, it logs
// each as found (agent.adopted, counterparty.adopted) and makes its rows
// name that entry, from which on the service trusts them as that entry
// records them. A key naming no entry beside an agent that names one is
// listed, never adopted: no build stored such a key.
func runLedgerAdopt(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("ledger adopt", stderr)
	var tf tenantFlags
	var lf ledgerFlags
	tf.register(fs)
	lf.register(fs)
	yes := fs.Bool("yes", false, "adopt the rows listed (default: list them only)")
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
	agents, err := identity.NewAgents(l, backend)
	if err != nil {
		return err
	}
	counterparties, err := decision.NewCounterparties(l)
	if err != nil {
		return err
	}
	unbound, err := agents.Unbound(ctx, ref)
	if err != nil {
		return fmt.Errorf("ledger adopt: %w", err)
	}
	org := decision.Organization{ID: ref.ID, Slug: ref.Slug}
	cps, err := decision.UnboundCounterparties(ctx, backend, org)
	if err != nil {
		return fmt.Errorf("ledger adopt: %w", err)
	}
	for _, k := range unbound.Planted {
		fmt.Fprintf(stdout, "%s: key %s of agent %s names no entry, and its agent does: planted (no build stored such a key); not adopted\n", ref.Slug, k.KID, k.AgentID)
	}
	if len(unbound.Agents) == 0 && len(cps) == 0 {
		fmt.Fprintf(stdout, "%s: every agent and counterparty names its entry; nothing to adopt\n", ref.Slug)
		return plantedKeys(len(unbound.Planted))
	}
	if !*yes {
		for _, ua := range unbound.Agents {
			fmt.Fprintf(stdout, "%s: %s\n", ref.Slug, describeAgent(ua))
		}
		for _, cp := range cps {
			fmt.Fprintf(stdout, "%s: %s\n", ref.Slug, describeCounterparty(cp))
		}
		fmt.Fprintf(stdout, "%s: nothing adopted; the service trusts none of these rows. Check that each is the organization's own, then run again with --yes\n", ref.Slug)
		return plantedKeys(len(unbound.Planted))
	}
	for _, ua := range unbound.Agents {
		index, err := agents.Adopt(ctx, ref, ua)
		if err != nil {
			return fmt.Errorf("ledger adopt: agent %s: %w", ua.Agent.ID, err)
		}
		fmt.Fprintf(stdout, "%s: adopted by entry %d: %s\n", ref.Slug, index, describeAgent(ua))
	}
	for _, cp := range cps {
		index, err := counterparties.Adopt(ctx, org, cp)
		if err != nil {
			return fmt.Errorf("ledger adopt: counterparty %s: %w", cp.ID, err)
		}
		fmt.Fprintf(stdout, "%s: adopted by entry %d: %s\n", ref.Slug, index, describeCounterparty(cp))
	}
	return plantedKeys(len(unbound.Planted))
}

// plantedKeys fails the command when keys were found planted.
func plantedKeys(n int) error {
	if n == 0 {
		return nil
	}
	return errors.New("ledger adopt: " + fmt.Sprint(n) + " agent keys name no entry beside agents that do, and were not adopted: they verify nothing, and ledger verify fails on them until they are removed")
}

func describeAgent(ua identity.UnboundAgent) string {
	ag := ua.Agent
	keys := make([]string, len(ua.Keys))
	for i, k := range ua.Keys {
		keys[i] = fmt.Sprintf("%s (%s) %s", k.KID, k.Status, k.PublicJWK)
	}
	if len(keys) == 0 {
		keys = []string{"none (its keys name their entries)"}
	}
	return fmt.Sprintf("agent %s name=%q sponsor=%q risk_tier=%s status=%s; keys naming no entry: %s",
		ag.ID, ag.Name, ag.Sponsor, ag.RiskTier, ag.Status, strings.Join(keys, ", "))
}

func describeCounterparty(cp store.Counterparty) string {
	bank := "none"
	if len(cp.BankDetailsSealed) > 0 {
		bank = "sealed"
	}
	return fmt.Sprintf("counterparty %s name=%q status=%s bank_details=%s", cp.ID, cp.Name, cp.Status, bank)
}
