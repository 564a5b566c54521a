package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/time/rate"
)

// Plane is one Fiber app behind the boundary: the tenant or the platform
// plane. Register routes on App() before calling Serve.
type Plane struct {
	name          string
	app           *fiber.App
	log           *slog.Logger
	writeTimeout  time.Duration
	exportTimeout time.Duration
	maxConns      int
	// maxConnsPerAddress bounds the connections of one address (0: none).
	maxConnsPerAddress int
	// agents bounds each agent's decisions (nil: no bound, and on the
	// platform plane).
	agents *agentLimiter
	// boundary is the plane's middleware and error handler.
	boundary *boundary
}

// Planes are the two apps. They share nothing but the Config they were
// built from: no route, middleware instance or state.
type Planes struct {
	Tenant   *Plane
	Platform *Plane
}

// New builds both planes, each with GET /healthz and GET /readyz.
func New(cfg Config) (*Planes, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Planes{
		Tenant:   newPlane("tenant", cfg, cfg.TenantReady),
		Platform: newPlane("platform", cfg, cfg.PlatformReady),
	}, nil
}

func newPlane(name string, cfg Config, ready ReadinessCheck) *Plane {
	log := cfg.Logger.With("plane", name)
	b := &boundary{
		log:          log,
		tls:          cfg.TLS,
		bodyLimit:    cfg.BodyLimit,
		maxJSONDepth: cfg.MaxJSONDepth,
	}
	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		ErrorHandler:          b.handleError,
		BodyLimit:             cfg.BodyLimit,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		StrictRouting:         true,
		CaseSensitive:         true,
		// Left at their zero values on purpose:
		// ServerHeader: no Server header.
		// ProxyHeader, EnableTrustedProxyCheck: X-Forwarded-* is never
		// trusted; c.IP() is the peer address.
		// StreamRequestBody: the body limit is enforced before handlers run.
		//
		// fasthttp would otherwise parse every multipart/form-data body
		// before routing (spilling large parts to temporary files) and
		// answer a malformed one itself; no route here takes a form.
		DisablePreParseMultipartForm: true,
	})
	b.methods = app.Config().RequestMethods
	app.Server().Handler = b.refuseUnknownMethods(app, app.Server().Handler)
	app.Use(b.middleware)
	app.Get("/healthz", healthz)
	app.Get("/readyz", readyz(ready, cfg.ReadinessTimeout, log))
	var agents *agentLimiter
	if name == "tenant" && cfg.AgentDecisionRate != rate.Inf {
		agents = newAgentLimiter("decisions", cfg.AgentDecisionRate, cfg.AgentDecisionBurst, time.Now, log)
	}
	return &Plane{name: name, app: app, log: log, writeTimeout: cfg.WriteTimeout, exportTimeout: cfg.ExportTimeout,
		maxConns: cfg.MaxConnections, maxConnsPerAddress: cfg.MaxConnectionsPerAddress, agents: agents, boundary: b}
}

// Name is "tenant" or "platform".
func (p *Plane) Name() string { return p.name }

// App is the plane's Fiber app, for registering routes. Handlers return
// errors (wrapped sentinels, or Problem for a client-facing detail) and
// decode bodies with DecodeJSON; they must not set their own ErrorHandler
// (Mount of a sub-app with one would bypass the problem mapping).
func (p *Plane) App() *fiber.App { return p.app }

// Serve serves the plane on ln until Shutdown; wrap ln with tls.NewListener
// to serve TLS (and set Config.TLS). Routes must be registered before.
func (p *Plane) Serve(ln net.Listener) error {
	// At most maxConns connections are accepted at once; the next waits in
	// the listener's backlog until one closes. fasthttp's own Concurrency
	// limit would answer it 503 itself, outside the boundary (text/plain,
	// a Server header, none of the security headers).
	if err := p.app.Listener(newLimitListener(ln, p.maxConns, p.maxConnsPerAddress, p.log)); err != nil {
		return fmt.Errorf("server: %s plane: %w", p.name, err)
	}
	return nil
}

// Shutdown stops accepting connections, lets in-flight requests finish and
// returns when they have, or with an error when ctx is done: connections
// still open then are not closed here, and end with the process.
func (p *Plane) Shutdown(ctx context.Context) error {
	err := p.app.ShutdownWithContext(ctx)
	if p.agents != nil {
		p.agents.close() // logs the refusals counted and not yet logged
	}
	if err != nil {
		return fmt.Errorf("server: %s plane shutdown: %w", p.name, err)
	}
	return nil
}

// Shutdown shuts both planes down at once, within the same ctx.
func (ps *Planes) Shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range []*Plane{ps.Tenant, ps.Platform} {
		wg.Go(func() { errs[i] = p.Shutdown(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
