package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/agentsigna/agentsigna/internal/store"
)

// BindingKeyPurpose is the purpose the service derives the tenant binding
// key under (secrets.MasterKey.DeriveKey): Config.TenantKey, and the key
// Migrate installs.
const BindingKeyPurpose = "postgres tenant binding"

// BindingKeySize is the tenant binding key's length in bytes.
const BindingKeySize = 32

// SPEC: the tenant binding (migration 0018). Row security confines a
// session to app.tenant_id only once the session is bound, which it is
// after
//
//	app_bind_session(lower-case hex(HMAC-SHA256(K, "session/" ‖ name)))
//	name = app_session(), drawn in the session: a number no session draws twice / database
//
// returned true in it. K is kept by the database as HMAC's padded blocks,
// K ⊕ 0x36… and K ⊕ 0x5c… (RFC 2104, 64 bytes each), in a table only the
// owner role may read; Migrate installs it. No app role can make a MAC,
// and one made for a session binds no other: whoever holds the tenant
// role's credentials but not the master key is confined to no
// organization, and every statement of theirs on an organization's table
// fails. The MAC travels only as a bound parameter (newPool refuses the
// simple protocol, which would write it into the statement text other
// sessions of the role can read).

// sessionMAC is the MAC that binds the backend whose app_session() is
// session.
func sessionMAC(key []byte, session string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("session/" + session))
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

// boundData is the connection's CustomData key saying it is bound.
const boundData = "agentsigna.bound"

// prepareSessionSQL draws the connection's name and turns off,
// for the session, what the role's own defaults (ALTER ROLE … SET, which
// the role may do to itself) could turn on to write bound parameters —
// the MAC — to the server log: plan and parse tree dumps, and parameters
// quoted in error reports.
const prepareSessionSQL = `SELECT app_session(), set_config('debug_print_parse', 'off', false),
	set_config('debug_print_rewritten', 'off', false), set_config('debug_print_plan', 'off', false),
	set_config('log_parameter_max_length_on_error', '0', false)`

// bindConn binds conn's session, on its first use: conn is in no
// transaction. It says READ WRITE (both functions advance a sequence) and
// commits, which keeps the session settings.
func (s *Store) bindConn(ctx context.Context, conn *pgx.Conn) error {
	data := conn.PgConn().CustomData()
	if data[boundData] == true {
		return nil
	}
	var bound, installed bool
	err := inTx(ctx, conn, writeTx, func(tx pgx.Tx) error {
		var session *string
		if err := tx.QueryRow(ctx, prepareSessionSQL).Scan(&session, nil, nil, nil, nil); err != nil {
			return mapErr(err)
		}
		if session == nil {
			return fmt.Errorf("%w: postgres: app_session() is NULL", store.ErrInvalid)
		}
		return mapErr(tx.QueryRow(ctx, `SELECT app_bind_session($1), app_tenant_binding_installed()`, sessionMAC(s.key, *session)).
			Scan(&bound, &installed))
	})
	switch {
	case err != nil:
		return fmt.Errorf("postgres: bind the connection: %w", err)
	case !installed:
		return fmt.Errorf("%w: postgres: the organizations' rows are bound to no master key yet; run `agentsigna migrate` with the master key", store.ErrSchema)
	case !bound:
		return errOtherKey
	}
	data[boundData] = true
	return nil
}

// errNotBound marks the error of a statement run in a session that is not
// bound (currval of app_bound_sessions undefined): the session was reset
// under the store (a pooler's DISCARD), or is not the one bound.
var errNotBound = errors.New("postgres: the connection is not bound to the service " +
	"(a pooler between them that hands or resets server sessions?)")

// notBound reports whether pgErr is currval's on app_bound_sessions (55000
// object_not_in_prerequisite_state, which other statements raise too).
func notBound(pgErr *pgconn.PgError) bool {
	return pgErr.Code == "55000" && strings.Contains(pgErr.Message, `"app_bound_sessions"`)
}

// forgetBinding makes conn bind again on its next use when err says its
// session is no longer bound.
func forgetBinding(conn *pgx.Conn, err error) {
	if errors.Is(err, errNotBound) {
		delete(conn.PgConn().CustomData(), boundData)
	}
}

// checkBinding stops Open when the database does not take this store's
// MAC: no key installed (run migrate), or another master key's.
func (s *Store) checkBinding(ctx context.Context) error {
	conn, err := s.tenant.Acquire(ctx)
	if err != nil {
		return mapErr(err)
	}
	defer conn.Release()
	return s.bindConn(ctx, conn.Conn())
}
