package jose

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrNotCompact: not a compact JWS in its one canonical spelling.
var ErrNotCompact = errors.New("not a compact JWS")

// strictB64 is base64url without padding, every bit past the last byte
// zero (RFC 7515 §2, RFC 4648 §3.5).
var strictB64 = base64.RawURLEncoding.Strict()

// SplitCompact splits a compact JWS (RFC 7515 §7.1) into its protected
// header, parsed by ParseHeader without being trusted, and its payload,
// without verifying anything. Each of the three parts must be unpadded
// base64url with no other character (not even the line breaks Go's
// decoder skips) and zero trailing bits, the signature included, though
// it is not signed: decoders that are lenient about any of these read
// many strings as one JWS, and a JWS's hash must name it (a receipt's
// ledger entry is the SHA-256 of its string). Errors wrap ErrNotCompact,
// or say which header member is refused.
func SplitCompact(compact string) (Header, []byte, error) {
	var h Header
	header, rest, ok := strings.Cut(compact, ".")
	payload64, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(sig, ".") {
		return h, nil, fmt.Errorf("%w: not three parts", ErrNotCompact)
	}
	raw, err := decodePart("header", header)
	if err != nil {
		return h, nil, err
	}
	payload, err := decodePart("payload", payload64)
	if err != nil {
		return h, nil, err
	}
	if _, err := decodePart("signature", sig); err != nil {
		return h, nil, err
	}
	if h, err = ParseHeader(raw); err != nil {
		return h, nil, fmt.Errorf("header: %w", err)
	}
	return h, payload, nil
}

// decodePart decodes one part of a compact JWS, strictly.
func decodePart(name, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, fmt.Errorf("%w: the %s is not unpadded base64url", ErrNotCompact, name)
		}
	}
	b, err := strictB64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: the %s is not canonical base64url", ErrNotCompact, name)
	}
	return b, nil
}
