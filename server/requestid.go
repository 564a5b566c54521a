package server

import (
	"crypto/rand"

	"github.com/gofiber/fiber/v2"
)

// newRequestID returns 26 base32 characters holding 130 random bits.
func newRequestID() string { return rand.Text() }

// validClientRequestID reports whether a client's X-Request-Id matches
// ^[A-Za-z0-9._-]{1,64}$. Such an id is only logged, next to ours, for
// correlation: it is never echoed, because a client could reuse another
// request's id to muddle the logs.
func validClientRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// RequestID returns the id of the request being served, as sent in its
// X-Request-Id response header, for handlers that record it (ledger
// entries, auth events). It is "" outside the boundary middleware.
func RequestID(c *fiber.Ctx) string {
	if st := stateOf(c); st != nil {
		return st.id
	}
	return ""
}
