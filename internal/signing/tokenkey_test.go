package signing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// TokenPublicKeys lists what verifies an organization's access tokens:
// every active token key, however many there are, and no retired one; an
// organization with none gets none, and nothing is created.
func TestTokenPublicKeys(t *testing.T) {
	s, _, master := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	ctx := context.Background()
	read := func() map[string]ed25519.PublicKey {
		t.Helper()
		var keys map[string]ed25519.PublicKey
		err := s.InTenantReadTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			var err error
			keys, err = signing.TokenPublicKeys(ctx, tx.Keys())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if keys := read(); len(keys) != 0 {
		t.Fatalf("no token key yet: %d keys", len(keys))
	}
	// Two keyrings (two replicas) each make one, as when their first uses
	// race; a third is retired.
	var made []signing.TokenKey
	for range 3 {
		other, err := signing.NewKeyring(master)
		if err != nil {
			t.Fatal(err)
		}
		err = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			tk, err := other.TokenKey(ctx, hideTokenKeys{tx.Keys()}, acme.ID)
			made = append(made, tk)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Keys().RetireSigningKey(ctx, made[2].KID, time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := read()
	if len(keys) != 2 {
		t.Fatalf("%d keys, want the 2 active ones", len(keys))
	}
	for _, tk := range made[:2] {
		if !bytes.Equal(keys[tk.KID], tk.Private.Public().(ed25519.PublicKey)) {
			t.Errorf("key %s: missing or not its public half", tk.KID)
		}
	}
}

// hideTokenKeys is a transaction that does not see the token keys others
// made (READ COMMITTED, before their commit).
type hideTokenKeys struct{ store.KeyTx }

func (h hideTokenKeys) SigningKeys(ctx context.Context, p store.KeyPurpose) ([]store.SigningKey, error) {
	if p == store.PurposeToken {
		return nil, nil
	}
	return h.KeyTx.SigningKeys(ctx, p)
}
