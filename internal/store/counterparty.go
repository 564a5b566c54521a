package store

import (
	"context"
	"fmt"
	"time"
)

// CounterpartyTx stores an organization's counterparties: the parties its
// agents pay or deal with. They are never deleted; only the status and the
// sealed bank details change. The store never sees bank details in the
// clear: the caller seals them with the master key (internal/secrets,
// binding the tenant, table "counterparties", the row id and purpose
// "bank_details") before they get here.
type CounterpartyTx interface {
	// Create stores a new counterparty, naming the ledger entry that
	// records it (ErrInvalid without). An empty ID is generated (NewID
	// PrefixCounterparty) — a caller sealing bank details generates it
	// first, since the seal binds the row id; an empty Status is
	// CounterpartyNew. ErrConflict if the id exists.
	Create(ctx context.Context, c Counterparty) (Counterparty, error)
	// Get returns one counterparty, sealed bank details included;
	// ErrNotFound if the organization has none by that id.
	Get(ctx context.Context, id string) (Counterparty, error)
	// List returns every counterparty, oldest first, without bank details.
	List(ctx context.Context) ([]Counterparty, error)
	// SetStatus changes a counterparty's status. Nothing logs it yet:
	// the decision service honors a status its entry does not record
	// only when it trusts the counterparty less (blocked, new), and
	// ErrConflict refuses making one verified that is not: a counterparty
	// is verified only as it was recorded.
	SetStatus(ctx context.Context, id string, status CounterpartyStatus) error
	// SetBankDetails replaces the sealed bank details.
	SetBankDetails(ctx context.Context, id string, sealed []byte) error
	// Adopt makes a counterparty that names no entry name index: the
	// entry that records it, its counterparty.created one or a new
	// counterparty.adopted one recording it as found (agentsigna ledger
	// adopt). ErrNotFound for an unknown counterparty, ErrConflict when it
	// already names an entry.
	Adopt(ctx context.Context, id string, index uint64) error
	// PaymentsCount counts the decisions that allowed a money payment
	// (action type "payment.…", outcome allow) to this counterparty — the
	// policy input's counterparty.payments_count.
	PaymentsCount(ctx context.Context, counterpartyID string) (int, error)
}

// CounterpartyStatus is how far an organization trusts a counterparty.
type CounterpartyStatus string

const (
	CounterpartyNew      CounterpartyStatus = "new"
	CounterpartyVerified CounterpartyStatus = "verified"
	CounterpartyBlocked  CounterpartyStatus = "blocked"
)

// Counterparty is a party an organization's agents transact with.
type Counterparty struct {
	ID     string // PrefixCounterparty id; generated when empty
	Name   string // 1-200 bytes
	Status CounterpartyStatus
	// BankDetailsSealed is the master-key ciphertext of the bank details,
	// or nil when none are recorded. Never part of policy input or of a
	// response.
	BankDetailsSealed []byte
	CreatedAt         time.Time
	UpdatedAt         time.Time
	// LedgerIndex is the index of the organization's ledger entry that
	// recorded the counterparty (counterparty.created, or
	// counterparty.adopted for one stored before): the decision
	// service trusts it as verified only once that entry, proven under
	// the log's signature, says so. Required by Create; nil only for a
	// counterparty stored before counterparties named their entry, which
	// nothing trusts as verified until Adopt names one.
	LedgerIndex *uint64
}

// Bounds of counterparty fields.
const (
	MaxCounterpartyName = 200
	MaxSealedBankDetail = 16 << 10
)

// CheckCounterpartyStatus reports ErrInvalid for an unknown status.
func CheckCounterpartyStatus(s CounterpartyStatus) error {
	switch s {
	case CounterpartyNew, CounterpartyVerified, CounterpartyBlocked:
		return nil
	}
	return fmt.Errorf("%w: counterparty status must be new, verified or blocked", ErrInvalid)
}

// CheckSealedBankDetails bounds a sealed bank-details value; nil means none.
func CheckSealedBankDetails(sealed []byte, optional bool) error {
	if sealed == nil && optional {
		return nil
	}
	if len(sealed) == 0 || len(sealed) > MaxSealedBankDetail {
		return fmt.Errorf("%w: sealed bank details must be 1-%d bytes", ErrInvalid, MaxSealedBankDetail)
	}
	return nil
}

// CheckCounterparty validates a counterparty before it is stored.
func CheckCounterparty(c Counterparty) error {
	if err := CheckID(PrefixCounterparty, c.ID); err != nil {
		return err
	}
	if err := CheckLabel("counterparty name", c.Name, MaxCounterpartyName); err != nil {
		return err
	}
	if err := CheckCounterpartyStatus(c.Status); err != nil {
		return err
	}
	return CheckSealedBankDetails(c.BankDetailsSealed, true)
}
