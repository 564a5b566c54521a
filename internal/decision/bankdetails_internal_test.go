package decision

import "testing"

// Bank details are found by name as agents' JSON spells them (snake_case,
// camelCase, kebab-case, prefixed), when the member has a value, and by
// value when the value is an IBAN written as IBANs are, whatever its name;
// ordinary business names and values, including ones that merely contain
// the letters or pass the IBAN checksum by chance, are not.
func TestBankDetailsIn(t *testing.T) {
	for _, name := range []string{
		"iban", "IBAN", "beneficiary_iban", "beneficiaryIBAN", "bankDetails", "bank-details", "bank_details", "BankAccount",
		"bank_account_number", "accountNumber", "account_no", "routingNumber", "sort_code", "swiftCode", "SWIFT", "swift",
		"bic", "BIC", "aba", "bank",
	} {
		if !bankDetailsIn(map[string]any{"x": []any{map[string]any{name: "n/a"}}}) {
			t.Errorf("%q not seen as bank details", name)
		}
	}
	for _, name := range []string{
		"name", "banking_day", "accounting_period", "account", "abacus", "publication", "description", "ibis",
		"libanese_market", "swift_delivery", "swiftness", "bankruptcy_risk",
	} {
		if bankDetailsIn(map[string]any{name: "n/a"}) {
			t.Errorf("%q seen as bank details", name)
		}
	}
	for _, v := range []any{nil, false, ""} {
		if bankDetailsIn(map[string]any{"iban": v}) {
			t.Errorf("iban: %v seen as bank details", v)
		}
	}
	for _, v := range []string{"DE89370400440532013000", "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 32"} {
		if !bankDetailsIn(map[string]any{"payout": map[string]any{"account": v}}) {
			t.Errorf("the IBAN %q not seen", v)
		}
	}
	for _, v := range []string{
		"DE89370400440532013001",       // check digits wrong
		"DE8937040044053201300",        // a character short
		"gb82west12345698765432",       // lower case: free text
		"GB82 WEST 12345698765432",     // not in groups of four
		"INV-2291-2026-11-28-0001",     // an order number
		"PO12345678901234567890",       // no such country
		"XX00 0000 0000 0000",          // no such country
		"ab12 replacement order 00042", // free text
	} {
		if bankDetailsIn(map[string]any{"ref": v}) {
			t.Errorf("%q seen as an IBAN", v)
		}
	}
}

// The rule's answers over a fixed corpus, for the revision it names: a
// change to what the rule answers must come with a new bankRuleRevision
// (which the base revision in receipts covers), and a new answer here.
func TestBankRuleRevision(t *testing.T) {
	corpus := []any{
		map[string]any{"iban": "x"}, map[string]any{"bankDetails": "x"}, map[string]any{"accountNo": "x"},
		map[string]any{"account": "x"}, map[string]any{"swift_delivery": "x"}, map[string]any{"sortCode": "x"},
		map[string]any{"routing_number": 1}, map[string]any{"bank": true}, map[string]any{"bank": false},
		map[string]any{"a": "DE89 3704 0044 0532 0130 00"}, map[string]any{"a": "de89370400440532013000"},
		map[string]any{"a": "NO9386011117947"}, map[string]any{"a": "FR7630006000011234567890189"},
		map[string]any{"a": []any{map[string]any{"swiftBic": "x"}}}, map[string]any{"bank_code": "x"},
	}
	var got []byte
	for _, c := range corpus {
		if bankDetailsIn(c) {
			got = append(got, '1')
		} else {
			got = append(got, '0')
		}
	}
	answers := map[string]string{
		"bank-details-in-params/2: names iban bic aba swift bank, " +
			"bank+details|detail|account|acct|number|code, account+number|no|num, routing+number|no, sort+code, swift+code|bic; " +
			"values: ISO 13616 IBANs, upper case, by country length": "111001110101111",
	}
	want, ok := answers[bankRuleRevision]
	if !ok || string(got) != want {
		t.Fatalf("the rule answers %s under revision %q (known: %v): a change to the rule needs a new revision", got, bankRuleRevision, answers)
	}
}
