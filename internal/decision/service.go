package decision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/agentsigna/agentsigna/internal/latency"
	"github.com/agentsigna/agentsigna/internal/signing"
	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// Errors of the decision service, beyond ErrInvalidRequest and the store's
// sentinels (store.ErrNotFound for a decision or case the agent may not
// see). The HTTP layer maps each to one status.
var (
	// ErrIdempotencyMismatch: the agent already used the Idempotency-Key
	// with another request (DESIGN §3: 422).
	ErrIdempotencyMismatch = errors.New("idempotency key already used with another request")
	// ErrUnknownAgent: the organization has no agent by the id the caller
	// authenticated (a token outliving its agent, or naming another
	// organization's), or, on the read routes, no active one: the HTTP
	// layer answers as for a bad token.
	ErrUnknownAgent = errors.New("unknown agent")
	// ErrTooManyWaits: the agent already has Config.MaxCaseWaits long
	// polls open (429).
	ErrTooManyWaits = errors.New("too many long polls open at once")
)

// Defaults and bounds of Config.
const (
	DefaultReceiptLifetime  = signing.DefaultReceiptLifetime // DESIGN §3: 10 minutes
	DefaultCaseLifetime     = 24 * time.Hour                 // DESIGN §3
	DefaultCasePollInterval = 250 * time.Millisecond
	// MaxCaseWait bounds one long poll of a case (DESIGN §3: ?wait=30s).
	MaxCaseWait = 30 * time.Second
	// DefaultMaxCaseWaits bounds the long polls one agent has open at once
	// in a process: each re-reads its case every CasePollInterval.
	DefaultMaxCaseWaits = 8
	// MaxIdempotencyKey bounds the Idempotency-Key header.
	MaxIdempotencyKey = 255
	// PolicyLoadRetry is how long an organization's decisions fail with a
	// failed load's error before its active policy is loaded again; each
	// further failure of the same activation doubles it, up to
	// MaxPolicyLoadRetry. A load is work the service does for the
	// organization (reading, and for a signed bundle hashing, what it
	// uploaded; a compile slot): a policy that never loads must not have it
	// done every 10 s for as long as its agents ask.
	PolicyLoadRetry    = 10 * time.Second
	MaxPolicyLoadRetry = 10 * time.Minute
)

// Config wires a Service. Defaults fill zero values; NewService checks it.
type Config struct {
	Tenants   store.TenantStore
	Ledger    *ledger.Ledger
	Keyring   *signing.Keyring
	Evaluator *Evaluator
	// Policies loads an organization's active revision into the
	// Evaluator's engine the first time this process decides for it.
	Policies *Policies
	// PublicURL is the tenant plane's external URL (scheme and host,
	// optionally a path, no trailing slash needed): receipts are issued by
	// "<PublicURL>/t/<slug>".
	PublicURL string
	// ReceiptLifetime is a receipt's exp − iat. Default 10 minutes.
	ReceiptLifetime time.Duration
	// CaseLifetime is how long a case stays pending before it expires.
	// Default 24 hours; at most store.MaxCaseLifetime.
	CaseLifetime time.Duration
	// CasePollInterval is how often WaitCase re-reads a case. Default 250 ms.
	CasePollInterval time.Duration
	// MaxCaseWaits is how many WaitCase calls one agent may have open at
	// once; more get ErrTooManyWaits. Default DefaultMaxCaseWaits.
	MaxCaseWaits int
	// Logger receives policy evaluation failures, for operators (never
	// sent to an agent). Default: discard.
	Logger *slog.Logger
	// Now is the clock of decisions, receipts and cases. Default time.Now.
	Now func() time.Time
	// Stages, from NewStages, times the stages of each decision; nil: not
	// timed.
	Stages *latency.Family
}

// The stages of a decision (Config.Stages), each timed once per decision
// recorded (a replay under an Idempotency-Key, and a request refused, are
// not):
//   - "read": the store read of its inputs (and the receipt signer);
//   - "turn": waiting for the agent's requests ahead of it (see turns);
//   - "policy": evaluating the base and organization policies, twice when
//     a request ahead decided otherwise than guessed;
//   - "sign": signing the receipt of an allowed action;
//   - "ledger": its ledger append, from the call until its batch has
//     committed (ledger.NewStages splits it);
//   - "total": Decide, from the request's validation to its answer.
const (
	StageRead   = "read"
	StageTurn   = "turn"
	StagePolicy = "policy"
	StageSign   = "sign"
	StageLedger = "ledger"
	StageTotal  = "total"
)

// NewStages makes the histograms of Config.Stages.
func NewStages() *latency.Family {
	return latency.NewFamily("agentsigna_decision_stage_seconds",
		"How long the stages of a recorded decision take: read, turn, policy, sign, ledger, and the total.",
		"stage", StageRead, StageTurn, StagePolicy, StageSign, StageLedger, StageTotal)
}

// stages are Config.Stages' histograms; each nil when not timed.
type stages struct {
	read, turn, policy, sign, ledger, total *latency.Histogram
}

func newStages(f *latency.Family) stages {
	return stages{read: f.Stage(StageRead), turn: f.Stage(StageTurn), policy: f.Stage(StagePolicy),
		sign: f.Stage(StageSign), ledger: f.Stage(StageLedger), total: f.Stage(StageTotal)}
}

func (c Config) withDefaults() (Config, error) {
	if c.Tenants == nil || c.Ledger == nil || c.Keyring == nil || c.Evaluator == nil || c.Policies == nil {
		return c, errors.New("decision: Tenants, Ledger, Keyring, Evaluator and Policies are required")
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return c, errors.New("decision: PublicURL must be an absolute http(s) URL without query or fragment")
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.ReceiptLifetime == 0 {
		c.ReceiptLifetime = DefaultReceiptLifetime
	}
	if c.CaseLifetime == 0 {
		c.CaseLifetime = DefaultCaseLifetime
	}
	if c.CasePollInterval == 0 {
		c.CasePollInterval = DefaultCasePollInterval
	}
	if c.MaxCaseWaits == 0 {
		c.MaxCaseWaits = DefaultMaxCaseWaits
	}
	switch {
	case c.ReceiptLifetime < time.Second:
		// Receipt times are whole seconds (NumericDate).
		return c, errors.New("decision: ReceiptLifetime must be at least a second")
	case c.CaseLifetime < time.Second || c.CaseLifetime > store.MaxCaseLifetime:
		return c, fmt.Errorf("decision: CaseLifetime must be from a second to %v", store.MaxCaseLifetime)
	case c.CasePollInterval < 0:
		return c, errors.New("decision: CasePollInterval must not be negative")
	case c.MaxCaseWaits < 0:
		return c, errors.New("decision: MaxCaseWaits must not be negative")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Service answers agents' decision requests (DESIGN §3): it validates the
// request, builds the policy input from the store, evaluates it, records
// the decision in the organization's ledger and store, signs the receipt
// of an allowed action or opens the case of an escalated one, and answers
// with the ledger proof. It also serves an agent its own decisions and
// cases. It has no HTTP: the tenant plane's handlers call it. Safe for
// concurrent use.
type Service struct {
	cfg Config

	// receiptKeys gives an organization its first receipt key, logged.
	receiptKeys *ReceiptKeys
	// counterparties is what the policy sees of a counterparty's status,
	// agents of an agent's risk tier.
	counterparties *counterpartyLog
	agents         *agentLog

	// inflight serialises requests of one agent under one Idempotency-Key,
	// and the lazy expiry of one case, within this process.
	inflight keyedMutex
	// turns orders each agent's requests in this process (see turns).
	turns turns

	// loads serialises loading one organization's active policy.
	loads keyedMutex
	// failed remembers, per organization, the last load that failed, so
	// that until PolicyLoadRetry has passed (or a newer activation
	// appears) decisions fail at once rather than each compiling the
	// bundle again. Guarded by failMu.
	failMu sync.Mutex
	failed map[string]loadFailure

	// waits counts each agent's open WaitCase calls (key: org/agent).
	waitMu sync.Mutex
	waits  map[string]int

	stages stages
}

// NewService returns a Service.
func NewService(cfg Config) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rk, err := NewReceiptKeys(cfg.Tenants, cfg.Ledger, cfg.Keyring)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, receiptKeys: rk, counterparties: &counterpartyLog{ledger: cfg.Ledger, logger: cfg.Logger},
		agents: &agentLog{ledger: cfg.Ledger, logger: cfg.Logger},
		waits:  map[string]int{}, failed: map[string]loadFailure{}, stages: newStages(cfg.Stages)}, nil
}

// ensurePolicy makes sure the engine holds the organization's activation
// seq (as the decision's inputs read it) or a newer one, loading the
// active policy when it does not: after a restart the engine is empty (an
// empty slot would deny everything no_authority), and another process or
// replica may have activated or rolled back since this one last loaded.
// Concurrent requests wait for one load. A load that fails fails the
// decision: none is decided under an older policy than the active one.
// When the bundle itself does not load (a revision this build cannot
// compile), the organization's decisions fail at once, without compiling
// again, for PolicyLoadRetry or until a newer activation; a store error
// is tried again by the next request. Activations made through this process's
// Policies update the engine themselves.
func (s *Service) ensurePolicy(ctx context.Context, org Organization, seq uint64) error {
	if s.cfg.Policies.Current(org.ID, seq) {
		return nil
	}
	if err := s.recentFailure(org.ID, seq); err != nil {
		return err
	}
	unlock, err := s.loads.lock(ctx, org.ID)
	if err != nil {
		return err
	}
	defer unlock()
	if s.cfg.Policies.Current(org.ID, seq) {
		return nil
	}
	if err := s.recentFailure(org.ID, seq); err != nil {
		return err
	}
	err = s.cfg.Policies.LoadActive(ctx, org)
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if err != nil && (!errors.Is(err, errBundleDoesNotLoad) || ctx.Err() != nil) {
		// The store, or the caller's context (compiling takes it too):
		// the next request tries again.
		return fmt.Errorf("decision: load the organization's active policy: %w", err)
	}
	if err != nil {
		err = fmt.Errorf("decision: load the organization's active policy: %w", err)
		f := loadFailure{seq: seq, err: err, at: s.cfg.Now(), retry: PolicyLoadRetry}
		if prev, ok := s.failed[org.ID]; ok && prev.seq == seq {
			f.retry = min(2*prev.retry, MaxPolicyLoadRetry)
		}
		s.failed[org.ID] = f
		s.cfg.Logger.ErrorContext(ctx, "decision: the organization's active policy does not load; its decisions fail until it does",
			slog.String("tenant", org.ID), slog.Uint64("activation", seq), slog.Duration("retry_in", f.retry), slog.Any("error", err))
		return err
	}
	delete(s.failed, org.ID)
	return nil
}

// loadFailure is a failed load of an organization's active policy.
type loadFailure struct {
	seq   uint64 // the activation the decision needed
	err   error
	at    time.Time
	retry time.Duration // how long after at the next load may be tried
}

// recentFailure is the error of the organization's last failed load, if
// it was for activation seq or a newer one and its retry delay has not
// passed since.
func (s *Service) recentFailure(orgID string, seq uint64) error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	f, ok := s.failed[orgID]
	if !ok || f.seq < seq || s.cfg.Now().Sub(f.at) >= f.retry {
		return nil
	}
	return f.err
}

// issuer is the receipts' iss for an organization.
func (s *Service) issuer(org Organization) string { return s.cfg.PublicURL + "/t/" + org.Slug }

// now is the service clock, in UTC and at the store's precision, so that
// what a response says equals what is read back later.
func (s *Service) now() time.Time { return store.StoredTime(s.cfg.Now()) }
