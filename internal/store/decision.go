package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// DecisionTx stores an organization's decisions (DESIGN §3). Decisions are
// written once: there is no update or delete method, and the database
// refuses both.
type DecisionTx interface {
	// Insert stores a decision. An empty ID is generated (NewID
	// PrefixDecision); a zero CreatedAt is now (tests and imports set it).
	// ErrConflict if the id exists, or if the agent already used
	// IdempotencyKeySHA256 (unique per agent, not per organization);
	// ErrNotFound for an unknown agent or counterparty.
	Insert(ctx context.Context, d Decision) (Decision, error)
	// Record stores a new decision with what it produced — the receipt of
	// an allowed action or the case an escalation opens — all or nothing,
	// as Insert, ReceiptTx.Insert and CaseTx.Create would one after the
	// other, in one round trip to PostgreSQL. Ids must be set; a zero
	// time is the decision's, or now. ErrInvalid for a receipt or case that is
	// not its decision's, a receipt of a decision not allowed or a case of
	// one not escalated; otherwise Insert's errors.
	Record(ctx context.Context, r DecisionRecord) error
	// Get returns one decision; ErrNotFound if the organization has none
	// by that id. Callers serving an agent compare AgentID themselves.
	Get(ctx context.Context, id string) (Decision, error)
	// ByIdempotencyKey returns the agent's decision made under that key
	// (its SHA-256); ErrNotFound if there is none.
	ByIdempotencyKey(ctx context.Context, agentID string, keySHA256 []byte) (Decision, error)
	// AgentStats counts the agent's decisions made after now−1h and
	// now−24h (a decision exactly at the window's start is outside it;
	// one stamped after now, by a replica whose clock runs ahead, counts),
	// at a cost that does not grow with them. A decision stored after a
	// later-stamped one of the same agent counts as made at that one's
	// time (AgentTally).
	AgentStats(ctx context.Context, agentID string, now time.Time) (AgentStats, error)
	// Page returns up to limit decisions in the order of their agents'
	// tallies (by agent, then its Tally.Decisions), after the one given
	// (the zero Decision: from the first), each with its Tally: how
	// ledger verify reads every row.
	Page(ctx context.Context, after Decision, limit int) ([]Decision, error)
}

// ReceiptTx stores the signed receipts of allowed or approved decisions:
// at most one per decision, written once.
type ReceiptTx interface {
	// Insert stores a receipt. An empty ID is generated (NewID
	// PrefixReceipt); a zero CreatedAt is now. Only an allowed decision, or
	// one whose case was approved, has a receipt: ErrConflict otherwise, and
	// if the decision already has one; ErrNotFound for an unknown decision.
	// The ledger entry at LedgerIndex must hold the JWS as its record
	// (ErrInvalid otherwise; an unknown or unreceiptable decision is
	// refused as such first, a duplicate only once the entry matches): the
	// JWS is kept there, not a second time with the receipt.
	// DecisionTx.Record stores its receipt the same way.
	Insert(ctx context.Context, r Receipt) (Receipt, error)
	// ByDecision returns a decision's receipt, its JWS read from its
	// ledger entry; ErrNotFound if it has none.
	ByDecision(ctx context.Context, decisionID string) (Receipt, error)
	// Page returns up to limit receipts, by id, after afterID ("": from
	// the first), without their JWS: each row as stored, the entry it
	// names not read (ledger verify reads it, and so finds a row that
	// names none).
	Page(ctx context.Context, afterID string, limit int) ([]Receipt, error)
}

// CaseTx stores the cases escalated decisions open: at most one per
// decision. A case is created pending and leaves pending once, to approved,
// rejected or expired; nothing else of it ever changes.
type CaseTx interface {
	// Create stores a pending case (an empty Status is CasePending; any
	// other is ErrInvalid). An empty ID is generated (NewID PrefixCase); a
	// zero CreatedAt is now. The decision must be an escalation of
	// AgentID: ErrConflict otherwise, and if it already has a case;
	// ErrNotFound for an unknown decision.
	Create(ctx context.Context, c Case) (Case, error)
	// Get returns one case; ErrNotFound if the organization has none by
	// that id. Callers serving an agent compare AgentID themselves.
	Get(ctx context.Context, id string) (Case, error)
	// SetStatus closes a pending case. ErrConflict if it is no longer
	// pending (another approver, or the expiry, got there first);
	// ErrInvalid for status pending.
	SetStatus(ctx context.Context, id string, status CaseStatus) error
	// Page returns up to limit cases, by id, after afterID ("": from the
	// first).
	Page(ctx context.Context, afterID string, limit int) ([]Case, error)
}

// Outcome is what a decision said.
type Outcome string

const (
	OutcomeAllow    Outcome = "allow"
	OutcomeDeny     Outcome = "deny"
	OutcomeEscalate Outcome = "escalate"
)

// Decision is one answer to an agent's request, as recorded.
type Decision struct {
	ID      string // PrefixDecision id; generated when empty
	AgentID string
	// Action is the request's action object, JSON, as the agent sent it;
	// ActionType is its type, kept apart for queries.
	Action     string
	ActionType string
	// CounterpartyID is the counterparty the action names; "" for none.
	CounterpartyID    string
	Reason            string
	Outcome           Outcome
	Reasons           []string
	ApprovalsRequired int
	// The policies that decided (the receipt's policy claim). The tenant
	// fields are "" when the organization has no active bundle.
	BaseRevision       string
	TenantRevision     string
	TenantBundleSHA256 string
	// IdempotencyKeySHA256 is the SHA-256 of the Idempotency-Key header,
	// nil without one; RequestSHA256 the SHA-256 of the request, to tell a
	// replay from a reuse of the key with another body.
	IdempotencyKeySHA256 []byte
	RequestSHA256        []byte
	// LedgerIndex is the index of the decision's entry in the
	// organization's log.
	LedgerIndex uint64
	// Response is the response body (JSON) to replay for the same
	// Idempotency-Key and to answer a later read with, as the decision
	// service stores it (less what the ledger holds).
	Response  string
	CreatedAt time.Time
	// Tally is the agent's tally including this decision, as stored:
	// read by Page only, and made by the store on insert (a given one
	// is ignored).
	Tally AgentTally
}

// DecisionRecord is a decision with its receipt (allowed) or its case
// (escalated); at most one of them.
type DecisionRecord struct {
	Decision Decision
	Receipt  *Receipt
	Case     *Case
}

// Clone is a copy that shares no memory with r: a store that queues a
// record (TenantTx.Pipeline) keeps a clone, for the caller's record is not
// read after Record returns.
func (r DecisionRecord) Clone() DecisionRecord {
	d := &r.Decision
	d.Reasons = slices.Clone(d.Reasons)
	d.IdempotencyKeySHA256 = slices.Clone(d.IdempotencyKeySHA256)
	d.RequestSHA256 = slices.Clone(d.RequestSHA256)
	if r.Receipt != nil {
		rc := *r.Receipt
		r.Receipt = &rc
	}
	if r.Case != nil {
		c := *r.Case
		r.Case = &c
	}
	return r
}

// RecordQueue holds the records a TenantTx.Pipeline defers: checked,
// cloned, in the order they were made. Both stores queue into it.
type RecordQueue struct {
	records []DecisionRecord
}

// Add queues a clone of r (its caller may reuse r once Record returns).
func (q *RecordQueue) Add(r DecisionRecord) { q.records = append(q.records, r.Clone()) }

// Records are the records queued so far.
func (q *RecordQueue) Records() []DecisionRecord { return q.records }

// DropOnError, deferred by a Savepoint inside a Pipeline with the queue's
// length when it began, drops what the savepoint queued if it fails (*err
// set): its writes are undone, and so must its records be.
func (q *RecordQueue) DropOnError(n int, err *error) {
	if *err != nil {
		q.records = q.records[:n]
	}
}

// CheckRecord validates a record for DecisionTx.Record: each part, and
// that the receipt or case is its decision's and fits its outcome (so a
// decision never has both: a receipt needs allow, a case escalate; and
// CheckCase takes only a pending case). It
// fills stored defaults in place: times at store precision (zero: the
// decision's; the decision's zero: now), an empty Reasons, a case's
// pending status.
func CheckRecord(r *DecisionRecord) error {
	d := &r.Decision
	if d.Reasons == nil {
		d.Reasons = []string{}
	}
	d.CreatedAt = StoredTime(d.CreatedAt)
	if err := CheckDecision(*d); err != nil {
		return err
	}
	if rc := r.Receipt; rc != nil {
		if rc.CreatedAt.IsZero() {
			rc.CreatedAt = d.CreatedAt
		}
		rc.CreatedAt = StoredTime(rc.CreatedAt)
		if err := CheckReceipt(*rc); err != nil {
			return err
		}
		if rc.DecisionID != d.ID || d.Outcome != OutcomeAllow {
			return fmt.Errorf("%w: a recorded receipt is its own allowed decision's", ErrInvalid)
		}
	}
	if c := r.Case; c != nil {
		if c.Status == "" {
			c.Status = CasePending
		}
		if c.CreatedAt.IsZero() {
			c.CreatedAt = d.CreatedAt
		}
		c.CreatedAt = StoredTime(c.CreatedAt)
		c.UpdatedAt = c.CreatedAt
		c.ExpiresAt = StoredTime(c.ExpiresAt)
		if err := CheckCase(*c); err != nil {
			return err
		}
		if c.DecisionID != d.ID || c.AgentID != d.AgentID || d.Outcome != OutcomeEscalate {
			return fmt.Errorf("%w: a recorded case is its own escalated decision's", ErrInvalid)
		}
	}
	return nil
}

// AgentStats are an agent's recent decision counts (the policy input's
// agent.stats).
type AgentStats struct {
	Decisions1h  int
	Denials1h    int
	Decisions24h int
}

// Receipt is the signed receipt (compact JWS) of a decision.
type Receipt struct {
	ID          string // PrefixReceipt id (the receipt's jti); generated when empty
	DecisionID  string
	JWS         string
	LedgerIndex uint64 // the receipt's entry in the organization's log
	CreatedAt   time.Time
}

// CaseStatus is a case's state: pending until approved, rejected or
// expired.
type CaseStatus string

const (
	CasePending  CaseStatus = "pending"
	CaseApproved CaseStatus = "approved"
	CaseRejected CaseStatus = "rejected"
	CaseExpired  CaseStatus = "expired"
)

// Case is an escalated decision waiting for, or closed by, people.
type Case struct {
	ID                string // PrefixCase id; generated when empty
	DecisionID        string
	AgentID           string
	Status            CaseStatus
	ApprovalsRequired int
	ExpiresAt         time.Time
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// Bounds of decision fields.
const (
	MaxAction       = 64 << 10 // the request body's own bound
	MaxActionType   = 256
	MaxReason       = 1024 // DESIGN §3: strings ≤ 1024 bytes
	MaxReasons      = 64
	MaxReasonText   = 1024
	MaxApprovals    = 100
	MaxRevision     = 256
	MaxBundleDigest = 128
	MaxResponse     = 1 << 20
	MaxReceiptJWS   = 1 << 20
	MaxCaseLifetime = 366 * 24 * time.Hour
)

const (
	maxLedgerIndex = math.MaxInt64 // stored as a signed 64-bit integer
	sha256Size     = 32
)

// CheckOutcome reports ErrInvalid for an unknown outcome.
func CheckOutcome(o Outcome) error {
	switch o {
	case OutcomeAllow, OutcomeDeny, OutcomeEscalate:
		return nil
	}
	return fmt.Errorf("%w: outcome must be allow, deny or escalate", ErrInvalid)
}

// CheckDecision validates a decision before it is stored.
func CheckDecision(d Decision) error {
	if err := CheckID(PrefixDecision, d.ID); err != nil {
		return err
	}
	if err := CheckID(PrefixAgent, d.AgentID); err != nil {
		return err
	}
	if d.CounterpartyID != "" {
		if err := CheckID(PrefixCounterparty, d.CounterpartyID); err != nil {
			return err
		}
	}
	switch {
	case len(d.Action) == 0 || len(d.Action) > MaxAction || !json.Valid([]byte(d.Action)):
		return fmt.Errorf("%w: decision action must be 1-%d bytes of JSON", ErrInvalid, MaxAction)
	case len(d.ActionType) > MaxActionType || !IsDottedName(d.ActionType, 2, 5):
		return fmt.Errorf("%w: decision action type is malformed", ErrInvalid)
	case len(d.Reason) > MaxReason || !utf8.ValidString(d.Reason) || strings.IndexByte(d.Reason, 0) >= 0:
		return fmt.Errorf("%w: decision reason must be at most %d bytes of UTF-8 without U+0000", ErrInvalid, MaxReason)
	case len(d.Reasons) > MaxReasons:
		return fmt.Errorf("%w: at most %d decision reasons", ErrInvalid, MaxReasons)
	case d.ApprovalsRequired < 0 || d.ApprovalsRequired > MaxApprovals:
		return fmt.Errorf("%w: approvals required must be 0-%d", ErrInvalid, MaxApprovals)
	case d.IdempotencyKeySHA256 != nil && len(d.IdempotencyKeySHA256) != sha256Size:
		return fmt.Errorf("%w: an idempotency key digest is 32 bytes", ErrInvalid)
	case len(d.RequestSHA256) != sha256Size:
		return fmt.Errorf("%w: a request digest is 32 bytes", ErrInvalid)
	case d.LedgerIndex > maxLedgerIndex:
		return fmt.Errorf("%w: ledger index out of range", ErrInvalid)
	case len(d.Response) == 0 || len(d.Response) > MaxResponse || !json.Valid([]byte(d.Response)):
		return fmt.Errorf("%w: decision response must be 1-%d bytes of JSON", ErrInvalid, MaxResponse)
	}
	if err := CheckOutcome(d.Outcome); err != nil {
		return err
	}
	for _, r := range d.Reasons {
		if r == "" || len(r) > MaxReasonText || !utf8.ValidString(r) {
			return fmt.Errorf("%w: a decision reason must be 1-%d bytes of UTF-8", ErrInvalid, MaxReasonText)
		}
	}
	if err := checkToken("base revision", d.BaseRevision, MaxRevision, false); err != nil {
		return err
	}
	if err := checkToken("tenant revision", d.TenantRevision, MaxRevision, true); err != nil {
		return err
	}
	return checkToken("tenant bundle digest", d.TenantBundleSHA256, MaxBundleDigest, true)
}

// ReceiptNotInLedger is why a store refuses (ErrInvalid) a receipt whose
// ledger entry's record is not its JWS: the JWS is kept only there.
const ReceiptNotInLedger = "a receipt's JWS is not the record of the ledger entry it names"

// CheckReceipt validates a receipt before it is stored.
func CheckReceipt(r Receipt) error {
	if err := CheckID(PrefixReceipt, r.ID); err != nil {
		return err
	}
	if err := CheckID(PrefixDecision, r.DecisionID); err != nil {
		return err
	}
	if len(r.JWS) > MaxReceiptJWS || !compactJWS(r.JWS) {
		return fmt.Errorf("%w: a receipt is a compact JWS of at most %d bytes", ErrInvalid, MaxReceiptJWS)
	}
	if r.LedgerIndex > maxLedgerIndex {
		return fmt.Errorf("%w: ledger index out of range", ErrInvalid)
	}
	return nil
}

// compactJWS reports whether s has the shape of a compact JWS (RFC 7515
// §7.1): base64url header, payload and signature separated by two dots,
// the header and signature non-empty. The ledger writer checks every
// receipt of its batch with it, so it looks each byte up once.
func compactJWS(s string) bool {
	dots := 0
	for i := 0; i < len(s); i++ {
		switch jwsByte[s[i]] {
		case jwsDot:
			dots++
		case jwsOther:
			return false
		}
	}
	return dots == 2 && s[0] != '.' && s[len(s)-1] != '.'
}

const (
	jwsOther = iota // neither base64url nor a dot
	jwsBase64url
	jwsDot
)

// jwsByte classes each byte for compactJWS.
var jwsByte = func() (t [256]uint8) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		t[c] = jwsBase64url
	}
	t['.'] = jwsDot
	return t
}()

// CheckCaseStatus reports ErrInvalid for an unknown status.
func CheckCaseStatus(s CaseStatus) error {
	switch s {
	case CasePending, CaseApproved, CaseRejected, CaseExpired:
		return nil
	}
	return fmt.Errorf("%w: case status must be pending, approved, rejected or expired", ErrInvalid)
}

// CheckCase validates a new case before it is stored.
func CheckCase(c Case) error {
	if err := CheckID(PrefixCase, c.ID); err != nil {
		return err
	}
	if err := CheckID(PrefixDecision, c.DecisionID); err != nil {
		return err
	}
	if err := CheckID(PrefixAgent, c.AgentID); err != nil {
		return err
	}
	switch {
	case c.Status != CasePending:
		return fmt.Errorf("%w: a case is created pending", ErrInvalid)
	case c.ApprovalsRequired < 1 || c.ApprovalsRequired > MaxApprovals:
		return fmt.Errorf("%w: a case needs 1-%d approvals", ErrInvalid, MaxApprovals)
	case !c.ExpiresAt.After(c.CreatedAt) || c.ExpiresAt.Sub(c.CreatedAt) > MaxCaseLifetime:
		return fmt.Errorf("%w: a case expires after it is created, within a year", ErrInvalid)
	}
	return nil
}

// AgentTally is an agent's running decision and denial counts as of one
// of its decisions, with the time they run to: each decision row stores
// its agent's tally including itself (agent_seq, agent_denials,
// agent_tally_at). An agent's decisions after a moment are then its latest
// tally less the tally of its newest decision whose tally time is at or
// before that moment: two index seeks, however many decisions it made.
//
// The tally time is the decision's time, or the previous tally's when
// that is later: decisions are stored in the order their ledger batches
// commit, which may differ from the order of their times (a request
// overtaken by another of the same agent, replicas' clocks). Tally times
// never go back, so a decision stored after a later-stamped one counts as
// made at that one's time: it leaves a window that much later, and is
// never counted twice nor lost. The lag is the clocks' disorder: a
// decision stamped by a clock running an hour ahead would hold the
// agent's next decisions in the windows an hour longer — a skew that
// would already break its five-minute access tokens.
type AgentTally struct {
	Decisions, Denials int64
	At                 time.Time
}

// Add is the tally after one more decision, of outcome o, made at t.
func (t AgentTally) Add(o Outcome, at time.Time) AgentTally {
	t.Decisions++
	if o == OutcomeDeny {
		t.Denials++
	}
	if at.After(t.At) {
		t.At = at
	}
	return t
}

// StatsFromTallies gives AgentStats from the agent's latest tally and its
// tallies as of now−1h and now−24h (zero when it had no decision then).
func StatsFromTallies(latest, hourAgo, dayAgo AgentTally) AgentStats {
	return AgentStats{
		Decisions1h:  int(latest.Decisions - hourAgo.Decisions),
		Denials1h:    int(latest.Denials - hourAgo.Denials),
		Decisions24h: int(latest.Decisions - dayAgo.Decisions),
	}
}

// IsPayment reports whether an allowed decision counts as a payment to its
// counterparty (counterparty.payments_count in the policy input).
func IsPayment(d Decision) bool {
	return d.Outcome == OutcomeAllow && d.CounterpartyID != "" && strings.HasPrefix(d.ActionType, "payment.")
}

// PaymentCount is one counterparty_payments increment.
type PaymentCount struct {
	CounterpartyID string
	Payments       int64
}

// SumPayments sums the counterparty_payments increments of decisions
// written together: one per counterparty paid, in order of first
// appearance. A batch then updates each counter row once (PostgreSQL
// refuses an upsert that touches a row twice in one statement).
func SumPayments(decisions []Decision) []PaymentCount {
	var payments []PaymentCount
	pay := map[string]int{}
	for _, d := range decisions {
		if !IsPayment(d) {
			continue
		}
		j, ok := pay[d.CounterpartyID]
		if !ok {
			j = len(payments)
			pay[d.CounterpartyID] = j
			payments = append(payments, PaymentCount{CounterpartyID: d.CounterpartyID})
		}
		payments[j].Payments++
	}
	return payments
}
