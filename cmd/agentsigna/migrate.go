package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/postgres"
)

// runMigrate applies the embedded migrations: to the data dir's files, or,
// with --owner-database-url, to PostgreSQL (creating the roles first, and
// binding the organizations' rows to the master key, which it then needs).
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, env env) error {
	fs := newFlagSet("migrate", stderr)
	var sf storeFlags
	sf.register(fs)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if sf.ownerDatabaseURL != "" {
		roles := postgres.DefaultRoles(sf.rolePrefix)
		key, err := tenantBindingKey(&sf, env)
		if err != nil {
			return err
		}
		defer clear(key)
		if err := postgres.Migrate(ctx, sf.ownerDatabaseURL, roles, key); err != nil {
			return fmt.Errorf("migrate PostgreSQL: %w", err)
		}
		fmt.Fprintf(stdout, "PostgreSQL schema is current; app roles: %s (tenant plane), %s (platform plane)\n", roles.Tenant, roles.Platform)
		return nil
	}
	if sf.postgres() {
		return fmt.Errorf("%w: migrating PostgreSQL needs --owner-database-url (the app roles may not change the schema)", errUsage)
	}
	s, err := openStore(ctx, &sf, env, log)
	if err != nil {
		return err
	}
	defer s.Close()
	// Tenant files migrate when first opened; open each one now so that
	// an upgrade fails here, not on some organization's next request.
	var tenants []store.Tenant
	err = s.InPlatformTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
		tenants, err = tx.ListTenants(ctx)
		return err
	})
	if err != nil {
		return err
	}
	for _, t := range tenants {
		if err := s.InTenantTx(ctx, t.ID, func(context.Context, store.TenantTx) error { return nil }); err != nil {
			return fmt.Errorf("migrate organization %s: %w", t.Slug, err)
		}
	}
	if err := s.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "embedded store schema is current in %s (%d organizations)\n", sf.dataDir, len(tenants))
	return nil
}
