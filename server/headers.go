package server

import (
	"strings"

	"github.com/gofiber/fiber/v2"
)

const (
	// apiCSP: API responses are data, never documents; nothing may load.
	apiCSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
	// portalCSP: portal pages load their own scripts, styles and images and
	// nothing else: no inline script, no third party, no framing.
	portalCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
	// portalPrefix is where both planes serve their portal (DESIGN.md §2).
	portalPrefix = "/portal"
	// permissionsPolicy denies the powerful features no page of ours uses.
	// browsing-topics replaces interest-cohort, which Chromium no longer
	// recognises and reports as a console error.
	permissionsPolicy = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), browsing-topics=()"
	// hstsValue: two years, as hstspreload.org asks.
	hstsValue = "max-age=63072000; includeSubDomains"
)

// HeaderRequestID carries the server-generated request id on every response.
const HeaderRequestID = "X-Request-Id"

// securityHeaders sets the boundary headers on c's response. It is called at
// the start of every request and again on every error response, because
// fasthttp answers some errors (413, 431, 408) without running middleware.
func securityHeaders(c *fiber.Ctx, tls bool) {
	h := &c.Response().Header
	h.Set("Content-Security-Policy", cspFor(c.Path()))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", permissionsPolicy)
	// Responses carry tenant data or tokens: none is cached unless its
	// handler says otherwise, and only a response that never changes may:
	// full ledger tiles and entry bundles are "private, immutable" with
	// Vary: Authorization, Cookie (ledger.go), so only the caller's own
	// cache keeps them, per credential. An error response is set here
	// again, so it is never cached.
	h.Set("Cache-Control", "no-store")
	if tls {
		h.Set("Strict-Transport-Security", hstsValue)
	}
	// fasthttp adds no Server header when fiber's ServerHeader is empty and
	// fiber never adds X-Powered-By; deleting them keeps it so whatever a
	// handler did.
	h.Del("Server")
	h.Del("X-Powered-By")
}

// cspFor picks the policy by path: the portal is the only place that serves
// documents. c.Path() is the path as it is routed, dot segments included:
// "/portal/../healthz" gets the portal's policy, but it is routed as
// itself too, under the portal, where nothing answers it (404). A case
// variant such as "/Portal/" gets the stricter API policy, and routing is
// case-sensitive anyway.
func cspFor(path string) string {
	if path == portalPrefix || strings.HasPrefix(path, portalPrefix+"/") {
		return portalCSP
	}
	return apiCSP
}
