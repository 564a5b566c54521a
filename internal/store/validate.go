package store

import (
	"fmt"
	"regexp"

	"github.com/google/uuid"
)

var (
	// Only the canonical lower-case form: the id names a file under the
	// data dir (SQLite) and is compared as text in places, so no braces,
	// urn: prefix or upper case may alias one tenant to another.
	tenantIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	slugPattern     = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)
)

// MaxSettingKey and MaxSettingValue bound a setting's size.
const (
	MaxSettingKey   = 128
	MaxSettingValue = 64 << 10
	// MaxLedgerEntry is the largest leaf the log accepts (DESIGN §4).
	MaxLedgerEntry = 64 << 10
)

// NewTenantID returns a fresh random (v4) tenant id.
func NewTenantID() string { return uuid.NewString() }

// CheckTenantID reports ErrInvalid unless id is a canonical lower-case UUID.
func CheckTenantID(id string) error {
	if !tenantIDPattern.MatchString(id) {
		return fmt.Errorf("%w: tenant id must be a lower-case UUID", ErrInvalid)
	}
	return nil
}

// CheckSlug reports ErrInvalid unless slug is 1–63 lower-case letters,
// digits and inner hyphens.
func CheckSlug(slug string) error {
	if !slugPattern.MatchString(slug) {
		return fmt.Errorf("%w: slug must be 1-63 lower-case letters, digits or inner hyphens", ErrInvalid)
	}
	return nil
}

// CheckTenantStatus reports ErrInvalid for an unknown status.
func CheckTenantStatus(s TenantStatus) error {
	switch s {
	case TenantActive, TenantSuspended:
		return nil
	}
	return fmt.Errorf("%w: unknown tenant status", ErrInvalid)
}

// CheckSetting bounds a setting key and value.
func CheckSetting(key, value string) error {
	if key == "" || len(key) > MaxSettingKey {
		return fmt.Errorf("%w: setting key must be 1-%d bytes", ErrInvalid, MaxSettingKey)
	}
	if len(value) > MaxSettingValue {
		return fmt.Errorf("%w: setting value over %d bytes", ErrInvalid, MaxSettingValue)
	}
	return nil
}

// CheckLedgerEntries validates a batch before it reaches the database.
// Sequencing is the ledger's job; the store only refuses what can never be
// a valid leaf.
func CheckLedgerEntries(entries []LedgerEntry) error {
	for i, e := range entries {
		if len(e.Entry) == 0 || len(e.Entry) > MaxLedgerEntry {
			return fmt.Errorf("%w: ledger entry %d: size must be 1-%d bytes", ErrInvalid, e.Index, MaxLedgerEntry)
		}
		if len(e.LeafHash) != 32 {
			return fmt.Errorf("%w: ledger entry %d: leaf hash must be 32 bytes", ErrInvalid, e.Index)
		}
		if i > 0 && e.Index != entries[i-1].Index+1 {
			return fmt.Errorf("%w: ledger entries must have consecutive indexes", ErrInvalid)
		}
	}
	return nil
}
