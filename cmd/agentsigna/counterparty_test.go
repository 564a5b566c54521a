package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentsigna/agentsigna/internal/decision"
	"github.com/agentsigna/agentsigna/internal/secrets"
	"github.com/agentsigna/agentsigna/internal/store"
)

func TestCounterpartyAddSealsBankDetails(t *testing.T) {
	o := newTestOrg(t)
	const iban = "IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX"
	bankFile := writeFile(t, t.TempDir(), "bank.txt", []byte(iban))

	plain := o.must(t, runCounterparty, "add", "--tenant", "acme", "--name", "New Vendor")
	if store.CheckID(store.PrefixCounterparty, plain[0]) != nil || plain[1] != "new" || plain[2] != "bank_details=none" || plain[3] != `name="New Vendor"` {
		t.Fatalf("add printed %v", plain)
	}

	out, errOut, err := o.run(runCounterparty, "add", "--tenant", "acme", "--name", "Supplier GmbH", "--status", "verified", "--bank-details-file", bankFile)
	if err != nil {
		t.Fatalf("add: %v (stderr %q)", err, errOut)
	}
	if strings.Contains(out+errOut, "DE89") || strings.Contains(out+errOut, "COBADEFF") {
		t.Fatalf("bank details printed: %q %q", out, errOut)
	}
	fields := strings.Split(strings.TrimSuffix(out, "\n"), "\t")
	if len(fields) != 4 || fields[1] != "verified" || fields[2] != "bank_details=sealed" {
		t.Fatalf("add printed %q", out)
	}
	id := fields[0]

	var cp store.Counterparty
	o.in(t, func(ctx context.Context, tx store.TenantTx) error {
		var err error
		cp, err = tx.Counterparties().Get(ctx, id)
		return err
	})
	if cp.Name != "Supplier GmbH" || cp.Status != store.CounterpartyVerified || bytes.Contains(cp.BankDetailsSealed, []byte("DE89")) {
		t.Fatalf("stored %+v", cp)
	}
	// Stored with the entry that records it, which names it, its status
	// and the digest of the sealed details: never the details.
	var entry store.LedgerEntry
	o.in(t, func(ctx context.Context, tx store.TenantTx) error {
		if cp.LedgerIndex == nil {
			return errors.New("the counterparty names no ledger entry")
		}
		es, err := tx.Log().Entries(ctx, *cp.LedgerIndex, *cp.LedgerIndex+1)
		if err == nil && len(es) == 1 {
			entry = es[0]
		}
		return err
	})
	var rec decision.CounterpartyRecord
	sealedSum := sha256.Sum256(cp.BankDetailsSealed)
	if err := json.Unmarshal(entry.Record, &rec); err != nil || rec.CounterpartyID != id || rec.Status != "verified" ||
		rec.Name != "Supplier GmbH" || rec.BankDetailsSealedSHA256 != base64.StdEncoding.EncodeToString(sealedSum[:]) {
		t.Fatalf("entry %d records %s (%v)", *cp.LedgerIndex, entry.Record, err)
	}
	if bytes.Contains(entry.Record, []byte("DE89")) || !bytes.Contains(entry.Entry, []byte(`"kind":"counterparty.created"`)) {
		t.Fatalf("entry %s with record %s", entry.Entry, entry.Record)
	}
	master, _, err := secrets.LoadMasterKey(secrets.LoadOptions{DataDir: o.dir})
	if err != nil {
		t.Fatal(err)
	}
	bind := secrets.Binding{Tenant: o.tenantID, Table: "counterparties", Row: id, Purpose: "bank_details"}
	got, err := master.Open(cp.BankDetailsSealed, bind)
	if err != nil || string(got) != iban {
		t.Fatalf("sealed bank details open to %q, %v", got, err)
	}
	// Bound to the row: moved to another counterparty, they do not open.
	bind.Row = plain[0]
	if _, err := master.Open(cp.BankDetailsSealed, bind); !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("opened under another row: %v", err)
	}

	out, _, err = o.run(runCounterparty, "list", "--tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "\n") != 2 || !strings.Contains(out, id+"\tverified\tname=\"Supplier GmbH\"\n") ||
		!strings.Contains(out, plain[0]+"\tnew\tname=\"New Vendor\"\n") || strings.Contains(out, "DE89") {
		t.Fatalf("list printed %q", out)
	}
}

func TestCounterpartyUsageErrors(t *testing.T) {
	o := newTestOrg(t)
	empty := writeFile(t, t.TempDir(), "empty.txt", nil)
	big := writeFile(t, t.TempDir(), "big.txt", bytes.Repeat([]byte("x"), maxBankDetails+1))
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no subcommand", nil},
		{"unknown subcommand", []string{"remove"}},
		{"blocked at creation", []string{"add", "--tenant", "acme", "--name", "X", "--status", "blocked"}},
		{"unknown status", []string{"add", "--tenant", "acme", "--name", "X", "--status", "trusted"}},
		{"no name", []string{"add", "--tenant", "acme"}},
		{"name with a newline", []string{"add", "--tenant", "acme", "--name", "X\nY"}},
		{"empty bank details", []string{"add", "--tenant", "acme", "--name", "X", "--bank-details-file", empty}},
		{"no tenant", []string{"list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := o.run(runCounterparty, tc.args...); !errors.Is(err, errUsage) {
				t.Fatalf("got %v, want a usage error", err)
			}
		})
	}
	if _, _, err := o.run(runCounterparty, "add", "--tenant", "acme", "--name", "X", "--bank-details-file", big); err == nil {
		t.Fatal("oversized bank details accepted")
	}
	if out, _, err := o.run(runCounterparty, "list", "--tenant", "acme"); err != nil || out != "" {
		t.Fatalf("refused adds stored something: %q, %v", out, err)
	}
}
