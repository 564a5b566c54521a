package server

import (
	"bytes"

	"github.com/gofiber/fiber/v2"
)

// refuseContentEncoding answers 415 to any request that declares a content
// coding other than identity. Fiber's c.Body() inflates gzip, deflate and br
// with no limit, so a 10 KiB body would become gigabytes past BodyLimit.
// Every Content-Encoding header line and every coding in it is checked.
func refuseContentEncoding(c *fiber.Ctx) error {
	for key, value := range c.Request().Header.All() {
		if !bytes.EqualFold(key, []byte(fiber.HeaderContentEncoding)) {
			continue
		}
		for coding := range bytes.SplitSeq(value, []byte(",")) {
			coding = bytes.TrimSpace(coding)
			if len(coding) > 0 && !bytes.EqualFold(coding, []byte("identity")) {
				// RFC 9110 §15.5.16: say which codings are acceptable.
				c.Set(fiber.HeaderAcceptEncoding, "identity")
				return Problem(ErrUnsupportedMediaType, "Request bodies must not be compressed: send them with no Content-Encoding.")
			}
		}
	}
	return nil
}
