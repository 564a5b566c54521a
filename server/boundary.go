package server

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// boundary is the per-plane state of the middleware and the error handler.
type boundary struct {
	log          *slog.Logger
	tls          bool
	bodyLimit    int
	maxJSONDepth int
	methods      []string // the methods Fiber routes; others are refused
	// oauthPaths are the plane's OAuth token endpoints: what the boundary
	// refuses there (a compressed or oversized body, a repeated
	// Authorization) is answered as RFC 6749 §5.2 says, as the endpoint
	// answers its own refusals. Set when routes are mounted, before Serve.
	oauthPaths []string
}

// requestState is what the boundary remembers about one request.
type requestState struct {
	id       string
	clientID string // the client's X-Request-Id when well-formed, logged only
	start    time.Time
	// entryRoute is the route matched when the middleware ran (its own);
	// still seeing it after c.Next() means no route matched.
	entryRoute *fiber.Route
	// unparsed: fasthttp refused the request while reading its headers,
	// and reset them: the method it reports then is its default, GET.
	unparsed bool
	limits   jsonLimits
}

type jsonLimits struct{ bodyLimit, maxDepth int }

// stateKey is the c.Locals key of *requestState.
type stateKey struct{}

func stateOf(c *fiber.Ctx) *requestState {
	st, _ := c.Locals(stateKey{}).(*requestState)
	return st
}

// middleware is registered first with app.Use, so it wraps every route, the
// 404 of an unknown path and the 405 of a wrong method.
func (b *boundary) middleware(c *fiber.Ctx) error {
	st := b.begin(c, true)
	// Checked before any handler can call c.Body(), which would inflate.
	err := refuseRequestHeaders(c)
	if err == nil {
		err = nextRecovering(c)
	}
	if err != nil {
		b.writeProblem(c, st, err)
	}
	b.logRequest(c, st)
	return nil
}

// handleError is the app's Fiber ErrorHandler. Requests that went through
// the middleware never reach it (the middleware writes their errors
// itself); fasthttp calls it directly for requests it refuses before any
// middleware runs (body over the limit, headers too large, read timeout), so
// it does the boundary's work for those.
func (b *boundary) handleError(c *fiber.Ctx, err error) error {
	if st := stateOf(c); st != nil {
		b.writeProblem(c, st, err)
		return nil
	}
	st := b.begin(c, false)
	st.unparsed = len(c.Request().Header.RawHeaders()) == 0
	b.writeProblem(c, st, err)
	b.logRequest(c, st)
	return nil
}

// refuseUnknownMethods wraps Fiber's fasthttp handler: Fiber answers a
// method it does not know with a bare text 400 that skips the middleware and
// the error handler; this answers it with a 501 problem like any other error.
func (b *boundary) refuseUnknownMethods(app *fiber.App, next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(fctx *fasthttp.RequestCtx) {
		method := fctx.Method()
		if slices.ContainsFunc(b.methods, func(m string) bool { return m == string(method) }) {
			next(fctx)
			return
		}
		c := app.AcquireCtx(fctx)
		defer app.ReleaseCtx(c)
		_ = b.handleError(c, fiber.NewError(fiber.StatusNotImplemented))
	}
}

// begin starts the boundary's work on a request; routed tells whether Fiber
// is routing it (false when fasthttp refused it before routing, in which
// case c.Route() is a stand-in holding the raw path).
func (b *boundary) begin(c *fiber.Ctx, routed bool) *requestState {
	st := &requestState{
		id:     newRequestID(),
		start:  time.Now(),
		limits: jsonLimits{bodyLimit: b.bodyLimit, maxDepth: b.maxJSONDepth},
	}
	if routed {
		st.entryRoute = c.Route()
	}
	// Copied: fasthttp reuses the header buffer after the request.
	if id := c.Get(HeaderRequestID); validClientRequestID(id) {
		st.clientID = strings.Clone(id)
	}
	c.Locals(stateKey{}, st)
	securityHeaders(c, b.tls)
	c.Set(HeaderRequestID, st.id)
	return st
}

// panicError carries a recovered panic to the 500 path.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// nextRecovering runs the rest of the chain, turning a panic into an error.
func nextRecovering(c *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	return c.Next()
}
