package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// SPEC: ciphertext format, version 1. It is stored in the database: never
// change it; a new format gets a new version byte, and Open keeps reading the
// old ones. len32 is a length in bytes, 4 bytes big-endian.
//
//	ciphertext = 0x01 ‖ nonce (12 random bytes) ‖ AES-256-GCM ciphertext ‖ tag (16 bytes)
//	AES key    = HKDF-SHA256(secret = master key, salt = none,
//	                         info = "agentsigna secrets v1 aes-256-gcm" ‖ 0x00 ‖ Purpose), 32 bytes
//	AAD        = 0x01 ‖ len32(Tenant) ‖ Tenant ‖ len32(Table) ‖ Table ‖
//	                    len32(Row) ‖ Row ‖ len32(Purpose) ‖ Purpose
//
// Why derive: the raw master key never keys a cipher, so no purpose's key can
// be turned against another's, and the master key could later serve other
// derivations (HMAC, a second cipher) without reuse. HKDF (RFC 5869) with the
// stdlib crypto/hkdf; no salt because the master key is already uniformly
// random. Each purpose's key may seal up to 2^32 values with random nonces
// (NIST SP 800-38D §8.3) — far above what one deployment writes.
//
// Why length-prefix: a separator can be injected (Tenant "a|b", Row "c" and
// Tenant "a", Row "b|c" would join to the same "a|b|c"); lengths make the
// encoding injective, so a ciphertext opens only under the exact binding it
// was sealed with.
const (
	formatV1     byte = 0x01
	nonceSize         = 12
	tagSize           = 16
	hkdfInfoV1        = "agentsigna secrets v1 aes-256-gcm\x00"
	maxAEADCache      = 64 // purposes are constants in code; bound the cache anyway
)

// Overhead is the number of bytes Seal adds to a plaintext.
const Overhead = 1 + nonceSize + tagSize

var (
	// ErrDecrypt: the ciphertext could not be opened. It says nothing of why
	// (wrong key, another binding, tampered, truncated, unknown version):
	// callers treat every case the same, and an attacker learns nothing.
	ErrDecrypt = errors.New("secrets: cannot decrypt")
	// ErrInvalidBinding: a Binding lacks its Table, Row or Purpose.
	ErrInvalidBinding = errors.New("secrets: invalid binding")
)

// Binding names where a ciphertext lives. It is the GCM associated data: a
// ciphertext opens only with the Binding it was sealed with, so one copied to
// another tenant, table, row or column fails with ErrDecrypt.
type Binding struct {
	// Tenant is the organization's id; empty for a secret of the platform
	// plane, which has no tenant.
	Tenant string
	// Table is the table (or store file) the ciphertext is written to.
	Table string
	// Row is the row's primary key.
	Row string
	// Purpose is what the secret is, usually its column ("private_key",
	// "totp_secret", "bank_details"). Each purpose is sealed under its own
	// key derived from the master key.
	Purpose string
}

func (b Binding) validate() error {
	switch {
	case b.Table == "":
		return fmt.Errorf("%w: empty Table", ErrInvalidBinding)
	case b.Row == "":
		return fmt.Errorf("%w: empty Row", ErrInvalidBinding)
	case b.Purpose == "":
		return fmt.Errorf("%w: empty Purpose", ErrInvalidBinding)
	}
	return nil
}

// associatedData encodes b unambiguously; see the SPEC above.
func (b Binding) associatedData(version byte) []byte {
	fields := [...]string{b.Tenant, b.Table, b.Row, b.Purpose}
	n := 1
	for _, f := range fields {
		n += 4 + len(f)
	}
	ad := make([]byte, 0, n)
	ad = append(ad, version)
	for _, f := range fields {
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(f)))
		ad = append(ad, f...)
	}
	return ad
}

// Seal encrypts plaintext for the place bind names. Two seals of the same
// plaintext differ (random nonce). The result is len(plaintext)+Overhead bytes.
func (m *MasterKey) Seal(plaintext []byte, bind Binding) ([]byte, error) {
	if err := bind.validate(); err != nil {
		return nil, err
	}
	aead, err := m.aeadFor(bind.Purpose)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1, Overhead+len(plaintext))
	out[0] = formatV1
	// NewGCMWithRandomNonce's Seal writes nonce ‖ ciphertext ‖ tag.
	return aead.Seal(out, nil, plaintext, bind.associatedData(formatV1)), nil
}

// Open decrypts a ciphertext made by Seal with the same Binding. Any failure
// to decrypt is ErrDecrypt, whatever the cause; it never panics on any input.
func (m *MasterKey) Open(ciphertext []byte, bind Binding) ([]byte, error) {
	if err := bind.validate(); err != nil {
		return nil, err
	}
	if len(ciphertext) < Overhead || ciphertext[0] != formatV1 {
		return nil, ErrDecrypt
	}
	aead, err := m.aeadFor(bind.Purpose)
	if err != nil {
		return nil, err
	}
	plaintext, err := aead.Open(nil, nil, ciphertext[1:], bind.associatedData(formatV1))
	if err != nil {
		return nil, ErrDecrypt
	}
	if plaintext == nil {
		plaintext = []byte{}
	}
	return plaintext, nil
}

// aeadFor returns the AES-256-GCM (random nonce) keyed for purpose, derived
// once and cached.
func (m *MasterKey) aeadFor(purpose string) (cipher.AEAD, error) {
	if m == nil || m.k == nil {
		return nil, errors.New("secrets: use of an uninitialised MasterKey")
	}
	s := m.k
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.aeads[purpose]; ok {
		return a, nil
	}
	key, err := hkdf.Key(sha256.New, s.secret[:], nil, hkdfInfoV1+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("secrets: deriving key: %w", err)
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	a, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if s.aeads == nil {
		s.aeads = make(map[string]cipher.AEAD)
	}
	if len(s.aeads) < maxAEADCache {
		s.aeads[purpose] = a
	}
	return a, nil
}
