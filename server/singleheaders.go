package server

import (
	"bytes"

	"github.com/gofiber/fiber/v2"
)

// singleHeaders may appear at most once in a request, in its header
// section. Taken from its first line, as fasthttp's Peek does, a repeated
// one would be read one way here and perhaps another by a proxy or client
// library that takes the last: two Idempotency-Keys would be two decisions
// to one and one to the other, two Authorization lines two callers. Nor
// may one come as a trailer (after a chunked body), where Peek also finds
// it and a proxy that drops or merges trailers does not.
var singleHeaders = [...]string{fiber.HeaderAuthorization, "Idempotency-Key"}

// refuseRepeatedHeaders answers 400 to a request that repeats one of
// singleHeaders, or sends one as a trailer (fasthttp's Trailers lists the
// trailer names a request announced, and those it sent unannounced).
func refuseRepeatedHeaders(c *fiber.Ctx) error {
	h := &c.Request().Header
	var seen [len(singleHeaders)]bool
	for key := range h.All() {
		for i, name := range singleHeaders {
			if !bytes.EqualFold(key, []byte(name)) {
				continue
			}
			if seen[i] {
				return Problem(ErrBadRequest, "The "+name+" header appears more than once.")
			}
			seen[i] = true
		}
	}
	for key := range h.Trailers() {
		for _, name := range singleHeaders {
			if bytes.EqualFold(key, []byte(name)) {
				return Problem(ErrBadRequest, "The "+name+" header may not be sent as a trailer.")
			}
		}
	}
	return nil
}
