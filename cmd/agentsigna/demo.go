package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/decision"
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
// never to the log. On a store that has acme already it does nothing.
func seedDemo(ctx context.Context, backend store.Backend, l *ledger.Ledger, pol *decision.Policies, dataDir, tenantURL, platformURL string, log *slog.Logger) error {
	if _, err := backend.ResolveTenant(ctx, "acme"); err == nil {
		log.Info("demo: organization acme exists; not seeding again", slog.String("credentials", filepath.Join(dataDir, "demo", "credentials.json")))
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	var tenant store.Tenant
	err := backend.InPlatformTx(ctx, func(ctx context.Context, tx store.PlatformTx) error {
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
	kid, public, private, err := generateAgentKey()
	if err != nil {
		return err
	}
	defer clear(private)
	creds := demoCredentials{TenantURL: tenantURL, PlatformURL: platformURL, Tenant: "acme", Users: []demoUser{}}
	err = backend.InTenantTx(ctx, tenant.ID, func(ctx context.Context, tx store.TenantTx) error {
		ag, err := tx.Agents().Create(ctx, store.Agent{Name: "invoice-payer", Sponsor: "demo-sponsor", RiskTier: store.RiskLow})
		if err != nil {
			return err
		}
		if _, err := tx.Agents().AddKey(ctx, store.AgentKey{AgentID: ag.ID, KID: kid, PublicJWK: public}); err != nil {
			return err
		}
		creds.Agent = demoAgent{ID: ag.ID, PrivateJWK: append(json.RawMessage(nil), private...)}
		for _, cp := range []store.Counterparty{
			{Name: "Northwind Supplies", Status: store.CounterpartyVerified},
			{Name: "Freshly Registered GmbH", Status: store.CounterpartyNew},
		} {
			c, err := tx.Counterparties().Create(ctx, cp)
			if err != nil {
				return err
			}
			creds.Counterparties = append(creds.Counterparties, demoCounterparty{ID: c.ID, Name: c.Name, Status: string(c.Status)})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("demo: seed acme: %w", err)
	}
	dir := filepath.Join(dataDir, "demo")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	out, err := json.MarshalIndent(creds, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "credentials.json")
	if err := writeSecretFile(path, append(out, '\n')); err != nil {
		return err
	}
	log.Warn("demo: seeded organization acme; credentials (private agent key) written with mode 0600", slog.String("path", path))
	return nil
}
