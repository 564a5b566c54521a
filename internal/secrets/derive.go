package secrets

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
)

// SPEC: derived keys, version 1. A key made here is stored or checked
// elsewhere (the PostgreSQL tenant binding keeps one): never change it.
//
//	key = HKDF-SHA256(secret = master key, salt = none,
//	                  info = "agentsigna derived key v1" ‖ 0x00 ‖ purpose), 32 bytes
//
// The info differs from Seal's ("agentsigna secrets v1 aes-256-gcm" ‖ 0x00
// ‖ purpose) before either's 0x00, so no purpose here yields a cipher key
// of Seal's, whatever the purposes are.
const deriveInfoV1 = "agentsigna derived key v1\x00"

// DeriveKey returns a 32-byte key for purpose, derived from the master key,
// for a use other than Seal and Open (a MAC key, for one). One master key
// and purpose always give the same key; another purpose gives an unrelated
// one. The caller clears the key when done with it.
func (m *MasterKey) DeriveKey(purpose string) ([]byte, error) {
	if m == nil || m.k == nil {
		return nil, errors.New("secrets: use of an uninitialised MasterKey")
	}
	if purpose == "" {
		return nil, fmt.Errorf("%w: empty purpose", ErrInvalidBinding)
	}
	key, err := hkdf.Key(sha256.New, m.k.secret[:], nil, deriveInfoV1+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("secrets: deriving key: %w", err)
	}
	return key, nil
}
