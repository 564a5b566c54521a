package store

import (
	"fmt"
	"regexp"

	"github.com/google/uuid"
)

var slugPattern = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)

// isTenantID reports whether id is a UUID in its canonical lower-case form,
// ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$, checked by
// hand: every request checks tenant ids, and the regular expression was
// 0.6% of the decision path's CPU. Only that form: the id names a file
// under the data dir (SQLite) and is compared as text in places, so no
// braces, urn: prefix or upper case may alias one tenant to another.
func isTenantID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// IsDottedName reports whether s is minSegments to maxSegments (0: no
// bound) segments joined by dots, each a lower-case letter then lower-case
// letters, digits and underscores: ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$
// with the segments counted. DESIGN §3's action types are 2 to 5 of them,
// ledger entry kinds 1 or more. Checked by hand, as isTenantID is.
func IsDottedName(s string, minSegments, maxSegments int) bool {
	segments := 0
	atStart := true // of a segment
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case atStart:
			if c < 'a' || c > 'z' {
				return false
			}
			segments++
			if maxSegments > 0 && segments > maxSegments {
				return false
			}
			atStart = false
		case c == '.':
			atStart = true
		case (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_':
			return false
		}
	}
	return !atStart && segments >= minSegments
}

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
	if !isTenantID(id) {
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

// MaxTenantName bounds an organization's name.
const MaxTenantName = 200

// CheckTenant validates an organization before it is created: its id,
// slug and status, and its name, a label as an agent's is (CheckLabel).
func CheckTenant(t Tenant) error {
	if err := CheckTenantID(t.ID); err != nil {
		return err
	}
	if err := CheckSlug(t.Slug); err != nil {
		return err
	}
	if err := CheckLabel("tenant name", t.Name, MaxTenantName); err != nil {
		return err
	}
	return CheckTenantStatus(t.Status)
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

// CheckLogBatch validates a batch before it reaches the database. Sequencing
// is the ledger's job; the store refuses what can never be a valid batch.
func CheckLogBatch(entries []LedgerEntry, nodes []LedgerNode, cp LedgerCheckpoint) error {
	if len(entries) == 0 {
		return fmt.Errorf("%w: empty ledger batch", ErrInvalid)
	}
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
	for _, n := range nodes {
		if n.Level == 0 || n.Level%8 != 0 || n.Level >= 64 || len(n.Hash) != 32 {
			return fmt.Errorf("%w: ledger node at level %d", ErrInvalid, n.Level)
		}
	}
	last := entries[len(entries)-1]
	if cp.Size != last.Index+1 || len(cp.Root) != 32 || len(cp.LastLeafHash) != 32 || len(cp.Note) == 0 {
		return fmt.Errorf("%w: checkpoint does not close the batch", ErrInvalid)
	}
	for _, h := range cp.RangeHashes {
		if len(h) != 32 {
			return fmt.Errorf("%w: checkpoint range hash", ErrInvalid)
		}
	}
	return nil
}

// SigningKeyConflict is InsertSigningKey's refusal of k: its kid is taken,
// or an active key of its purpose exists.
func SigningKeyConflict(k SigningKey) error {
	return fmt.Errorf("%w: signing key %s: the kid is taken or an active %s key exists", ErrConflict, k.KID, k.Purpose)
}

// CheckSigningKey validates a key before it is stored.
func CheckSigningKey(k SigningKey) error {
	switch {
	case k.KID == "" || len(k.KID) > 128:
		return fmt.Errorf("%w: key id must be 1-128 bytes", ErrInvalid)
	case k.Purpose != PurposeLog && k.Purpose != PurposeReceipt && k.Purpose != PurposeToken:
		return fmt.Errorf("%w: unknown key purpose", ErrInvalid)
	case k.Algorithm == "" || len(k.PublicKey) == 0 || len(k.SealedPrivate) == 0:
		return fmt.Errorf("%w: key algorithm and both halves are required", ErrInvalid)
	case k.Status != KeyActive && k.Status != KeyRetired:
		return fmt.Errorf("%w: unknown key status", ErrInvalid)
	}
	return nil
}

// JoinHashes and SplitHashes store a list of 32-byte hashes as one column.
func JoinHashes(hs [][]byte) []byte {
	out := make([]byte, 0, 32*len(hs))
	for _, h := range hs {
		out = append(out, h...)
	}
	return out
}

// SplitHashes is the inverse of JoinHashes.
func SplitHashes(b []byte) ([][]byte, error) {
	if len(b)%32 != 0 {
		return nil, fmt.Errorf("stored hash list of %d bytes", len(b))
	}
	out := make([][]byte, len(b)/32)
	for i := range out {
		out[i] = b[32*i : 32*i+32 : 32*i+32]
	}
	return out, nil
}

// CheckPolicyBundle validates a bundle row before it is stored.
func CheckPolicyBundle(b PolicyBundle) error {
	switch {
	case b.Revision == "" || len(b.Revision) > 256:
		return fmt.Errorf("%w: policy revision must be 1-256 bytes", ErrInvalid)
	case len(b.Digest) != 32 || len(b.Bundle) == 0:
		return fmt.Errorf("%w: policy bundle and its SHA-256 are required", ErrInvalid)
	case b.UploadedBy == "":
		return fmt.Errorf("%w: policy bundle uploader is required", ErrInvalid)
	}
	return CheckLedgerIndex(b.LedgerIndex, "a policy bundle")
}

// CheckVerificationKey validates a bundle verification key before it is
// stored: an id, a PEM, and the ledger entry that registers it.
func CheckVerificationKey(k PolicyVerificationKey) error {
	if k.KID == "" || len(k.KID) > 128 || k.PublicPEM == "" {
		return fmt.Errorf("%w: verification key needs an id and a PEM", ErrInvalid)
	}
	return CheckLedgerIndex(k.LedgerIndex, "a verification key")
}
