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
var singleHeaders = [...][]byte{[]byte(fiber.HeaderAuthorization), []byte("Idempotency-Key")}

// refuseRequestHeaders checks a request's header lines, in one pass,
// before any handler reads them or the body:
//   - 415 to any that declares a content coding other than identity.
//     Fiber's c.Body() inflates gzip, deflate and br with no limit, so a
//     10 KiB body would become gigabytes past BodyLimit. Every
//     Content-Encoding line and every coding in it is checked.
//   - 400 to one that repeats one of singleHeaders, or sends one as a
//     trailer (fasthttp's Trailers lists the trailer names a request
//     announced, and those it sent unannounced).
func refuseRequestHeaders(c *fiber.Ctx) error {
	h := &c.Request().Header
	encoded := false
	var seen [len(singleHeaders)]bool
	var repeated []byte
	for key, value := range h.All() {
		if bytes.EqualFold(key, []byte(fiber.HeaderContentEncoding)) {
			for coding := range bytes.SplitSeq(value, []byte(",")) {
				coding = bytes.TrimSpace(coding)
				encoded = encoded || len(coding) > 0 && !bytes.EqualFold(coding, []byte("identity"))
			}
			continue
		}
		for i, name := range singleHeaders {
			if bytes.EqualFold(key, name) {
				if seen[i] && repeated == nil {
					repeated = name
				}
				seen[i] = true
			}
		}
	}
	switch {
	case encoded:
		// RFC 9110 §15.5.16: say which codings are acceptable.
		c.Set(fiber.HeaderAcceptEncoding, "identity")
		return Problem(ErrUnsupportedMediaType, "Request bodies must not be compressed: send them with no Content-Encoding.")
	case repeated != nil:
		return Problem(ErrBadRequest, "The "+string(repeated)+" header appears more than once.")
	}
	for key := range h.Trailers() {
		for _, name := range singleHeaders {
			if bytes.EqualFold(key, name) {
				return Problem(ErrBadRequest, "The "+string(name)+" header may not be sent as a trailer.")
			}
		}
	}
	return nil
}
