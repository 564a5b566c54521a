package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/postgres"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
)

// openStore opens the store the flags select, migrating it first where this
// process may: always for SQLite, and for PostgreSQL when an owner URL is
// given (otherwise Open refuses a schema older than this binary).
// PostgreSQL also needs the master key, whatever the command: the
// organizations' rows are bound to a key derived from it.
func openStore(ctx context.Context, sf *storeFlags, env env, log *slog.Logger) (store.Backend, error) {
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
	key, err := tenantBindingKey(sf, env)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	if sf.ownerDatabaseURL != "" {
		if err := postgres.Migrate(ctx, sf.ownerDatabaseURL, postgres.DefaultRoles(sf.rolePrefix), key); err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
	}
	s, err := postgres.Open(ctx, postgres.Config{TenantURL: sf.databaseURL, PlatformURL: sf.platformDatabaseURL, TenantKey: key, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store: %w", err)
	}
	return s, nil
}

// tenantBindingKey is the key, derived from the master key, with which a
// PostgreSQL store binds its connections, without which row security
// confines them to no organization: Migrate installs it, Open proves it.
// The caller clears it. PostgreSQL's master key is never generated, so no
// data dir is looked at (`migrate --owner-database-url` alone is not
// sf.postgres()).
func tenantBindingKey(sf *storeFlags, env env) ([]byte, error) {
	master, _, err := secrets.LoadMasterKey(masterKeyOptions(sf, env))
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	return master.DeriveKey(postgres.BindingKeyPurpose)
}

// openExistingStore is openStore for a command that reads or changes what
// a store holds (an organization, a log): on the embedded store a mistyped
// --data-dir is refused rather than left behind as a new, empty store.
func openExistingStore(ctx context.Context, sf *storeFlags, env env, log *slog.Logger) (store.Backend, error) {
	if !sf.postgres() {
		if _, err := os.Stat(sf.dataDir); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: no embedded store at %s (--data-dir)", errUsage, sf.dataDir)
		}
	}
	return openStore(ctx, sf, env, log)
}

// loadMasterKey loads the key that encrypts secrets at rest. Only the
// embedded default may create one (DATA_DIR/master.key), and only for a
// store that holds nothing sealed yet: no organization and no platform log
// key. PostgreSQL replicas must share a configured key.
//
// A store that already holds sealed secrets, with no master.key beside it
// and no key configured, was sealed under a key this process was not given
// (the --master-key-file or AGENTSIGNA_MASTER_KEY that serve uses): a new
// key would seal what comes next — a rotated receipt key, an
// organization's log key, bank details — where nothing else opens it.
func loadMasterKey(ctx context.Context, sf *storeFlags, backend store.Backend, env env, log *slog.Logger) (*secrets.MasterKey, error) {
	opts := masterKeyOptions(sf, env)
	if !sf.postgres() {
		opts.DataDir = sf.dataDir
		if opts.EnvValue == "" && opts.KeyFile == "" {
			if err := mayCreateMasterKey(ctx, sf.dataDir, backend); err != nil {
				return nil, err
			}
		}
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

// masterKeyOptions are where the flags and environment say the master key
// is: AGENTSIGNA_MASTER_KEY or --master-key-file, no data dir.
func masterKeyOptions(sf *storeFlags, env env) secrets.LoadOptions {
	opts := secrets.LoadOptions{KeyFile: sf.masterKeyFile}
	opts.EnvValue, _ = env("AGENTSIGNA_MASTER_KEY")
	return opts
}

// mayCreateMasterKey refuses when DATA_DIR/master.key is missing from a
// store that already holds secrets sealed under some master key.
func mayCreateMasterKey(ctx context.Context, dataDir string, backend store.Backend) error {
	path := filepath.Join(dataDir, secrets.DefaultKeyFileName)
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return nil // there is one to load (or a reason LoadMasterKey will give)
	}
	var sealed bool
	err := backend.InPlatformReadTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
		tenants, err := tx.ListTenants(ctx)
		if err != nil {
			return err
		}
		logKeys, err := tx.Keys().SigningKeys(ctx, store.PurposeLog)
		sealed = len(tenants) > 0 || len(logKeys) > 0
		return err
	})
	if err != nil {
		return fmt.Errorf("master key: %w", err)
	}
	if sealed {
		return fmt.Errorf("%w: %s does not exist, and the store already holds secrets sealed under a master key; "+
			"give that key (--master-key-file or AGENTSIGNA_MASTER_KEY)", secrets.ErrNoMasterKey, path)
	}
	return nil
}
