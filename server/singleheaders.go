package server

import (
	"bytes"

	"github.com/gofiber/fiber/v2"
)

// singleHeaders may appear at most once in a request. Taken from its first
// line, as fasthttp's Peek does, a repeated one would be read one way here
// and perhaps another by a proxy or client library that takes the last:
// two Idempotency-Keys would be two decisions to one and one to the
// other, two Authorization lines two callers.
var singleHeaders = [...]string{fiber.HeaderAuthorization, "Idempotency-Key"}

// refuseRepeatedHeaders answers 400 to a request that repeats one of
// singleHeaders.
func refuseRepeatedHeaders(c *fiber.Ctx) error {
	var seen [len(singleHeaders)]bool
	for key := range c.Request().Header.All() {
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
	return nil
}
