package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"time"

	"github.com/agentsigna/agentsigna/internal/jose"
)

// ClockSkew is how far in the future an iat or nbf may be (clocks of agents
// and replicas differ a little).
const ClockSkew = 30 * time.Second

// maxJWSSize bounds what is parsed: assertions and tokens are a few hundred bytes.
const maxJWSSize = 8 << 10

var errMalformed = errors.New("malformed JWS")

// splitJWS decodes the header and payload of a compact JWS (RFC 7515 §7.1)
// without verifying anything: callers check alg before touching a key, and
// use the payload only after jwx has verified the same bytes. Each part
// must be spelled canonically (jose.SplitCompact), so that one token has
// one string. Header members are read by exact name: a duplicate, or a
// case variant of one read, is errMalformed.
func splitJWS(compact string) (jose.Header, []byte, error) {
	if len(compact) > maxJWSSize {
		return jose.Header{}, nil, errMalformed
	}
	h, payload, err := jose.SplitCompact(compact)
	if err != nil {
		return h, nil, errMalformed
	}
	return h, payload, nil
}

// numericDate is a JWT time (RFC 7519 §2): seconds since the epoch, possibly
// fractional. set tells a missing claim from the epoch.
type numericDate struct {
	time.Time
	set bool
}

func (d *numericDate) UnmarshalJSON(b []byte) error {
	// A JSON number, not a string: json.Number would take "1700000000".
	if b = bytes.TrimSpace(b); len(b) == 0 || b[0] == '"' {
		return errors.New("not a NumericDate")
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	f, err := n.Float64()
	// Bounded so that no conversion overflows: year 0 to year ~36812.
	if err != nil || math.IsNaN(f) || f < 0 || f > 1<<40 {
		return errors.New("not a NumericDate")
	}
	sec, frac := math.Modf(f)
	d.Time, d.set = time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
	return nil
}

// audience is the aud claim: one string or an array of strings (RFC 7519 §4.1.3).
type audience struct {
	values []string
}

func (a *audience) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		a.values = []string{s}
		return nil
	}
	return json.Unmarshal(b, &a.values)
}

// is says whether the audience is want alone: a string, or an array of
// that one value. An assertion naming other audiences too is one its
// agent signed for them as well, which any of them could replay here (the
// audience injection against private_key_jwt that the RFC 7523 update,
// draft-ietf-oauth-rfc7523bis, closes by requiring the one audience).
func (a audience) is(want string) bool {
	return len(a.values) == 1 && a.values[0] == want
}

// mediaTypeIs compares a typ header with a media type the way RFC 7515
// §4.1.9 asks: case-insensitively, "application/" optional.
func mediaTypeIs(typ, want string) bool {
	if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	return strings.EqualFold(typ, want)
}
