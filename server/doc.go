// Package server is the HTTP boundary of AgentSigna's two planes.
//
// It owns the two Fiber apps (tenant and platform, DESIGN.md §2), their
// listeners and graceful shutdown, the boundary middleware that every
// response passes through (security headers, request id, refusal of
// compressed request bodies, panic recovery, one access-log line), the one
// mapping from errors to RFC 9457 problem+json responses, and the one strict
// JSON body decoder that handlers use (DecodeJSON, built on strictjson).
//
// It must never: trust X-Forwarded-* or any client-chosen identity header,
// inflate a request body, let a handler's error text, SQL, stack trace or
// file path reach a client (only a *ProblemError detail does), log a header
// value, a body or a query string, or share a route, cookie or state
// between the two planes. Handlers stay thin: they decode with DecodeJSON,
// call a domain package, and return errors for ErrorHandler to map.
package server
