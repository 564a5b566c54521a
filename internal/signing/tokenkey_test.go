package signing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/store/storetest"
)

// TokenPublicKeys lists what verifies an organization's access tokens:
// its active token key and no retired one; an organization with none gets
// none, and nothing is created.
func TestTokenPublicKeys(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	ctx := context.Background()
	read := func() map[string]ed25519.PublicKey {
		t.Helper()
		var keys map[string]ed25519.PublicKey
		err := s.InTenantReadTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
			var err error
			keys, err = kr.TokenPublicKeys(ctx, tx.Keys(), acme.ID)
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
	var tk signing.TokenKey
	err := s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		tk, err = kr.TokenKey(ctx, tx.Keys(), acme.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys := read(); len(keys) != 1 || !bytes.Equal(keys[tk.KID], tk.PublicKey()) {
		t.Fatalf("keys %v, want only %s's public half", keys, tk.KID)
	}
	err = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Keys().RetireSigningKey(ctx, tk.KID, time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys := read(); len(keys) != 0 {
		t.Fatalf("a retired key verifies tokens: %v", keys)
	}
}

// Two keyrings (two replicas) whose first uses of an organization race:
// the second's transaction looked before the first's key committed, so it
// makes a key of its own, which the store refuses; it then takes the
// first's. Each kind of key, the same way: one key signs.
func TestFirstKeysRace(t *testing.T) {
	for _, tc := range []struct {
		purpose store.KeyPurpose
		key     func(ctx context.Context, kr *signing.Keyring, keys store.KeyTx, tenantID string) (string, error) // a public identity
	}{
		{store.PurposeToken, func(ctx context.Context, kr *signing.Keyring, keys store.KeyTx, tenantID string) (string, error) {
			tk, err := kr.TokenKey(ctx, keys, tenantID)
			if err != nil {
				return "", err
			}
			return tk.KID + string(tk.PublicKey()), nil
		}},
		{store.PurposeReceipt, func(ctx context.Context, kr *signing.Keyring, keys store.KeyTx, tenantID string) (string, error) {
			rs, err := kr.FirstReceiptSigner(ctx, keys, tenantID)
			if err != nil {
				return "", err
			}
			return rs.KID() + string(rs.PublicKey()), nil
		}},
		{store.PurposeLog, func(ctx context.Context, kr *signing.Keyring, keys store.KeyTx, tenantID string) (string, error) {
			lk, err := kr.LogKey(ctx, keys, signing.LogScope{TenantID: tenantID, Origin: "example.test/t/acme"})
			return lk.Verifier, err
		}},
	} {
		t.Run(string(tc.purpose), func(t *testing.T) {
			s, _, master := setup(t)
			acme := storetest.CreateTenant(t, s, "acme")
			ctx := context.Background()
			var got []string
			for range 2 {
				kr, err := signing.NewKeyring(master)
				if err != nil {
					t.Fatal(err)
				}
				err = s.InTenantTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
					id, err := tc.key(ctx, kr, &staleFirstRead{KeyTx: tx.Keys(), purpose: tc.purpose}, acme.ID)
					got = append(got, id)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			var ks []store.SigningKey
			err := s.InTenantReadTx(ctx, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
				var err error
				ks, err = tx.Keys().SigningKeys(ctx, tc.purpose)
				return err
			})
			if err != nil || len(ks) != 1 || got[0] == "" || got[1] != got[0] {
				t.Fatalf("keys stored: %d (%v); the second keyring's key is the first's: %v", len(ks), err, got[1] == got[0])
			}
		})
	}
}

// staleFirstRead is a transaction whose first look at the keys of purpose
// came before another's key committed (PostgreSQL, READ COMMITTED).
type staleFirstRead struct {
	store.KeyTx
	purpose store.KeyPurpose
	looked  bool
}

func (s *staleFirstRead) SigningKeys(ctx context.Context, p store.KeyPurpose) ([]store.SigningKey, error) {
	if p == s.purpose && !s.looked {
		s.looked = true
		return nil, nil
	}
	return s.KeyTx.SigningKeys(ctx, p)
}

// A TokenKey shows its kid and nothing of its private key, however it is
// printed, logged or marshalled.
func TestTokenKeyPrintsNoKeyMaterial(t *testing.T) {
	s, kr, _ := setup(t)
	acme := storetest.CreateTenant(t, s, "acme")
	var tk signing.TokenKey
	err := s.InTenantTx(context.Background(), acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		tk, err = kr.TokenKey(ctx, tx.Keys(), acme.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	seed := tk.Signer().(ed25519.PrivateKey).Seed()
	forms := []string{hex.EncodeToString(seed), base64.RawURLEncoding.EncodeToString(seed[:30]),
		base64.StdEncoding.EncodeToString(seed[:30]), strings.Trim(fmt.Sprint(seed[:8]), "[]")}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "key", tk)
	marshalled, err := json.Marshal(struct{ Key signing.TokenKey }{tk})
	if err != nil {
		t.Fatal(err)
	}
	wrapped := struct{ k signing.TokenKey }{tk}
	for _, out := range []string{
		fmt.Sprintf("%v %+v %#v %s %x %q %d", tk, tk, tk, tk, tk, tk, tk),
		fmt.Sprintf("%v %+v %#v", &tk, wrapped, &wrapped),
		logged.String(),
		string(marshalled),
	} {
		if !strings.Contains(out, tk.KID) && !strings.Contains(out, "0x") {
			t.Errorf("neither the kid nor an address shown: %q", out)
		}
		for _, f := range forms {
			if strings.Contains(out, f) {
				t.Fatalf("key material printed: %q", out)
			}
		}
	}
}
