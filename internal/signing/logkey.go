package signing

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/store"
)

// ErrNoLogKey: the log has no key yet (reads never create one).
var ErrNoLogKey = errors.New("log has no signing key")

// ErrWrongMasterKey: the master key does not open the keys the store
// already holds for an organization, so it is not the one they were sealed
// under. Nothing is sealed under it there: a key sealed under the wrong
// master key could never be opened by the right one, and a signing key is
// written once.
var ErrWrongMasterKey = errors.New("signing: the master key does not open this organization's keys; it is not the one they were sealed with")

// CheckMasterKey fails with ErrWrongMasterKey when organization tenantID
// holds a sealed key (its log, receipt or token keys, tried in that order)
// that the key ring's master key does not open; nil when it opens one, or
// when the organization holds none yet. Call it, in the organization's
// transaction, before sealing anything new for it.
func (k *Keyring) CheckMasterKey(ctx context.Context, keys store.KeyTx, tenantID string) error {
	if tenantID == "" {
		return errors.New("signing: CheckMasterKey checks an organization's keys; tenant id is empty")
	}
	for _, purpose := range []store.KeyPurpose{store.PurposeLog, store.PurposeReceipt, store.PurposeToken} {
		ks, err := keys.SigningKeys(ctx, purpose)
		if err != nil {
			return err
		}
		if len(ks) == 0 {
			continue
		}
		key := ks[0]
		if purpose == store.PurposeLog {
			var plain []byte
			plain, err = k.master.Open(key.SealedPrivate, LogScope{TenantID: tenantID}.binding(key.KID))
			clear(plain)
		} else {
			var priv []byte
			priv, err = k.openJWSKey(tenantID, key)
			clear(priv)
		}
		if errors.Is(err, secrets.ErrDecrypt) {
			return fmt.Errorf("%w (%s key %s)", ErrWrongMasterKey, purpose, key.KID)
		}
		return err
	}
	return nil
}

// LogScope names one log: an organization's (TenantID set) or the
// platform's (TenantID empty).
type LogScope struct {
	TenantID string
	// Origin is the log's origin line and note key name, e.g.
	// "agentsigna.example/t/acme". It is fixed when the key is created:
	// a log keeps its identity even if the configured origin later changes.
	Origin string
}

func (s LogScope) binding(kid string) secrets.Binding {
	table := "signing_keys"
	if s.TenantID == "" {
		table = "platform_signing_keys"
	}
	return secrets.Binding{Tenant: s.TenantID, Table: table, Row: kid, Purpose: string(store.PurposeLog)}
}

// Keyring creates and opens keys. It caches opened signers: a log key never
// rotates (a new key would be a new log), so the cache needs no invalidation.
type Keyring struct {
	master *secrets.MasterKey

	mu   sync.Mutex
	logs map[string]LogKey // by tenant id ("" = platform)

	receiptKeys *receiptCache       // opened receipt signers, by tenant id
	tokens      map[string]TokenKey // opened token keys, by tenant id; guarded by mu

	// checked holds the receipt and token key rows whose sealed private
	// half derives their public half (publicHalf), by their contents.
	checked sync.Map
}

// NewKeyring returns a key ring sealing with master.
func NewKeyring(master *secrets.MasterKey) (*Keyring, error) {
	if master == nil {
		return nil, errors.New("signing: a master key is required")
	}
	return &Keyring{master: master, logs: map[string]LogKey{}, tokens: map[string]TokenKey{},
		receiptKeys: &receiptCache{byTenant: map[string]cachedReceiptSigner{}}}, nil
}

// LogKey is a log's checkpoint signer and its public verifier key.
type LogKey struct {
	Signer   note.Signer
	Verifier string // name+hexid+base64, what auditors pin
}

// LogKey returns the log's active checkpoint key, creating it in keys' transaction
// when the log has none. Call it inside the transaction that will sign.
func (k *Keyring) LogKey(ctx context.Context, keys store.KeyTx, scope LogScope) (LogKey, error) {
	k.mu.Lock()
	lk, ok := k.logs[scope.TenantID]
	k.mu.Unlock()
	if ok {
		return lk, nil
	}
	// A batch creates the key under the log's lock; InitLog does not, so
	// either may lose to the other, and then takes its key.
	lk, created, err := openOrCreate(ErrNoLogKey,
		func() (LogKey, error) { return k.openLogKey(ctx, keys, scope) },
		func() (LogKey, error) { return k.createLogKey(ctx, keys, scope) })
	if err != nil || created {
		// A created key is not cached: if the caller's transaction rolls
		// back, the key never existed and nothing it signed was
		// published. The next call reads the committed key.
		return lk, err
	}
	k.mu.Lock()
	k.logs[scope.TenantID] = lk
	k.mu.Unlock()
	return lk, nil
}

// openOrCreate opens a key, creating it when open finds none (errNone).
// created says the key is the caller's transaction's own, not yet
// committed. The store keeps one active key a purpose: when another
// transaction made it first, this one's is refused (store.ErrConflict)
// once that one has committed, and the committed key is opened.
func openOrCreate[K any](errNone error, open, create func() (K, error)) (key K, created bool, err error) {
	key, err = open()
	if !errors.Is(err, errNone) {
		return key, false, err
	}
	key, err = create()
	if !errors.Is(err, store.ErrConflict) {
		return key, err == nil, err
	}
	key, err = open()
	return key, false, err
}

// LogVerifier returns the log's public verifier key; ErrNoLogKey if it has
// none. It is the stored one once checked against the sealed private key
// (openLogKey), as auditors pin it.
func (k *Keyring) LogVerifier(ctx context.Context, keys store.KeyTx, scope LogScope) (string, error) {
	k.mu.Lock()
	lk, ok := k.logs[scope.TenantID]
	k.mu.Unlock()
	if ok {
		return lk.Verifier, nil
	}
	lk, err := k.openLogKey(ctx, keys, scope)
	return lk.Verifier, err
}

func (k *Keyring) openLogKey(ctx context.Context, keys store.KeyTx, scope LogScope) (LogKey, error) {
	ks, err := keys.SigningKeys(ctx, store.PurposeLog)
	if err != nil {
		return LogKey{}, err
	}
	for _, key := range ks {
		if key.Status != store.KeyActive {
			continue
		}
		skey, err := k.master.Open(key.SealedPrivate, scope.binding(key.KID))
		if err != nil {
			return LogKey{}, fmt.Errorf("signing: open log key %s: %w", key.KID, err)
		}
		signer, err := note.NewSigner(string(skey))
		if err != nil {
			return LogKey{}, fmt.Errorf("signing: log key %s is not a note signer", key.KID)
		}
		// The stored public half is what auditors are given to pin: it
		// must be the sealed key's, or they would pin another.
		if !verifies(signer, string(key.PublicKey)) {
			return LogKey{}, fmt.Errorf("signing: log key %s: public half does not match", key.KID)
		}
		return LogKey{Signer: signer, Verifier: string(key.PublicKey)}, nil
	}
	return LogKey{}, ErrNoLogKey
}

// verifies tells whether vkey is signer's note verifier key: the same
// name and key hash, and a note signed by signer opens under it (the key
// hash alone is 32 bits).
func verifies(signer note.Signer, vkey string) bool {
	v, err := note.NewVerifier(vkey)
	if err != nil || v.Name() != signer.Name() || v.KeyHash() != signer.KeyHash() {
		return false
	}
	msg, err := note.Sign(&note.Note{Text: "agentsigna: log key check\n"}, signer)
	if err != nil {
		return false
	}
	_, err = note.Open(msg, note.VerifierList(v))
	return err == nil
}

func (k *Keyring) createLogKey(ctx context.Context, keys store.KeyTx, scope LogScope) (LogKey, error) {
	if scope.Origin == "" || strings.ContainsAny(scope.Origin, " +\n") {
		return LogKey{}, fmt.Errorf("signing: log origin %q cannot name a note key", scope.Origin)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, scope.Origin)
	if err != nil {
		return LogKey{}, fmt.Errorf("signing: generate log key: %w", err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return LogKey{}, err
	}
	kid := fmt.Sprintf("log-%08x", signer.KeyHash())
	if scope.TenantID != "" {
		if err := k.CheckMasterKey(ctx, keys, scope.TenantID); err != nil {
			return LogKey{}, err
		}
	}
	sealed, err := k.master.Seal([]byte(skey), scope.binding(kid))
	if err != nil {
		return LogKey{}, err
	}
	err = keys.InsertSigningKey(ctx, store.SigningKey{
		KID: kid, Purpose: store.PurposeLog, Algorithm: "Ed25519 (C2SP signed-note)",
		PublicKey: []byte(vkey), SealedPrivate: sealed, Status: store.KeyActive,
	})
	if err != nil {
		return LogKey{}, err
	}
	return LogKey{Signer: signer, Verifier: vkey}, nil
}
