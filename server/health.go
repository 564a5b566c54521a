package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"
)

type statusBody struct {
	Status string `json:"status"`
}

// healthz answers 200 while the process serves HTTP at all (liveness).
func healthz(c *fiber.Ctx) error {
	return c.JSON(statusBody{Status: "ok"})
}

// readyz answers 200 when the plane's readiness check passes, else 503. The
// check's error is logged, never sent: it may name a host or a file.
func readyz(check ReadinessCheck, timeout time.Duration, log *slog.Logger) fiber.Handler {
	return func(c *fiber.Ctx) error {
		ctx, cancel := context.WithTimeout(c.UserContext(), timeout)
		defer cancel()
		if err := check(ctx); err != nil {
			log.LogAttrs(ctx, slog.LevelWarn, "readiness check failed",
				slog.String("request_id", RequestID(c)),
				slog.String("error", err.Error()))
			return Problem(ErrUnavailable, "The service is not ready.")
		}
		return c.JSON(statusBody{Status: "ready"})
	}
}
