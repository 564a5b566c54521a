package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite/sqlitetest"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// The record guards are the triggers — not a foreign key or a CHECK that
// happens to trip on the same statement.
func TestRecordGuardsAreTheTriggers(t *testing.T) {
	_, _, db := seededTenant(t)
	ctx := context.Background()
	for _, stmt := range []string{
		`UPDATE decisions SET outcome = 'allow'`,
		`DELETE FROM decisions WHERE outcome = 'deny'`,
		`UPDATE receipts SET ledger_index = ledger_index + 1`,
		`DELETE FROM receipts`,
		`UPDATE agents SET name = 'Renamed'`,
		`UPDATE agents SET tenant_id = 'x'`,
		`UPDATE agents SET status = 'active' WHERE status = 'revoked'`,
		`UPDATE agents SET ledger_index = ledger_index + 1`,
		`UPDATE agents SET ledger_index = NULL`,
		`DELETE FROM agents WHERE status = 'revoked'`,
		`UPDATE agent_keys SET public_jwk = '{}'`,
		`UPDATE agent_keys SET ledger_index = ledger_index + 1`,
		`UPDATE agent_keys SET ledger_index = NULL`,
		`UPDATE agent_keys SET status = 'active', retired_at = NULL WHERE status = 'retired'`,
		`DELETE FROM agent_keys`,
		`UPDATE counterparties SET name = 'Mallory Ltd'`,
		`UPDATE counterparties SET ledger_index = ledger_index + 1`,
		`UPDATE counterparties SET ledger_index = NULL`,
		`DELETE FROM counterparties`,
		`UPDATE cases SET expires_at = created_at`,
		`UPDATE cases SET status = 'pending' WHERE status <> 'pending'`,
		`UPDATE cases SET updated_at = created_at WHERE status <> 'pending'`,
		`DELETE FROM cases`,
		// REPLACE deletes the row it conflicts with: the delete guard fires.
		`REPLACE INTO decisions SELECT * FROM decisions`,
		`REPLACE INTO receipts SELECT * FROM receipts`,
		`INSERT OR REPLACE INTO agent_keys SELECT * FROM agent_keys`,
		`REPLACE INTO counterparties SELECT * FROM counterparties`,
	} {
		_, err := db.ExecContext(ctx, stmt)
		if !errors.Is(mapErr(err), store.ErrAppendOnly) {
			t.Errorf("%s: %v, want a trigger's refusal", stmt, err)
		}
	}
}

// An agent or agent key row inserted behind the service's back names a
// ledger entry, as the service's own do: one without would pass for a row
// stored before rows named their entry. (The token endpoint proves a
// key's entry, the decision service an agent's.) A suspended agent is not
// reinstated, and a tier only rises.
func TestAgentRowsNameTheirEntry(t *testing.T) {
	s, acme, db := seededTenant(t)
	ctx := context.Background()
	insert := `INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at, ledger_index)
		SELECT tenant_id, agent_id, 'planted', public_jwk, 'active', created_at, %s FROM agent_keys LIMIT 1`
	_, err := db.ExecContext(ctx, strings.Replace(insert, "%s", "NULL", 1))
	if err == nil || !strings.Contains(err.Error(), "a key names its ledger entry") {
		t.Fatalf("a key without its entry: %v, want the trigger's refusal", err)
	}
	if _, err := db.ExecContext(ctx, strings.Replace(insert, "%s", "0", 1)); err != nil {
		t.Fatalf("a key naming an entry: %v", err)
	}
	_, err = db.ExecContext(ctx, `INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
		SELECT tenant_id, 'agt_aaaaaaaaaaaaaaaaaaaaaaaaaa', 'Planted', sponsor, 'low', 'active', created_at, updated_at FROM agents LIMIT 1`)
	if err == nil || !strings.Contains(err.Error(), "an agent names its ledger entry") {
		t.Fatalf("an agent without its entry: %v, want the trigger's refusal", err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE agents SET status = 'suspended' WHERE status = 'active'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE agents SET status = 'active' WHERE status = 'suspended'`); !errors.Is(mapErr(err), store.ErrAppendOnly) {
		t.Fatalf("a suspended agent reinstated: %v, want the trigger's refusal", err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE agents SET risk_tier = 'critical'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE agents SET risk_tier = 'medium'`); !errors.Is(mapErr(err), store.ErrAppendOnly) {
		t.Fatalf("an agent made safer: %v, want the trigger's refusal", err)
	}
	// With checks turned off, a negative index is stored: it reads as
	// naming an entry no log has, not as a key from before the binding.
	sqlitetest.Tamper(t, s.TenantFile(acme.ID), `PRAGMA ignore_check_constraints = ON; `+
		strings.Replace(strings.Replace(insert, "%s", "-1", 1), "'planted'", "'negative'", 1))
	err = s.InTenantReadTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		agents, err := tx.Agents().List(ctx)
		if err != nil {
			return err
		}
		for _, a := range agents {
			keys, err := tx.Agents().Keys(ctx, a.ID)
			if err != nil {
				return err
			}
			for _, k := range keys {
				if k.KID == "negative" && (k.LedgerIndex == nil || *k.LedgerIndex != math.MaxUint64) {
					return fmt.Errorf("a negative index read as %v", k.LedgerIndex)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A counterparty row inserted behind the service's back names a ledger
// entry, as the service's own do, and becomes verified only as it was
// recorded.
func TestCounterpartyRowsNameTheirEntry(t *testing.T) {
	_, _, db := seededTenant(t)
	ctx := context.Background()
	insert := `INSERT INTO counterparties (tenant_id, id, name, status, created_at, updated_at, ledger_index)
		SELECT tenant_id, 'cp_aaaaaaaaaaaaaaaaaaaaaaaaaa', 'Mallory', 'new', created_at, updated_at, %s FROM counterparties LIMIT 1`
	_, err := db.ExecContext(ctx, strings.Replace(insert, "%s", "NULL", 1))
	if err == nil || !strings.Contains(err.Error(), "a counterparty names its ledger entry") {
		t.Fatalf("a counterparty without its entry: %v, want the trigger's refusal", err)
	}
	if _, err := db.ExecContext(ctx, strings.Replace(insert, "%s", "0", 1)); err != nil {
		t.Fatalf("a counterparty naming an entry: %v", err)
	}
	// Verified only as it was recorded; blocked at will.
	_, err = db.ExecContext(ctx, `UPDATE counterparties SET status = 'verified' WHERE id = 'cp_aaaaaaaaaaaaaaaaaaaaaaaaaa'`)
	if !errors.Is(mapErr(err), store.ErrAppendOnly) {
		t.Fatalf("made verified: %v, want the trigger's refusal", err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE counterparties SET status = 'blocked' WHERE id = 'cp_aaaaaaaaaaaaaaaaaaaaaaaaaa'`); err != nil {
		t.Fatalf("blocked: %v", err)
	}
}

// A policy bundle or bundle verification key row inserted behind the
// service's back names a ledger entry, as the service's own do: one
// without would pass for a row stored before rows named their entry (an
// activation proves a bundle's upload entry, an upload or activation a
// key's), and it never changes.
func TestPolicyRowsNameTheirEntry(t *testing.T) {
	_, acme, db := seededTenant(t)
	ctx := context.Background()
	for _, tc := range []struct {
		insert, refusal, update string
	}{
		{`INSERT INTO policy_bundles (tenant_id, revision, digest, bundle, manifest, signed, uploaded_by, uploaded_at, ledger_index)
			VALUES (?, 'planted', zeroblob(32), x'00', '{}', 0, 'usr_mallory', '2026-11-28T00:00:00.000000000Z', %s)`,
			"a bundle names its ledger entry", `UPDATE policy_bundles SET ledger_index = 1 WHERE revision = 'planted'`},
		{`INSERT INTO policy_verification_keys (tenant_id, kid, public_pem, algorithm, created_at, ledger_index)
			VALUES (?, 'planted', '-----BEGIN PUBLIC KEY-----', 'ES256', '2026-11-28T00:00:00.000000000Z', %s)`,
			"a key names its ledger entry", `UPDATE policy_verification_keys SET ledger_index = 1 WHERE kid = 'planted'`},
	} {
		_, err := db.ExecContext(ctx, strings.Replace(tc.insert, "%s", "NULL", 1), acme.ID)
		if err == nil || !strings.Contains(err.Error(), tc.refusal) {
			t.Fatalf("a row without its entry: %v, want the trigger's refusal %q", err, tc.refusal)
		}
		if _, err := db.ExecContext(ctx, strings.Replace(tc.insert, "%s", "0", 1), acme.ID); err != nil {
			t.Fatalf("a row naming an entry: %v", err)
		}
		if _, err := db.ExecContext(ctx, tc.update); !errors.Is(mapErr(err), store.ErrAppendOnly) {
			t.Fatalf("%s: %v, want the trigger's refusal", tc.update, err)
		}
	}
}

// An agent, key or counterparty that names no entry may be made to name
// one (0014: what Adopt does), a retired key included, but with nothing
// else the triggers refuse; once named, the entry is final.
func TestAdoptionTriggers(t *testing.T) {
	s, acme, db := seededTenant(t)
	ctx := context.Background()
	sqlitetest.Plant(t, s.TenantFile(acme.ID), `UPDATE agents SET ledger_index = NULL WHERE name = 'Payer'`,
		`UPDATE agent_keys SET ledger_index = NULL WHERE kid = 'old'`, `UPDATE counterparties SET ledger_index = NULL`)
	for _, tc := range []struct {
		stmt string
		want error // nil: accepted, one row
	}{
		{`UPDATE agents SET ledger_index = 7, risk_tier = 'low' WHERE name = 'Payer' AND risk_tier = 'low'`, nil},
		{`UPDATE agents SET ledger_index = 8 WHERE name = 'Payer'`, store.ErrAppendOnly},
		{`UPDATE agents SET ledger_index = NULL WHERE name = 'Payer'`, store.ErrAppendOnly},
		{`UPDATE agent_keys SET ledger_index = 7, status = 'active', retired_at = NULL WHERE kid = 'old'`, store.ErrAppendOnly},
		{`UPDATE agent_keys SET ledger_index = 7, retired_at = created_at WHERE kid = 'old'`, store.ErrAppendOnly},
		{`UPDATE agent_keys SET retired_at = created_at WHERE kid = 'old'`, store.ErrAppendOnly},
		{`UPDATE agent_keys SET ledger_index = 7 WHERE kid = 'old'`, nil},
		{`UPDATE agent_keys SET ledger_index = 8 WHERE kid = 'old'`, store.ErrAppendOnly},
		{`UPDATE agent_keys SET ledger_index = NULL WHERE kid = 'old'`, store.ErrAppendOnly},
		{`UPDATE counterparties SET ledger_index = 7, name = 'Mallory'`, store.ErrAppendOnly},
		{`UPDATE counterparties SET ledger_index = 7`, nil},
		{`UPDATE counterparties SET ledger_index = 8`, store.ErrAppendOnly},
		{`UPDATE counterparties SET ledger_index = NULL`, store.ErrAppendOnly},
	} {
		res, err := db.ExecContext(ctx, tc.stmt)
		switch {
		case tc.want != nil && !errors.Is(mapErr(err), tc.want):
			t.Errorf("%s: %v, want %v", tc.stmt, err, tc.want)
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v", tc.stmt, err)
		case tc.want == nil:
			if n, _ := res.RowsAffected(); n != 1 {
				t.Errorf("%s: %d rows", tc.stmt, n)
			}
		}
	}
	var agents, keys, cps int
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM agents WHERE ledger_index = 7),
		(SELECT count(*) FROM agent_keys WHERE ledger_index = 7 AND status = 'retired'),
		(SELECT count(*) FROM counterparties WHERE ledger_index = 7)`).Scan(&agents, &keys, &cps); err != nil || agents != 1 || keys != 1 || cps != 1 {
		t.Fatalf("named: %d agents, %d keys, %d counterparties (%v)", agents, keys, cps, err)
	}
}

// seededTenant is a store holding organization acme with one of every
// record (storetest.SeedRecords), and acme's file opened as the store
// opens it.
func seededTenant(t *testing.T) (*Store, store.Tenant, *sql.DB) {
	t.Helper()
	s := openTest(t, t.TempDir())
	t.Cleanup(func() { s.Close() })
	acme := storetest.CreateTenant(t, s, "acme")
	storetest.SeedRecords(t, s, acme.ID)
	db, err := s.tenantDB(context.Background(), acme.ID)
	if err != nil {
		t.Fatal(err)
	}
	return s, acme, db
}
