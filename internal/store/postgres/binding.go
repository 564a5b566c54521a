package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

// BindingKeyPurpose is the purpose the service derives the tenant binding
// key under (secrets.MasterKey.DeriveKey): Config.TenantKey.
const BindingKeyPurpose = "postgres tenant binding"

// BindingKeySize is Config.TenantKey's length in bytes.
const BindingKeySize = 32

// SPEC: the tenant binding (migration 0018). Row security confines a
// session to app_tenant(), which is app.tenant_id only when
//
//	app.tenant_mac = lower-case hex(HMAC-SHA256(K, tenant id ‖ "/" ‖ decimal backend pid))
//
// K (Config.TenantKey) is kept by the database as HMAC's padded blocks,
// K ⊕ 0x36… and K ⊕ 0x5c… (RFC 2104, 64 bytes each), readable only by the
// owner role. No app role can compute a MAC, and one computed for a
// backend holds on no other: whoever holds the tenant role's credentials
// but not the master key is confined to no organization, and sees none.

// tenantMAC is app.tenant_mac for organization tenantID on the backend
// whose process id is pid.
func tenantMAC(key []byte, tenantID string, pid uint32) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tenantID + "/" + strconv.FormatUint(uint64(pid), 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// pads returns key's two padded blocks, as HMAC-SHA256 XORs them into its
// inner and outer hashes; key is no longer than SHA-256's block.
func pads(key []byte) (ipad, opad []byte) {
	ipad, opad = make([]byte, sha256.BlockSize), make([]byte, sha256.BlockSize)
	copy(ipad, key)
	copy(opad, key)
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	return ipad, opad
}

// installBinding gives the database the key when it has none (the first
// start after migration 0018) and otherwise checks it is the key the
// database has: a service started with another master key would be
// confined to no organization, and is stopped here instead.
func (s *Store) installBinding(ctx context.Context) error {
	ipad, opad := pads(s.key)
	defer clear(ipad)
	defer clear(opad)
	var same bool
	err := inTx(ctx, s.platform, writeTx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT app_install_tenant_binding($1, $2)`, ipad, opad).Scan(&same)
	})
	if err != nil {
		return fmt.Errorf("postgres: install the tenant binding: %w", mapErr(err))
	}
	if !same {
		return fmt.Errorf("%w: postgres: the master key is not the one this database's organizations are bound to "+
			"(the tenant binding was installed by a service with another master key)", store.ErrInvalid)
	}
	return nil
}

// enterTenantSQL confines the rest of the transaction to organization $1,
// with $2 its MAC for this backend, and says whether the organization
// exists and whether the database took the binding. The sub-select sets
// both before app_tenant() reads them: it has volatile functions, so it is
// not merged into the outer query, whose row needs its row.
const enterTenantSQL = `SELECT s.set AND EXISTS (SELECT 1 FROM app_tenant_directory(NULL, $1::uuid)),
	app_tenant() IS NOT DISTINCT FROM $1::uuid
	FROM (SELECT set_config('app.tenant_id', $1::text, true) IS NOT NULL
		AND set_config('app.tenant_mac', $2::text, true) IS NOT NULL AS set OFFSET 0) s`

// enterTenantArgs are enterTenantSQL's arguments for organization
// tenantID on conn.
func (s *Store) enterTenantArgs(conn *pgx.Conn, tenantID string) []any {
	return []any{tenantID, tenantMAC(s.key, tenantID, conn.PgConn().PID())}
}

// enteredTenant reads enterTenantSQL's row.
func enteredTenant(row pgx.Row) error {
	var found, bound bool
	if err := row.Scan(&found, &bound); err != nil {
		return mapErr(err)
	}
	if !found {
		return fmt.Errorf("%w: tenant", store.ErrNotFound)
	}
	if !bound {
		// The pid the MAC names is the one the connection began with: a
		// pooler that hands transactions to other server connections
		// (PgBouncer's transaction mode, for one) breaks it.
		return fmt.Errorf("%w: postgres: the database did not take this connection's tenant binding "+
			"(is a connection pooler in transaction mode between the service and PostgreSQL?)", store.ErrUnavailable)
	}
	return nil
}
