package signing

import (
	"context"
	"errors"

	"github.com/agentsigna/agentsigna/internal/store"
)

// RotateReceiptKey and FirstReceiptSigner do in the caller's transaction,
// without a ledger entry, what decision.ReceiptKeys does with one: tests
// only.

// RotateReceiptKey installs a new key in place of the active ones and
// returns its kid.
func (k *Keyring) RotateReceiptKey(ctx context.Context, keys store.KeyTx, tenantID string) (string, error) {
	ks, err := keys.SigningKeys(ctx, store.PurposeReceipt)
	if err != nil {
		return "", err
	}
	var active []string
	for _, key := range ks {
		if key.Status == store.KeyActive {
			active = append(active, key.KID)
		}
	}
	nk, err := k.NewReceiptKey(tenantID)
	if err != nil {
		return "", err
	}
	if err := k.InstallReceiptKey(ctx, keys, nk, active); err != nil {
		return "", err
	}
	return nk.KID(), nil
}

// FirstReceiptSigner is ReceiptSigner, installing a first key when the
// organization has none, and then, as the service does, one made
// meanwhile by another transaction wins (store.ErrConflict). A key it
// installs is not cached: the transaction may yet roll back.
func (k *Keyring) FirstReceiptSigner(ctx context.Context, keys store.KeyTx, tenantID string) (*ReceiptSigner, error) {
	s, err := k.ReceiptSigner(ctx, keys, tenantID)
	if !errors.Is(err, ErrNoReceiptKey) {
		return s, err
	}
	nk, err := k.NewReceiptKey(tenantID)
	if err != nil {
		return nil, err
	}
	switch err := k.InstallReceiptKey(ctx, keys, nk, nil); {
	case errors.Is(err, store.ErrConflict):
		return k.ReceiptSigner(ctx, keys, tenantID)
	case err != nil:
		return nil, err
	}
	return k.openReceiptKey(ctx, keys, tenantID)
}
