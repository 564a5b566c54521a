package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"

	"github.com/agentsigna/agentsigna/internal/jose"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/store"
)

// SPEC: DESIGN §3 "Receipt" — a compact JWS, alg EdDSA (Ed25519), header kid
// and typ "agentsigna-receipt+jwt", signed with the organization's receipt key.
const (
	// ReceiptType is the receipt's JWS "typ" header (RFC 8725 §3.11: explicit
	// typing, so a receipt cannot be passed off as another kind of JWT).
	ReceiptType = "agentsigna-receipt+jwt"
	// ReceiptAlgorithm is the only JWS "alg" a receipt is signed or verified with.
	ReceiptAlgorithm = "EdDSA"
	// DefaultReceiptLifetime is exp − iat when the caller leaves Expiry zero.
	DefaultReceiptLifetime = 10 * time.Minute
)

// Receipt outcomes: only authorized actions get a receipt.
const (
	OutcomeAllow    = "allow"    // the policy allowed the action
	OutcomeApproved = "approved" // an escalated case reached its approvals
)

// ReceiptClaims are the claims of a receipt, exactly as DESIGN §3 lists them.
// iat, nbf and exp travel as NumericDate (RFC 7519 §2: whole seconds).
type ReceiptClaims struct {
	Issuer     string    `json:"iss"` // <public-url>/t/<tenant-slug>
	Subject    string    `json:"sub"` // the agent id
	ID         string    `json:"jti"` // the receipt id
	IssuedAt   time.Time `json:"-"`
	NotBefore  time.Time `json:"-"`
	Expiry     time.Time `json:"-"`
	Tenant     string    `json:"tenant"` // the organization id
	DecisionID string    `json:"decision_id"`
	Outcome    string    `json:"outcome"` // OutcomeAllow or OutcomeApproved
	// Action is the action as the agent requested it (a JSON object); Sign
	// writes it in its RFC 8785 form, the bytes action_sha256 is of.
	Action json.RawMessage `json:"action"`
	// ActionSHA256 is ActionDigest(Action); Sign fills it when empty.
	ActionSHA256 string            `json:"action_sha256"`
	Agent        ReceiptAgent      `json:"agent"`
	Approvals    []ReceiptApproval `json:"approvals"`
	Policy       ReceiptPolicy     `json:"policy"`
}

// ReceiptAgent is the agent the receipt authorizes.
type ReceiptAgent struct {
	ID       string `json:"id"`
	Sponsor  string `json:"sponsor"`
	RiskTier string `json:"risk_tier"`
}

// ReceiptApproval is one human approval of an escalated case (RFC 3339 time).
type ReceiptApproval struct {
	Approver string    `json:"approver"`
	At       time.Time `json:"at"`
}

// ReceiptPolicy names the policy revisions that decided.
type ReceiptPolicy struct {
	BaseRevision       string `json:"base_revision"`
	TenantRevision     string `json:"tenant_revision"`
	TenantBundleSHA256 string `json:"tenant_bundle_sha256"`
}

// receiptClaimsJSON shadows the time fields of ReceiptClaims with their
// NumericDate form; the embedded fields keep their own tags.
type receiptClaimsJSON struct {
	receiptClaimsFields
	IssuedAt  int64 `json:"iat"`
	NotBefore int64 `json:"nbf"`
	Expiry    int64 `json:"exp"`
}

// receiptClaimsFields is ReceiptClaims without its methods (no recursion).
type receiptClaimsFields ReceiptClaims

// MarshalJSON writes the wire form: times as NumericDate, approvals as an
// array even when there are none. Nothing is escaped for HTML: the action
// goes out byte for byte as given (Sign gives its RFC 8785 form), where
// json.Marshal would write <, >, & and U+2028 as \u escapes, and a
// verifier hashing the member as it stands would not find action_sha256.
func (c ReceiptClaims) MarshalJSON() ([]byte, error) {
	if c.Approvals == nil {
		c.Approvals = []ReceiptApproval{}
	}
	// encoding/json/v2: v1 escapes U+2028 and U+2029 even with
	// SetEscapeHTML(false).
	return jsonv2.Marshal(receiptClaimsJSON{
		receiptClaimsFields: receiptClaimsFields(c),
		IssuedAt:            c.IssuedAt.Unix(),
		NotBefore:           c.NotBefore.Unix(),
		Expiry:              c.Expiry.Unix(),
	})
}

// receiptClaimMembers are the claims ReceiptClaims reads, and their members.
var receiptClaimMembers = jose.Members{
	"iss": nil, "sub": nil, "jti": nil, "iat": nil, "nbf": nil, "exp": nil,
	"tenant": nil, "decision_id": nil, "outcome": nil, "action": nil, "action_sha256": nil,
	"agent":     {"id": nil, "sponsor": nil, "risk_tier": nil},
	"approvals": {"approver": nil, "at": nil},
	"policy":    {"base_revision": nil, "tenant_revision": nil, "tenant_bundle_sha256": nil},
}

// UnmarshalJSON reads the wire form. Missing times stay zero, which
// VerifyReceipt refuses. Claim names are case-sensitive (RFC 7519 §4): a
// duplicate, or a case variant of a claim read here ("OUTCOME"), is
// refused, since encoding/json v1 would read it where a JOSE library does
// not; other claims are ignored, and action is read whole.
func (c *ReceiptClaims) UnmarshalJSON(b []byte) error {
	if err := jose.Check(b, receiptClaimMembers); err != nil {
		return fmt.Errorf("signing: receipt claims: %w", err)
	}
	var w struct {
		receiptClaimsFields
		IssuedAt  *int64 `json:"iat"`
		NotBefore *int64 `json:"nbf"`
		Expiry    *int64 `json:"exp"`
	}
	// jsonv2 matches names exactly, where encoding/json folds case.
	if err := jsonv2.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = ReceiptClaims(w.receiptClaimsFields)
	c.IssuedAt, c.NotBefore, c.Expiry = unixOrZero(w.IssuedAt), unixOrZero(w.NotBefore), unixOrZero(w.Expiry)
	return nil
}

func unixOrZero(s *int64) time.Time {
	if s == nil {
		return time.Time{}
	}
	return time.Unix(*s, 0).UTC()
}

// ActionDigest returns action_sha256: base64url (no padding) of the SHA-256
// of the RFC 8785 canonical JSON of action. action must be one JSON object
// without duplicate member names (RFC 8785 §3.1 requires I-JSON, RFC 7493:
// with duplicates, two readers could see two different actions under one digest).
func ActionDigest(action json.RawMessage) (string, error) {
	_, digest, err := canonicalAction(action)
	return digest, err
}

// canonicalAction is action's RFC 8785 form and ActionDigest.
func canonicalAction(action json.RawMessage) (json.RawMessage, string, error) {
	// Canonical refuses what is not I-JSON: duplicate names at any depth,
	// invalid UTF-8, anything after the value.
	canonical, err := Canonical(action)
	if err != nil {
		return nil, "", fmt.Errorf("signing: action is not canonicalizable JSON: %w", err)
	}
	if canonical[0] != '{' {
		return nil, "", errors.New("signing: action: not a JSON object")
	}
	sum := sha256.Sum256(canonical)
	return canonical, base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// CanonicalActionDigest is ActionDigest of an action already in RFC 8785
// form, checked as ActionDigest checks it: the caller that canonicalized
// it need not pay for parsing it again.
func CanonicalActionDigest(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ReceiptSigner signs one organization's receipts with its active receipt
// key. It never prints its private key: every fmt verb and slog show the kid.
type ReceiptSigner struct {
	tenantID string
	kid      string
	// Behind a pointer so that even a reflective printer that cannot call
	// Format (a ReceiptSigner in an unexported field printed with %+v)
	// shows an address, not the key.
	key *receiptPrivateKey
	// signingPrefix is base64url(protected header) + ".".
	signingPrefix []byte
}

type receiptPrivateKey struct{ k ed25519.PrivateKey }

// KID is the key id the signer puts in each receipt's header.
func (s *ReceiptSigner) KID() string { return s.kid }

// PublicKey is the verification key published in the JWKS under KID.
func (s *ReceiptSigner) PublicKey() ed25519.PublicKey {
	return s.key.k.Public().(ed25519.PublicKey)
}

// String names the signer by kid only.
func (s *ReceiptSigner) String() string { return "ReceiptSigner(" + s.kid + ")" }

// GoString is String, for %#v.
func (s *ReceiptSigner) GoString() string { return s.String() }

// Format prints String for every verb and flag.
func (s *ReceiptSigner) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// LogValue implements slog.LogValuer: a signer logged by mistake shows its kid.
func (s *ReceiptSigner) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Sign returns the receipt as a compact JWS (header alg EdDSA, kid, typ
// ReceiptType). Zero times default to: IssuedAt now, NotBefore IssuedAt,
// Expiry IssuedAt + DefaultReceiptLifetime; times are truncated to seconds.
// An empty Tenant is the signer's organization; ActionSHA256, when empty, is
// computed, and when set must match Action.
func (s *ReceiptSigner) Sign(c ReceiptClaims) (string, error) {
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = c.IssuedAt
	}
	if c.Expiry.IsZero() {
		c.Expiry = c.IssuedAt.Add(DefaultReceiptLifetime)
	}
	if c.Tenant == "" {
		c.Tenant = s.tenantID
	}
	// One organization's key must never vouch for another's decision.
	if c.Tenant != s.tenantID {
		return "", errors.New("signing: receipt names another organization than its key's")
	}
	// The action is signed in the RFC 8785 form its digest is of, so that
	// the member, as it stands in the payload, hashes to action_sha256.
	canonical, digest, err := canonicalAction(c.Action)
	if err != nil {
		return "", err
	}
	c.Action = canonical
	switch c.ActionSHA256 {
	case "":
		c.ActionSHA256 = digest
	case digest:
	default:
		return "", errors.New("signing: action_sha256 does not match action")
	}
	// A copy: the caller's slice is not ours to rewrite.
	c.Approvals = slices.Clone(c.Approvals)
	for i := range c.Approvals {
		c.Approvals[i].At = c.Approvals[i].At.UTC()
	}
	if err := c.check(); err != nil {
		return "", err
	}
	// MarshalJSON itself: json.Marshal would scan its output again.
	payload, err := c.MarshalJSON()
	if err != nil {
		return "", fmt.Errorf("signing: encode receipt: %w", err)
	}
	// The compact serialization (RFC 7515 §7.1): the signer's encoded
	// header, then the payload, signed as one signing input (EdDSA over
	// Ed25519, RFC 8037: the input itself, no digest), then the
	// signature. jws.Sign would build, marshal and encode the same header
	// again for every receipt.
	out := make([]byte, 0, len(s.signingPrefix)+jwsBase64.EncodedLen(len(payload))+1+jwsBase64.EncodedLen(ed25519.SignatureSize))
	out = append(out, s.signingPrefix...)
	out = jwsBase64.AppendEncode(out, payload)
	sig := ed25519.Sign(s.key.k, out)
	out = append(out, '.')
	return string(jwsBase64.AppendEncode(out, sig)), nil
}

// jwsBase64 is JWS's base64url without padding (RFC 7515 §2).
var jwsBase64 = base64.RawURLEncoding

// protectedHeader is the JWS protected header a receipt is signed with
// (DESIGN §3); jose.Header is how VerifyReceipt reads one.
type protectedHeader struct {
	Alg string `json:"alg"`
	KID string `json:"kid"`
	Typ string `json:"typ"`
}

// newReceiptSigner returns the signer of kid's key, with the encoded
// protected header that starts every receipt's signing input.
func newReceiptSigner(tenantID, kid string, priv ed25519.PrivateKey) (*ReceiptSigner, error) {
	hdr, err := json.Marshal(protectedHeader{Alg: ReceiptAlgorithm, KID: kid, Typ: ReceiptType})
	if err != nil {
		return nil, fmt.Errorf("signing: receipt header: %w", err)
	}
	return &ReceiptSigner{
		tenantID: tenantID, kid: kid, key: &receiptPrivateKey{priv},
		signingPrefix: jwsbb.SigningPrefix(nil, hdr, jwsBase64),
	}, nil
}

// check refuses a receipt missing a claim a verifier relies on. It runs on
// both sides: Sign never issues what VerifyReceipt would refuse.
func (c *ReceiptClaims) check() error {
	switch {
	case c.Issuer == "" || c.Subject == "" || c.ID == "" || c.Tenant == "" || c.DecisionID == "":
		return errors.New("receipt lacks iss, sub, jti, tenant or decision_id")
	case c.Outcome != OutcomeAllow && c.Outcome != OutcomeApproved:
		return fmt.Errorf("receipt outcome %q is neither %q nor %q", c.Outcome, OutcomeAllow, OutcomeApproved)
	case c.IssuedAt.IsZero() || c.NotBefore.IsZero() || c.Expiry.IsZero():
		return errors.New("receipt lacks iat, nbf or exp")
	case !c.Expiry.After(c.NotBefore):
		return errors.New("receipt expires before it is valid")
	case c.Agent.ID != c.Subject:
		return errors.New("receipt agent.id differs from sub")
	case len(c.Action) == 0 || c.ActionSHA256 == "":
		return errors.New("receipt lacks action or action_sha256")
	}
	return nil
}

// newReceiptKey generates a receipt key pair. Its kid is the RFC 7638 JWK
// thumbprint of the public key: unique without coordination between replicas,
// and no kid can ever name two different keys.
func newReceiptKey() (kid string, priv ed25519.PrivateKey, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, fmt.Errorf("signing: generate receipt key: %w", err)
	}
	jk, err := jwk.Import(pub)
	if err != nil {
		return "", nil, fmt.Errorf("signing: receipt key as JWK: %w", err)
	}
	tp, err := jk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", nil, fmt.Errorf("signing: receipt key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), priv, nil
}

// receiptKeyAlgorithm is what a receipt key's Algorithm column says: the JWS
// alg it signs with (JWKS publishes it as the key's "alg").
const receiptKeyAlgorithm = ReceiptAlgorithm

// receiptCacheTTL bounds how long an opened receipt key is used without
// re-reading the store: after another replica rotates the key, this one stops
// signing with the retired key within this time (its receipts still verify:
// retired keys stay in the JWKS).
const receiptCacheTTL = time.Minute

func receiptBinding(tenantID, kid string) secrets.Binding {
	return secrets.Binding{Tenant: tenantID, Table: "signing_keys", Row: kid, Purpose: string(store.PurposeReceipt)}
}

// CachedReceiptSigner returns the organization's receipt signer when this
// Keyring holds it (read within receiptCacheTTL), without a
// transaction; ReceiptSigner otherwise.
func (k *Keyring) CachedReceiptSigner(tenantID string) (*ReceiptSigner, bool) {
	if tenantID == "" {
		return nil, false
	}
	return k.receipts().get(tenantID)
}

// ReceiptSigner returns the organization's active receipt signer;
// ErrNoReceiptKey when it has none. It never creates a key: a receipt key
// comes into being only through InstallReceiptKey, which the service calls
// in the ledger batch that records it (decision.ReceiptKeys).
func (k *Keyring) ReceiptSigner(ctx context.Context, keys store.KeyTx, tenantID string) (*ReceiptSigner, error) {
	if tenantID == "" {
		return nil, errors.New("signing: receipts belong to an organization; tenant id is empty")
	}
	cache := k.receipts()
	if s, ok := cache.get(tenantID); ok {
		return s, nil
	}
	s, err := k.openReceiptKey(ctx, keys, tenantID)
	if err != nil {
		return nil, err
	}
	// Read from the store, so committed — unless this very transaction
	// installed it, and may yet roll back: take the signer in a
	// transaction of its own after the one that installs the key.
	cache.put(tenantID, s)
	return s, nil
}

// ErrNoReceiptKey: the organization has no active receipt key yet.
var ErrNoReceiptKey = errors.New("signing: the organization has no receipt key")

// ReceiptKey is a new receipt key, made and sealed but not stored, so that
// the ledger entry recording it can name it (KID, PublicJWK) in the batch
// whose transaction stores it (InstallReceiptKey). It holds its private
// half only sealed; a *ReceiptKey prints as its kid under every fmt verb
// and slog.
type ReceiptKey struct {
	keyring  *Keyring // the one that sealed it
	tenantID string
	kid      string
	public   ed25519.PublicKey
	sealed   []byte
}

// KID is the new key's id: its RFC 7638 thumbprint, as in the JWKS.
func (r *ReceiptKey) KID() string { return r.kid }

// PublicJWK is the new key as the JWKS will publish it.
func (r *ReceiptKey) PublicJWK() json.RawMessage {
	b, _ := json.Marshal(publicJWK{
		Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(r.public),
		Kid: r.kid, Alg: ReceiptAlgorithm, Use: "sig",
	})
	return b
}

// String names the key by kid only.
func (r *ReceiptKey) String() string { return "ReceiptKey(" + r.kid + ")" }

// GoString is String, for %#v.
func (r *ReceiptKey) GoString() string { return r.String() }

// Format prints String for every verb and flag.
func (r *ReceiptKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, r.String()) }

// LogValue implements slog.LogValuer: the kid only.
func (r *ReceiptKey) LogValue() slog.Value { return slog.StringValue(r.String()) }

// NewReceiptKey makes organization tenantID a new receipt key, sealed
// under the master key and bound to the organization and kid. Nothing is
// stored until InstallReceiptKey.
func (k *Keyring) NewReceiptKey(tenantID string) (*ReceiptKey, error) {
	if tenantID == "" {
		return nil, errors.New("signing: receipts belong to an organization; tenant id is empty")
	}
	kid, priv, err := newReceiptKey()
	if err != nil {
		return nil, err
	}
	defer clear(priv)
	// The seed is the canonical private key (RFC 8032 §5.1.5).
	sealed, err := k.master.Seal(priv.Seed(), receiptBinding(tenantID, kid))
	if err != nil {
		return nil, err
	}
	return &ReceiptKey{
		keyring: k, tenantID: tenantID, kid: kid,
		public: bytes.Clone(priv.Public().(ed25519.PublicKey)), sealed: sealed,
	}, nil
}

// InstallReceiptKey makes key its organization's active receipt key in
// keys' transaction, retiring the active keys — which must be exactly
// retiring (none, for an organization's first key), the keys the caller
// read and recorded: a key added or retired since fails with
// store.ErrConflict, so that what records the change never says other than
// what was done. Retired keys stay in the JWKS: receipts they signed keep
// verifying. Under a master key that does not open the organization's
// keys it fails with ErrWrongMasterKey, as key was sealed under it. On
// error nothing must commit (the transaction rolls back).
func (k *Keyring) InstallReceiptKey(ctx context.Context, keys store.KeyTx, key *ReceiptKey, retiring []string) error {
	if key == nil || key.keyring != k {
		return errors.New("signing: InstallReceiptKey needs a key this Keyring made (NewReceiptKey)")
	}
	// Dropped first and whatever happens next: a rolled-back change only
	// costs a re-read.
	k.receipts().drop(key.tenantID)
	if err := k.CheckMasterKey(ctx, keys, key.tenantID); err != nil {
		return err
	}
	ks, err := keys.SigningKeys(ctx, store.PurposeReceipt)
	if err != nil {
		return err
	}
	var active []string
	for _, old := range ks {
		if old.Status == store.KeyActive {
			active = append(active, old.KID)
		}
	}
	if !sameKIDs(active, retiring) {
		return fmt.Errorf("%w: the organization's receipt keys changed meanwhile; run it again", store.ErrConflict)
	}
	// Retired first: the store keeps one active key a purpose.
	now := time.Now()
	for _, kid := range active {
		err := keys.RetireSigningKey(ctx, kid, now)
		if errors.Is(err, store.ErrNotFound) {
			// Read active, retired since by another transaction.
			err = fmt.Errorf("%w: another change retired it", store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("signing: retire receipt key %s: %w", kid, err)
		}
	}
	return keys.InsertSigningKey(ctx, store.SigningKey{
		KID: key.kid, Purpose: store.PurposeReceipt, Algorithm: receiptKeyAlgorithm,
		PublicKey: bytes.Clone(key.public), SealedPrivate: key.sealed, Status: store.KeyActive,
	})
}

// sameKIDs reports whether a and b hold the same kids, in any order.
func sameKIDs(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// openReceiptKey opens the active key (the store keeps at most one).
func (k *Keyring) openReceiptKey(ctx context.Context, keys store.KeyTx, tenantID string) (*ReceiptSigner, error) {
	ks, err := keys.SigningKeys(ctx, store.PurposeReceipt)
	if err != nil {
		return nil, err
	}
	for i := len(ks) - 1; i >= 0; i-- {
		key := ks[i]
		if key.Status != store.KeyActive {
			continue
		}
		priv, err := k.openJWSKey(tenantID, key)
		if err != nil {
			return nil, err
		}
		return newReceiptSigner(tenantID, key.KID, priv)
	}
	return nil, ErrNoReceiptKey
}

// receiptCache holds a Keyring's opened receipt signers by organization.
type receiptCache struct {
	mu       sync.Mutex
	byTenant map[string]cachedReceiptSigner
}

type cachedReceiptSigner struct {
	signer   *ReceiptSigner
	openedAt time.Time
}

func (c *receiptCache) get(tenantID string) (*ReceiptSigner, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byTenant[tenantID]
	if !ok || time.Since(e.openedAt) > receiptCacheTTL {
		return nil, false
	}
	return e.signer, true
}

func (c *receiptCache) put(tenantID string, s *ReceiptSigner) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byTenant[tenantID] = cachedReceiptSigner{signer: s, openedAt: time.Now()}
}

func (c *receiptCache) drop(tenantID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byTenant, tenantID)
}

func (k *Keyring) receipts() *receiptCache { return k.receiptKeys }
