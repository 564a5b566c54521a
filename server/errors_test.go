package server_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/server"
	"github.com/agentsigna/agentsigna/server/strictjson"
)

func TestErrorMapping(t *testing.T) {
	env := newEnv(t)
	for _, tc := range []struct {
		kind   string
		err    error
		status int
		slug   string
		detail string // exact detail when not empty
	}{
		{"store-not-found", fmt.Errorf("get case: %w", store.ErrNotFound), 404, "not-found", ""},
		{"store-conflict", fmt.Errorf("insert: %w", store.ErrConflict), 409, "conflict", ""},
		{"store-invalid", fmt.Errorf("tenant id: %w", store.ErrInvalid), 400, "bad-request", ""},
		{"store-unavailable", fmt.Errorf("ping: %w", store.ErrUnavailable), 503, "unavailable", ""},
		{"store-append-only", fmt.Errorf("update ledger: %w", store.ErrAppendOnly), 409, "conflict", ""},
		{"store-schema", fmt.Errorf("open: %w", store.ErrSchema), 503, "unavailable", ""},
		{"ledger-closed", fmt.Errorf("decision: append: %w", ledger.ErrClosed), 503, "unavailable", ""},
		{"ledger-head-altered", fmt.Errorf("decision: append: %w", ledger.ErrUntrustedHead), 503, "unavailable", ""},
		{"bad-request", server.ErrBadRequest, 400, "bad-request", ""},
		{"unauthorized", fmt.Errorf("token: %w", server.ErrUnauthorized), 401, "unauthorized", ""},
		{"forbidden", server.ErrForbidden, 403, "forbidden", ""},
		{"not-found", server.ErrNotFound, 404, "not-found", ""},
		{"method", server.ErrMethodNotAllowed, 405, "method-not-allowed", ""},
		{"conflict", server.ErrConflict, 409, "conflict", ""},
		{"payload", server.ErrPayloadTooLarge, 413, "payload-too-large", ""},
		{"media", server.ErrUnsupportedMediaType, 415, "unsupported-media-type", ""},
		{"unprocessable", server.ErrUnprocessable, 422, "unprocessable", ""},
		{"too-many", server.ErrTooManyRequests, 429, "too-many-requests", ""},
		{"unavailable", server.ErrUnavailable, 503, "unavailable", ""},
		{"problem-detail", server.Problem(server.ErrForbidden, "Only an approver may vote."), 403, "forbidden", "Only an approver may vote."},
		{"problem-wrapped", fmt.Errorf("vote: %w", server.Problem(server.ErrUnprocessable, "The idempotency key was used with another body.")), 422, "unprocessable", "The idempotency key was used with another body."},
		{"problem-store-kind", server.Problem(store.ErrNotFound, "No such case."), 404, "not-found", "No such case."},
		{"problem-unknown-kind", server.Problem(errors.New("weird"), "SECRET detail of an unknown kind"), 500, "internal", ""},
		{"fiber-error", fiber.NewError(404, "Cannot GET /SECRET"), 404, "not-found", ""},
		{"fiber-unlisted-4xx", fiber.NewError(fiber.StatusTeapot, "SECRET"), 400, "bad-request", ""},
		{"fiber-unlisted-5xx", fiber.NewError(fiber.StatusBadGateway, "SECRET"), 500, "internal", ""},
		{"unavailable-beats-not-found", errors.Join(store.ErrNotFound, store.ErrUnavailable), 503, "unavailable", ""},
		{"strictjson-direct", fmt.Errorf("decode: %w", strictjson.Decode([]byte(`[]`), &struct{}{}, strictjson.Options{})), 400, "bad-request", ""},
		{"plain-error", errors.New("SECRET: disk /var/lib/agentsigna/tenants/x.db is locked"), 500, "internal", ""},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			env.errs[tc.kind] = tc.err
			resp, body := do(t, env.planes.Tenant.App(), get("/err/"+tc.kind))
			p := assertProblem(t, resp, body, tc.status, tc.slug)
			assertBoundaryHeaders(t, resp, false)
			if tc.detail != "" && p.Detail != tc.detail {
				t.Errorf("detail = %q, want %q", p.Detail, tc.detail)
			}
			// A generic detail is a sentence of the class, never err.Error().
			if strings.Contains(string(body), "SECRET") || (tc.detail == "" && strings.Contains(p.Detail, ": ")) {
				t.Errorf("body leaks error text: %s", body)
			}
			if tc.status == 401 && resp.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("401 without WWW-Authenticate: %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestInternalErrorNotLeaked(t *testing.T) {
	env := newEnv(t)
	for _, path := range []string{"/boom", "/panic"} {
		for _, plane := range env.bothPlanes() {
			resp, body := do(t, plane.App(), get(path))
			p := assertProblem(t, resp, body, 500, "internal")
			for _, leak := range []string{"secret", "/etc/", "pq:", "panic", "goroutine", ".go:"} {
				if strings.Contains(strings.ToLower(string(body)), leak) {
					t.Errorf("%s %s: body contains %q: %s", plane.Name(), path, leak, body)
				}
			}
			// The real error is logged, with the request id.
			var logged bool
			for _, rec := range env.logs.lines(t, p.RequestID) {
				if rec["level"] == "ERROR" && strings.Contains(fmt.Sprint(rec["error"]), "secret") {
					logged = true
					if path == "/panic" && !strings.Contains(fmt.Sprint(rec["stack"]), "goroutine") {
						t.Errorf("panic logged without its stack: %v", rec)
					}
				}
			}
			if !logged {
				t.Errorf("%s %s: the internal error was not logged with request id %s", plane.Name(), path, p.RequestID)
			}
		}
	}
}

func TestProblemDetailIsBounded(t *testing.T) {
	// Two-byte characters after one byte: byte 512 falls inside one.
	err := server.Problem(server.ErrBadRequest, "a"+strings.Repeat("é", 1000))
	var pe *server.ProblemError
	if !errors.As(err, &pe) || len(pe.Detail()) != 511 || !utf8.ValidString(pe.Detail()) || !errors.Is(err, server.ErrBadRequest) {
		t.Fatalf("Problem = %v (detail %d bytes)", err, len(pe.Detail()))
	}
}
