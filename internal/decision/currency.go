package decision

import "strings"

// iso4217 is the set of currency codes an amount may carry: ISO 4217 "List
// One" (current currency and funds codes, maintained by SIX on behalf of ISO)
// as of 2025, including funds codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI,
// UYW), precious metals (XAG, XAU, XPD, XPT) and supranational units (XDR,
// XSU, XUA, XBA–XBD). The standard library has no such table.
//
// Two codes of the list are left out on purpose: XTS (reserved for testing)
// and XXX (no currency involved) name no money an agent could move, and a
// policy comparing amounts should never meet them.
//
// Codes withdrawn recently but still met in transition are kept (ANG, being
// replaced by XCG in 2025; CUC; SLL, redenominated as SLE): refusing one
// would break an agent mid-migration, while accepting it only hands the
// organization's policy a currency it may have no limit for (the acme
// example escalates those). Codes withdrawn long ago (HRK, VEF, ZWL…) are
// refused. Update this table when ISO amends List One.
var iso4217 = codeSet(`
	AED AFN ALL AMD ANG AOA ARS AUD AWG AZN
	BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
	CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK
	DJF DKK DOP DZD
	EGP ERN ETB EUR
	FJD FKP
	GBP GEL GHS GIP GMD GNF GTQ GYD
	HKD HNL HTG HUF
	IDR ILS INR IQD IRR ISK
	JMD JOD JPY
	KES KGS KHR KMF KPW KRW KWD KYD KZT
	LAK LBP LKR LRD LSL LYD
	MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN
	NAD NGN NIO NOK NPR NZD
	OMR
	PAB PEN PGK PHP PKR PLN PYG
	QAR
	RON RSD RUB RWF
	SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL
	THB TJS TMT TND TOP TRY TTD TWD TZS
	UAH UGX USD USN UYI UYU UYW UZS
	VED VES VND VUV
	WST
	XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA
	YER
	ZAR ZMW ZWG
`)

func codeSet(list string) map[string]struct{} {
	codes := strings.Fields(list)
	set := make(map[string]struct{}, len(codes))
	for _, c := range codes {
		set[c] = struct{}{}
	}
	return set
}

// IsCurrency reports whether code is an ISO 4217 currency code an amount may
// carry (see iso4217): exactly three upper-case letters from the table.
func IsCurrency(code string) bool {
	_, ok := iso4217[code]
	return ok
}
