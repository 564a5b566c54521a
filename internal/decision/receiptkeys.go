package decision

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// Ledger entry kinds of receipt key changes. A receipt key is what
// downstream systems trust offline, so each one an organization gets is
// in its log before it signs anything: an auditor holding the log knows
// every kid the JWKS may publish, and when each was made and retired.
const (
	KindReceiptKeyCreated = "receipt_key.created" // an organization's first
	KindReceiptKeyRotated = "receipt_key.rotated" // one replacing the active keys
)

// receiptKeyRecord is the record of a receipt key change.
type receiptKeyRecord struct {
	Event     string          `json:"event"` // receipt_key_created or receipt_key_rotated
	KID       string          `json:"kid"`
	PublicJWK json.RawMessage `json:"public_jwk"` // as the JWKS publishes it
	Retired   []string        `json:"retired_kids"`
}

// ReceiptKeys gives organizations their receipt keys, each key stored by
// the ledger batch that records it (ledger.AppendAllAndChange): a key is
// in the store only with its entry in the log. signing.Keyring makes and
// stores keys; this is the only caller that stores them.
type ReceiptKeys struct {
	tenants store.TenantStore
	ledger  *ledger.Ledger
	keys    *signing.Keyring
	// beforeChange, when set, runs between Rotate's read of the keys and
	// its batch (tests).
	beforeChange func()
}

// NewReceiptKeys returns the receipt key changes of tenants'
// organizations, logged in l.
func NewReceiptKeys(tenants store.TenantStore, l *ledger.Ledger, kr *signing.Keyring) (*ReceiptKeys, error) {
	if tenants == nil || l == nil || kr == nil {
		return nil, errors.New("decision: NewReceiptKeys needs a tenant store, a ledger and a key ring")
	}
	return &ReceiptKeys{tenants: tenants, ledger: l, keys: kr}, nil
}

// Signer returns the organization's active receipt signer, giving it its
// first key (logged) when it has none. The signer is read in a
// transaction of its own, after the key's batch committed.
func (r *ReceiptKeys) Signer(ctx context.Context, org Organization) (*signing.ReceiptSigner, error) {
	if s, ok := r.keys.CachedReceiptSigner(org.ID); ok {
		return s, nil
	}
	s, err := r.open(ctx, org)
	if !errors.Is(err, signing.ErrNoReceiptKey) {
		return s, err
	}
	_, err = r.change(ctx, org, nil)
	if err != nil && !errors.Is(err, store.ErrConflict) {
		return nil, err
	}
	// Ours, or one another request or replica made first.
	return r.open(ctx, org)
}

// Rotate gives the organization a new receipt key in place of its active
// one (if any), and returns the new kid and the retired ones. A key made
// or retired meanwhile refuses it (store.ErrConflict), changing nothing.
func (r *ReceiptKeys) Rotate(ctx context.Context, org Organization) (kid string, retired []string, err error) {
	err = r.tenants.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		ks, err := tx.Keys().SigningKeys(ctx, store.PurposeReceipt)
		for _, k := range ks {
			if k.Status == store.KeyActive {
				retired = append(retired, k.KID)
			}
		}
		return err
	})
	if err != nil {
		return "", nil, err
	}
	if retired == nil {
		retired = []string{}
	}
	if r.beforeChange != nil {
		r.beforeChange()
	}
	kid, err = r.change(ctx, org, retired)
	if err != nil {
		return "", nil, err
	}
	return kid, retired, nil
}

// change makes a new key and stores it in place of retiring (nil: the
// organization's first key) in the ledger batch that records it.
func (r *ReceiptKeys) change(ctx context.Context, org Organization, retiring []string) (string, error) {
	nk, err := r.keys.NewReceiptKey(org.ID)
	if err != nil {
		return "", err
	}
	rec := receiptKeyRecord{Event: "receipt_key_created", KID: nk.KID(), PublicJWK: nk.PublicJWK(), Retired: []string{}}
	kind := KindReceiptKeyCreated
	if retiring != nil {
		rec.Event, rec.Retired, kind = "receipt_key_rotated", retiring, KindReceiptKeyRotated
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	entry := ledger.Entry{Kind: kind, Subject: nk.KID(), Record: b}
	_, err = r.ledger.AppendAllAndChange(ctx, r.ledger.TenantLog(org.ID, org.Slug), []ledger.Entry{entry},
		func(ctx context.Context, tx store.TenantTx) error {
			return r.keys.InstallReceiptKey(ctx, tx.Keys(), nk, retiring)
		})
	if err != nil {
		return "", fmt.Errorf("decision: receipt key: %w", err)
	}
	return nk.KID(), nil
}

func (r *ReceiptKeys) open(ctx context.Context, org Organization) (*signing.ReceiptSigner, error) {
	var s *signing.ReceiptSigner
	err := r.tenants.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		s, err = r.keys.ReceiptSigner(ctx, tx.Keys(), org.ID)
		return err
	})
	return s, err
}

// ReceiptKeyLog checks a log's receipt key entries against the keys its
// store holds (agentsigna ledger verify): each entry names its key (the
// entry's subject is the kid its public JWK carries) and introduces it
// once; every receipt key stored was introduced by an entry, with the
// public key the entry logged, and every key an entry introduced is
// stored; the one active key is the newest introduced, and a key is
// retired exactly when a rotation's entry retired it. A key in the store
// that no entry introduced, or a retired key made active again, was put
// there behind the service's back. Feed it every entry in order (Entry),
// then the store's keys (Keys).
type ReceiptKeyLog struct {
	kids    []string // in the order the log introduced them
	logged  map[string]loggedReceiptKey
	retired map[string]uint64 // kid → the entry of the rotation that retired it
}

type loggedReceiptKey struct {
	index uint64
	x     string // base64url public key, as logged
}

// NewReceiptKeyLog returns an empty ReceiptKeyLog.
func NewReceiptKeyLog() *ReceiptKeyLog {
	return &ReceiptKeyLog{logged: map[string]loggedReceiptKey{}, retired: map[string]uint64{}}
}

// Entry reads entry index; a non-empty answer is what is wrong with it.
func (a *ReceiptKeyLog) Entry(index uint64, kind, subject string, record []byte) string {
	if kind != KindReceiptKeyCreated && kind != KindReceiptKeyRotated {
		return ""
	}
	var rec struct {
		KID       string `json:"kid"`
		PublicJWK struct {
			Kty string `json:"kty"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Kid string `json:"kid"`
		} `json:"public_jwk"`
		Retired []string `json:"retired_kids"`
	}
	if err := json.Unmarshal(record, &rec); err != nil || rec.KID == "" || rec.KID != subject ||
		rec.PublicJWK.Kid != rec.KID || rec.PublicJWK.Kty != "OKP" || rec.PublicJWK.Crv != "Ed25519" || rec.PublicJWK.X == "" {
		return "a receipt key entry that does not name its Ed25519 key"
	}
	if first, dup := a.logged[rec.KID]; dup {
		return fmt.Sprintf("receipt key %s introduced again (first by entry %d)", rec.KID, first.index)
	}
	for _, kid := range rec.Retired {
		if _, ok := a.logged[kid]; !ok {
			return fmt.Sprintf("the entry retires receipt key %s, which no entry before it introduced", kid)
		}
		a.retired[kid] = index
	}
	a.kids = append(a.kids, rec.KID)
	a.logged[rec.KID] = loggedReceiptKey{index: index, x: rec.PublicJWK.X}
	return ""
}

// Keys checks the store's receipt keys against the entries read: a
// non-empty answer is the first thing that does not match.
func (a *ReceiptKeyLog) Keys(ctx context.Context, keys store.KeyTx) (string, error) {
	ks, err := keys.SigningKeys(ctx, store.PurposeReceipt)
	if err != nil {
		return "", err
	}
	// The worst first: a key no entry introduced, then one whose public
	// half differs, then one whose status does.
	stored := map[string]bool{}
	for _, k := range ks {
		stored[k.KID] = true
		if _, ok := a.logged[k.KID]; !ok {
			return fmt.Sprintf("receipt key %s is stored, but no entry of the log introduced it", k.KID), nil
		}
	}
	for _, k := range ks {
		if l := a.logged[k.KID]; l.x != base64.RawURLEncoding.EncodeToString(k.PublicKey) {
			return fmt.Sprintf("receipt key %s is stored with another public key than entry %d logged", k.KID, l.index), nil
		}
	}
	for _, k := range ks {
		at, retired := a.retired[k.KID]
		switch {
		case k.Status == store.KeyActive && retired:
			return fmt.Sprintf("receipt key %s is active, but entry %d retired it", k.KID, at), nil
		case k.Status != store.KeyActive && !retired:
			return fmt.Sprintf("receipt key %s is retired, but no entry retired it", k.KID), nil
		}
	}
	for _, kid := range a.kids {
		if !stored[kid] {
			return fmt.Sprintf("receipt key %s was introduced by entry %d, but the store no longer holds it", kid, a.logged[kid].index), nil
		}
	}
	return "", nil
}
