// Package store owns every byte AgentSigna keeps: the interfaces the rest of
// the service programs against, the sentinel errors, and the two backends
// (sqlite/, postgres/) with their embedded migrations (migrations/).
//
// The only way to reach data is a transaction closure: InTenantTx for one
// organization's data, InPlatformTx for the platform plane's. Inside
// InTenantTx a backend confines every statement to that tenant — by opening
// the tenant's own file (SQLite) or by setting app.tenant_id for the
// transaction under FORCE ROW LEVEL SECURITY (PostgreSQL). Code outside this
// package tree never sees SQL, a pool or a *sql.DB, and nothing here offers
// an update or delete path for append-only records.
package store

import (
	"context"
	"time"
)

// TenantStore is what the tenant plane gets: one organization at a time.
type TenantStore interface {
	// InTenantTx runs fn in a transaction confined to tenantID. The
	// transaction commits if fn returns nil and rolls back otherwise. An
	// unknown tenant is ErrNotFound; a malformed id is ErrInvalid.
	InTenantTx(ctx context.Context, tenantID string, fn func(ctx context.Context, tx TenantTx) error) error
	// ResolveTenant maps a slug to the organization's public directory
	// entry (id, slug, status) — all the tenant plane may know of the
	// platform's tenants table.
	ResolveTenant(ctx context.Context, slug string) (TenantRef, error)
	Ping(ctx context.Context) error
}

// PlatformStore is what the platform plane gets: organizations, never their
// business data.
type PlatformStore interface {
	InPlatformTx(ctx context.Context, fn func(ctx context.Context, tx PlatformTx) error) error
	Ping(ctx context.Context) error
}

// Backend is a whole store, as opened by cmd/agentsigna. Each plane is handed
// only its half.
type Backend interface {
	TenantStore
	PlatformStore
	// Close waits for open transactions to finish and releases files and
	// connections.
	Close() error
}

// TenantTx is one transaction on one organization's data.
type TenantTx interface {
	// TenantID is the organization every statement of this transaction is
	// confined to.
	TenantID() string

	// Settings: the organization's key/value settings (mutable).
	PutSetting(ctx context.Context, key, value string) error
	GetSetting(ctx context.Context, key string) (Setting, error)
	ListSettings(ctx context.Context) ([]Setting, error)
	DeleteSetting(ctx context.Context, key string) error

	// Ledger entries: append-only. There is deliberately no update or
	// delete method, and the database refuses both.
	AppendLedgerEntries(ctx context.Context, entries []LedgerEntry) error
	LedgerEntries(ctx context.Context, from, to uint64) ([]LedgerEntry, error)
	LedgerSize(ctx context.Context) (uint64, error)
}

// PlatformTx is one transaction on the platform plane's data.
type PlatformTx interface {
	CreateTenant(ctx context.Context, t Tenant) (Tenant, error)
	GetTenant(ctx context.Context, id string) (Tenant, error)
	GetTenantBySlug(ctx context.Context, slug string) (Tenant, error)
	ListTenants(ctx context.Context) ([]Tenant, error)
	SetTenantStatus(ctx context.Context, id string, status TenantStatus) error
}

// TenantStatus is an organization's lifecycle state.
type TenantStatus string

const (
	TenantActive    TenantStatus = "active"
	TenantSuspended TenantStatus = "suspended"
)

// Tenant is an organization, as the platform plane sees it.
type Tenant struct {
	ID        string // UUID, lower-case canonical form; generated when empty
	Slug      string // URL name, e.g. "acme"
	Name      string
	Status    TenantStatus
	CreatedAt time.Time
}

// TenantRef is the directory entry the tenant plane may read.
type TenantRef struct {
	ID     string
	Slug   string
	Status TenantStatus
}

// Setting is one organization setting.
type Setting struct {
	Key       string
	Value     string
	UpdatedAt time.Time
}

// LedgerEntry is one leaf of an organization's transparency log.
type LedgerEntry struct {
	Index     uint64
	Entry     []byte // the exact leaf bytes
	LeafHash  []byte // RFC 6962 leaf hash, 32 bytes
	CreatedAt time.Time
}
