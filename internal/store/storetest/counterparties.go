package storetest

import (
	"bytes"
	"context"
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
