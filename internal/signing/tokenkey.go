package signing

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/store"
)

// TokenKey is an organization's access-token signing key: the tenant plane
// signs agents' access tokens with it. Each organization has its own, so a
// token can only ever verify under the organization it names. It never
// prints or marshals its private key: every fmt verb and slog show the
// kid, and JSON has no member for it.
type TokenKey struct {
	KID string
	// Behind a pointer, as ReceiptSigner's: a printer that cannot call
	// Format (a TokenKey in an unexported field) shows an address.
	key *receiptPrivateKey
}

// Signer signs with the private key (identity.NewTokenIssuer takes it).
func (k TokenKey) Signer() crypto.Signer { return k.key.k }

// PublicKey is the key tokens verify under.
func (k TokenKey) PublicKey() ed25519.PublicKey { return k.key.k.Public().(ed25519.PublicKey) }

// String names the key by kid only.
func (k TokenKey) String() string { return "TokenKey(" + k.KID + ")" }

// GoString is String, for %#v.
func (k TokenKey) GoString() string { return k.String() }

// Format prints String for every verb and flag.
func (k TokenKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue implements slog.LogValuer: a key logged by mistake shows its kid.
func (k TokenKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

func tokenBinding(tenantID, kid string) secrets.Binding {
	return secrets.Binding{Tenant: tenantID, Table: "signing_keys", Row: kid, Purpose: string(store.PurposeToken)}
}

var errNoTokenKey = errors.New("organization has no token key")

// TokenKey returns the organization's active token key, creating it in
// keys' transaction when there is none. Keys read back from the store are
// cached (they are committed); a key created in a transaction that rolls
// back is never cached, and no token it signed was handed out. When
// another transaction creates the key first, this one reads and returns
// that key: an organization has one active token key.
func (k *Keyring) TokenKey(ctx context.Context, keys store.KeyTx, tenantID string) (TokenKey, error) {
	if tenantID == "" {
		return TokenKey{}, errors.New("signing: token keys belong to an organization; tenant id is empty")
	}
	k.mu.Lock()
	tk, ok := k.tokens[tenantID]
	k.mu.Unlock()
	if ok {
		return tk, nil
	}
	tk, created, err := openOrCreate(errNoTokenKey,
		func() (TokenKey, error) { return k.openTokenKey(ctx, keys, tenantID) },
		func() (TokenKey, error) { return k.createTokenKey(ctx, keys, tenantID) })
	if err != nil || created {
		return tk, err // a created key is not cached (see LogKey)
	}
	k.mu.Lock()
	k.tokens[tenantID] = tk
	k.mu.Unlock()
	return tk, nil
}

func (k *Keyring) createTokenKey(ctx context.Context, keys store.KeyTx, tenantID string) (TokenKey, error) {
	if err := k.CheckMasterKey(ctx, keys, tenantID); err != nil {
		return TokenKey{}, err
	}
	kid, priv, err := newReceiptKey() // same kind of key: Ed25519, RFC 7638 kid
	if err != nil {
		return TokenKey{}, err
	}
	sealed, err := k.master.Seal(priv.Seed(), tokenBinding(tenantID, kid))
	if err != nil {
		return TokenKey{}, err
	}
	err = keys.InsertSigningKey(ctx, store.SigningKey{
		KID: kid, Purpose: store.PurposeToken, Algorithm: ReceiptAlgorithm,
		PublicKey: priv.Public().(ed25519.PublicKey), SealedPrivate: sealed, Status: store.KeyActive,
	})
	if err != nil {
		return TokenKey{}, err
	}
	return TokenKey{KID: kid, key: &receiptPrivateKey{priv}}, nil
}

// TokenPublicKeys returns the public halves of organization tenantID's
// active token keys, by kid: what verifies its access tokens. It never
// creates a key, so a request that merely presents a token never makes the
// service make one; it opens each key's sealed half once, to see that it
// derives the public half (publicHalf), and fails on one that does not.
// The store keeps at most one active token key an organization; none is an
// empty map.
func (k *Keyring) TokenPublicKeys(ctx context.Context, keys store.KeyTx, tenantID string) (map[string]ed25519.PublicKey, error) {
	ks, err := keys.SigningKeys(ctx, store.PurposeToken)
	if err != nil {
		return nil, err
	}
	out := make(map[string]ed25519.PublicKey, len(ks))
	for _, key := range ks {
		if key.Status != store.KeyActive {
			continue
		}
		pub, err := k.publicHalf(tenantID, key)
		if err != nil {
			return nil, err
		}
		out[key.KID] = pub
	}
	return out, nil
}

func (k *Keyring) openTokenKey(ctx context.Context, keys store.KeyTx, tenantID string) (TokenKey, error) {
	ks, err := keys.SigningKeys(ctx, store.PurposeToken)
	if err != nil {
		return TokenKey{}, err
	}
	for i := len(ks) - 1; i >= 0; i-- {
		key := ks[i]
		if key.Status != store.KeyActive {
			continue
		}
		priv, err := k.openJWSKey(tenantID, key)
		if err != nil {
			return TokenKey{}, err
		}
		return TokenKey{KID: key.KID, key: &receiptPrivateKey{priv}}, nil
	}
	return TokenKey{}, errNoTokenKey
}
