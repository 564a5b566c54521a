package server

import (
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/agentsigna/agentsigna/internal/store"
	"github.com/agentsigna/agentsigna/ledger"
	"github.com/agentsigna/agentsigna/server/strictjson"
)

// statusOfSentinel maps the wrapped sentinel in err to a status, or 0.
// Unavailability is tested first: when the database is down, a lookup that
// also says "not found" must not be believed.
func statusOfSentinel(err error) int {
	for _, row := range []struct {
		status int
		kinds  []error
	}{
		// ledger.ErrClosed: the process is stopping (a request that outlived
		// the shutdown timeout); another replica can answer.
		// ledger.ErrUntrustedHead: the log's newest checkpoint was altered;
		// nothing is appended or proven until an operator has looked.
		{503, []error{store.ErrUnavailable, store.ErrSchema, ErrUnavailable, ledger.ErrClosed, ledger.ErrUntrustedHead}},
		{400, []error{ErrBadRequest, store.ErrInvalid}},
		{401, []error{ErrUnauthorized}},
		{403, []error{ErrForbidden}},
		{404, []error{ErrNotFound, store.ErrNotFound}},
		{405, []error{ErrMethodNotAllowed}},
		{409, []error{ErrConflict, store.ErrConflict, store.ErrAppendOnly}},
		{413, []error{ErrPayloadTooLarge}},
		{415, []error{ErrUnsupportedMediaType}},
		{422, []error{ErrUnprocessable}},
		{429, []error{ErrTooManyRequests}},
	} {
		for _, kind := range row.kinds {
			if errors.Is(err, kind) {
				return row.status
			}
		}
	}
	return 0
}

// classify is the one error → response mapping. The detail is the caller's
// only when err carries a *ProblemError of a known kind; otherwise it is the
// class's generic text, so error strings never reach a client.
func classify(err error) (problemClass, string) {
	var pe *ProblemError
	if errors.As(err, &pe) {
		if status := statusOfSentinel(pe.kind); status != 0 {
			class := classForStatus(status)
			return class, pe.detail
		}
	}
	if status := statusOfSentinel(err); status != 0 {
		class := classForStatus(status)
		return class, class.detail
	}
	// Fiber's own errors (unknown route, body over the limit, 405…): their
	// message may quote the request, so only the code is kept.
	var fe *fiber.Error
	if errors.As(err, &fe) {
		class := classForStatus(fe.Code)
		return class, class.detail
	}
	// A handler that called strictjson directly instead of DecodeJSON.
	var je *strictjson.Error
	if errors.As(err, &je) && !errors.Is(err, strictjson.ErrInvalidTarget) {
		class := classForStatus(400)
		if errors.Is(err, strictjson.ErrTooLarge) {
			class = classForStatus(413)
		}
		return class, class.detail
	}
	class := classForStatus(500)
	return class, class.detail
}
