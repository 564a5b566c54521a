package server

import (
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/gofiber/fiber/v2"
)

// logError records the real error of a 5xx answer, server-side only.
func (b *boundary) logError(c *fiber.Ctx, st *requestState, class problemClass, err error) {
	var deliberate *ProblemError
	switch {
	case class.status == fiber.StatusInternalServerError:
	case class.status == fiber.StatusServiceUnavailable && !errors.As(err, &deliberate):
		// A store outage; a handler's own Problem(ErrUnavailable, …) is an
		// answer, and its cause was logged where it was known.
	default:
		return
	}
	attrs := []slog.Attr{
		slog.String("request_id", st.id),
		slog.Int("status", class.status),
		slog.String("error", err.Error()),
	}
	var p *panicError
	if errors.As(err, &p) {
		attrs = append(attrs, slog.String("stack", string(p.stack)))
	}
	level := slog.LevelError
	if class.status == fiber.StatusServiceUnavailable {
		level = slog.LevelWarn
	}
	b.log.LogAttrs(c.UserContext(), level, "request failed", attrs...)
}

// logRequest writes the one access-log line of a request: no header value,
// no body, no raw path or query (either may carry a secret), only the route
// pattern that matched.
func (b *boundary) logRequest(c *fiber.Ctx, st *requestState) {
	attrs := []slog.Attr{
		slog.String("request_id", st.id),
		slog.String("method", b.safeMethod(c, st)),
		slog.String("route", routePattern(c, st)),
		slog.Int("status", c.Response().StatusCode()),
		slog.Duration("duration", time.Since(st.start)),
	}
	if st.clientID != "" {
		attrs = append(attrs, slog.String("client_request_id", st.clientID))
	}
	b.log.LogAttrs(c.UserContext(), slog.LevelInfo, "request", attrs...)
}

// safeMethod keeps an unknown method's bytes out of the log, and logs
// none for a request whose headers did not parse (which fasthttp would
// report as GET, whatever was sent).
func (b *boundary) safeMethod(c *fiber.Ctx, st *requestState) string {
	if st.unparsed {
		return ""
	}
	m := c.Method()
	if slices.Contains(b.methods, m) {
		return m
	}
	return "OTHER"
}

// routePattern is the registered path of the route that handled c
// ("/v1/cases/:id"), or "" when none did.
func routePattern(c *fiber.Ctx, st *requestState) string {
	if st.entryRoute == nil {
		return "" // fasthttp refused the request before routing
	}
	if r := c.Route(); r != st.entryRoute {
		return r.Path
	}
	return ""
}
