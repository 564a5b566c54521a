package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// runOrg: `agentsigna org create --slug SLUG --name NAME` and `org list`,
// for local use until the platform plane's API exists. Creating an
// organization creates its log key (so its verifier key is published before
// its first entry) and records the creation in the platform ledger.
func runOrg(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	const orgUsage = "agentsigna org create --slug SLUG --name NAME | agentsigna org list"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprintln(stderr, "usage: "+orgUsage)
		return flag.ErrHelp
	}
	if len(args) == 0 || (args[0] != "create" && args[0] != "list") {
		return fmt.Errorf("%w: %s", errUsage, orgUsage)
	}
	fs := newFlagSet("org "+args[0], stderr)
	var sf storeFlags
	var lf ledgerFlags
	sf.register(fs)
	lf.register(fs)
	slug := fs.String("slug", "", "the organization's URL name (lower-case letters, digits, hyphens)")
	name := fs.String("name", "", "the organization's display name")
	if err := parse(fs, args[1:], env); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	open := openStore // org create may make the store
	if args[0] == "list" {
		open = openExistingStore
	}
	backend, err := open(ctx, &sf, env, log)
	if err != nil {
		return err
	}
	defer backend.Close()
	if args[0] == "list" {
		return backend.InPlatformTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
			ts, err := tx.ListTenants(ctx)
			for _, t := range ts {
				fmt.Fprintf(stdout, "%s\t%s\t%s\t%q\n", t.Slug, t.ID, t.Status, t.Name)
			}
			return err
		})
	}
	if *slug == "" || *name == "" {
		return fmt.Errorf("%w: --slug and --name are required", errUsage)
	}
	l, err := openLedger(ctx, &sf, &lf, backend, env, log)
	if err != nil {
		return err
	}
	defer l.Close()
	// The organization, its log key and the platform's entry are three
	// writes (two files on the embedded store). The platform log's key is
	// opened (or made) first, so that a wrong master key fails before the
	// organization exists, rather than leaving one whose creation is in no
	// log and whose slug cannot be taken again.
	if _, err := l.InitLog(ctx, l.PlatformLog()); err != nil {
		return err
	}
	var t store.Tenant
	err = backend.InPlatformTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
		t, err = tx.CreateTenant(ctx, store.Tenant{Slug: *slug, Name: *name})
		return err
	})
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("an organization %q exists already (org list)", *slug)
	}
	if err != nil {
		return err
	}
	vkey, err := l.InitLog(ctx, l.TenantLog(t.ID, t.Slug))
	if err != nil {
		return err
	}
	record, _ := json.Marshal(map[string]string{"event": "organization_created", "tenant_id": t.ID, "slug": t.Slug, "log_key": vkey})
	if _, err := l.Append(ctx, l.PlatformLog(), ledger.Entry{Kind: "platform.org_created", Subject: t.ID, Record: record}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s (%s); its log key: %s\n", t.Slug, t.ID, vkey)
	return nil
}
