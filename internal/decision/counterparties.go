package decision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// Ledger entry kinds of counterparties (record: CounterpartyRecord).
const (
	// KindCounterpartyCreated: a counterparty was added.
	KindCounterpartyCreated = "counterparty.created"
	// KindCounterpartyAdopted: a counterparty stored before counterparties
	// named their entry was logged as found (Adopter).
	KindCounterpartyAdopted = "counterparty.adopted"
)

// CounterpartyRecord is the record of a counterparty.created entry, the
// counterparty as it was added, or of a counterparty.adopted one, as an
// operator found it. Its bank details appear only as the
// SHA-256 of their sealed form (the plain details are few enough to be
// guessed from a digest).
type CounterpartyRecord struct {
	Event          string `json:"event"` // "counterparty_created" or "counterparty_adopted"
	CounterpartyID string `json:"counterparty_id"`
	Name           string `json:"name"`
	Status         string `json:"status"`
	// BankDetailsSealedSHA256 is the SHA-256 of the sealed bank details
	// in standard base64 (hex before 2026-11-28), "" when none were
	// given.
	BankDetailsSealedSHA256 string `json:"bank_details_sealed_sha256,omitempty"`
}

// Counterparties adds an organization's counterparties, each with the
// ledger entry that records it (ledger.AppendAllAndChange): a row is
// stored only with its entry, and names it.
type Counterparties struct {
	ledger *ledger.Ledger
}

// NewCounterparties returns the counterparty changes of organizations
// logged in l.
func NewCounterparties(l *ledger.Ledger) (*Counterparties, error) {
	if l == nil {
		return nil, errors.New("decision: NewCounterparties needs a ledger")
	}
	return &Counterparties{ledger: l}, nil
}

// Add stores cp — its ID generated when empty (a caller sealing bank
// details generates it first: the seal binds the row id), its status new
// when empty — and logs it. The stored counterparty is returned.
func (c *Counterparties) Add(ctx context.Context, org Organization, cp store.Counterparty) (store.Counterparty, error) {
	stored, err := c.AddAll(ctx, org, []store.Counterparty{cp})
	if err != nil {
		return store.Counterparty{}, err
	}
	return stored[0], nil
}

// AddAll is Add of several counterparties in one batch: all are stored
// and logged, or none.
func (c *Counterparties) AddAll(ctx context.Context, org Organization, cps []store.Counterparty) ([]store.Counterparty, error) {
	cps = slices.Clone(cps)
	entries := make([]ledger.Entry, len(cps))
	for i := range cps {
		cp := &cps[i]
		if cp.ID == "" {
			cp.ID = store.NewID(store.PrefixCounterparty)
		}
		if cp.Status == "" {
			cp.Status = store.CounterpartyNew
		}
		if err := store.CheckCounterparty(*cp); err != nil {
			return nil, err
		}
		rec := CounterpartyRecord{Event: "counterparty_created", CounterpartyID: cp.ID, Name: cp.Name, Status: string(cp.Status)}
		rec.BankDetailsSealedSHA256 = bankDigest(cp.BankDetailsSealed)
		b, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		entries[i] = ledger.Entry{Kind: KindCounterpartyCreated, Subject: cp.ID, Record: b}
	}
	stored := make([]store.Counterparty, len(cps))
	_, err := c.ledger.AppendAllAndChange(ctx, c.ledger.TenantLog(org.ID, org.Slug), entries,
		func(ctx context.Context, tx store.TenantTx, first uint64) error {
			for i, cp := range cps {
				index := first + uint64(i) // the batch's entries are consecutive
				cp.LedgerIndex = &index
				var err error
				if stored[i], err = tx.Counterparties().Create(ctx, cp); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return stored, nil
}

// counterpartyLog decides which status of a counterparty row the policy
// sees. A status that trusts the counterparty less than verified (new,
// blocked) is taken as stored: a row can only make the answer stricter
// by it. Verified is taken only once the entry the row names
// (counterparty.created), proven under the newest checkpoint the log key
// signed, records that counterparty as verified; else the policy sees the
// counterparty as new, and the row is reported once. The organization's
// database role could otherwise insert or mark a counterparty verified
// and take its payments out of the base policy's escalation. A row that
// names no entry is seen as new: one stored before counterparties named
// their entry cannot be told from one planted since, until an operator
// adopts it (Adopter: its counterparty.adopted entry then stands for its
// creation).
type counterpartyLog struct {
	ledger *ledger.Ledger
	logger *slog.Logger
	// proofs remembers, per row and the entry it names, the status that
	// entry recorded.
	proofs rowProofs[counterpartyRef, store.CounterpartyStatus]
}

type counterpartyRef struct {
	tenant, id string
	index      uint64
	unnamed    bool // the row names no entry
}

// errCounterpartyNotLogged: a counterparty row is not what the
// organization's log recorded.
var errCounterpartyNotLogged = errors.New("the counterparty is not what the organization's log recorded")

// status is the status of cp (a row of org) the policy sees: a row may
// trust less than its entry recorded, never more. Verified only if the
// entry recorded it so; blocked if the entry recorded it so, whatever the
// row says (no entry unblocks a counterparty); otherwise as stored, and
// new for a row that is not the log's.
func (l *counterpartyLog) status(ctx context.Context, org Organization, cp store.Counterparty) (store.CounterpartyStatus, error) {
	switch {
	case cp.Status == store.CounterpartyBlocked:
		return cp.Status, nil
	case cp.Status == store.CounterpartyNew && cp.LedgerIndex == nil:
		return cp.Status, nil // nothing recorded to trust it less
	}
	ref := counterpartyRef{tenant: org.ID, id: cp.ID, unnamed: cp.LedgerIndex == nil}
	if !ref.unnamed {
		ref.index = *cp.LedgerIndex
	}
	recorded, logged, err := l.proofs.get(ref, func() (store.CounterpartyStatus, error) { return l.recorded(ctx, org, cp) }, errCounterpartyNotLogged,
		func(err error) {
			l.logger.ErrorContext(ctx, "decision: a counterparty row is not what the organization's log recorded, so was written behind the service's back or, naming no entry, not adopted; its decisions see it as new",
				slog.String("tenant", org.Slug), slog.String("counterparty", cp.ID), slog.Any("reason", err))
		})
	switch {
	case err != nil:
		return "", err
	case logged && recorded == store.CounterpartyBlocked:
		return recorded, nil
	case logged && cp.Status == store.CounterpartyVerified && recorded == store.CounterpartyVerified:
		return cp.Status, nil
	}
	return store.CounterpartyNew, nil
}

// recorded proves the entry cp names and returns the status it recorded.
// A row the entry does not record is errCounterpartyNotLogged, wrapped,
// and so is one stored as verified that the entry did not record
// verified, unless it recorded it blocked: that is the answer, and is
// reported here, once per row (the answer is remembered).
func (l *counterpartyLog) recorded(ctx context.Context, org Organization, cp store.Counterparty) (store.CounterpartyStatus, error) {
	if cp.LedgerIndex == nil {
		return "", fmt.Errorf("%w: it names no entry (planted, or stored before counterparties were logged and not adopted since)", errCounterpartyNotLogged)
	}
	index := *cp.LedgerIndex
	rec, err := loggedRecord[CounterpartyRecord](ctx, l.ledger, org, index, cp.ID, errCounterpartyNotLogged, KindCounterpartyCreated, KindCounterpartyAdopted)
	switch {
	case err != nil:
		return "", err
	case rec.Event != "counterparty_created" && rec.Event != "counterparty_adopted" || rec.CounterpartyID != cp.ID:
		return "", fmt.Errorf("%w: entry %d records another counterparty", errCounterpartyNotLogged, index)
	case rec.Status == string(store.CounterpartyBlocked):
		l.logger.ErrorContext(ctx, "decision: a counterparty the organization's log recorded blocked is stored unblocked, so was changed behind the service's back; its decisions see it blocked",
			slog.String("tenant", org.Slug), slog.String("counterparty", cp.ID), slog.String("stored", string(cp.Status)), slog.Uint64("entry", index))
	case cp.Status == store.CounterpartyVerified && rec.Status != string(store.CounterpartyVerified):
		return "", fmt.Errorf("%w: it is stored verified, but entry %d records it %s", errCounterpartyNotLogged, index, rec.Status)
	}
	return store.CounterpartyStatus(rec.Status), nil
}
