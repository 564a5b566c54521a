package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/migrations"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// A file whose applied migration differs from this binary's — built by an
// earlier pre-release schema, changed in place since — is refused with
// ErrSchema at open, not found out by the first write that needs a new
// column. So is a file from before digests were recorded.
func TestOpenRefusesAnotherSchema(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper string
	}{
		{"different digest", `UPDATE schema_migrations SET sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'`},
		{"no digests recorded", `ALTER TABLE schema_migrations DROP COLUMN sha256`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir)
			acme := storetest.CreateTenant(t, s, "acme")
			// The tenant file is made on first use.
			if err := s.InTenantTx(context.Background(), acme.ID, func(context.Context, store.TenantTx) error { return nil }); err != nil {
				t.Fatal(err)
			}
			tenantFile := s.TenantFile(acme.ID)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for _, file := range []string{tenantFile, filepath.Join(dir, "platform.db")} {
				tamper(t, file, tc.tamper)
				s, err := Open(context.Background(), Config{DataDir: dir})
				if err == nil {
					// platform.db is fine: the tenant file is opened on
					// first use.
					err = s.InTenantTx(context.Background(), acme.ID, func(context.Context, store.TenantTx) error { return nil })
					_ = s.Close()
				}
				if !errors.Is(err, store.ErrSchema) || !strings.Contains(err.Error(), "empty data directory") {
					t.Fatalf("%s tampered: %v, want ErrSchema naming the way out", filepath.Base(file), err)
				}
			}
		})
	}
}

// A bookkeeping table from before digests, still empty (a first open cut
// short), gains the column and the file opens.
func TestEmptyMigrationsTableGainsDigests(t *testing.T) {
	dir := t.TempDir()
	tamper(t, filepath.Join(dir, "platform.db"), `CREATE TABLE schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT`)
	s := openTest(t, dir)
	defer s.Close()
	storetest.CreateTenant(t, s, "acme")
}

func tamper(t *testing.T, file, stmt string) {
	t.Helper()
	db, err := sql.Open("sqlite", file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// A tenant file from before 0002 (receipts kept their JWS a second time)
// upgrades on first use: the column goes, and each receipt reads back the
// same JWS from its ledger entry. A file where a receipt is not its
// entry's record is refused and left as it was, column and all.
func TestReceiptsMigrationKeepsEveryJWS(t *testing.T) {
	const jws = storetest.FakeJWS
	for _, tc := range storetest.ReceiptUpgrades {
		t.Run(tc.Name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir)
			defer s.Close()
			acme := storetest.CreateTenant(t, s, "acme")
			decisionID, receiptID := store.NewID(store.PrefixDecision), store.NewID(store.PrefixReceipt)
			oldTenantFile(t, s.TenantFile(acme.ID), acme.ID,
				`INSERT INTO ledger_entries (tenant_id, idx, entry, leaf_hash, record, created_at)
					VALUES (?1, 0, CAST('entry' AS BLOB), zeroblob(32), CAST(?2 AS BLOB), '2026-11-26T00:00:00.000000Z')`, acme.ID, tc.Record,
				`INSERT INTO receipts (tenant_id, id, decision_id, jws, ledger_index, created_at)
					VALUES (?1, ?2, ?3, ?4, 0, '2026-11-26T00:00:00.000000Z')`, acme.ID, receiptID, decisionID, jws)

			var got store.Receipt
			err := s.InTenantReadTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
				var err error
				got, err = tx.Receipts().ByDecision(ctx, decisionID)
				return err
			})
			db, derr := sql.Open("sqlite", s.TenantFile(acme.ID))
			if derr != nil {
				t.Fatal(derr)
			}
			defer db.Close()
			var version, jwsColumn int
			if err := db.QueryRow(`SELECT max(version), (SELECT count(*) FROM pragma_table_info('receipts') WHERE name = 'jws') FROM schema_migrations`).
				Scan(&version, &jwsColumn); err != nil {
				t.Fatal(err)
			}
			if tc.OK {
				latest, lerr := migrations.Latest(migrations.SQLiteTenant)
				if err != nil || lerr != nil || got.ID != receiptID || got.JWS != jws || version != latest || jwsColumn != 0 {
					t.Fatalf("after the upgrade: %+v, %v; version %d, jws column %d", got, err, version, jwsColumn)
				}
				return
			}
			var kept string
			if qerr := db.QueryRow(`SELECT jws FROM receipts`).Scan(&kept); qerr != nil || err == nil || !strings.Contains(err.Error(), "receipts_not_in_ledger") ||
				version != 1 || jwsColumn != 1 || kept != jws {
				t.Fatalf("a refused upgrade: %v; version %d, jws column %d, receipt %q (%v)", err, version, jwsColumn, kept, qerr)
			}
		})
	}
}

// oldTenantFile writes, where the store will look for tenantID's file, one
// at version 1 (migration 0001 and its bookkeeping row), with its
// tenant_meta and the rows of stmts (a statement, then its arguments, in
// turn).
func oldTenantFile(t *testing.T, path, tenantID string, stmts ...any) {
	t.Helper()
	list, err := migrations.List(migrations.SQLiteTenant)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(list[0].SQL)
	exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL, sha256 TEXT NOT NULL) STRICT`)
	exec(`INSERT INTO schema_migrations VALUES (1, ?, '2026-11-26T00:00:00.000000Z', ?)`, list[0].Name, list[0].SHA256)
	exec(`INSERT INTO tenant_meta (singleton, tenant_id, created_at) VALUES (1, ?, '2026-11-26T00:00:00.000000Z')`, tenantID)
	for i := 0; i < len(stmts); {
		q := stmts[i].(string)
		j := i + 1
		for j < len(stmts) {
			if _, isStmt := stmts[j].(string); isStmt && strings.HasPrefix(strings.TrimSpace(stmts[j].(string)), "INSERT") {
				break
			}
			j++
		}
		exec(q, stmts[i+1:j]...)
		i = j
	}
}

// A tenant file from before 0003 (nothing kept a purpose's active signing
// key unique) upgrades on first use: of doubled receipt or token keys the
// newest stays active and the others are retired, still listed. Two active
// log keys — which is the log? — are refused, and the file is left at the
// version before, its keys as they were.
func TestOneActiveKeyMigration(t *testing.T) {
	key := func(kid, purpose, status, created string) []any {
		return []any{`INSERT INTO signing_keys (tenant_id, kid, purpose, algorithm, public_key, sealed_private, status, created_at, retired_at)
			VALUES (?1, ?2, ?3, 'Ed25519', CAST('public' AS BLOB), CAST('sealed' AS BLOB), ?4, ?5, CASE ?4 WHEN 'retired' THEN ?5 END)`,
			kid, purpose, status, created}
	}
	const t1, t2 = "2026-11-26T00:00:01.000000000Z", "2026-11-26T00:00:02.000000000Z"
	for _, tc := range []struct {
		name   string
		keys   [][]any
		active map[string]string // purpose → the kid active after the upgrade; nil: refused
	}{
		{"doubled receipt and token keys", [][]any{
			key("log-1", "log", "active", t1),
			key("r-retired", "receipt", "retired", t1),
			key("r-old", "receipt", "active", t1), key("r-new", "receipt", "active", t2),
			// One instant: the greater kid is the newer, as SigningKeys orders them.
			key("t-a", "token", "active", t1), key("t-b", "token", "active", t1),
			// A retired key newer than the active ones (clocks differ)
			// retires none of them.
			key("t-retired", "token", "retired", t2),
		}, map[string]string{"log": "log-1", "receipt": "r-new", "token": "t-b"}},
		{"two active log keys", [][]any{
			key("log-1", "log", "active", t1), key("log-2", "log", "active", t2),
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir)
			defer s.Close()
			acme := storetest.CreateTenant(t, s, "acme")
			var stmts []any
			for _, k := range tc.keys {
				stmts = append(stmts, k[0], acme.ID)
				stmts = append(stmts, k[1:]...)
			}
			oldTenantFile(t, s.TenantFile(acme.ID), acme.ID, stmts...)

			got := map[store.KeyPurpose][]store.SigningKey{}
			err := s.InTenantReadTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
				for _, p := range []store.KeyPurpose{store.PurposeLog, store.PurposeReceipt, store.PurposeToken} {
					ks, err := tx.Keys().SigningKeys(ctx, p)
					if err != nil {
						return err
					}
					got[p] = ks
				}
				return nil
			})
			db, derr := sql.Open("sqlite", s.TenantFile(acme.ID))
			if derr != nil {
				t.Fatal(derr)
			}
			defer db.Close()
			var version, activeRows int
			if err := db.QueryRow(`SELECT max(version), (SELECT count(*) FROM signing_keys WHERE status = 'active') FROM schema_migrations`).
				Scan(&version, &activeRows); err != nil {
				t.Fatal(err)
			}
			if tc.active == nil {
				if err == nil || !strings.Contains(err.Error(), "two_active_log_keys") || version != 2 || activeRows != 2 {
					t.Fatalf("a refused upgrade: %v; version %d, %d active keys", err, version, activeRows)
				}
				return
			}
			latest, lerr := migrations.Latest(migrations.SQLiteTenant)
			if err != nil || lerr != nil || version != latest {
				t.Fatalf("the upgrade: %v; version %d", err, version)
			}
			// A time the migration wrote reads as every stored time: the
			// store's own layout, nine fractional digits.
			var retired string
			if err := db.QueryRow(`SELECT retired_at FROM signing_keys WHERE kid = 'r-old'`).Scan(&retired); err != nil {
				t.Fatal(err)
			}
			if at, err := time.Parse(timeLayout, retired); err != nil || formatTime(at) != retired {
				t.Errorf("retired_at %q is not in the store's layout %s (%v)", retired, timeLayout, err)
			}
			n := 0
			for purpose, ks := range got {
				for _, k := range ks {
					n++
					wantActive := tc.active[string(purpose)] == k.KID
					if (k.Status == store.KeyActive) != wantActive || (k.Status == store.KeyRetired) == k.RetiredAt.IsZero() {
						t.Errorf("%s key %s after the upgrade: %s, retired at %v", purpose, k.KID, k.Status, k.RetiredAt)
					}
				}
			}
			if n != len(tc.keys) {
				t.Errorf("%d keys listed after the upgrade, want all %d", n, len(tc.keys))
			}
		})
	}
}

// platform.db from before platform migration 0002 holding two active log
// keys is refused at open, naming them, and left at version 1.
func TestTwoPlatformLogKeysRefused(t *testing.T) {
	dir := t.TempDir()
	list, err := migrations.List(migrations.SQLitePlatform)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "platform.db")
	for _, stmt := range []string{
		list[0].SQL,
		`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL, sha256 TEXT NOT NULL) STRICT`,
		`INSERT INTO schema_migrations VALUES (1, '` + list[0].Name + `', '2026-11-26T00:00:00.000000000Z', '` + list[0].SHA256 + `')`,
		`INSERT INTO platform_signing_keys (kid, purpose, algorithm, public_key, sealed_private, status, created_at)
			VALUES ('log-1', 'log', 'Ed25519', x'00', x'00', 'active', '2026-11-26T00:00:01.000000000Z'),
			       ('log-2', 'log', 'Ed25519', x'00', x'00', 'active', '2026-11-26T00:00:02.000000000Z')`,
	} {
		tamper(t, path, stmt)
	}
	if s, err := Open(context.Background(), Config{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "two_active_log_keys") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("open with two active platform log keys: %v, want the migration refused", err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var version, active int
	if err := db.QueryRow(`SELECT max(version), (SELECT count(*) FROM platform_signing_keys WHERE status = 'active') FROM schema_migrations`).Scan(&version, &active); err != nil || version != 1 || active != 2 {
		t.Fatalf("after the refusal: version %d, %d active keys (%v)", version, active, err)
	}
}

// A tenant file from before 0004 (one jti namespace per organization)
// keeps its remembered jtis: a replay of one is still refused, while
// another agent may now use the same jti.
func TestJTIsPerAgentMigration(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	acme := storetest.CreateTenant(t, s, "acme")
	one, two := store.NewID(store.PrefixAgent), store.NewID(store.PrefixAgent)
	const agent = `INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
		VALUES (?1, ?2, 'Agent', 'usr_sponsor', 'low', 'active', '2026-11-26T00:00:00.000000Z', '2026-11-26T00:00:00.000000Z')`
	digest := sha256.Sum256([]byte("job-42"))
	later := time.Now().Add(5 * time.Minute)
	oldTenantFile(t, s.TenantFile(acme.ID), acme.ID,
		agent, acme.ID, one,
		agent, acme.ID, two,
		`INSERT INTO assertion_jtis (tenant_id, jti_sha256, agent_id, expires_at) VALUES (?1, ?2, ?3, ?4)`,
		acme.ID, digest[:], one, formatTime(store.StoredTime(later)))
	err := s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.AssertionJTIs().Remember(ctx, one, digest[:], later); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("a replay of a jti remembered before the upgrade: %v, want ErrConflict", err)
		}
		return tx.AssertionJTIs().Remember(ctx, two, digest[:], later)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A tenant file from before rows named their ledger entry (version 1: an
// agent, its active and retired keys, a verified counterparty) upgrades on
// first use with those rows naming none, and each can then be adopted
// once (0014): named an entry, never renamed, the retired key staying
// retired. The path ledger adopt takes on a real upgrade.
func TestRowsFromBeforeTheBindingAreAdoptedAfterUpgrade(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	acme := storetest.CreateTenant(t, s, "acme")
	agentID, cpID := store.NewID(store.PrefixAgent), store.NewID(store.PrefixCounterparty)
	const at = "2026-11-26T00:00:00.000000Z"
	const key = `INSERT INTO agent_keys (tenant_id, agent_id, kid, public_jwk, status, created_at, retired_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)`
	oldTenantFile(t, s.TenantFile(acme.ID), acme.ID,
		`INSERT INTO agents (tenant_id, id, name, sponsor, risk_tier, status, created_at, updated_at)
		VALUES (?1, ?2, 'Agent', 'usr_sponsor', 'low', 'active', ?3, ?3)`, acme.ID, agentID, at,
		key, acme.ID, agentID, "k-old", `{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"k-old"}`, "retired", at, at,
		key, acme.ID, agentID, "k-new", `{"kty":"OKP","crv":"Ed25519","x":"BBBB","kid":"k-new"}`, "active", at, nil,
		`INSERT INTO counterparties (tenant_id, id, name, status, created_at, updated_at) VALUES (?1, ?2, 'Vendor', 'verified', ?3, ?3)`,
		acme.ID, cpID, at)
	storetest.UpgradedRowsAdopt(t, s, acme.ID, agentID, cpID, time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC))
}
