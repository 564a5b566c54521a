package secrets

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
)

func TestDeriveKey(t *testing.T) {
	m, err := ParseMasterKey("MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=")
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.DeriveKey("postgres tenant binding")
	if err != nil {
		t.Fatal(err)
	}
	// Pinned (RFC 5869 by hand, in Python's hmac): the database keeps a
	// key derived this way, so a change to the derivation would lock
	// every deployment out of its organizations' rows.
	const want = "d80cfc00bd5f7c9a2442af14944c25eb07360dde79748b4a35eb74c335b4d6ce"
	if got := hex.EncodeToString(a); got != want {
		t.Fatalf("DeriveKey = %s, want %s", got, want)
	}
	again, _ := m.DeriveKey("postgres tenant binding")
	if !bytes.Equal(a, again) {
		t.Error("one purpose gave two keys")
	}
	other, _ := m.DeriveKey("another purpose")
	if bytes.Equal(a, other) {
		t.Error("two purposes gave one key")
	}
	m2, _ := GenerateMasterKey()
	if b, _ := m2.DeriveKey("postgres tenant binding"); bytes.Equal(a, b) {
		t.Error("two master keys gave one key")
	}
	// Not one of Seal's cipher keys for the same purpose.
	sealKey, _ := hkdf.Key(sha256.New, []byte("01234567890123456789012345678901"), nil, hkdfInfoV1+"postgres tenant binding", 32)
	if bytes.Equal(a, sealKey) {
		t.Error("the derived key is Seal's cipher key")
	}
	if _, err := m.DeriveKey(""); !errors.Is(err, ErrInvalidBinding) {
		t.Errorf("empty purpose: %v", err)
	}
	var zero MasterKey
	if _, err := zero.DeriveKey("x"); err == nil {
		t.Error("the zero MasterKey derived a key")
	}
}
