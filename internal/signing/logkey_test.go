package signing_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/sqlite"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

func setup(t *testing.T) (*sqlite.Store, *signing.Keyring, *secrets.MasterKey) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	master, err := secrets.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := signing.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	return s, kr, master
}

func TestLogKeyCreatedSealedAndReused(t *testing.T) {
	s, kr, master := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	scope := signing.LogScope{TenantID: acme.ID, Origin: "agentsigna.test/t/acme"}
	ctx := context.Background()

	if err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := kr.LogVerifier(ctx, tx.Keys(), scope)
		if !errors.Is(err, signing.ErrNoLogKey) {
			t.Errorf("verifier before any key: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	var first signing.LogKey
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		first, err = kr.LogKey(ctx, tx.Keys(), scope)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if first.Signer.Name() != scope.Origin || !strings.HasPrefix(first.Verifier, scope.Origin+"+") {
		t.Fatalf("key named %q / %q", first.Signer.Name(), first.Verifier)
	}
	// The stored private half is sealed: the raw note key is not in it.
	var stored []store.SigningKey
	_ = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		stored, err = tx.Keys().SigningKeys(ctx, store.PurposeLog)
		return err
	})
	if len(stored) != 1 || strings.Contains(string(stored[0].SealedPrivate), "PRIVATE+KEY") {
		t.Fatalf("stored keys: %d, sealed private looks clear", len(stored))
	}
	// A second key ring (another process) opens the same key.
	kr2, _ := signing.NewKeyring(master)
	err = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		again, err := kr2.LogKey(ctx, tx.Keys(), scope)
		if err != nil {
			return err
		}
		if again.Verifier != first.Verifier {
			t.Errorf("second open gave another key")
		}
		// Signatures verify with the published verifier key.
		msg, err := note.Sign(&note.Note{Text: "hello\n"}, again.Signer)
		if err != nil {
			return err
		}
		v, err := note.NewVerifier(first.Verifier)
		if err != nil {
			return err
		}
		_, err = note.Open(msg, note.VerifierList(v))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLogKeyRollbackLeavesNoKey(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	scope := signing.LogScope{TenantID: acme.ID, Origin: "agentsigna.test/t/acme"}
	ctx := context.Background()
	boom := errors.New("boom")
	var rolledBack signing.LogKey
	_ = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		rolledBack, _ = kr.LogKey(ctx, tx.Keys(), scope)
		return boom
	})
	var kept signing.LogKey
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		kept, err = kr.LogKey(ctx, tx.Keys(), scope)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if kept.Verifier == rolledBack.Verifier {
		t.Fatal("a key from a rolled-back transaction was served")
	}
}

func TestLogKeyBoundToItsTenant(t *testing.T) {
	s, kr, master := setup(t)
	a := storetest.CreateTenant(t, s, "alpha")
	b := storetest.CreateTenant(t, s, "bravo")
	ctx := context.Background()
	var sealed store.SigningKey
	_ = s.InTenantTx(ctx, a.ID, func(ctx context.Context, tx store.TenantTx) error {
		if _, err := kr.LogKey(ctx, tx.Keys(), signing.LogScope{TenantID: a.ID, Origin: "x/t/alpha"}); err != nil {
			return err
		}
		ks, err := tx.Keys().SigningKeys(ctx, store.PurposeLog)
		sealed = ks[0]
		return err
	})
	// An attacker with database access copies alpha's sealed key into bravo.
	err := s.InTenantTx(ctx, b.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Keys().InsertSigningKey(ctx, sealed)
	})
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := signing.NewKeyring(master)
	err = s.InTenantTx(ctx, b.ID, func(ctx context.Context, tx store.TenantTx) error {
		_, err := fresh.LogKey(ctx, tx.Keys(), signing.LogScope{TenantID: b.ID, Origin: "x/t/bravo"})
		return err
	})
	if !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("alpha's key opened as bravo's: %v", err)
	}
}

// A log key row whose public half is not its sealed key's is refused, by
// LogKey and LogVerifier alike: auditors would otherwise be handed another
// key to pin (the row is written once, but a database attacker writes
// what it likes).
func TestLogKeyPublicHalfMustMatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match bool
	}{{"its own public half", true}, {"another key's public half", false}} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, master := setup(t)
			org := storetest.CreateTenant(t, s, "acme")
			skey, vkey, err := note.GenerateKey(rand.Reader, "x/t/acme")
			if err != nil {
				t.Fatal(err)
			}
			if !tc.match {
				_, vkey, _ = note.GenerateKey(rand.Reader, "x/t/acme")
			}
			signer, _ := note.NewSigner(skey)
			kid := fmt.Sprintf("log-%08x", signer.KeyHash())
			sealed, err := master.Seal([]byte(skey), secrets.Binding{Tenant: org.ID, Table: "signing_keys", Row: kid, Purpose: string(store.PurposeLog)})
			if err != nil {
				t.Fatal(err)
			}
			scope := signing.LogScope{TenantID: org.ID, Origin: "x/t/acme"}
			var gotKey signing.LogKey
			var keyErr, verifierErr error
			var verifier string
			err = s.InTenantTx(context.Background(), org.ID, func(ctx context.Context, tx store.TenantTx) error {
				if err := tx.Keys().InsertSigningKey(ctx, store.SigningKey{
					KID: kid, Purpose: store.PurposeLog, Algorithm: "Ed25519 (C2SP signed-note)",
					PublicKey: []byte(vkey), SealedPrivate: sealed, Status: store.KeyActive,
				}); err != nil {
					return err
				}
				fresh, _ := signing.NewKeyring(master)
				verifier, verifierErr = fresh.LogVerifier(ctx, tx.Keys(), scope)
				gotKey, keyErr = fresh.LogKey(ctx, tx.Keys(), scope)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if tc.match {
				if keyErr != nil || verifierErr != nil || verifier != vkey || gotKey.Verifier != vkey {
					t.Fatalf("LogKey %v, LogVerifier %q %v", keyErr, verifier, verifierErr)
				}
				return
			}
			for name, err := range map[string]error{"LogKey": keyErr, "LogVerifier": verifierErr} {
				if err == nil || !strings.Contains(err.Error(), "public half does not match") {
					t.Errorf("%s: %v, want a refusal", name, err)
				}
			}
		})
	}
}

func TestLogKeyRefusesBadOrigin(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	for _, origin := range []string{"", "has space", "plus+sign"} {
		err := s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			_, err := kr.LogKey(ctx, tx.Keys(), signing.LogScope{TenantID: acme.ID, Origin: origin})
			return err
		})
		if err == nil {
			t.Errorf("origin %q accepted", origin)
		}
	}
}
