package server

import (
	"encoding/json"
	"slices"

	"github.com/gofiber/fiber/v2"
)

// writeProblem answers err as problem+json (on an OAuth token endpoint, a
// client error as RFC 6749 §5.2 says). The body is built only from the
// class table, a ProblemError's detail and the request id.
func (b *boundary) writeProblem(c *fiber.Ctx, st *requestState, err error) {
	class, detail := classify(err)
	b.logError(c, st, class, err)

	securityHeaders(c, b.tls)
	c.Set(HeaderRequestID, st.id)
	// A handler may have set a coding for a body that is now replaced.
	c.Response().Header.Del(fiber.HeaderContentEncoding)
	if class.status == fiber.StatusUnauthorized && len(c.Response().Header.Peek(fiber.HeaderWWWAuthenticate)) == 0 {
		// RFC 9110 §11.6.1: a 401 names the scheme to use.
		c.Set(fiber.HeaderWWWAuthenticate, "Bearer")
	}
	if class.status >= 400 && class.status < 500 && slices.Contains(b.oauthPaths, c.Path()) {
		// RFC 6749 §5.2: an OAuth client reads "error" from a JSON body,
		// not a problem. The status stays what the refusal is (413, 415,
		// 405…; 400 for a repeated credential), as §5.2 allows.
		if err := writeOAuthError(c, class.status, "invalid_request", detail); err == nil {
			return
		}
	}
	body, mErr := json.Marshal(ProblemDetails{
		Type:      class.typeURI(),
		Title:     class.title,
		Status:    class.status,
		Detail:    detail,
		RequestID: st.id,
	})
	if mErr != nil { // not reachable: every field is a string or an int
		body = []byte(`{"type":"` + ProblemTypeBase + `internal","status":500}`)
	}
	c.Status(class.status)
	c.Set(fiber.HeaderContentType, ProblemContentType)
	c.Response().SetBody(body)
}
