package decision

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
)

// KindCounterpartyCreated: a counterparty was added (record:
// CounterpartyRecord).
const KindCounterpartyCreated = "counterparty.created"

// CounterpartyRecord is the record of a counterparty.created entry: the
// counterparty as it was added. Its bank details appear only as the
// SHA-256 of their sealed form (the plain details are few enough to be
// guessed from a digest).
type CounterpartyRecord struct {
	Event          string `json:"event"` // "counterparty_created"
	CounterpartyID string `json:"counterparty_id"`
	Name           string `json:"name"`
	Status         string `json:"status"`
	// BankDetailsSealedSHA256 is the hex SHA-256 of the sealed bank
	// details, "" when none were given.
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
	if cp.ID == "" {
		cp.ID = store.NewID(store.PrefixCounterparty)
	}
	if cp.Status == "" {
		cp.Status = store.CounterpartyNew
	}
	if err := store.CheckCounterparty(cp); err != nil {
		return store.Counterparty{}, err
	}
	rec := CounterpartyRecord{Event: "counterparty_created", CounterpartyID: cp.ID, Name: cp.Name, Status: string(cp.Status)}
	if cp.BankDetailsSealed != nil {
		sum := sha256.Sum256(cp.BankDetailsSealed)
		rec.BankDetailsSealedSHA256 = hex.EncodeToString(sum[:])
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return store.Counterparty{}, err
	}
	var stored store.Counterparty
	_, err = c.ledger.AppendAllAndChange(ctx, c.ledger.TenantLog(org.ID, org.Slug),
		[]ledger.Entry{{Kind: KindCounterpartyCreated, Subject: cp.ID, Record: b}},
		func(ctx context.Context, tx store.TenantTx, index uint64) error {
			cp.LedgerIndex = &index
			var err error
			stored, err = tx.Counterparties().Create(ctx, cp)
			return err
		})
	if err != nil {
		return store.Counterparty{}, err
	}
	return stored, nil
}
