package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/identity"
	"github.com/agentsigna/agentsigna/internal/osfile"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/policies"
)

// demoCredentials is DATA_DIR/demo/credentials.json (DESIGN §5). Users and
// the platform admin stay empty until the identity issues add them.
type demoCredentials struct {
	TenantURL      string             `json:"tenant_url"`
	PlatformURL    string             `json:"platform_url"`
	Tenant         string             `json:"tenant"`
	Users          []demoUser         `json:"users"`
	Agent          demoAgent          `json:"agent"`
	Counterparties []demoCounterparty `json:"counterparties"`
	PlatformAdmin  demoUser           `json:"platform_admin"`
}

type demoUser struct {
	Email    string   `json:"email"`
	Password string   `json:"password"`
	Roles    []string `json:"roles,omitempty"`
}

type demoAgent struct {
	ID         string          `json:"id"`
	PrivateJWK json.RawMessage `json:"private_jwk"`
}

type demoCounterparty struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
}

// seedDemo seeds organization acme on an empty store: the example policy
// (active), an agent of tier low with a generated key, a verified and a new
// counterparty; the credentials go to DATA_DIR/demo/credentials.json (0600),
// never to the log, and last. On a store an earlier run seeded (acme there,
// its credentials written: organizations made since, as the README's local
// administration does, are fine) it does nothing. It refuses any other store
// that holds an organization: seeding one in use (a stray --demo) would add
// an organization with an active agent whose private key sits in a file,
// and acme without its credentials is a seeding that stopped part way, whose
// agent key is lost. It runs to its end, or a minute, whatever becomes of
// ctx: a signal (Ctrl-C on the first `make run`) must not cut it part way.
func seedDemo(ctx context.Context, backend store.Backend, l *ledger.Ledger, pol *decision.Policies, dataDir, tenantURL, platformURL string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var tenants []store.Tenant
	err := backend.InPlatformReadTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
		var err error
		tenants, err = tx.ListTenants(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if len(tenants) > 0 {
		credentials := filepath.Join(dataDir, "demo", "credentials.json")
		fi, err := os.Lstat(credentials)
		switch {
		case !slices.ContainsFunc(tenants, func(t store.Tenant) bool { return t.Slug == "acme" }):
			return fmt.Errorf("demo: --demo seeds an empty store, and this one holds %d organizations; serve it without --demo", len(tenants))
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("demo: organization acme exists but %s does not: an earlier seeding stopped part way; remove the data dir to seed the demo again", credentials)
		case err != nil:
			return err
		case !fi.Mode().IsRegular():
			return fmt.Errorf("demo: %s is not a regular file", credentials)
		}
		log.Info("demo: organization acme exists; not seeding again", slog.String("credentials", credentials))
		return nil
	}
	// Before anything is seeded: a run that could not write the
	// credentials would leave an organization whose agent key is lost.
	path, err := demoCredentialsPath(dataDir)
	if err != nil {
		return err
	}
	var tenant store.Tenant
	err = backend.InPlatformTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
		var err error
		tenant, err = tx.CreateTenant(ctx, store.Tenant{Slug: "acme", Name: "Acme Corp (demo)"})
		return err
	})
	if err != nil {
		return fmt.Errorf("demo: create acme: %w", err)
	}
	vkey, err := l.InitLog(ctx, l.TenantLog(tenant.ID, tenant.Slug))
	if err != nil {
		return err
	}
	rec, _ := json.Marshal(map[string]string{"event": "organization_created", "tenant_id": tenant.ID, "slug": "acme", "log_key": vkey, "by": "demo"})
	if _, err := l.Append(ctx, l.PlatformLog(), ledger.Entry{Kind: "platform.org_created", Subject: tenant.ID, Record: rec}); err != nil {
		return err
	}
	org := decision.Organization{ID: tenant.ID, Slug: tenant.Slug}
	raw, err := bundles.PackFS(policies.ExampleACME(), bundles.Limits{})
	if err != nil {
		return err
	}
	b, err := pol.Upload(ctx, org, raw, "demo-policy-author")
	if err != nil {
		return fmt.Errorf("demo: upload the example policy: %w", err)
	}
	if _, err := pol.Activate(ctx, org, b.Revision, "demo-policy-author", "demo-admin", false); err != nil {
		return fmt.Errorf("demo: activate the example policy: %w", err)
	}
	kid, public, private, err := identity.GenerateAgentKey()
	if err != nil {
		return err
	}
	defer clear(private)
	creds := demoCredentials{TenantURL: tenantURL, PlatformURL: platformURL, Tenant: "acme", Users: []demoUser{}}
	ag := store.Agent{ID: store.NewID(store.PrefixAgent), Name: "invoice-payer", Sponsor: "demo-sponsor", RiskTier: store.RiskLow, Status: store.AgentActive}
	agents, err := identity.NewAgents(l, backend)
	if err != nil {
		return err
	}
	if _, err := agents.Register(ctx, store.TenantRef{ID: tenant.ID, Slug: tenant.Slug}, ag, store.AgentKey{KID: kid, PublicJWK: public}); err != nil {
		return fmt.Errorf("demo: register the agent: %w", err)
	}
	creds.Agent = demoAgent{ID: ag.ID, PrivateJWK: append(json.RawMessage(nil), private...)}
	counterparties, err := decision.NewCounterparties(l)
	if err != nil {
		return err
	}
	seeded, err := counterparties.AddAll(ctx, decision.Organization{ID: tenant.ID, Slug: tenant.Slug}, []store.Counterparty{
		{Name: "Northwind Supplies", Status: store.CounterpartyVerified},
		{Name: "Freshly Registered GmbH", Status: store.CounterpartyNew},
	})
	if err != nil {
		return fmt.Errorf("demo: seed acme: %w", err)
	}
	for _, c := range seeded {
		creds.Counterparties = append(creds.Counterparties, demoCounterparty{ID: c.ID, Name: c.Name, Status: string(c.Status)})
	}
	out, err := json.MarshalIndent(creds, "", "  ")
	if err != nil {
		return err
	}
	if err := writeSecretFile(path, append(out, '\n')); err != nil {
		return err
	}
	log.Warn("demo: seeded organization acme; credentials (private agent key) written with mode 0600", slog.String("path", path))
	return nil
}

// demoCredentialsPath makes DATA_DIR/demo a directory only its owner can
// enter (0700, tightened if it exists looser; a symlink or a file there is
// refused) and returns where the credentials go. A credentials file
// already there is refused: the store has no acme, so the file is not
// this store's, and seeding would leave an organization whose agent key
// is nowhere.
func demoCredentialsPath(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, "demo")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("demo: %s is not a directory", dir)
	}
	// Another user's directory is one that user reads, whatever its mode:
	// the credentials would be theirs too.
	if uid, other := osfile.OwnedByOther(fi); other {
		return "", fmt.Errorf("demo: %s is owned by uid %d, not by this process's user", dir, uid)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return "", fmt.Errorf("demo: %s is mode %v and cannot be made 0700: %w", dir, fi.Mode().Perm(), err)
		}
	}
	path := filepath.Join(dir, "credentials.json")
	switch _, err := os.Lstat(path); {
	case err == nil:
		return "", fmt.Errorf("demo: %s exists, but this store has no organization acme: it is not this store's credentials; move it away to seed the demo", path)
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	return path, nil
}
