package decision

import (
	"slices"
	"strings"
	"unicode"

	"github.com/agentsigna/agentsigna/bundles"
)

// ReasonBankDetails is the base's escalation of a bank-details change
// (policies/base: high_risk_category:counterparty.bank_details).
const ReasonBankDetails = "high_risk_category:counterparty.bank_details"

// bankRuleRevision names the Go-side rule in the base revision receipts
// carry (Evaluator.BaseRevision): a change to the rule changes decisions,
// so it must change this too. TestBankRuleRevision pins it.
const bankRuleRevision = "bank-details-in-params/2: names iban bic aba swift bank, " +
	"bank+details|detail|account|acct|number|code, account+number|no|num, routing+number|no, sort+code, swift+code|bic; " +
	"values: ISO 13616 IBANs, upper case, by country length"

// nameWords splits a member name into its lower-case words: at anything
// not a letter or digit, and where a lower-case letter meets an upper-case
// one (bankDetails, beneficiary_IBAN, sort-code).
func nameWords(name string) []string {
	var words []string
	var w []rune
	prevLower := false
	flush := func() {
		if len(w) > 0 {
			words = append(words, strings.ToLower(string(w)))
			w = w[:0]
		}
	}
	for _, r := range name {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
			prevLower = false
			continue
		case unicode.IsUpper(r) && prevLower:
			flush()
		}
		w = append(w, r)
		prevLower = unicode.IsLower(r)
	}
	flush()
	return words
}

// bankWordPairs are the two words in a row that name bank details.
var bankWordPairs = map[[2]string]bool{
	{"bank", "details"}: true, {"bank", "detail"}: true, {"bank", "account"}: true, {"bank", "acct"}: true,
	{"bank", "number"}: true, {"bank", "code"}: true,
	{"account", "number"}: true, {"account", "no"}: true, {"account", "num"}: true,
	{"routing", "number"}: true, {"routing", "no"}: true, {"sort", "code"}: true,
	{"swift", "code"}: true, {"swift", "bic"}: true,
}

// isBankDetailName reports whether a member name names bank details: a
// word iban, bic or aba, two words of bankWordPairs in a row, or the whole
// name bank or swift.
func isBankDetailName(name string) bool {
	words := nameWords(name)
	if len(words) == 1 && (words[0] == "bank" || words[0] == "swift") {
		return true
	}
	for i, w := range words {
		if w == "iban" || w == "bic" || w == "aba" {
			return true
		}
		if i > 0 && bankWordPairs[[2]string{words[i-1], w}] {
			return true
		}
	}
	return false
}

// bankDetailsIn reports whether params carry bank details: a member whose
// name isBankDetailName with a value (not null, false or ""), or a string
// that is an IBAN, whatever it is named ({"payout":{"account":"DE89 3704
// …"}}), at any depth (params nest at most MaxParamsDepth levels).
func bankDetailsIn(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for name, member := range v {
			if hasValue(member) && isBankDetailName(name) || bankDetailsIn(member) {
				return true
			}
		}
	case []any:
		return slices.ContainsFunc(v, bankDetailsIn)
	case string:
		return isIBAN(v)
	}
	return false
}

func hasValue(v any) bool { return v != nil && v != false && v != "" }

// ibanLengths are ISO 13616's IBAN lengths, by country.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
	"BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
	"ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
	"HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
	"LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
	"MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
	"RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

// isIBAN reports whether s is an IBAN as written on paper or in data: in
// upper case, whole or in groups of four separated by single spaces, of
// its country's length, and passing ISO 13616's check (the first four
// characters moved to the end, letters as 10…35, the whole 1 modulo 97).
// Lower case and other spellings are left out: free text and order
// numbers would pass the check one time in 97.
func isIBAN(s string) bool {
	if len(s) < 15 || len(s) > 42 {
		return false
	}
	if strings.Contains(s, " ") {
		groups := strings.Split(s, " ")
		for i, g := range groups {
			if len(g) != 4 && !(i == len(groups)-1 && len(g) > 0 && len(g) < 4) {
				return false
			}
		}
		s = strings.Join(groups, "")
	}
	if n, ok := ibanLengths[s[:2]]; !ok || len(s) != n || !isDigit(s[2]) || !isDigit(s[3]) {
		return false
	}
	mod := 0
	for _, c := range []byte(s[4:] + s[:4]) {
		switch {
		case isDigit(c):
			mod = (mod*10 + int(c-'0')) % 97
		case isUpper(c):
			mod = (mod*100 + int(c-'A'+10)) % 97
		default:
			return false
		}
	}
	return mod == 1
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// withBankDetailsRule is the base verdict with its one rule that runs in
// Go (see policies/base): an action whose params carry bank details is a
// bank-details change, whatever its type, escalated for two people. It
// is not in the Rego, whose verdicts are memoized by the input paths
// they read: params, which rarely repeat, would make every lookup miss.
func withBankDetailsRule(base bundles.Verdict, a Action) bundles.Verdict {
	if a.Params == nil || !bankDetailsIn(a.Params) {
		return base
	}
	if !slices.Contains(base.Escalate, ReasonBankDetails) {
		base.Escalate = append(slices.Clone(base.Escalate), ReasonBankDetails)
	}
	base.MinApprovals = max(base.MinApprovals, 2)
	return base
}
