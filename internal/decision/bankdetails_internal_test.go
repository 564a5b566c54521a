package decision

import "testing"

// Bank details are found by name as agents' JSON spells it (snake_case,
// camelCase, kebab-case, prefixed), and by value when the value is an
// IBAN whatever its name; names that only look alike are not.
func TestBankDetailsIn(t *testing.T) {
	iban := "DE89370400440532013000"
	for _, name := range []string{
		"iban", "IBAN", "beneficiary_iban", "bankDetails", "bank-details", "bank_details", "BankAccount",
		"bank_account_number", "accountNumber", "account_no", "routingNumber", "sort_code", "swiftCode", "SWIFT",
		"bic", "BIC", "aba", "bank",
	} {
		if !bankDetailsIn(map[string]any{"x": []any{map[string]any{name: "n/a"}}}) {
			t.Errorf("%q not seen as bank details", name)
		}
	}
	for _, name := range []string{"name", "banking_day", "accounting_period", "account", "abacus", "publication", "description", "ibis"} {
		if bankDetailsIn(map[string]any{name: "n/a"}) {
			t.Errorf("%q seen as bank details", name)
		}
	}
	for _, v := range []string{iban, "DE89 3704 0044 0532 0130 00", "gb82west12345698765432", "GB82 WEST 1234 5698 7654 32"} {
		if !bankDetailsIn(map[string]any{"payout": map[string]any{"account": v}}) {
			t.Errorf("the IBAN %q not seen", v)
		}
	}
	for _, v := range []string{"DE89370400440532013001", "DE8937040044053201300", "INV-2291-2026-11-28-0001", "XX00 0000 0000 0000", "de89370400440532013000x"} {
		if bankDetailsIn(map[string]any{"ref": v}) {
			t.Errorf("%q seen as an IBAN", v)
		}
	}
}
