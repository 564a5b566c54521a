package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/osfile"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/store"
)

const counterpartyUsage = `usage:
  agentsigna counterparty add --tenant SLUG --name NAME [--status new|verified] [--bank-details-file FILE]
                              [--public-url URL] [--log-origin ORIGIN]
  agentsigna counterparty list --tenant SLUG

Bank details are sealed with the master key (AES-256-GCM, bound to the organization and the
counterparty) before they reach the store, and are never printed. A counterparty is stored with
the organization's ledger entry that records it (counterparty.created, with its status).`

// maxBankDetails bounds a bank-details file; sealed, it stays well under
// the store's limit.
const maxBankDetails = 8 << 10

// runCounterparty manages an organization's counterparties locally.
func runCounterparty(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: counterparty needs a subcommand: add or list", errUsage)
	}
	switch args[0] {
	case "add":
		return runCounterpartyAdd(ctx, args[1:], stdout, stderr, env)
	case "list":
		return runCounterpartyList(ctx, args[1:], stdout, stderr, env)
	case "-h", "--help", "help":
		fmt.Fprintln(stderr, counterpartyUsage)
		return flag.ErrHelp
	}
	return fmt.Errorf("%w: unknown counterparty subcommand %q (add or list)", errUsage, args[0])
}

func runCounterpartyAdd(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("counterparty add", stderr)
	var tf tenantFlags
	var lf ledgerFlags
	tf.register(fs)
	lf.register(fs)
	name := fs.String("name", "", "the counterparty's name (1-200 bytes)")
	status := fs.String("status", string(store.CounterpartyNew), "new or verified")
	bankFile := fs.String("bank-details-file", "", "file holding the bank details, sealed before they are stored")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	cp := store.Counterparty{ID: store.NewID(store.PrefixCounterparty), Name: *name, Status: store.CounterpartyStatus(*status)}
	if cp.Status != store.CounterpartyNew && cp.Status != store.CounterpartyVerified {
		return fmt.Errorf("%w: --status must be new or verified", errUsage)
	}
	if err := store.CheckCounterparty(cp); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var details []byte
	if *bankFile != "" {
		var err error
		if details, err = osfile.ReadAtMost(*bankFile, maxBankDetails); err != nil {
			return err
		}
		defer clear(details)
		if len(details) == 0 {
			return fmt.Errorf("%w: %s is empty", errUsage, *bankFile)
		}
	}
	log := cliLogger(stderr)
	backend, ref, err := tf.open(ctx, env, log)
	if err != nil {
		return err
	}
	defer backend.Close()
	// The counterparty and its entry commit together: the ledger's log
	// key is sealed under the master key, which the bank details are too.
	l, keys, master, err := openLedgerAndMaster(ctx, &tf.sf, &lf, backend, env, log)
	if err != nil {
		return err
	}
	defer l.Close()
	if details != nil {
		// Details sealed under a master key that is not the store's could
		// never be opened again: refused, as for signing keys.
		err := backend.InTenantReadTx(ctx, ref.ID, func(ctx context.Context, tx store.TenantTx) error {
			return keys.CheckMasterKey(ctx, tx.Keys(), ref.ID)
		})
		if err != nil {
			return fmt.Errorf("add counterparty: %w", err)
		}
		// SPEC: DESIGN §2 — the associated data binds the ciphertext to its
		// organization and row.
		cp.BankDetailsSealed, err = master.Seal(details, secrets.Binding{
			Tenant: ref.ID, Table: "counterparties", Row: cp.ID, Purpose: "bank_details",
		})
		if err != nil {
			return fmt.Errorf("seal bank details: %w", err)
		}
	}
	counterparties, err := decision.NewCounterparties(l)
	if err != nil {
		return err
	}
	if cp, err = counterparties.Add(ctx, decision.Organization{ID: ref.ID, Slug: ref.Slug}, cp); err != nil {
		return fmt.Errorf("add counterparty: %w", err)
	}
	fmt.Fprintf(stdout, "%s\t%s\tbank_details=%s\tname=%q\n", cp.ID, cp.Status, bankDetailsState(cp.BankDetailsSealed != nil), cp.Name)
	return nil
}

func runCounterpartyList(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("counterparty list", stderr)
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
	var list []store.Counterparty
	err = backend.InTenantTx(ctx, ref.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		list, err = tx.Counterparties().List(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("list counterparties: %w", err)
	}
	for _, cp := range list {
		fmt.Fprintf(stdout, "%s\t%s\tname=%q\n", cp.ID, cp.Status, cp.Name)
	}
	return nil
}

func bankDetailsState(sealed bool) string {
	if sealed {
		return "sealed"
	}
	return "none"
}
