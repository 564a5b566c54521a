package decision

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// ErrFourEyes: activating a revision needs a second person (DESIGN §3:
// activation is itself a policy.* action).
var ErrFourEyes = errors.New("activation needs a second person: the approver must differ from who activates")

// Organization names the organization a policy operation is for.
type Organization struct {
	ID   string
	Slug string
}

// Policies keeps organizations' policy bundles: uploads (checked the way
// `agentsigna policy check` does, against the organization's registered
// verification keys), activations and rollbacks — each recorded in the
// organization's ledger — and the engine's active revision per organization.
type Policies struct {
	tenants store.TenantStore
	ledger  *ledger.Ledger
	engine  *bundles.Engine
	limits  bundles.Limits

	// installed is, per organization, the seq of the activation whose
	// policy the engine holds (0: none activated); absent until this
	// process has loaded or activated one. Guarded by mu, which also
	// orders the engine's updates, so that an older load finishing late
	// never replaces a newer activation; every decision reads it (shared).
	mu        sync.RWMutex
	installed map[string]uint64
}

// NewPolicies returns the policy service. limits zero means
// bundles.DefaultLimits.
func NewPolicies(tenants store.TenantStore, l *ledger.Ledger, engine *bundles.Engine, limits bundles.Limits) *Policies {
	if limits == (bundles.Limits{}) {
		limits = bundles.DefaultLimits()
	}
	return &Policies{tenants: tenants, ledger: l, engine: engine, limits: limits, installed: map[string]uint64{}}
}

// install puts the policy of activation seq into the engine, unless the
// engine already holds a newer activation's.
func (p *Policies) install(orgID string, seq uint64, policy *bundles.Policy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.installed[orgID]; ok && cur > seq {
		return
	}
	p.installed[orgID] = seq
	p.engine.Activate(orgID, policy)
}

// Current reports whether the engine holds the organization's activation
// seq, or a newer one.
func (p *Policies) Current(orgID string, seq uint64) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	cur, ok := p.installed[orgID]
	return ok && cur >= seq
}

// policyRecord is what the ledger entry of a policy change digests.
type policyRecord struct {
	Event       string `json:"event"` // upload | activate | rollback
	Revision    string `json:"revision"`
	BundleSHA   string `json:"bundle_sha256"`
	SignedBy    string `json:"signed_by,omitempty"`
	By          string `json:"by"`
	ApprovedBy  string `json:"approved_by,omitempty"`
	PreviousRev string `json:"previous_revision,omitempty"`
}

// Upload checks and stores a bundle revision, and records it in the
// organization's ledger. Uploading the same bundle again is a no-op; the
// same revision with other content is bundles.ErrRevisionConflict.
func (p *Policies) Upload(ctx context.Context, org Organization, raw []byte, uploader string) (*bundles.Bundle, error) {
	if err := checkActor("uploader", uploader); err != nil {
		return nil, err
	}
	var opts bundles.ReadOptions
	var history []bundles.KnownRevision
	err := p.tenants.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if opts, err = p.readOptions(ctx, tx.Policies()); err != nil {
			return err
		}
		history, err = knownRevisions(ctx, tx.Policies())
		return err
	})
	if err != nil {
		return nil, err
	}
	_, b, err := bundles.Load(ctx, raw, opts)
	if err != nil {
		return nil, err
	}
	if err := bundles.CheckUpload(history, bundles.KnownRevision{Revision: b.Revision, Digest: b.Digest}); err != nil {
		return nil, err
	}
	for _, h := range history {
		if h.Revision == b.Revision {
			return b, nil // the same bundle again
		}
	}
	digest, _ := hex.DecodeString(b.Digest)
	if err := p.record(ctx, org, "policy.upload", policyRecord{Event: "upload", Revision: b.Revision, BundleSHA: b.Digest, SignedBy: b.SignedBy, By: uploader}); err != nil {
		return nil, err
	}
	err = p.tenants.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Policies().InsertBundle(ctx, store.PolicyBundle{
			Revision: b.Revision, Digest: digest, Bundle: raw, Manifest: string(b.Manifest),
			Signed: b.SignedBy != "", UploadedBy: uploader,
		})
	})
	return b, err
}

// Activate makes a stored revision the organization's active policy. It
// needs two people (fourEyes); going back to an older
// revision needs rollback (and rollback is refused for anything else). The
// change is written to the ledger before it takes effect, so no active
// revision exists that the ledger does not show.
func (p *Policies) Activate(ctx context.Context, org Organization, revision, activatedBy, approvedBy string, rollback bool) (store.PolicyActivation, error) {
	if err := fourEyes(activatedBy, approvedBy); err != nil {
		return store.PolicyActivation{}, err
	}
	var stored store.PolicyBundle
	var history []bundles.KnownRevision
	var active string
	var opts bundles.ReadOptions
	err := p.tenants.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if stored, err = tx.Policies().Bundle(ctx, revision); err != nil {
			return err
		}
		if history, err = knownRevisions(ctx, tx.Policies()); err != nil {
			return err
		}
		if act, _, err := tx.Policies().ActiveBundle(ctx); err == nil {
			active = act.Revision
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		opts, err = p.readOptions(ctx, tx.Policies())
		return err
	})
	if err != nil {
		return store.PolicyActivation{}, err
	}
	digest := hex.EncodeToString(stored.Digest)
	if err := bundles.CheckActivation(history, active, bundles.KnownRevision{Revision: revision, Digest: digest}, rollback); err != nil {
		return store.PolicyActivation{}, err
	}
	// Compiled again from the stored bytes, under today's keys and limits.
	policy, _, err := bundles.Load(ctx, stored.Bundle, opts)
	if err != nil {
		return store.PolicyActivation{}, err
	}
	kind, event := "policy.activate", "activate"
	if rollback {
		kind, event = "policy.rollback", "rollback"
	}
	rec := policyRecord{Event: event, Revision: revision, BundleSHA: digest, By: activatedBy, ApprovedBy: approvedBy, PreviousRev: active}
	if err := p.record(ctx, org, kind, rec); err != nil {
		return store.PolicyActivation{}, err
	}
	var act store.PolicyActivation
	err = p.tenants.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		act, err = tx.Policies().Activate(ctx, store.PolicyActivation{Revision: revision, Rollback: rollback, ActivatedBy: activatedBy, ApprovedBy: approvedBy})
		return err
	})
	if err != nil {
		return act, err
	}
	p.install(org.ID, act.Seq, policy)
	return act, nil
}

// AddVerificationKey registers a PEM public key; from then on the
// organization's bundles must be signed. It is a policy change, recorded.
func (p *Policies) AddVerificationKey(ctx context.Context, org Organization, id string, pem []byte, by string) error {
	if err := checkActor("by", by); err != nil {
		return err
	}
	if _, err := bundles.ParseVerificationKey(id, "", pem); err != nil {
		return err
	}
	rec, _ := json.Marshal(map[string]string{"event": "verification_key", "kid": id, "public_pem": string(pem), "by": by})
	if _, err := p.ledger.Append(ctx, p.ledger.TenantLog(org.ID, org.Slug), ledger.Entry{Kind: "policy.verification_key", Subject: id, Record: rec}); err != nil {
		return err
	}
	return p.tenants.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		return tx.Policies().AddVerificationKey(ctx, store.PolicyVerificationKey{KID: id, PublicPEM: string(pem)})
	})
}

// maxActor bounds who a policy change names.
const maxActor = 256

// checkActor checks who a policy change names: 1 to maxActor bytes of
// UTF-8, not blank, no control or bidirectional-control character (it is
// recorded in the ledger and shown to auditors).
func checkActor(field, name string) error {
	if strings.TrimSpace(name) == "" || len(name) > maxActor || !utf8.ValidString(name) {
		return fmt.Errorf("%w: %s must name someone (1-%d bytes of UTF-8)", store.ErrInvalid, field, maxActor)
	}
	for _, r := range name {
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("%w: %s holds the control character %U", store.ErrInvalid, field, r)
		}
	}
	return nil
}

// fourEyes checks that an activation names two people: both valid names
// (checkActor), and not one name spelled two ways: compared without
// surrounding space, in Unicode NFKC (full-width and other compatibility
// forms fold to the plain letter) and case-folded.
func fourEyes(activatedBy, approvedBy string) error {
	if err := checkActor("activated by", activatedBy); err != nil {
		return fmt.Errorf("%w (%w)", ErrFourEyes, err)
	}
	if err := checkActor("approved by", approvedBy); err != nil {
		return fmt.Errorf("%w (%w)", ErrFourEyes, err)
	}
	same := func(s string) string { return norm.NFKC.String(strings.TrimSpace(s)) }
	if strings.EqualFold(same(activatedBy), same(approvedBy)) {
		return ErrFourEyes
	}
	return nil
}

// LoadActive compiles the organization's active revision into the engine:
// on the first decision after a (re)start, and whenever a decision reads a
// newer activation than the engine holds (made by another process, such
// as `agentsigna policy activate`, or another replica). No active revision
// leaves the organization with none: every request is denied no_authority.
func (p *Policies) LoadActive(ctx context.Context, org Organization) error {
	var act store.PolicyActivation
	var stored store.PolicyBundle
	var opts bundles.ReadOptions
	err := p.tenants.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if act, stored, err = tx.Policies().ActiveBundle(ctx); err != nil {
			return err
		}
		opts, err = p.readOptions(ctx, tx.Policies())
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		p.install(org.ID, 0, nil)
		return nil
	}
	if err != nil {
		return err
	}
	policy, _, err := bundles.Load(ctx, stored.Bundle, opts)
	if err != nil {
		return fmt.Errorf("%w: active revision %q: %w", errBundleDoesNotLoad, stored.Revision, err)
	}
	p.install(org.ID, act.Seq, policy)
	return nil
}

// errBundleDoesNotLoad: the active revision's stored bundle does not read
// or compile in this process (unlike a store error, it will not go away
// by itself).
var errBundleDoesNotLoad = errors.New("the bundle does not load")

func (p *Policies) record(ctx context.Context, org Organization, kind string, rec policyRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = p.ledger.Append(ctx, p.ledger.TenantLog(org.ID, org.Slug), ledger.Entry{Kind: kind, Subject: rec.Revision, Record: b})
	return err
}

func (p *Policies) readOptions(ctx context.Context, ptx store.PolicyTx) (bundles.ReadOptions, error) {
	keys, err := ptx.VerificationKeys(ctx)
	if err != nil {
		return bundles.ReadOptions{}, err
	}
	opts := bundles.ReadOptions{Limits: p.limits}
	for _, k := range keys {
		vk, err := bundles.ParseVerificationKey(k.KID, "", []byte(k.PublicPEM))
		if err != nil {
			return opts, fmt.Errorf("stored verification key %q: %w", k.KID, err)
		}
		opts.Keys = append(opts.Keys, vk)
	}
	return opts, nil
}

func knownRevisions(ctx context.Context, ptx store.PolicyTx) ([]bundles.KnownRevision, error) {
	list, err := ptx.Bundles(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]bundles.KnownRevision, len(list))
	for i, b := range list {
		out[i] = bundles.KnownRevision{Revision: b.Revision, Digest: hex.EncodeToString(b.Digest)}
	}
	return out, nil
}
