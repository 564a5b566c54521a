package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/postgres"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
)

// openStore opens the store the flags select, migrating it first where this
// process may: always for SQLite, and for PostgreSQL when an owner URL is
// given (otherwise Open refuses a schema older than this binary).
func openStore(ctx context.Context, sf *storeFlags, log *slog.Logger) (store.Backend, error) {
	if !sf.postgres() {
		s, err := sqlite.Open(ctx, sqlite.Config{DataDir: sf.dataDir, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("open embedded store: %w", err)
		}
		return s, nil
	}
	if sf.databaseURL == "" || sf.platformDatabaseURL == "" {
		return nil, fmt.Errorf("%w: PostgreSQL needs both --database-url (tenant role) and --platform-database-url (platform role)", errUsage)
	}
	if sf.ownerDatabaseURL != "" {
		if err := postgres.Migrate(ctx, sf.ownerDatabaseURL, postgres.DefaultRoles(sf.rolePrefix)); err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
	}
	s, err := postgres.Open(ctx, postgres.Config{TenantURL: sf.databaseURL, PlatformURL: sf.platformDatabaseURL, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store: %w", err)
	}
	return s, nil
}

// loadMasterKey loads the key that encrypts secrets at rest. Only the
// embedded default may create one (in the data dir); PostgreSQL replicas
// must share a configured key.
func loadMasterKey(sf *storeFlags, env env, log *slog.Logger) (*secrets.MasterKey, error) {
	opts := secrets.LoadOptions{KeyFile: sf.masterKeyFile}
	opts.EnvValue, _ = env("AGENTSIGNA_MASTER_KEY")
	if !sf.postgres() {
		opts.DataDir = sf.dataDir
	}
	key, info, err := secrets.LoadMasterKey(opts)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if info.Created {
		log.Warn("generated a new master key; back it up: losing it loses every secret encrypted under it",
			slog.String("path", info.Path))
	}
	return key, nil
}
