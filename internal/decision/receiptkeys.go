package decision

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"

	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/ledger/verify"
)

// Ledger entry kinds of receipt key changes. A receipt key is what
// downstream systems trust offline, so each one an organization gets is
// in its log before it signs anything: an auditor holding the log knows
// every kid the JWKS may publish, and when each was made and retired.
const (
	KindReceiptKeyCreated = "receipt_key.created" // an organization's first
	KindReceiptKeyRotated = "receipt_key.rotated" // one replacing the active keys
)

// ReceiptKeyRecord is the record of a receipt key entry.
type ReceiptKeyRecord struct {
	Event     string          `json:"event"` // receipt_key_created or receipt_key_rotated
	KID       string          `json:"kid"`
	PublicJWK json.RawMessage `json:"public_jwk"` // as the JWKS publishes it
	Retired   []string        `json:"retired_kids"`
}

// ParseReceiptKeyRecord reads the record of a receipt key entry whose
// subject is subject, and returns it with its public key. The record must
// name its own key: the entry's subject is its kid, which is the kid of
// its JWK and that key's RFC 7638 thumbprint, and the JWK is an Ed25519
// public key as the JWKS publishes one (kty OKP, crv Ed25519, alg EdDSA,
// use sig). Member names are matched exactly.
func ParseReceiptKeyRecord(subject string, record []byte) (ReceiptKeyRecord, ed25519.PublicKey, error) {
	var rec ReceiptKeyRecord
	var jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}
	errNotItsKey := errors.New("a receipt key entry that does not name its Ed25519 key")
	if jsonv2.Unmarshal(record, &rec) != nil || rec.KID == "" || rec.KID != subject || jsonv2.Unmarshal(rec.PublicJWK, &jwk) != nil ||
		jwk.Kid != rec.KID || jwk.Kty != "OKP" || jwk.Crv != "Ed25519" || jwk.Alg != signing.ReceiptAlgorithm || jwk.Use != "sig" {
		return rec, nil, errNotItsKey
	}
	pub, err := base64.RawURLEncoding.Strict().DecodeString(jwk.X)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return rec, nil, errNotItsKey
	}
	// RFC 7638 §3.2, with RFC 8037 §2's required members of an OKP key.
	tp := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + jwk.X + `"}`))
	if base64.RawURLEncoding.EncodeToString(tp[:]) != rec.KID {
		return rec, nil, fmt.Errorf("receipt key entry for %s: the kid is not its key's thumbprint", rec.KID)
	}
	return rec, pub, nil
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
// one, and returns the new kid and the retired ones; an organization
// without a key gets its first (logged as created). A key made or retired
// meanwhile refuses it (store.ErrConflict), changing nothing.
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

// change makes a new key and stores it in place of retiring (none: the
// organization's first key, logged as created) in the ledger batch that
// records it.
func (r *ReceiptKeys) change(ctx context.Context, org Organization, retiring []string) (string, error) {
	nk, err := r.keys.NewReceiptKey(org.ID)
	if err != nil {
		return "", err
	}
	rec := ReceiptKeyRecord{Event: "receipt_key_created", KID: nk.KID(), PublicJWK: nk.PublicJWK(), Retired: []string{}}
	kind := KindReceiptKeyCreated
	if len(retiring) > 0 {
		rec.Event, rec.Retired, kind = "receipt_key_rotated", retiring, KindReceiptKeyRotated
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	entry := ledger.Entry{Kind: kind, Subject: nk.KID(), Record: b}
	_, err = r.ledger.AppendAllAndChange(ctx, r.ledger.TenantLog(org.ID, org.Slug), []ledger.Entry{entry},
		func(ctx context.Context, tx store.TenantTx, _ uint64) error {
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
	index  uint64
	public ed25519.PublicKey // as logged
}

// NewReceiptKeyLog returns an empty ReceiptKeyLog.
func NewReceiptKeyLog() *ReceiptKeyLog {
	return &ReceiptKeyLog{logged: map[string]loggedReceiptKey{}, retired: map[string]uint64{}}
}

// Entry reads entry e and its record (ledger.CheckOptions.CheckRecord);
// an error is what is wrong with it.
func (a *ReceiptKeyLog) Entry(e verify.Entry, record []byte) error {
	if e.Kind != KindReceiptKeyCreated && e.Kind != KindReceiptKeyRotated {
		return nil
	}
	rec, pub, err := ParseReceiptKeyRecord(e.Subject, record)
	if err != nil {
		return err
	}
	if first, dup := a.logged[rec.KID]; dup {
		return fmt.Errorf("receipt key %s introduced again (first by entry %d)", rec.KID, first.index)
	}
	for _, kid := range rec.Retired {
		if _, ok := a.logged[kid]; !ok {
			return fmt.Errorf("the entry retires receipt key %s, which no entry before it introduced", kid)
		}
		a.retired[kid] = e.Index
	}
	a.kids = append(a.kids, rec.KID)
	a.logged[rec.KID] = loggedReceiptKey{index: e.Index, public: pub}
	return nil
}

// Keys checks the store's receipt keys against the entries read
// (ledger.CheckOptions.CheckKeys): the first thing that does not match is
// an error wrapping ledger.ErrKeysMismatch.
func (a *ReceiptKeyLog) Keys(ctx context.Context, keys store.KeyTx) error {
	ks, err := keys.SigningKeys(ctx, store.PurposeReceipt)
	if err != nil {
		return err
	}
	// The worst first: a key no entry introduced, then one whose public
	// half differs, then one whose status does.
	stored := map[string]bool{}
	for _, k := range ks {
		stored[k.KID] = true
		if _, ok := a.logged[k.KID]; !ok {
			return fmt.Errorf("%w: receipt key %s is stored, but no entry of the log introduced it", ledger.ErrKeysMismatch, k.KID)
		}
	}
	for _, k := range ks {
		if l := a.logged[k.KID]; !bytes.Equal(l.public, k.PublicKey) {
			return fmt.Errorf("%w: receipt key %s is stored with another public key than entry %d logged", ledger.ErrKeysMismatch, k.KID, l.index)
		}
	}
	for _, k := range ks {
		at, retired := a.retired[k.KID]
		switch {
		case k.Status == store.KeyActive && retired:
			return fmt.Errorf("%w: receipt key %s is active, but entry %d retired it", ledger.ErrKeysMismatch, k.KID, at)
		case k.Status != store.KeyActive && !retired:
			return fmt.Errorf("%w: receipt key %s is retired, but no entry retired it", ledger.ErrKeysMismatch, k.KID)
		}
	}
	for _, kid := range a.kids {
		if !stored[kid] {
			return fmt.Errorf("%w: receipt key %s was introduced by entry %d, but the store no longer holds it", ledger.ErrKeysMismatch, kid, a.logged[kid].index)
		}
	}
	return nil
}
