package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/agentsigna/agentsigna/internal/store"
)

// BindingKeyPurpose is the purpose the service derives the tenant binding
// key under (secrets.MasterKey.DeriveKey): Config.TenantKey, and the key
// Migrate installs.
const BindingKeyPurpose = "postgres tenant binding"

// BindingKeySize is the tenant binding key's length in bytes.
const BindingKeySize = 32

// SPEC: the tenant binding (migration 0018). Row security confines a
// session to app_tenant(app_session()), which is app.tenant_id only when
//
//	app.tenant_mac = lower-case hex(HMAC-SHA256(K, tenant id ‖ "/" ‖ app_session()))
//	app_session()  = backend pid ‖ "/" ‖ backend start (µs since the epoch) ‖ "/" ‖ database
//
// K is kept by the database as HMAC's padded blocks, K ⊕ 0x36… and
// K ⊕ 0x5c… (RFC 2104, 64 bytes each), in a table only the owner role may
// read; Migrate installs it. No app role can compute a MAC, and one
// computed for a backend holds on no other, later ones with the same pid
// included: whoever holds the tenant role's credentials but not the master
// key is confined to no organization, and sees none. The MAC travels only
// as a bound parameter (newPool refuses the simple protocol, which would
// write it into the statement text other sessions of the role can read).

// tenantMAC is app.tenant_mac for organization tenantID on the backend
// whose app_session() is session.
func tenantMAC(key []byte, tenantID, session string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tenantID + "/" + session))
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

func checkBindingKey(key []byte) error {
	if len(key) != BindingKeySize {
		return fmt.Errorf("%w: postgres: a %d-byte tenant binding key is required (derived from the master key)", store.ErrInvalid, BindingKeySize)
	}
	return nil
}

var errOtherKey = fmt.Errorf("%w: postgres: the master key is not the one this database's organizations are bound to "+
	"(`agentsigna migrate` bound them to the master key it was given)", store.ErrInvalid)

// installBinding, in Migrate's transaction as the owner role, installs key
// when the database has none, and otherwise checks it is the one
// installed, comparing digests: the key's blocks are sent once, as bound
// parameters. A database migrated short of 0018 has nowhere to put it.
func installBinding(ctx context.Context, tx pgx.Tx, key []byte) error {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('app_tenant_binding') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return mapErr(err)
	}
	ipad, opad := pads(key)
	defer clear(ipad)
	defer clear(opad)
	digest := sha256.Sum256(append(append([]byte{}, ipad...), opad...))
	var same bool
	err := tx.QueryRow(ctx, `SELECT sha256(ipad || opad) = $1 FROM app_tenant_binding`, pgx.QueryExecModeExec, digest[:]).Scan(&same)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		_, err = tx.Exec(ctx, `INSERT INTO app_tenant_binding (ipad, opad) VALUES ($1, $2)`, pgx.QueryExecModeExec, ipad, opad)
		return mapErr(err)
	case err != nil:
		return mapErr(err)
	case !same:
		return errOtherKey
	}
	return nil
}

// sessionData is the connection's CustomData key for its app_session().
const sessionData = "agentsigna.session"

// prepareSessionSQL reads the connection's app_session() and turns off,
// for the session, what the role's own defaults (ALTER ROLE … SET, which
// the role may do to itself) could turn on to write bound parameters —
// MACs — to the server log: plan and parse tree dumps, and parameters
// quoted in error reports.
const prepareSessionSQL = `SELECT app_session(), set_config('debug_print_parse', 'off', false),
	set_config('debug_print_rewritten', 'off', false), set_config('debug_print_plan', 'off', false),
	set_config('log_parameter_max_length_on_error', '0', false)`

// connSession returns conn's app_session(), read (and the session
// prepared) on the connection's first use. conn is in no transaction: the
// settings are the session's, which a rolled-back transaction would undo.
func connSession(ctx context.Context, conn *pgx.Conn) (string, error) {
	data := conn.PgConn().CustomData()
	if s, ok := data[sessionData].(string); ok {
		return s, nil
	}
	var session *string
	var ignored [4]string
	if err := conn.QueryRow(ctx, prepareSessionSQL).Scan(&session, &ignored[0], &ignored[1], &ignored[2], &ignored[3]); err != nil {
		return "", mapErr(err)
	}
	if session == nil || *session == "" {
		// The role may not read its own backend's start: it is not the
		// role the connection logged in as (checkRoles refuses that).
		return "", fmt.Errorf("%w: postgres: the tenant role cannot read its own session (app_session() is NULL)", store.ErrInvalid)
	}
	data[sessionData] = *session
	return *session, nil
}

// enterTenantSQL confines the rest of the transaction to organization $1,
// with $2 its MAC for this backend, and says whether the organization
// exists and whether the database took the binding. The sub-select sets
// both before app_tenant() reads them: it has volatile functions, so it is
// not merged into the outer query, whose row needs its row.
const enterTenantSQL = `SELECT s.set AND EXISTS (SELECT 1 FROM app_tenant_directory(NULL, $1::uuid)),
	app_tenant(app_session()) IS NOT DISTINCT FROM $1::uuid
	FROM (SELECT set_config('app.tenant_id', $1::text, true) IS NOT NULL
		AND set_config('app.tenant_mac', $2::text, true) IS NOT NULL AS set OFFSET 0) s`

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
		// The session the MAC names is the one the connection began on: a
		// pooler that hands transactions to other server connections
		// (PgBouncer's transaction mode, for one) breaks it.
		return fmt.Errorf("%w: postgres: the database did not take this connection's tenant binding "+
			"(is a pooler or proxy in transaction mode between the service and PostgreSQL?)", store.ErrUnavailable)
	}
	return nil
}

// probeTenant is an organization id no organization has, under which
// checkBinding asks whether the database takes this store's MACs.
const probeTenant = "00000000-0000-0000-0000-000000000000"

// checkBindingSQL is enterTenantSQL for checkBinding: whether the binding
// holds, and whether one is installed.
const checkBindingSQL = `SELECT app_tenant(app_session()) IS NOT DISTINCT FROM $1::uuid, app_tenant_binding_installed()
	FROM (SELECT set_config('app.tenant_id', $1::text, true) IS NOT NULL
		AND set_config('app.tenant_mac', $2::text, true) IS NOT NULL AS set OFFSET 0) s`

// checkBinding stops Open when the database does not take this store's
// MACs: no key installed (run migrate), or another master key's.
func (s *Store) checkBinding(ctx context.Context) error {
	conn, err := s.tenant.Acquire(ctx)
	if err != nil {
		return mapErr(err)
	}
	defer conn.Release()
	session, err := connSession(ctx, conn.Conn())
	if err != nil {
		return err
	}
	var bound, installed bool
	err = inTx(ctx, conn, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, checkBindingSQL, probeTenant, tenantMAC(s.key, probeTenant, session)).Scan(&bound, &installed)
	})
	switch {
	case err != nil:
		return fmt.Errorf("postgres: check the tenant binding: %w", err)
	case !installed:
		return fmt.Errorf("%w: postgres: the organizations' rows are bound to no master key yet; run `agentsigna migrate` with the master key", store.ErrSchema)
	case !bound:
		return fmt.Errorf("%w (or a pooler in transaction mode sits between the service and PostgreSQL)", errOtherKey)
	}
	return nil
}
