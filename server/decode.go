package server

import (
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/agentsigna/agentsigna/server/strictjson"
)

// DecodeJSON is how every handler reads a request body: it requires
// Content-Type application/json (optionally ; charset=utf-8) → 415, a body
// within the plane's limit → 413, and JSON that strictjson accepts into v
// → 400 naming the JSON path. The errors it returns are ready for
// ErrorHandler; a handler returns them as they are.
//
// It reads the raw body and never c.Body(), which would inflate a compressed
// one; the middleware has already refused any Content-Encoding. Limits are
// the plane's (Config.BodyLimit, Config.MaxJSONDepth), or the package
// defaults on an app without the boundary.
func DecodeJSON(c *fiber.Ctx, v any) error {
	limits := jsonLimits{bodyLimit: DefaultBodyLimit, maxDepth: DefaultMaxJSONDepth}
	if st := stateOf(c); st != nil {
		limits = st.limits
	}
	if err := requireJSONContentType(c.Get(fiber.HeaderContentType)); err != nil {
		return err
	}
	body := c.Request().Body()
	// Fiber enforces BodyLimit on the wire; checked again here so that
	// DecodeJSON holds its bound on its own, whatever the transport allows.
	if len(body) > limits.bodyLimit {
		return Problem(ErrPayloadTooLarge, fmt.Sprintf("The request body must not exceed %d bytes.", limits.bodyLimit))
	}
	err := strictjson.Decode(body, v, strictjson.Options{MaxBytes: limits.bodyLimit, MaxDepth: limits.maxDepth})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, strictjson.ErrTooLarge):
		return Problem(ErrPayloadTooLarge, fmt.Sprintf("The request body must not exceed %d bytes.", limits.bodyLimit))
	case errors.Is(err, strictjson.ErrInvalidTarget):
		return fmt.Errorf("server: DecodeJSON into %T: %w", v, err) // a handler bug: 500
	default:
		// strictjson's messages name a kind, a path and an offset, never a
		// value: they are written to be shown.
		return Problem(ErrBadRequest, "Invalid JSON body: "+err.Error()+".")
	}
}

// requireJSONContentType accepts application/json with no parameter other
// than charset=utf-8 (RFC 8259 §8.1: JSON is UTF-8; the media type defines
// no charset parameter, but clients send it).
func requireJSONContentType(contentType string) error {
	refuse := Problem(ErrUnsupportedMediaType, "The request body must be sent as Content-Type: application/json.")
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err != nil || mediaType != fiber.MIMEApplicationJSON {
		return refuse
	}
	for name, value := range params {
		if name != "charset" || !strings.EqualFold(value, "utf-8") {
			return refuse
		}
	}
	return nil
}
