package server

import (
	"errors"
	"unicode/utf8"
)

// Sentinel errors for failures that do not come from the store. Handlers
// return them (wrapped, or through Problem for a client-facing detail);
// ErrorHandler maps them to a status. store.ErrNotFound, ErrConflict,
// ErrInvalid, ErrAppendOnly, ErrUnavailable and ErrSchema are mapped too.
var (
	ErrBadRequest           = errors.New("bad request")
	ErrUnauthorized         = errors.New("unauthorized")
	ErrForbidden            = errors.New("forbidden")
	ErrNotFound             = errors.New("not found")
	ErrMethodNotAllowed     = errors.New("method not allowed")
	ErrConflict             = errors.New("conflict")
	ErrPayloadTooLarge      = errors.New("payload too large")
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	ErrUnprocessable        = errors.New("unprocessable content")
	ErrTooManyRequests      = errors.New("too many requests")
	ErrUnavailable          = errors.New("service unavailable")
)

// ProblemTypeBase prefixes every problem "type" URI; the slug after it is
// stable per class and is what clients switch on.
const ProblemTypeBase = "https://agentsigna.dev/problems/"

// ProblemContentType is the media type of every error response (RFC 9457 §3).
const ProblemContentType = "application/problem+json"

// ProblemDetails is the body of every error response (RFC 9457 §3.1, plus
// the request id so that a user can quote it to an operator). "instance" is
// not sent: the request id already names the occurrence, and the request
// path is client data.
type ProblemDetails struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
}

// ProblemError is the only way a handler puts words of its own in front of
// a client: Detail is chosen by the caller and must be safe to show (no
// client values, no internal names). Build one with Problem.
type ProblemError struct {
	kind   error
	detail string
}

// maxDetailBytes bounds a detail so that a careless caller cannot turn an
// error response into an echo of a large input.
const maxDetailBytes = 512

// Problem returns an error that ErrorHandler answers with the status of
// kind (one of this package's sentinels or a store sentinel) and detail as
// the problem's "detail". A kind that maps to no status yields a 500 whose
// detail is generic, so an unknown kind never leaks its detail.
//
//	return server.Problem(server.ErrUnprocessable, "the idempotency key was used with another body")
func Problem(kind error, detail string) error {
	return &ProblemError{kind: kind, detail: cutUTF8(detail, maxDetailBytes)}
}

// cutUTF8 cuts s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func (e *ProblemError) Error() string { return e.kind.Error() + ": " + e.detail }

// Unwrap lets errors.Is(err, server.ErrForbidden) see the kind.
func (e *ProblemError) Unwrap() error { return e.kind }

// Detail is the client-facing text.
func (e *ProblemError) Detail() string { return e.detail }

// problemClass is one row of the error → HTTP table.
type problemClass struct {
	slug   string
	status int
	title  string
	detail string // generic detail, used when no ProblemError gives one
}

func (p problemClass) typeURI() string { return ProblemTypeBase + p.slug }

// classForStatus is the table of problem classes. Every response status the
// boundary produces has a row; any other status falls back to bad-request
// (4xx) or internal (5xx) so that no status escapes the table.
func classForStatus(status int) problemClass {
	switch status {
	case 400:
		return problemClass{"bad-request", 400, "Bad Request", "The request is malformed."}
	case 401:
		return problemClass{"unauthorized", 401, "Unauthorized", "Authentication is required."}
	case 403:
		return problemClass{"forbidden", 403, "Forbidden", "You are not allowed to do this."}
	case 404:
		return problemClass{"not-found", 404, "Not Found", "The resource does not exist."}
	case 405:
		return problemClass{"method-not-allowed", 405, "Method Not Allowed", "The method is not allowed on this resource."}
	case 408:
		return problemClass{"request-timeout", 408, "Request Timeout", "The request took too long to arrive."}
	case 409:
		return problemClass{"conflict", 409, "Conflict", "The request conflicts with the current state."}
	case 413:
		return problemClass{"payload-too-large", 413, "Content Too Large", "The request body is too large."}
	case 415:
		return problemClass{"unsupported-media-type", 415, "Unsupported Media Type", "The request body's media type or content coding is not supported."}
	case 422:
		return problemClass{"unprocessable", 422, "Unprocessable Content", "The request is well-formed but cannot be processed."}
	case 429:
		return problemClass{"too-many-requests", 429, "Too Many Requests", "Too many requests at once; try again later."}
	case 431:
		return problemClass{"request-header-fields-too-large", 431, "Request Header Fields Too Large", "The request headers are too large."}
	case 501:
		return problemClass{"not-implemented", 501, "Not Implemented", "The method is not supported."}
	case 503:
		return problemClass{"unavailable", 503, "Service Unavailable", "The service is temporarily unavailable."}
	}
	if status >= 400 && status < 500 {
		return classForStatus(400)
	}
	return problemClass{"internal", 500, "Internal Server Error", "An internal error occurred."}
}
