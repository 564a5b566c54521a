package decision

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/agentsigna/agentsigna/bundles"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/internal/text"
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
	workers *bundles.Workers // nil: compile and evaluate in this process

	// installed is, per organization, the seq of the activation whose
	// policy the engine holds (0: none activated); absent until this
	// process has loaded or activated one. Guarded by mu, which also
	// orders the engine's updates, so that an older load finishing late
	// never replaces a newer activation; every decision reads it (shared).
	mu        sync.RWMutex
	installed map[string]uint64
}

// PoliciesOptions configure Policies; the zero value is the default.
type PoliciesOptions struct {
	// Limits bound a bundle's intake; the zero value means
	// bundles.DefaultLimits().
	Limits bundles.Limits
	// Workers, when set, compile organization policies, and evaluate the
	// ones the engine holds, in worker processes: what a policy does can
	// then end its worker but not this process. The service sets it. Nil
	// compiles and evaluates in this process, as the operator's own tools
	// (policy push, activate) do.
	Workers *bundles.Workers
}

// NewPolicies returns the policy service.
func NewPolicies(tenants store.TenantStore, l *ledger.Ledger, engine *bundles.Engine, opts PoliciesOptions) *Policies {
	if opts.Limits == (bundles.Limits{}) {
		opts.Limits = bundles.DefaultLimits()
	}
	return &Policies{tenants: tenants, ledger: l, engine: engine, limits: opts.Limits, workers: opts.Workers, installed: map[string]uint64{}}
}

// load reads and compiles a bundle: in a worker when the service has
// Workers, else in this process.
func (p *Policies) load(ctx context.Context, raw []byte, opts bundles.ReadOptions) (*bundles.Policy, *bundles.Bundle, error) {
	if p.workers != nil {
		// A caller that leaves does not stop the compilation (the next
		// decision would start it over): Workers bounds it by
		// CompileTimeout, not ctx.
		return p.workers.Load(ctx, raw, opts)
	}
	return bundles.Load(ctx, raw, opts)
}

// install puts the policy of activation seq into the engine, unless the
// engine already holds a newer activation's. The policy that leaves (the
// one replaced, or this one when it is not installed) is closed: its
// worker, if it has one, stops once decisions holding it have ended.
func (p *Policies) install(orgID string, seq uint64, policy *bundles.Policy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.installed[orgID]; ok && cur > seq {
		policy.Close()
		return
	}
	p.installed[orgID] = seq
	if previous := p.engine.Activate(orgID, policy); previous != policy {
		previous.Close()
	}
}

// Current reports whether the engine holds the organization's activation
// seq, or a newer one.
func (p *Policies) Current(orgID string, seq uint64) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	cur, ok := p.installed[orgID]
	return ok && cur >= seq
}

// Kinds of the ledger entries of policy changes.
const (
	kindPolicyUpload          = "policy.upload"
	kindPolicyVerificationKey = "policy.verification_key"
)

// verificationKeyRecord is what a policy.verification_key entry digests.
// Its members are in name order, as the map earlier builds marshalled.
type verificationKeyRecord struct {
	Algorithm string `json:"algorithm"`
	By        string `json:"by"`
	Event     string `json:"event"` // verification_key
	KID       string `json:"kid"`
	PublicPEM string `json:"public_pem"`
}

// policyRecord is what the ledger entry of a policy change digests.
// BundleSHA is the bundle's SHA-256 in standard base64, as DESIGN §3
// writes every hash in JSON. Builds before 2026-11-28 wrote hex, so
// readers take either (recordsDigest). Their processes read hex only;
// they cannot share a database with this build, whose PostgreSQL schema
// (0018's binding) confines them to no organization's rows.
type policyRecord struct {
	Event       string `json:"event"`         // upload | activate | rollback
	Seq         uint64 `json:"seq,omitempty"` // an activation's, the row it is
	Revision    string `json:"revision"`
	BundleSHA   string `json:"bundle_sha256"`
	SignedBy    string `json:"signed_by,omitempty"`
	By          string `json:"by"`
	ApprovedBy  string `json:"approved_by,omitempty"`
	PreviousRev string `json:"previous_revision,omitempty"`
}

// Uploaded is what Upload did with a bundle.
type Uploaded struct {
	*bundles.Bundle
	// Stored is false when the same bundle was stored already: nothing was
	// stored or logged.
	Stored bool
}

// Upload checks and stores a bundle revision, and records it in the
// organization's ledger: the entry and the stored bundle commit together
// (see change). Uploading the same bundle again is a no-op (Stored false);
// the same revision with other content is bundles.ErrRevisionConflict,
// even when the other was uploaded a moment before, elsewhere.
func (p *Policies) Upload(ctx context.Context, org Organization, raw []byte, uploader string) (Uploaded, error) {
	if err := checkActor("uploader", uploader); err != nil {
		return Uploaded{}, err
	}
	var keys []store.PolicyVerificationKey
	var history []bundles.KnownRevision
	err := p.tenants.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if keys, err = tx.Policies().VerificationKeys(ctx); err != nil {
			return err
		}
		history, err = knownRevisions(ctx, tx.Policies())
		return err
	})
	if err != nil {
		return Uploaded{}, err
	}
	opts, err := p.provenOptions(ctx, org, keys)
	if err != nil {
		return Uploaded{}, err
	}
	checked, b, err := p.load(ctx, raw, opts)
	if err != nil {
		return Uploaded{}, err
	}
	checked.Close() // compiled to check it; Activate compiles it again
	candidate := bundles.KnownRevision{Revision: b.Revision, Digest: b.Digest}
	// What the batch checks again, with the log locked: the revision is
	// new (or this very bundle), and the bundle was read under the keys
	// the organization still has.
	isNew := func(history []bundles.KnownRevision) error {
		if err := bundles.CheckUpload(history, candidate); err != nil {
			return err
		}
		for _, h := range history {
			if h.Revision == b.Revision {
				return errSameBundle
			}
		}
		return nil
	}
	if err := isNew(history); err != nil {
		if errors.Is(err, errSameBundle) {
			return p.storedUpload(ctx, org, b)
		}
		return Uploaded{}, err
	}
	digest, _ := hex.DecodeString(b.Digest)
	err = p.change(ctx, org, kindPolicyUpload, policyRecord{Event: "upload", Revision: b.Revision, BundleSHA: base64.StdEncoding.EncodeToString(digest), SignedBy: b.SignedBy, By: uploader},
		func(ctx context.Context, tx store.TenantTx) error {
			if err := sameKeys(ctx, tx.Policies(), opts); err != nil {
				return err
			}
			history, err := knownRevisions(ctx, tx.Policies())
			if err != nil {
				return err
			}
			return isNew(history)
		},
		func(ctx context.Context, tx store.TenantTx, index uint64) error {
			return tx.Policies().InsertBundle(ctx, store.PolicyBundle{
				Revision: b.Revision, Digest: digest, Bundle: raw, Manifest: string(b.Manifest),
				Signed: b.SignedBy != "", UploadedBy: uploader, LedgerIndex: &index,
			})
		})
	if errors.Is(err, errSameBundle) {
		return p.storedUpload(ctx, org, b) // uploaded meanwhile, by another process
	}
	if err != nil {
		return Uploaded{}, err
	}
	return Uploaded{Bundle: b, Stored: true}, nil
}

// storedUpload answers an upload of a bundle stored already: b, once the
// stored row is the upload the log records (checkUpload). A row planted
// with the very bytes someone was about to upload would otherwise be
// reported uploaded, and never activate.
func (p *Policies) storedUpload(ctx context.Context, org Organization, b *bundles.Bundle) (Uploaded, error) {
	var stored store.PolicyBundle
	err := p.tenants.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		stored, err = tx.Policies().Bundle(ctx, b.Revision)
		return err
	})
	if err != nil {
		return Uploaded{}, err
	}
	if err := p.checkUpload(ctx, org, stored); err != nil {
		return Uploaded{}, err
	}
	return Uploaded{Bundle: b}, nil
}

// errSameBundle: the bundle uploaded is stored already.
var errSameBundle = errors.New("the same bundle is stored already")

// Activate makes a stored revision the organization's active policy. It
// needs two people: activatedBy and approvedBy named, and not the same
// name (compared as text.Fold folds them). Going back
// to an older revision needs rollback (and rollback is refused for
// anything else). The ledger entry and the activation commit together
// (see change), and only if the active revision is still the one the
// decision to activate was made against: two activations at once cannot
// both pass the rollback rule, or record a stale previous revision.
func (p *Policies) Activate(ctx context.Context, org Organization, revision, activatedBy, approvedBy string, rollback bool) (store.PolicyActivation, error) {
	if err := fourEyes(activatedBy, approvedBy); err != nil {
		return store.PolicyActivation{}, err
	}
	var stored store.PolicyBundle
	var history []bundles.KnownRevision
	var active string
	var seq uint64
	var keys []store.PolicyVerificationKey
	err := p.tenants.InTenantTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if stored, err = tx.Policies().Bundle(ctx, revision); err != nil {
			return err
		}
		if history, err = knownRevisions(ctx, tx.Policies()); err != nil {
			return err
		}
		if active, err = activeRevision(ctx, tx.Policies()); err != nil {
			return err
		}
		if seq, err = nextActivation(ctx, tx.Policies()); err != nil {
			return err
		}
		keys, err = tx.Policies().VerificationKeys(ctx)
		return err
	})
	if err != nil {
		return store.PolicyActivation{}, err
	}
	// What two people approve must be what was uploaded, and read under
	// the keys the organization registered.
	if err := p.checkUpload(ctx, org, stored); err != nil {
		return store.PolicyActivation{}, err
	}
	opts, err := p.provenOptions(ctx, org, keys)
	if err != nil {
		return store.PolicyActivation{}, err
	}
	digest := hex.EncodeToString(stored.Digest)
	if err := bundles.CheckActivation(history, active, bundles.KnownRevision{Revision: revision, Digest: digest}, rollback); err != nil {
		return store.PolicyActivation{}, err
	}
	// Compiled again from the stored bytes, under today's keys and limits.
	policy, _, err := p.load(ctx, stored.Bundle, opts)
	if err != nil {
		return store.PolicyActivation{}, err
	}
	kind, event := "policy.activate", "activate"
	if rollback {
		kind, event = "policy.rollback", "rollback"
	}
	// The entry names the row's seq, and the row the entry's index: a row
	// names one entry, which names that row alone (LoadActive).
	rec := policyRecord{Event: event, Seq: seq, Revision: revision, BundleSHA: base64.StdEncoding.EncodeToString(stored.Digest), By: activatedBy, ApprovedBy: approvedBy, PreviousRev: active}
	var act store.PolicyActivation
	err = p.change(ctx, org, kind, rec,
		func(ctx context.Context, tx store.TenantTx) error {
			now, err := activeRevision(ctx, tx.Policies())
			switch {
			case err != nil:
				return err
			case now != active:
				return fmt.Errorf("%w: the active revision changed to %q meanwhile; decide again", store.ErrConflict, now)
			}
			next, err := nextActivation(ctx, tx.Policies())
			switch {
			case err != nil:
				return err
			case next != seq:
				return fmt.Errorf("%w: another activation was made meanwhile; decide again", store.ErrConflict)
			}
			return sameKeys(ctx, tx.Policies(), opts)
		},
		func(ctx context.Context, tx store.TenantTx, index uint64) error {
			var err error
			act, err = tx.Policies().Activate(ctx, store.PolicyActivation{Seq: seq, Revision: revision, Rollback: rollback,
				ActivatedBy: activatedBy, ApprovedBy: approvedBy, LedgerIndex: &index})
			return err
		})
	if err != nil {
		policy.Close()
		return act, err
	}
	p.install(org.ID, act.Seq, policy)
	return act, nil
}

// errUploadNotLogged: a stored revision is not what the organization's
// log recorded of its upload. Whoever can insert into policy_bundles (the
// organization's database role can) could otherwise have two people
// approve a revision that never went through Upload's checks and log.
var errUploadNotLogged = fmt.Errorf("%w: the revision is not the upload the organization's log records", errBundleDoesNotLoad)

// checkUpload checks a stored revision (read with its bytes): its bytes
// hash to its digest, and it is what the policy.upload entry its row
// names records (policyRecord.uploads), proven under the newest checkpoint
// the log key signed. A row from before bundles named their entry (none on
// PostgreSQL can be inserted since: a trigger) is taken as stored.
func (p *Policies) checkUpload(ctx context.Context, org Organization, b store.PolicyBundle) error {
	if !bytesIntact(b) {
		// Edited behind the service's back.
		return fmt.Errorf("%w: the stored bytes of revision %q are not the bundle uploaded", errBundleDoesNotLoad, b.Revision)
	}
	if b.LedgerIndex == nil {
		return nil
	}
	rec, err := loggedRecord[policyRecord](ctx, p.ledger, org, *b.LedgerIndex, b.Revision, errUploadNotLogged, kindPolicyUpload)
	switch {
	case err != nil:
		return err
	case !rec.uploads(b):
		return fmt.Errorf("%w: entry %d records another upload of %q", errUploadNotLogged, *b.LedgerIndex, b.Revision)
	}
	return nil
}

// uploads says whether rec, a policy record, is the upload of stored
// bundle b: its revision, SHA-256, signed or not, and uploader.
func (rec policyRecord) uploads(b store.PolicyBundle) bool {
	return rec.Event == "upload" && rec.Revision == b.Revision && recordsDigest(rec.BundleSHA, b.Digest) &&
		(rec.SignedBy != "") == b.Signed && rec.By == b.UploadedBy
}

// errKeyNotLogged: a stored bundle verification key is not what the
// organization's log recorded of its registration. Whoever can insert into
// policy_verification_keys (the organization's database role can) could
// otherwise have a bundle signed with a key of their own uploaded, and
// activated, as signed.
var errKeyNotLogged = errors.New("the bundle verification key is not one the organization's log registered")

// checkKeys proves each stored verification key that names its entry: a
// policy.verification_key entry, under the newest checkpoint the log key
// signed, registered that kid, PEM and algorithm (verificationKeyRecord.
// registers). Any key that fails stops the upload or activation, whatever
// key signed the bundle: the stored set is not the organization's. A key
// stored before keys named their entry is taken as stored (a trigger
// refuses new ones).
func (p *Policies) checkKeys(ctx context.Context, org Organization, keys []store.PolicyVerificationKey) error {
	for _, k := range keys {
		if k.LedgerIndex == nil {
			continue
		}
		rec, err := loggedRecord[verificationKeyRecord](ctx, p.ledger, org, *k.LedgerIndex, k.KID, errKeyNotLogged, kindPolicyVerificationKey)
		switch {
		case err != nil:
			return fmt.Errorf("verification key %q: %w", k.KID, err)
		case !rec.registers(k):
			return fmt.Errorf("verification key %q: %w: entry %d registered another key or algorithm", k.KID, errKeyNotLogged, *k.LedgerIndex)
		}
	}
	return nil
}

// registers says whether rec, a verification key record, registered
// stored key k: its kid, algorithm and PEM (as the record's JSON holds it,
// asJSONString).
func (rec verificationKeyRecord) registers(k store.PolicyVerificationKey) bool {
	return rec.Event == "verification_key" && rec.KID == k.KID && rec.Algorithm == k.Algorithm &&
		rec.PublicPEM == asJSONString(k.PublicPEM)
}

// nextActivation is the seq the organization's next activation takes.
func nextActivation(ctx context.Context, ptx store.PolicyTx) (uint64, error) {
	acts, err := ptx.Activations(ctx) // in seq order
	if err != nil || len(acts) == 0 {
		return 1, err
	}
	return acts[len(acts)-1].Seq + 1, nil
}

// activeRevision is the organization's active revision, "" for none.
func activeRevision(ctx context.Context, ptx store.PolicyTx) (string, error) {
	act, _, err := ptx.ActiveBundle(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", nil
	case err != nil:
		return "", err
	}
	return act.Revision, nil
}

// AddVerificationKey registers a PEM public key for signature algorithm
// algorithm (bundles.ParseVerificationKey: "" picks RS256 for an RSA key,
// the curve's for an ECDSA key; the one picked is stored); from then on the
// organization's bundles must be signed. It is a policy change, recorded:
// the entry and the key commit together (see change), and an id already
// registered is store.ErrConflict, with nothing in the ledger.
func (p *Policies) AddVerificationKey(ctx context.Context, org Organization, id, algorithm string, pem []byte, by string) error {
	if err := checkActor("by", by); err != nil {
		return err
	}
	if !utf8.Valid(pem) {
		// PEM ignores text before the key, but the ledger record (JSON)
		// cannot hold invalid UTF-8 as the store would.
		return fmt.Errorf("%w: the public key file is not UTF-8 text", store.ErrInvalid)
	}
	vk, err := bundles.ParseVerificationKey(id, algorithm, pem)
	if err != nil {
		return err
	}
	rec, _ := json.Marshal(verificationKeyRecord{Event: "verification_key", KID: id, Algorithm: vk.Algorithm(), PublicPEM: string(pem), By: by})
	return p.changeRecord(ctx, org, kindPolicyVerificationKey, id, rec,
		func(ctx context.Context, tx store.TenantTx) error {
			keys, err := tx.Policies().VerificationKeys(ctx)
			if err != nil {
				return err
			}
			for _, k := range keys {
				if k.KID == id {
					return fmt.Errorf("%w: verification key %q is registered already", store.ErrConflict, id)
				}
			}
			return nil
		},
		func(ctx context.Context, tx store.TenantTx, index uint64) error {
			return tx.Policies().AddVerificationKey(ctx, store.PolicyVerificationKey{KID: id, PublicPEM: string(pem), Algorithm: vk.Algorithm(), LedgerIndex: &index})
		})
}

// change records a policy change in the organization's ledger and stores
// it, in one ledger batch (ledger.AppendAllAndChange): the log locked (in
// every process and replica), check reads whether the change still
// applies, and write stores it, told the index its entry takes. The entry
// and the rows commit together, or neither does: a check or a write that
// fails leaves nothing in the log. Changes in one batch run in order, each
// seeing those before it that were made: two activations at once cannot
// both pass the rollback rule, in this process or across replicas.
func (p *Policies) change(ctx context.Context, org Organization, kind string, rec policyRecord, check func(context.Context, store.TenantTx) error, write changeWrite) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return p.changeRecord(ctx, org, kind, rec.Revision, b, check, write)
}

// changeWrite stores a policy change, given the index of the entry that
// records it.
type changeWrite func(ctx context.Context, tx store.TenantTx, index uint64) error

// changeRecord is change with the entry's subject and record as given.
func (p *Policies) changeRecord(ctx context.Context, org Organization, kind, subject string, rec []byte, check func(context.Context, store.TenantTx) error, write changeWrite) error {
	_, err := p.ledger.AppendAllAndChange(ctx, p.ledger.TenantLog(org.ID, org.Slug),
		[]ledger.Entry{{Kind: kind, Subject: subject, Record: rec}},
		func(ctx context.Context, tx store.TenantTx, index uint64) error {
			if err := check(ctx, tx); err != nil {
				return err
			}
			return write(ctx, tx, index)
		})
	return err
}

// sameKeys checks that the organization's verification keys are still
// those opts was read with: a bundle checked under the old set is not
// stored or activated under a new one.
func sameKeys(ctx context.Context, ptx store.PolicyTx, opts bundles.ReadOptions) error {
	keys, err := ptx.VerificationKeys(ctx)
	if err != nil {
		return err
	}
	same := len(keys) == len(opts.Keys)
	for i := 0; same && i < len(keys); i++ {
		same = keys[i].KID == opts.Keys[i].ID() // both in kid order
	}
	if !same {
		return fmt.Errorf("%w: the organization's bundle verification keys changed meanwhile; try again", store.ErrConflict)
	}
	return nil
}

// maxActor bounds who a policy change names.
const maxActor = 256

// checkActor checks who a policy change names, as the store checks an
// agent's sponsor (store.CheckLabel): it is recorded in the ledger and
// shown to auditors.
func checkActor(field, name string) error { return store.CheckLabel(field, name, maxActor) }

// fourEyes checks that an activation names two people: both valid names
// (checkActor), and not one name spelled two ways: compared as text.Fold
// folds them (case, compatibility forms, invisible code points).
func fourEyes(activatedBy, approvedBy string) error {
	if err := checkActor("activated by", activatedBy); err != nil {
		return fmt.Errorf("%w (%w)", ErrFourEyes, err)
	}
	if err := checkActor("approved by", approvedBy); err != nil {
		return fmt.Errorf("%w (%w)", ErrFourEyes, err)
	}
	if text.Fold(activatedBy) == text.Fold(approvedBy) {
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
	var all []store.PolicyActivation
	var stored store.PolicyBundle
	var opts bundles.ReadOptions
	err := p.tenants.InTenantReadTx(ctx, org.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if act, stored, err = tx.Policies().ActiveBundle(ctx); err != nil {
			return err
		}
		// The others matter only to a row from before rows named their
		// entry (checkActivation).
		if act.LedgerIndex == nil {
			if all, err = tx.Policies().Activations(ctx); err != nil {
				return err
			}
		}
		// Its keys need no proof (checkKeys): the activation is proven,
		// and with it the bytes, whichever key they were signed with.
		keys, err := tx.Policies().VerificationKeys(ctx)
		opts = p.loadOptions(keys)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		p.install(org.ID, 0, nil)
		return nil
	}
	if err != nil {
		return err
	}

	if !stored.Signed {
		// Activated unsigned, before the organization registered a key:
		// it stays the active revision until another is activated (which
		// must be signed), in every process alike. Read under the keys
		// registered since, it would not load in a process started after
		// them, and that process alone would deny everything.
		opts.Keys = nil
	}
	policy, _, err := p.load(ctx, stored.Bundle, opts)
	if errors.Is(err, bundles.ErrWorker) {
		// No worker to compile it in: nothing is known of the bundle,
		// and the next decision tries again.
		return fmt.Errorf("active revision %q: %w", stored.Revision, err)
	}
	if err != nil {
		return fmt.Errorf("%w: active revision %q: %w", errBundleDoesNotLoad, stored.Revision, err)
	}
	// The rows say which revision is active; the log, which no one can
	// write behind the service's back, must say so too before it decides
	// anything (it compiled in a worker, which sees nothing else).
	if err := p.checkActivation(ctx, org, act, all, stored); err != nil {
		policy.Close()
		return fmt.Errorf("active revision %q: %w", stored.Revision, err)
	}
	p.install(org.ID, act.Seq, policy)
	return nil
}

// errBundleDoesNotLoad: the active revision's stored bundle does not read
// or compile in this process (unlike a store error, it will not go away
// by itself).
var errBundleDoesNotLoad = errors.New("the bundle does not load")

// provenOptions reads a bundle under the organization's verification
// keys, once each is proven the log's (checkKeys): what an upload or
// activation trusts a signature under.
func (p *Policies) provenOptions(ctx context.Context, org Organization, keys []store.PolicyVerificationKey) (bundles.ReadOptions, error) {
	if err := p.checkKeys(ctx, org, keys); err != nil {
		return bundles.ReadOptions{}, err
	}
	opts := bundles.ReadOptions{Limits: p.limits}
	for _, k := range keys {
		vk, err := bundles.ParseVerificationKey(k.KID, k.Algorithm, []byte(k.PublicPEM))
		if err != nil {
			return opts, fmt.Errorf("stored verification key %q: %w", k.KID, err)
		}
		opts.Keys = append(opts.Keys, vk)
	}
	return opts, nil
}

// loadOptions reads the active revision under the keys as stored, less
// any that does not parse: every key the service registered did, so one
// that does not was written behind its back, and can only have verified
// fewer bundles. (With it the organization's every decision failed.)
func (p *Policies) loadOptions(keys []store.PolicyVerificationKey) bundles.ReadOptions {
	opts := bundles.ReadOptions{Limits: p.limits}
	for _, k := range keys {
		if vk, err := bundles.ParseVerificationKey(k.KID, k.Algorithm, []byte(k.PublicPEM)); err == nil {
			opts.Keys = append(opts.Keys, vk)
		}
	}
	return opts
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
