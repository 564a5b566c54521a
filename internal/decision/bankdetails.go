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

// bankDetailWords are what a member name carrying a bank account's
// details contains, once folded (bankName): iban, beneficiary_iban,
// bankDetails, bank-account, accountNumber, routing_number, sort_code,
// swiftCode…
func bankDetailWords() []string {
	return []string{"iban", "bankdetail", "bankaccount", "accountnumber", "accountno", "routingnumber", "sortcode", "swift"}
}

// bankDetailNames are the short names that are one only whole.
func bankDetailNames() []string { return []string{"bank", "bic", "aba"} }

// bankRuleRevision names the Go-side rule, its words included, in the
// base revision receipts carry (Evaluator.BaseRevision): a change to it
// changes decisions, so it changes the revision.
var bankRuleRevision = "bank-details-in-params:" + strings.Join(bankDetailWords(), ",") + ";" + strings.Join(bankDetailNames(), ",") + ";iban-values"

// bankName folds a member name: lower case, letters and digits only.
func bankName(name string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return unicode.ToLower(r)
		}
		return -1
	}, name)
}

// isBankDetailName reports whether a member name carries bank details.
func isBankDetailName(name string) bool {
	n := bankName(name)
	return slices.Contains(bankDetailNames(), n) ||
		slices.ContainsFunc(bankDetailWords(), func(w string) bool { return strings.Contains(n, w) })
}

// bankDetailsIn reports whether params carry bank details: a member whose
// name isBankDetailName, or a string that is an IBAN, whatever it is
// named ({"payout":{"account":"DE89 3704 …"}}), at any depth (params nest
// at most MaxParamsDepth levels).
func bankDetailsIn(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for name, member := range v {
			if isBankDetailName(name) || bankDetailsIn(member) {
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

// isIBAN reports whether s, spaces aside, is an IBAN by ISO 13616's
// check: a country's two letters, two check digits, up to 30 letters and
// digits, the whole (its first four moved to the end, letters as 10…35)
// 1 modulo 97.
func isIBAN(s string) bool {
	if len(s) < 15 || len(s) > 42 { // 34 characters, grouped by spaces
		return false
	}
	s = strings.ReplaceAll(s, " ", "")
	if len(s) < 15 || len(s) > 34 {
		return false
	}
	s = strings.ToUpper(s)
	if !isUpper(s[0]) || !isUpper(s[1]) || !isDigit(s[2]) || !isDigit(s[3]) {
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
