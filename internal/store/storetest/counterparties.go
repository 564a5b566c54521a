package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/store"
)

func testCounterparties(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme := CreateTenant(t, b, "acme")
	var sealedCP, plain store.Counterparty
	givenID := store.NewID(store.PrefixCounterparty)
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		// The caller picks the id first when it seals: the seal binds it.
		sealedCP, err = tx.Counterparties().Create(ctx, store.Counterparty{ID: givenID, Name: "Supplier GmbH",
			Status: store.CounterpartyVerified, BankDetailsSealed: []byte("sealed v1"), LedgerIndex: ledgerIndex(4)})
		if err != nil {
			return err
		}
		if sealedCP.ID != givenID || sealedCP.CreatedAt.IsZero() || !sealedCP.UpdatedAt.Equal(sealedCP.CreatedAt) {
			return fmt.Errorf("created %+v", sealedCP)
		}
		plain, err = tx.Counterparties().Create(ctx, store.Counterparty{Name: "New Vendor", LedgerIndex: ledgerIndex(5)})
		if err != nil {
			return err
		}
		if store.CheckID(store.PrefixCounterparty, plain.ID) != nil || plain.Status != store.CounterpartyNew || plain.BankDetailsSealed != nil {
			return fmt.Errorf("created %+v", plain)
		}
		return nil
	})
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		cps := tx.Counterparties()
		got, err := cps.Get(ctx, givenID)
		if err != nil || got.Name != "Supplier GmbH" || got.Status != store.CounterpartyVerified ||
			!bytes.Equal(got.BankDetailsSealed, []byte("sealed v1")) || !got.CreatedAt.Equal(sealedCP.CreatedAt) ||
			got.LedgerIndex == nil || *got.LedgerIndex != 4 {
			return fmt.Errorf("Get = %+v, %v", got, err)
		}
		if got, err := cps.Get(ctx, plain.ID); err != nil || got.BankDetailsSealed != nil || got.Status != store.CounterpartyNew {
			return fmt.Errorf("Get(no bank details) = %+v, %v", got, err)
		}
		list, err := cps.List(ctx)
		if err != nil || len(list) != 2 {
			return fmt.Errorf("List = %+v, %v", list, err)
		}
		for _, cp := range list {
			if cp.BankDetailsSealed != nil || (cp.ID != givenID && cp.ID != plain.ID) || cp.LedgerIndex == nil {
				return fmt.Errorf("List returned %+v; bank details stay out of lists", cp)
			}
		}
		if err := cps.SetStatus(ctx, plain.ID, store.CounterpartyBlocked); err != nil {
			return err
		}
		if err := cps.SetStatus(ctx, plain.ID, store.CounterpartyNew); err != nil {
			return err
		}
		if err := cps.SetBankDetails(ctx, plain.ID, []byte("sealed v2")); err != nil {
			return err
		}
		got, err = cps.Get(ctx, plain.ID)
		if err != nil || got.Status != store.CounterpartyNew || !bytes.Equal(got.BankDetailsSealed, []byte("sealed v2")) ||
			got.Name != "New Vendor" || got.UpdatedAt.Before(got.CreatedAt) {
			return fmt.Errorf("after changes: %+v, %v", got, err)
		}
		if n, err := cps.PaymentsCount(ctx, plain.ID); err != nil || n != 0 {
			return fmt.Errorf("PaymentsCount without decisions = %d, %v", n, err)
		}
		return nil
	})
	unknown := store.NewID(store.PrefixCounterparty)
	create := func(mutate func(*store.Counterparty)) func(ctx context.Context, tx store.TenantTx) error {
		return func(ctx context.Context, tx store.TenantTx) error {
			c := store.Counterparty{Name: "X", LedgerIndex: ledgerIndex(9)}
			mutate(&c)
			_, err := tx.Counterparties().Create(ctx, c)
			return err
		}
	}
	expectRefusals(t, b, acme.ID, []refusal{
		{"duplicate id", create(func(c *store.Counterparty) { c.ID = givenID }), store.ErrConflict},
		{"malformed id", create(func(c *store.Counterparty) { c.ID = "cp_1" }), store.ErrInvalid},
		{"agent id", create(func(c *store.Counterparty) { c.ID = store.NewID(store.PrefixAgent) }), store.ErrInvalid},
		{"empty name", create(func(c *store.Counterparty) { c.Name = "" }), store.ErrInvalid},
		{"long name", create(func(c *store.Counterparty) { c.Name = strings.Repeat("n", store.MaxCounterpartyName+1) }), store.ErrInvalid},
		{"control character", create(func(c *store.Counterparty) { c.Name = "x\x1b[31m" }), store.ErrInvalid},
		{"line separator", create(func(c *store.Counterparty) { c.Name = "Vendor\u2029cp_x verified" }), store.ErrInvalid},
		{"invisible name", create(func(c *store.Counterparty) { c.Name = "\u2800\u200b" }), store.ErrInvalid},
		{"bad status", create(func(c *store.Counterparty) { c.Status = "trusted" }), store.ErrInvalid},
		{"no ledger entry", create(func(c *store.Counterparty) { c.LedgerIndex = nil }), store.ErrInvalid},
		{"ledger index past int64", create(func(c *store.Counterparty) { c.LedgerIndex = ledgerIndex(1 << 63) }), store.ErrInvalid},
		// Nothing logs a change of status yet: a counterparty is verified
		// only as it was created.
		{"verified by a change", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Counterparties().SetStatus(ctx, plain.ID, store.CounterpartyVerified)
		}, store.ErrConflict},
		{"empty sealed bank details", create(func(c *store.Counterparty) { c.BankDetailsSealed = []byte{} }), store.ErrInvalid},
		{"oversized sealed bank details", create(func(c *store.Counterparty) {
			c.BankDetailsSealed = make([]byte, store.MaxSealedBankDetail+1)
		}), store.ErrInvalid},
		{"get unknown", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Counterparties().Get(ctx, unknown)
			return err
		}, store.ErrNotFound},
		{"get malformed", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Counterparties().Get(ctx, "")
			return err
		}, store.ErrInvalid},
		{"status of unknown", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Counterparties().SetStatus(ctx, unknown, store.CounterpartyBlocked)
		}, store.ErrNotFound},
		{"bad status change", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Counterparties().SetStatus(ctx, givenID, "")
		}, store.ErrInvalid},
		{"bank details of unknown", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Counterparties().SetBankDetails(ctx, unknown, []byte("sealed"))
		}, store.ErrNotFound},
		{"clearing bank details", func(ctx context.Context, tx store.TenantTx) error {
			return tx.Counterparties().SetBankDetails(ctx, givenID, nil)
		}, store.ErrInvalid},
		{"payments of malformed", func(ctx context.Context, tx store.TenantTx) error {
			_, err := tx.Counterparties().PaymentsCount(ctx, "cp_%")
			return err
		}, store.ErrInvalid},
	})
}

// testAdoptCounterparties: a counterparty stored before counterparties
// named their entry (ledger_index NULL, planted with h.Tamper) is made to
// name one by Adopt, once; one that names an entry keeps it, through the
// API or around it, and another organization's are not there.
func testAdoptCounterparties(t *testing.T, h Harness) {
	b := newBackend(t, h)
	acme, bravo := CreateTenant(t, b, "acme"), CreateTenant(t, b, "bravo")
	var legacy, named, other store.Counterparty
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		if legacy, err = tx.Counterparties().Create(ctx, store.Counterparty{Name: "Old Vendor", Status: store.CounterpartyVerified, LedgerIndex: ledgerIndex(0)}); err != nil {
			return err
		}
		named, err = tx.Counterparties().Create(ctx, store.Counterparty{Name: "New Vendor", LedgerIndex: ledgerIndex(5)})
		return err
	})
	inTenant(t, b, bravo.ID, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		other, err = tx.Counterparties().Create(ctx, store.Counterparty{Name: "Other Vendor", LedgerIndex: ledgerIndex(0)})
		return err
	})
	h.Tamper(t, b, acme.ID, `UPDATE counterparties SET ledger_index = NULL WHERE id = '`+legacy.ID+`'`)
	h.Tamper(t, b, bravo.ID, `UPDATE counterparties SET ledger_index = NULL WHERE id = '`+other.ID+`'`)

	// want checks the entry legacy names (-1: none), by Get and List.
	want := func(ctx context.Context, tx store.TenantTx, index int64) error {
		got, err := tx.Counterparties().Get(ctx, legacy.ID)
		if err != nil || got.Status != store.CounterpartyVerified || (got.LedgerIndex == nil) != (index < 0) ||
			got.LedgerIndex != nil && int64(*got.LedgerIndex) != index {
			return fmt.Errorf("Get = %+v, %v; want entry %d", got, err, index)
		}
		list, err := tx.Counterparties().List(ctx)
		if err != nil || len(list) != 2 {
			return fmt.Errorf("List = %+v, %v", list, err)
		}
		for _, cp := range list {
			if cp.ID == legacy.ID && (cp.LedgerIndex == nil) != (index < 0) || cp.ID == named.ID && (cp.LedgerIndex == nil || *cp.LedgerIndex != 5) {
				return fmt.Errorf("List names %+v", cp)
			}
		}
		return nil
	}
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error { return want(ctx, tx, -1) })
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error {
		if err := tx.Counterparties().Adopt(ctx, legacy.ID, 11); err != nil {
			return fmt.Errorf("Adopt: %w", err)
		}
		// A refusal leaves the transaction usable.
		if err := tx.Counterparties().Adopt(ctx, legacy.ID, 12); !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("Adopt twice: %v, want ErrConflict", err)
		}
		return want(ctx, tx, 11)
	})
	adopt := func(id string, index uint64) func(ctx context.Context, tx store.TenantTx) error {
		return func(ctx context.Context, tx store.TenantTx) error { return tx.Counterparties().Adopt(ctx, id, index) }
	}
	expectRefusals(t, b, acme.ID, []refusal{
		{"adopted again", adopt(legacy.ID, 12), store.ErrConflict},
		{"counterparty naming its entry", adopt(named.ID, 12), store.ErrConflict},
		{"unknown counterparty", adopt(store.NewID(store.PrefixCounterparty), 12), store.ErrNotFound},
		{"another organization's counterparty", adopt(other.ID, 12), store.ErrNotFound},
		{"malformed id", adopt("cp_%", 12), store.ErrInvalid},
		{"index past int64", adopt(legacy.ID, 1<<63), store.ErrInvalid},
	})
	// Around the API: an entry once named is final.
	for _, stmt := range []string{
		`UPDATE counterparties SET ledger_index = 12 WHERE id = '` + legacy.ID + `'`,
		`UPDATE counterparties SET ledger_index = NULL WHERE id = '` + legacy.ID + `'`,
		`UPDATE counterparties SET ledger_index = 12 WHERE id = '` + named.ID + `'`,
	} {
		if n, err := h.RawTenantExec(ctx(t), b, acme.ID, stmt); err == nil {
			t.Errorf("%s: accepted (%d rows)", stmt, n)
		}
	}
	if n, err := h.RawTenantExec(ctx(t), b, acme.ID, `UPDATE counterparties SET ledger_index = 12 WHERE id = '`+other.ID+`'`); err == nil && n != 0 {
		t.Errorf("acme changed %d of bravo's counterparties", n)
	}
	inTenant(t, b, acme.ID, func(ctx context.Context, tx store.TenantTx) error { return want(ctx, tx, 11) })
	inTenant(t, b, bravo.ID, func(ctx context.Context, tx store.TenantTx) error {
		got, err := tx.Counterparties().Get(ctx, other.ID)
		if err != nil || got.LedgerIndex != nil {
			return fmt.Errorf("bravo's counterparty: %+v, %v", got, err)
		}
		return tx.Counterparties().Adopt(ctx, other.ID, 3)
	})
}
