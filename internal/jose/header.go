package jose

import (
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
)

// Header holds the protected header members readers here use; Crit and
// B64 are read only to be refused.
type Header struct {
	Alg  string         `json:"alg"`
	Kid  string         `json:"kid"`
	Typ  string         `json:"typ"`
	Crit jsontext.Value `json:"crit"`
	B64  jsontext.Value `json:"b64"`
}

// HeaderMembers are the names Header reads.
var HeaderMembers = Flat("alg", "kid", "typ", "crit", "b64")

// ErrUnsupportedHeader: the header asks for a critical extension or
// b64=false.
var ErrUnsupportedHeader = errors.New("unsupported header (crit or b64)")

// ParseHeader decodes a protected header's JSON (the first part of a
// compact JWS, base64url-decoded) without trusting it: the caller checks
// alg before touching a key. A duplicate, or a case variant of a member
// read here ("KID", "Alg"), would let two JOSE readers read two headers,
// and is refused (Check); other members are ignored (RFC 7515 §4). No
// critical extension is understood, and b64=false would change what the
// signature covers (RFC 7797): both are ErrUnsupportedHeader rather than
// interpreted. Errors quote member names, never values.
func ParseHeader(raw []byte) (Header, error) {
	var h Header
	if err := Check(raw, HeaderMembers); err != nil {
		return h, err
	}
	if err := jsonv2.Unmarshal(raw, &h); err != nil {
		return h, fmt.Errorf("header does not decode as JOSE: %w", ErrNotJSON)
	}
	if h.Crit != nil || h.B64 != nil {
		return h, ErrUnsupportedHeader
	}
	return h, nil
}
