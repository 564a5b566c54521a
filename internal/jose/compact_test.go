package jose

import (
	"errors"
	"strings"
	"testing"
)

func TestSplitCompact(t *testing.T) {
	// {"alg":"EdDSA","kid":"k1"} . {"sub":"a>?"} . 64 bytes that spell
	// '-' and '_' and end in 'A' (4 zero bits).
	const (
		header  = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0"
		payload = "eyJzdWIiOiJhPj8ifQ"
		sig     = "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-A"
	)
	h, p, err := SplitCompact(header + "." + payload + "." + sig)
	if err != nil || h.Alg != "EdDSA" || h.Kid != "k1" || string(p) != `{"sub":"a>?"}` {
		t.Fatalf("SplitCompact = %+v, %q, %v", h, p, err)
	}
	if _, _, err := SplitCompact(header + "." + payload + "."); err != nil {
		t.Errorf("an empty signature (alg none) splits, for the caller to refuse: %v", err)
	}
	for name, jws := range map[string]string{
		"two parts":                       header + "." + payload,
		"four parts":                      header + "." + payload + "." + sig + ".",
		"signature padded":                header + "." + payload + "." + sig + "==",
		"signature in standard alphabet":  header + "." + payload + "." + strings.NewReplacer("-", "+", "_", "/").Replace(sig),
		"signature with trailing bits":    header + "." + payload + "." + strings.TrimSuffix(sig, "A") + "B",
		"line break in the signature":     header + "." + payload + "." + sig[:40] + "\n" + sig[40:],
		"carriage return in the payload":  header + "." + payload[:4] + "\r" + payload[4:] + "." + sig,
		"payload padded":                  header + "." + payload + "==." + sig,
		"payload with trailing bits":      header + "." + strings.TrimSuffix(payload, "Q") + "R." + sig,
		"header padded":                   header + "=." + payload + "." + sig,
		"space in the header":             " " + header + "." + payload + "." + sig,
		"impossible length (one char)":    header + "." + payload + ".A",
		"JSON serialization, not compact": `{"protected":"` + header + `","payload":"` + payload + `","signature":"` + sig + `"}`,
	} {
		if _, _, err := SplitCompact(jws); !errors.Is(err, ErrNotCompact) {
			t.Errorf("%s: %v, want ErrNotCompact", name, err)
		}
	}
	// A canonical spelling whose header is not a JOSE header.
	if _, _, err := SplitCompact("WyJhbGciXQ." + payload + "." + sig); err == nil || errors.Is(err, ErrNotCompact) {
		t.Errorf("header [\"alg\"]: %v, want a header error", err)
	}
}
